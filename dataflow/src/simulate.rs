//! `tradeflow simulate --out FILE`: the market simulator written as NDJSON.
//!
//! The file holds the simulator's trades in arrival order (so it has the simulator's
//! small disorder and its few late trades), as flat trades, Finnhub messages, or both.
//! The same seed and options always give the same file.

use crate::cli::{LineFormat, SimulateArgs};
use crate::stats::group;
use anyhow::Context;
use std::io::Write;
use std::time::{Duration, Instant};
use tradeflow_sources::format::{write_finnhub_message, write_flat_trade};
use tradeflow_sources::sim::{Market, SimConfig};
use tradeflow_sources::url::parse_time;

/// Runs `tradeflow simulate`.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let start_ms = parse_time(&args.start).map_err(|e| anyhow::anyhow!("--start {:?}: {e}", args.start))?;
    let config = SimConfig {
        symbols: args.symbols.clone(),
        rate: args.rate,
        count: Some(args.count),
        seed: args.seed,
        start_ms,
    };
    config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.rate == 0 {
        anyhow::bail!(
            "--rate 0: simulate writes at full speed anyway; --rate sets the event-time rate, e.g. --rate 50000"
        );
    }
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("--out {}: cannot create the file", args.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut market = Market::new(&config, |_| true);
    let mut line = Vec::with_capacity(1024);
    let mut group_state = args.seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut pending: Pending = Vec::new();
    let started = Instant::now();
    let mut next_report = started + Duration::from_secs(2);
    let mut written = 0u64;
    while let Some((_, symbol, trade)) = market.next() {
        written += 1;
        let conditions = trade.conditions.as_json().map(str::to_owned);
        let as_message = match args.format {
            LineFormat::Flat => false,
            LineFormat::Finnhub => true,
            LineFormat::Mixed => next_random(&mut group_state).is_multiple_of(2),
        };
        // Messages carry 1 to 8 consecutive trades, like the real feed; lines stay in
        // arrival order.
        if !as_message || pending.len() == 8 || (!pending.is_empty() && next_random(&mut group_state).is_multiple_of(4))
        {
            flush_message(&mut pending, &mut line);
        }
        if as_message {
            pending.push((symbol.as_str().to_owned(), trade.price, trade.volume, trade.ts, conditions));
        } else {
            write_flat_trade(&mut line, symbol.as_str(), trade.price, trade.volume, trade.ts, conditions.as_deref());
        }
        if line.len() >= 1 << 16 {
            out.write_all(&line).with_context(|| format!("writing {}", args.out.display()))?;
            line.clear();
        }
        if written.is_multiple_of(65_536) && Instant::now() >= next_report {
            eprintln!("simulate: {} of {} trades written", group(written), group(args.count));
            next_report += Duration::from_secs(2);
        }
    }
    flush_message(&mut pending, &mut line);
    out.write_all(&line).with_context(|| format!("writing {}", args.out.display()))?;
    out.flush().with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "simulate: wrote {} trades to {} in {:.1}s",
        group(written),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

type Pending = Vec<(String, tradeflow_model::Price, tradeflow_model::Qty, i64, Option<String>)>;

fn flush_message(pending: &mut Pending, line: &mut Vec<u8>) {
    if pending.is_empty() {
        return;
    }
    let trades: Vec<_> = pending.iter().map(|(s, p, v, t, c)| (s.as_str(), *p, *v, *t, c.as_deref())).collect();
    write_finnhub_message(line, &trades);
    pending.clear();
}

fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}
