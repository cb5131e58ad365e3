//! Tests of the simulated market as a whole: determinism, count shares, timestamps and
//! the statistical shape of prices, volumes, bursts and disorder.

use super::*;
use std::collections::BTreeMap;
use tradeflow_model::{SCALE, ts_in_range};

fn cfg(symbols: &[&str], rate: u64, count: u64, seed: u64) -> SimConfig {
    SimConfig {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        rate,
        count: Some(count),
        seed,
        start_ms: DEFAULT_START_MS,
    }
}

/// Every stream of `cfg`, collected.
fn collect(cfg: &SimConfig) -> Vec<(Symbol, Vec<SimTrade>)> {
    symbol_streams(cfg).into_iter().map(|(symbol, stream)| (symbol, stream.collect())).collect()
}

#[test]
fn config_defaults_and_symbol_resolution() {
    let default = SimConfig::default();
    assert_eq!(default.resolved_symbols().len(), DEFAULT_SYMBOLS.len());
    assert!(DEFAULT_SYMBOLS.len() >= 20);
    assert_eq!(default.event_rate(), UNPACED_EVENT_RATE);
    assert!(default.check().is_ok());
    let unpaced = SimConfig { rate: 0, ..SimConfig::default() };
    assert_eq!(unpaced.event_rate(), 50_000);
    let paced = SimConfig {
        rate: 1_234,
        symbols: vec![" MSFT".into(), "".into(), "AAPL".into(), "MSFT ".into()],
        ..SimConfig::default()
    };
    assert_eq!(paced.event_rate(), 1_234);
    assert_eq!(paced.resolved_symbols(), ["MSFT", "AAPL"]);
    for s in DEFAULT_SYMBOLS {
        assert!(Symbol::parse(s).is_ok(), "{s}");
    }
}

#[test]
fn check_rejects_bad_symbols_and_start_times() {
    let bad = SimConfig { symbols: vec!["AAPL".into(), "A\tB".into()], ..SimConfig::default() };
    let err = bad.check().unwrap_err();
    assert!(matches!(err, SimConfigError::BadSymbol { ref symbol, .. } if symbol == "A\tB"));
    assert!(err.to_string().contains("control character"), "{err}");
    let early = SimConfig { start_ms: MIN_TS, ..SimConfig::default() };
    assert_eq!(early.check(), Err(SimConfigError::StartOutOfRange(MIN_TS)));
    let late = SimConfig { start_ms: MAX_TS, ..SimConfig::default() };
    assert!(late.check().unwrap_err().to_string().contains("out of range"));
}

#[test]
fn same_seed_same_trades_different_seed_different_trades() {
    let a = collect(&cfg(&[], 0, 40_000, 42));
    let b = collect(&cfg(&[], 0, 40_000, 42));
    assert_eq!(a, b);
    let c = collect(&cfg(&[], 0, 40_000, 43));
    assert_eq!(a.len(), c.len());
    for ((sa, ta), (sc, tc)) in a.iter().zip(&c) {
        assert_eq!(sa, sc);
        assert_ne!(ta, tc, "{sa} did not change with the seed");
    }
}

#[test]
fn a_symbol_stream_does_not_depend_on_the_count() {
    // A longer run extends a stream rather than changing its beginning.
    let short = collect(&cfg(&["AAPL", "MSFT"], 0, 1_000, 5));
    let long = collect(&cfg(&["AAPL", "MSFT"], 0, 10_000, 5));
    for ((_, s), (_, l)) in short.iter().zip(&long) {
        assert_eq!(s[..], l[..s.len()]);
    }
}

#[test]
fn count_split_sums_exactly() {
    assert_eq!(split_count(10, &[1, 1, 1]), [4, 3, 3]);
    assert_eq!(split_count(2, &[1, 1, 1]), [1, 1, 0]);
    assert_eq!(split_count(5, &[1, 3]), [1, 4]);
    assert_eq!(split_count(7, &[0, 0]), [0, 0]);
    assert_eq!(split_count(u64::MAX, &[1, 2]).iter().map(|&s| s as u128).sum::<u128>(), u64::MAX as u128);
    let weights: Vec<u64> = DEFAULT_SYMBOLS.iter().map(|s| profile_of(s).weight).collect();
    for count in [0, 1, 7, 20, 21, 999, 1_000_003] {
        let shares = split_count(count, &weights);
        assert_eq!(shares.iter().sum::<u64>(), count);
        let total: u64 = weights.iter().sum();
        for (&share, &w) in shares.iter().zip(&weights) {
            let exact = count as f64 * w as f64 / total as f64;
            assert!((share as f64 - exact).abs() < 1.0, "{share} vs {exact}");
        }
    }
    for count in [0, 1, 13, 12_345] {
        let streams = collect(&cfg(&[], 0, count, 1));
        assert_eq!(streams.iter().map(|(_, t)| t.len() as u64).sum::<u64>(), count);
    }
}

#[test]
fn unbounded_streams_do_not_end() {
    let config = SimConfig { symbols: vec!["AAPL".into()], ..SimConfig::default() };
    let (_, stream) = symbol_streams(&config).pop().unwrap();
    assert_eq!(stream.remaining(), None);
    assert_eq!(stream.take(100_000).count(), 100_000);
}

/// 200k trades of the default universe at 50k trades/s (four simulated seconds).
fn default_run() -> Vec<(Symbol, Vec<SimTrade>)> {
    collect(&cfg(&[], 50_000, 200_000, 9))
}

#[test]
fn arrivals_are_ordered_and_rates_follow_weights() {
    let streams = default_run();
    let mut last_arrival = DEFAULT_START_MS;
    for (symbol, trades) in &streams {
        for (i, pair) in trades.windows(2).enumerate() {
            assert!(pair[0].arrival_ms <= pair[1].arrival_ms, "{symbol} at {i}");
            assert_eq!(pair[0].seq + 1, pair[1].seq);
        }
        assert_eq!(trades[0].seq, 0);
        assert!(trades[0].arrival_ms >= DEFAULT_START_MS);
        last_arrival = last_arrival.max(trades.last().unwrap().arrival_ms);
    }
    // 200k trades at 50k/s end about four seconds in, every stream about together.
    let span = last_arrival - DEFAULT_START_MS;
    assert!((3_800..=4_300).contains(&span), "{span}");
    for (symbol, trades) in &streams {
        let end = trades.last().unwrap().arrival_ms - DEFAULT_START_MS;
        assert!(end as f64 > 0.8 * span as f64, "{symbol} ends at {end}");
    }
    let of = |name: &str| streams.iter().find(|(s, _)| s.as_str() == name).unwrap().1.len();
    assert!(of("BINANCE:BTCUSDT") > 20 * of("OANDA:USD_TRY"));
    assert!(of("AAPL") > of("BRK.B") * 5);
}

#[test]
fn disorder_is_mostly_within_lateness_with_a_small_late_share() {
    let streams = default_run();
    let (mut total, mut early, mut late, mut watermark_late) = (0usize, 0usize, 0usize, 0usize);
    for (symbol, trades) in &streams {
        let mut max_ts = i64::MIN;
        for t in trades {
            assert!(ts_in_range(t.ts), "{symbol}: {t:?}");
            let behind = t.arrival_ms - t.ts;
            assert!((0..=60_000).contains(&behind), "{symbol}: {t:?}");
            assert!(behind <= 3_000 || behind >= 10_000, "{symbol}: {t:?}");
            total += 1;
            early += usize::from(behind > 0);
            late += usize::from(behind > 5_000);
            // SPEC 6: late against the partition's watermark, max ts - 5 s.
            watermark_late += usize::from(t.ts < max_ts.saturating_sub(5_000));
            max_ts = max_ts.max(t.ts);
        }
    }
    let frac = |n: usize| n as f64 / total as f64;
    assert!((0.017..0.024).contains(&frac(early)), "{}", frac(early));
    assert!((0.0002..0.001).contains(&frac(late)), "{}", frac(late));
    assert!(frac(watermark_late) <= frac(late), "{}", frac(watermark_late));
}

#[test]
fn prices_are_positive_on_tick_and_near_their_base() {
    for (symbol, trades) in default_run() {
        let profile = profile_of(symbol.as_str());
        for t in &trades {
            assert!(t.price.0 > 0, "{symbol}: {t:?}");
            assert_eq!(t.price.0 % profile.tick_units, 0, "{symbol}: {t:?}");
            let ratio = t.price.to_f64() / profile.base_price;
            assert!((0.9..1.1).contains(&ratio), "{symbol}: {t:?}");
        }
    }
    let levels = default_run();
    let first = |name: &str| levels.iter().find(|(s, _)| s.as_str() == name).unwrap().1[0].price.to_f64();
    assert!((185.0..195.0).contains(&first("AAPL")));
    assert!((1.07..1.09).contains(&first("OANDA:EUR_USD")));
    assert!((35_000.0..39_000.0).contains(&first("BINANCE:BTCUSDT")));
    assert!((148.0..152.0).contains(&first("OANDA:USD_JPY")));
}

#[test]
fn volumes_are_heavy_tailed_and_class_shaped() {
    for (symbol, trades) in default_run() {
        let class = profile_of(symbol.as_str()).class;
        let n = trades.len() as f64;
        let count = |f: &dyn Fn(&SimTrade) -> bool| trades.iter().filter(|t| f(t)).count() as f64;
        assert!(trades.iter().all(|t| t.volume.0 >= 0 && t.volume.0 < 10_000_000_000 * SCALE));
        let zeros = count(&|t| t.volume.0 == 0) / n;
        match class {
            AssetClass::Forex => {
                assert!((0.75..0.95).contains(&zeros), "{symbol}: {zeros}");
                assert!(trades.iter().all(|t| t.volume.0 % SCALE == 0));
            }
            AssetClass::Stock => {
                assert!(zeros < 0.02, "{symbol}: {zeros}");
                assert!(trades.iter().all(|t| t.volume.0 % SCALE == 0), "{symbol}: shares");
                let small = count(&|t| (SCALE..=500 * SCALE).contains(&t.volume.0)) / n;
                assert!(small > 0.85, "{symbol}: {small}");
                if trades.len() > 5_000 {
                    assert!(count(&|t| t.volume.0 >= 1_000 * SCALE) > 0.0, "{symbol}: no block");
                }
            }
            AssetClass::Crypto => {
                assert!(zeros < 0.02, "{symbol}: {zeros}");
                let fractional = count(&|t| t.volume.0 % SCALE != 0) / n;
                assert!(fractional > 0.9, "{symbol}: {fractional}");
            }
        }
    }
    let btc = collect(&cfg(&["BINANCE:BTCUSDT"], 0, 2_000, 3)).pop().unwrap().1;
    assert!(btc.iter().any(|t| t.volume.0 < SCALE / 1_000), "sub-0.001 BTC trades");
}

#[test]
fn conditions_only_on_us_stocks() {
    for (symbol, trades) in default_run() {
        let with = trades.iter().filter(|t| !t.conditions.is_none()).count() as f64;
        let share = with / trades.len() as f64;
        if profile_of(symbol.as_str()).us_listed {
            assert!((0.2..0.4).contains(&share), "{symbol}: {share}");
            for t in trades.iter().filter(|t| !t.conditions.is_none()) {
                let list = t.conditions.decode().unwrap();
                assert!((1..=2).contains(&list.len()), "{list:?}");
            }
        } else {
            assert_eq!(share, 0.0, "{symbol}");
        }
    }
    let aapl = collect(&cfg(&["AAPL"], 0, 5_000, 2)).pop().unwrap().1;
    let lists: std::collections::BTreeSet<_> = aapl.iter().filter_map(|t| t.conditions.as_json()).collect();
    assert!(lists.contains(r#"["1","12"]"#) && lists.contains(r#"["12","37"]"#), "{lists:?}");
}

/// Volume and vwap by minute.
type Bars = BTreeMap<i64, (f64, f64)>;

/// Per-minute (volume, vwap) of each symbol for a slow run long enough to hold bursts.
fn minute_bars() -> Vec<(Symbol, Bars)> {
    // 2 trades/s over 3 symbols for 120k trades: about 16 simulated hours.
    let streams = collect(&cfg(&["AAPL", "BINANCE:BTCUSDT", "TSLA"], 2, 120_000, 11));
    streams
        .into_iter()
        .map(|(symbol, trades)| {
            let mut bars = Bars::new();
            for t in &trades {
                let bar = bars.entry(t.ts.div_euclid(60_000)).or_default();
                bar.0 += t.volume.to_f64();
                bar.1 += t.volume.to_f64() * t.price.to_f64();
            }
            let bars = bars.into_iter().filter(|(_, (v, _))| *v > 0.0).map(|(m, (v, pv))| (m, (v, pv / v))).collect();
            (symbol, bars)
        })
        .collect()
}

#[test]
fn bursts_make_volume_spikes() {
    for (symbol, bars) in minute_bars() {
        let volumes: Vec<(i64, f64)> = bars.iter().map(|(m, (v, _))| (*m, *v)).collect();
        // SPEC 5's volume_spike: above 5× the mean of the previous 20 minutes (empty = 0).
        let spikes = volumes
            .iter()
            .filter(|(m, v)| {
                let trailing: f64 = volumes.iter().filter(|(p, _)| (m - 20..*m).contains(p)).map(|(_, v)| v).sum();
                trailing > 0.0 && *v > 5.0 * trailing / 20.0
            })
            .count();
        // About 16 hours with a burst every ~22 minutes: dozens of spikes, not hundreds.
        assert!((10..=200).contains(&spikes), "{symbol}: {spikes} spikes");
    }
}

#[test]
fn bursts_make_price_jumps() {
    for (symbol, bars) in minute_bars() {
        let vwaps: Vec<f64> = bars.values().map(|(_, vwap)| *vwap).collect();
        let returns: Vec<f64> = vwaps.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        // SPEC 5's price_jump with K = 20, Z = 4, over consecutive present minutes.
        let jumps = (20..returns.len())
            .filter(|&j| {
                let window = &returns[j - 19..j];
                let mean = window.iter().sum::<f64>() / window.len() as f64;
                let var = window.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (window.len() - 1) as f64;
                (returns[j] - mean).abs() > 4.0 * var.sqrt()
            })
            .count();
        assert!((5..=200).contains(&jumps), "{symbol}: {jumps} jumps");
    }
}
