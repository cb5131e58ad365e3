//! A seeded, deterministic market simulator (`sim://` sources and `tradeflow simulate`).
//!
//! Every symbol is an independent stream seeded from `(seed, symbol index)`, so the trades
//! of a symbol are the same whichever worker simulates it and however the symbols are
//! split: a worker builds a [`Market`] over the symbols it owns and emits them in arrival
//! order.
//!
//! The model, per symbol (see [`profile_of`] for the parameters and `stream.rs` for the
//! order of draws):
//! - **Arrivals** — a Poisson process with rate `event_rate × weight / Σ weight` trades/s;
//!   busy symbols (BTC, big tech) have large weights, exotic forex small ones.
//! - **Prices** — geometric Brownian motion with the symbol's daily volatility and a weak
//!   pull back to its base level, rounded to its tick (0.01 stocks and most crypto, 0.00001
//!   forex, 0.001 for pairs quoted near 100), always at least one tick.
//! - **Volumes** — heavy-tailed: integer shares for stocks, fractional (8 decimals) for
//!   crypto, usually exactly 0 for forex; a small share of zeros everywhere.
//! - **Bursts** — once per 10–30 simulated minutes a symbol trades 5–20× larger for 1–2
//!   minutes, sometimes opening with a price jump of a few percent, so SPEC 5's
//!   `volume_spike` and `price_jump` fire on simulated data.
//! - **Disorder** — 2% of trades have `ts` 1..=3000 ms before their arrival (on time under
//!   the default 5 s lateness), 0.05% 10..=60 s before (late).
//!
//! `count` is split among the symbols by weight with largest remainders, so the streams
//! together yield exactly `count` trades.

mod market;
pub(crate) mod profile;
mod source;
mod stream;

/// Bounded with a `count`; never checkpointed: its trades are a function of its settings,
/// so a rerun gives them again.
impl crate::source::Source for SimConfig {
    fn bounded(&self) -> bool {
        self.count.is_some()
    }
    fn resumable(&self, _asked: bool) -> bool {
        false
    }
    fn extent(&self, _workers: std::ops::Range<usize>, _peers: usize, processes: usize) -> crate::source::Extent {
        // One process simulates every symbol; with several, its share is unknown.
        match self.count {
            Some(count) if processes == 1 => crate::source::Extent::Trades(count),
            _ => crate::source::Extent::Unknown,
        }
    }
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, tradeflow_model::Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        let c = context;
        let (index, peers) = (scope.index(), scope.peers());
        let reader = SimReader::new(self.clone(), index, peers, c.lateness_ms, c.idle_timeout, c.stop.clone());
        Ok(crate::driver::polled_source(scope, "Simulator", reader))
    }
}

#[cfg(test)]
mod tests;

pub use market::Market;
pub use profile::{AssetClass, Profile, profile_of};
pub use source::SimReader;
pub use stream::{SimTrade, SymbolStream};

use rand_pcg::Pcg64Mcg;
use std::fmt;
use tradeflow_model::{MAX_TS, MIN_TS, Symbol, SymbolError};

/// The symbols simulated when none are configured.
pub const DEFAULT_SYMBOLS: &[&str] = &[
    "AAPL",
    "MSFT",
    "NVDA",
    "TSLA",
    "AMZN",
    "GOOGL",
    "META",
    "AMD",
    "SPY",
    "BRK.B",
    "JPM",
    "BINANCE:BTCUSDT",
    "BINANCE:ETHUSDT",
    "BINANCE:SOLUSDT",
    "COINBASE:BTC-USD",
    "KRAKEN:XBT/USD",
    "OANDA:EUR_USD",
    "OANDA:GBP_USD",
    "OANDA:USD_JPY",
    "OANDA:USD_TRY",
    "IC MARKETS:1",
];

/// Spacing of event timestamps when the emission rate is unlimited (`rate = 0`).
pub const UNPACED_EVENT_RATE: u64 = 50_000;

/// Default event time of the simulation's start: 2023-11-14T22:13:20Z, matching the price
/// levels of the built-in profiles.
pub const DEFAULT_START_MS: i64 = 1_700_000_000_000;

/// The earliest event time a trade may be given before its arrival (late trades).
const MAX_DISORDER_MS: i64 = 60_000;

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Symbols in index order; empty means [`DEFAULT_SYMBOLS`]. Blank entries and repeats
    /// are dropped (see [`SimConfig::resolved_symbols`]).
    pub symbols: Vec<String>,
    /// Total trades per second across all symbols, for pacing; 0 = as fast as possible.
    pub rate: u64,
    /// Total trades across all symbols; `None` = unbounded.
    pub count: Option<u64>,
    /// Seed of every symbol's stream.
    pub seed: u64,
    /// Event time of the simulation's start, ms since the epoch.
    pub start_ms: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { symbols: Vec::new(), rate: UNPACED_EVENT_RATE, count: None, seed: 0, start_ms: DEFAULT_START_MS }
    }
}

/// Why a [`SimConfig`] cannot be simulated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimConfigError {
    /// A configured symbol is not a valid symbol (SPEC 2).
    BadSymbol {
        /// The symbol as configured.
        symbol: String,
        /// What is wrong with it.
        error: SymbolError,
    },
    /// `start_ms` would put event times outside SPEC 2's range.
    StartOutOfRange(i64),
}

impl fmt::Display for SimConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimConfigError::BadSymbol { symbol, error } => {
                write!(f, "simulator symbol {symbol:?} is invalid: {error}")
            }
            SimConfigError::StartOutOfRange(ms) => write!(
                f,
                "simulator start time {ms} is out of range; it must be at least {} \
                 (2000-01-01T00:01:00Z) and below {MAX_TS} (2100-01-01)",
                MIN_TS + MAX_DISORDER_MS
            ),
        }
    }
}

impl std::error::Error for SimConfigError {}

impl SimConfig {
    /// The spacing of event timestamps, in trades/s across all symbols: `rate`, or
    /// [`UNPACED_EVENT_RATE`] when `rate` is 0.
    pub fn event_rate(&self) -> u64 {
        if self.rate == 0 { UNPACED_EVENT_RATE } else { self.rate }
    }

    /// The simulated symbols in index order: `symbols` trimmed, without blanks and repeats
    /// (the first occurrence keeps its place), or [`DEFAULT_SYMBOLS`] when none remain.
    pub fn resolved_symbols(&self) -> Vec<String> {
        // A set of those seen: a scan of `out` per symbol took 50M comparisons at 10,000.
        let mut seen = std::collections::HashSet::with_capacity(self.symbols.len());
        let mut out: Vec<String> = Vec::with_capacity(self.symbols.len());
        for s in self.symbols.iter().map(|s| s.trim()) {
            if !s.is_empty() && seen.insert(s) {
                out.push(s.to_owned());
            }
        }
        if out.is_empty() {
            out = DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect();
        }
        out
    }

    /// Checks that every symbol is valid and that event times stay in SPEC 2's range.
    pub fn check(&self) -> Result<(), SimConfigError> {
        for symbol in self.resolved_symbols() {
            if let Err(error) = Symbol::check(&symbol) {
                return Err(SimConfigError::BadSymbol { symbol, error });
            }
        }
        if self.start_ms < MIN_TS + MAX_DISORDER_MS || self.start_ms >= MAX_TS {
            return Err(SimConfigError::StartOutOfRange(self.start_ms));
        }
        Ok(())
    }
}

/// One stream per resolved symbol, in index order.
///
/// # Panics
///
/// When a symbol is invalid: validate the config with [`SimConfig::check`] first.
pub fn symbol_streams(cfg: &SimConfig) -> Vec<(Symbol, SymbolStream)> {
    let plan = Plan::new(cfg);
    (0..plan.len()).map(|i| plan.stream(i)).collect()
}

/// The per-symbol parameters of a config: profiles, count shares and mean gaps.
struct Plan {
    symbols: Vec<Symbol>,
    profiles: Vec<Profile>,
    shares: Vec<Option<u64>>,
    mean_gaps_ms: Vec<f64>,
    seed: u64,
    start_ms: i64,
}

impl Plan {
    /// # Panics
    ///
    /// When a symbol is invalid (see [`SimConfig::check`]).
    fn new(cfg: &SimConfig) -> Plan {
        let symbols: Vec<Symbol> = cfg
            .resolved_symbols()
            .iter()
            .map(|s| match Symbol::parse(s) {
                Ok(symbol) => symbol,
                Err(e) => panic!("simulator symbol {s:?} is invalid: {e}; call SimConfig::check"),
            })
            .collect();
        let profiles: Vec<Profile> = symbols.iter().map(|s| profile_of(s.as_str())).collect();
        let weights: Vec<u64> = profiles.iter().map(|p| p.weight.max(1)).collect();
        let total: u64 = weights.iter().sum();
        let shares = match cfg.count {
            Some(count) => split_count(count, &weights).into_iter().map(Some).collect(),
            None => vec![None; weights.len()],
        };
        // Symbol i trades at event_rate · w_i / Σw per second.
        let mean_gaps_ms =
            weights.iter().map(|&w| 1_000.0 * total as f64 / (cfg.event_rate() as f64 * w as f64)).collect();
        Plan { symbols, profiles, shares, mean_gaps_ms, seed: cfg.seed, start_ms: cfg.start_ms }
    }

    fn len(&self) -> usize {
        self.symbols.len()
    }

    fn stream(&self, index: usize) -> (Symbol, SymbolStream) {
        let stream = SymbolStream::new(
            &self.profiles[index],
            self.mean_gaps_ms[index],
            self.start_ms,
            self.shares[index],
            stream_rng(self.seed, index),
        );
        (self.symbols[index].clone(), stream)
    }
}

/// The generator of symbol `index`'s stream: a 128-bit state mixed from both values.
fn stream_rng(seed: u64, index: usize) -> Pcg64Mcg {
    let hi = profile::splitmix64(seed ^ 0x5349_4d5f_5345_4544); // "SIM_SEED"
    let lo = profile::splitmix64(hi ^ profile::splitmix64(index as u64));
    Pcg64Mcg::new((u128::from(hi) << 64) | u128::from(lo))
}

/// Splits `count` in proportion to `weights` by largest remainders: each share is
/// `floor(count · w / Σw)`, and the trades left over go one each to the largest
/// remainders (ties to the lower index), so the shares sum to exactly `count`.
fn split_count(count: u64, weights: &[u64]) -> Vec<u64> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let exact = u128::from(count) * u128::from(w);
        shares.push((exact / total) as u64);
        remainders.push((exact % total, i));
    }
    let left = count - shares.iter().sum::<u64>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(left as usize) {
        shares[i] += 1;
    }
    shares
}
