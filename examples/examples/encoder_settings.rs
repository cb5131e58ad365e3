//! The trades files' Parquet settings, compared: every trades file of a lake is read back
//! and encoded again, in memory, with the lake's settings and with variants of them
//! (statistics, zstd level, encodings, page and batch sizes), in turn over several rounds.
//! It prints each variant's median CPU time (this thread's, which other processes' load
//! does not inflate), rows per second and bytes per trade; `batch building alone` is the
//! Arrow arrays' share of every variant.
//!
//! ```text
//! cargo build --release -p tradeflow -p tradeflow-examples --bins --examples
//! target/release/tradeflow simulate --out /tmp/t.ndjson --count 5000000 --seed 1 --format mixed --rate 500
//! target/release/tradeflow run --source file:///tmp/t.ndjson --lake file:///tmp/lake
//! target/release/examples/encoder_settings /tmp/lake [ROUNDS]   # VARIANT=name: that one only
//! ```

use anyhow::{Context, bail};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use tradeflow_lake::parquet::{trades_batch, trades_from_batch, trades_schema, trades_writer_properties};
use tradeflow_model::{Symbol, Trade};
use tradeflow_tests::lake::files_under;

/// Rows per write, as the lake's encoder writes them.
const WRITE_ROWS: usize = 8192;

/// A point in this thread's CPU time.
struct CpuClock(u64);

impl CpuClock {
    fn now() -> CpuClock {
        CpuClock(cpu_ns())
    }
    fn seconds(&self) -> f64 {
        (cpu_ns() - self.0) as f64 / 1e9
    }
}

/// This thread's time on a CPU, ns (`/proc/thread-self/schedstat`).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux) gives the thread's CPU time")
}

/// A variant of the trades files' writer settings.
type Settings = Box<dyn Fn() -> WriterProperties>;

fn main() -> anyhow::Result<()> {
    let lake = std::path::PathBuf::from(std::env::args().nth(1).context("the first argument is a lake directory")?);
    let rounds: usize =
        std::env::args().nth(2).map_or(Ok(5), |a| a.parse()).context("the second argument is rounds")?;
    let trades_dir = lake.join("trades");
    let paths = files_under(&trades_dir).into_iter().filter(|f| f.extension().is_some_and(|x| x == "parquet"));
    // The symbol is not a column of these files; any will do.
    let symbol = Symbol::parse("X").expect("valid");
    let mut files: Vec<Vec<Trade>> = Vec::new();
    for path in paths {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(trades_dir.join(path))?)?.build()?;
        let mut trades = Vec::new();
        for batch in reader {
            trades.extend(trades_from_batch(&batch?, Some(&symbol)).map_err(anyhow::Error::msg)?);
        }
        files.push(trades);
    }
    let rows: usize = files.iter().map(Vec::len).sum();
    if rows == 0 {
        bail!("no trades files under {}", trades_dir.display());
    }
    println!("{} trades files, {rows} trades, {rounds} rounds\n", files.len());

    let with = |change: fn(WriterPropertiesBuilder) -> WriterPropertiesBuilder| -> Settings {
        Box::new(move || change(trades_writer_properties().into_builder()).build())
    };
    let variants: Vec<(&str, Settings)> = vec![
        ("the lake's settings", Box::new(trades_writer_properties)),
        ("statistics per column chunk only", with(|b| b.set_statistics_enabled(EnabledStatistics::Chunk))),
        ("no statistics", with(|b| b.set_statistics_enabled(EnabledStatistics::None))),
        ("zstd level 3", with(|b| b.set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid"))))),
        ("zstd level -1", with(|b| b.set_compression(Compression::ZSTD(ZstdLevel::try_new(-1).expect("valid"))))),
        ("uncompressed", with(|b| b.set_compression(Compression::UNCOMPRESSED))),
        ("ts plain", with(|b| b.set_column_encoding(ColumnPath::from("ts"), Encoding::PLAIN))),
        (
            "price, volume delta-encoded",
            with(|b| {
                b.set_column_encoding(ColumnPath::from("price"), Encoding::DELTA_BINARY_PACKED)
                    .set_column_encoding(ColumnPath::from("volume"), Encoding::DELTA_BINARY_PACKED)
            }),
        ),
        (
            "conditions without dictionary",
            with(|b| {
                let item = ColumnPath::from(vec!["conditions".to_owned(), "list".to_owned(), "item".to_owned()]);
                b.set_column_dictionary_enabled(item, false)
            }),
        ),
        ("one page per row group (64Ki rows)", with(|b| b.set_data_page_row_count_limit(65_536))),
        (
            "one page per row group, batches of 8Ki rows",
            with(|b| b.set_data_page_row_count_limit(65_536).set_write_batch_size(8192)),
        ),
    ];
    let only = std::env::var("VARIANT").ok();
    let variants: Vec<_> = variants.into_iter().filter(|(n, _)| only.as_deref().is_none_or(|o| o == *n)).collect();
    let mut seconds = vec![Vec::new(); variants.len()];
    let mut bytes = vec![0usize; variants.len()];
    let mut building = Vec::new();
    for _ in 0..rounds {
        let clock = CpuClock::now();
        let built: usize = files.iter().flat_map(|f| f.chunks(WRITE_ROWS)).map(|c| trades_batch(c).num_rows()).sum();
        building.push(clock.seconds());
        assert_eq!(built, rows);
        for (i, (_, settings)) in variants.iter().enumerate() {
            let clock = CpuClock::now();
            let mut written = 0;
            for file in &files {
                let mut writer = ArrowWriter::try_new(Vec::new(), trades_schema(), Some(settings()))?;
                for chunk in file.chunks(WRITE_ROWS) {
                    writer.write(&trades_batch(chunk))?;
                }
                written += writer.into_inner()?.len();
            }
            seconds[i].push(clock.seconds());
            bytes[i] = written;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| settings | CPU seconds (median) | rows/s | bytes per trade | rounds |");
    println!("|---|---:|---:|---:|---|");
    println!("| batch building alone (in every row) | {:.3} | | | |", median(&mut building));
    for (i, (name, _)) in variants.iter().enumerate() {
        let runs: Vec<String> = seconds[i].iter().map(|s| format!("{s:.2}")).collect();
        let m = median(&mut seconds[i]);
        println!(
            "| {name} | {m:.3} | {:.2}M | {:.3} | {} |",
            rows as f64 / m / 1e6,
            bytes[i] as f64 / rows as f64,
            runs.join(", ")
        );
    }
    Ok(())
}
