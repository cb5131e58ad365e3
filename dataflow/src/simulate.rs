//! `tradeflow simulate --out FILE`: the market simulator written as NDJSON.
//!
//! The file holds the simulator's trades in arrival order (so it has the simulator's
//! small disorder and its few late trades), as flat trades, Finnhub messages, or both.
//! The same seed and options always give the same file.
//!
//! `tradeflow simulate --serve ADDR` streams the same market (or a replayed file) as a
//! Finnhub-compatible WebSocket server instead.

use crate::cli::{LineFormat, SimulateArgs};
use crate::stats::group;
use anyhow::Context;
use std::io::Write;
use std::time::{Duration, Instant};
use tradeflow_sources::finnhub::server::{self, ServeConfig, ServeFeed};
use tradeflow_sources::format::{write_finnhub_message, write_flat_trade};
use tradeflow_sources::sim::{Market, SimConfig};
use tradeflow_sources::url::parse_time;

/// Runs `tradeflow simulate`.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    if let Some(addr) = &args.serve {
        return serve(args, addr);
    }
    if let Some(to) = &args.to {
        return crate::produce::produce(&crate::produce::ProduceArgs::defaults(sim_url(args), to.clone()));
    }
    let path = args.out.as_ref().context("give --out PATH (or --serve ADDR, or --to kafka://...)")?;
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    let start_ms = parse_time(&args.start).map_err(|e| anyhow::anyhow!("--start {:?}: {e}", args.start))?;
    let config =
        SimConfig { symbols: args.symbols.clone(), rate: args.rate, count: Some(count), seed: args.seed, start_ms };
    config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.rate == 0 {
        anyhow::bail!(
            "--rate 0: simulate writes at full speed anyway; --rate sets the event-time rate, e.g. --rate 50000"
        );
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("--out {}: cannot create the file", path.display()))?;
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
            out.write_all(&line).with_context(|| format!("writing {}", path.display()))?;
            line.clear();
        }
        if written.is_multiple_of(65_536) && Instant::now() >= next_report {
            crate::say!("simulate: {} of {} trades written", group(written), group(count));
            next_report += Duration::from_secs(2);
        }
    }
    flush_message(&mut pending, &mut line);
    out.write_all(&line).with_context(|| format!("writing {}", path.display()))?;
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    crate::say!(
        "simulate: wrote {} trades to {} in {:.1}s",
        group(written),
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Trades written by `--out` without `--count`.
const DEFAULT_COUNT: u64 = 1_000_000;

/// `tradeflow simulate --serve ADDR`: a Finnhub-compatible WebSocket feed (see
/// `tradeflow_sources::finnhub::server`), until the process is stopped.
fn serve(args: &SimulateArgs, addr: &str) -> anyhow::Result<()> {
    let duration = |flag: &str, text: &str| -> anyhow::Result<Duration> {
        let d = crate::config::duration(flag, text)?;
        anyhow::ensure!(!d.is_zero(), "{flag} {text:?}: must be positive, e.g. 30s");
        Ok(d)
    };
    let ping_interval = duration("--ping-interval", &args.ping_interval)?;
    let disconnect_every = args.disconnect_every.as_deref().map(|d| duration("--disconnect-every", d)).transpose()?;
    anyhow::ensure!(args.max_symbols > 0, "--max-symbols 0: must be at least 1");
    let (feed, what) = match &args.from {
        Some(url) => {
            let path = match tradeflow_sources::url::parse_source(url) {
                Ok(tradeflow_sources::url::SourceSpec::File { path }) if path.is_file() => path,
                _ => anyhow::bail!("--from {url:?}: give an NDJSON file as file:///abs/path.ndjson"),
            };
            let what = format!("replaying {}", path.display());
            (ServeFeed::Replay(path), what)
        }
        None => {
            anyhow::ensure!(args.rate > 0, "--rate 0: --serve streams in real time; give trades/s, e.g. --rate 1000");
            let config = SimConfig {
                symbols: args.symbols.clone(),
                rate: args.rate,
                count: args.count,
                seed: args.seed,
                start_ms: tradeflow_sources::batch::wall_ms(),
            };
            config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
            let what = format!(
                "simulating {} symbols at {} trades/s{}",
                config.resolved_symbols().len(),
                group(args.rate),
                args.count.map(|c| format!(" ({} trades)", group(c))).unwrap_or_default()
            );
            (ServeFeed::Sim(config), what)
        }
    };
    let config =
        ServeConfig { addr: addr.to_owned(), feed, ping_interval, disconnect_every, max_symbols: args.max_symbols };
    let drops = disconnect_every.map(|d| format!(", dropping connections every {}", humantime::format_duration(d)));
    server::serve(config, |bound| {
        crate::say!(
            "simulate: serving a Finnhub-compatible feed at ws://{bound} ({what}; pings every {}{}); Ctrl-C stops",
            humantime::format_duration(ping_interval),
            drops.unwrap_or_default()
        );
    })
    .with_context(|| format!("--serve {addr}"))
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

/// The `sim://` URL of the market `args` describe (for `--to`).
fn sim_url(args: &SimulateArgs) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
    let mut url = format!("sim://?rate={}&seed={}&start={}", args.rate, args.seed, encode(&args.start));
    if !args.symbols.is_empty() {
        let symbols: Vec<String> = args.symbols.iter().map(|s| encode(s)).collect();
        url.push_str(&format!("&symbols={}", symbols.join(",")));
    }
    if let Some(count) = args.count {
        url.push_str(&format!("&count={count}"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::SimulateArgs;
    use clap::Parser;
    use tradeflow_sources::url::{SourceSpec, parse_source};

    /// `simulate --to`'s market survives the trip through a `sim://` URL: a start with a
    /// `+` offset and symbols with spaces, `&` and `%` come back as given.
    #[test]
    fn the_sim_url_of_simulate_to_keeps_every_value() {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let args = Wrapper::parse_from([
            "simulate",
            "--to",
            "kafka://127.0.0.1:9092/t",
            "--symbols",
            "IC MARKETS:1,A&B,100%=X,KRAKEN:XBT/USD",
            "--start",
            "2023-11-14T23:13:20+01:00",
            "--count",
            "7",
            "--rate",
            "0",
        ])
        .args;
        let Ok(SourceSpec::Sim { config, start }) = parse_source(&sim_url(&args)) else { panic!("{}", sim_url(&args)) };
        assert_eq!(config.symbols, ["IC MARKETS:1", "A&B", "100%=X", "KRAKEN:XBT/USD"]);
        assert_eq!(start, Some(1_700_000_000_000));
        assert_eq!((config.count, config.rate, config.seed), (Some(7), 0, 42));
    }
}
