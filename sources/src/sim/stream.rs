//! One symbol's simulated trade stream.
//!
//! Per trade, in this order, all from the stream's own generator:
//! 1. the gap to the next arrival, exponential with the symbol's mean gap (a Poisson
//!    process in continuous time; `arrival_ms` is its floor, so several trades may share a
//!    millisecond);
//! 2. the burst schedule: a burst starts once per 10–30 simulated minutes, lasts 60–120 s
//!    and multiplies trade sizes by 5–20; 40% of bursts open with a price jump of a few
//!    percent (at least 8 one-minute sigmas), up or down, which then fades with a
//!    20-minute half-life so that jumps do not add up to an unrealistic drift;
//! 3. the log price: Brownian increment `σ·√dt·Z` plus a weak pull back to the base price
//!    (half-life 3 simulated days), so unbounded runs stay near realistic levels; the
//!    trade prints at the bid or the ask, the mid rounded down or up to the tick (at
//!    least one tick), so consecutive prices bounce as real tape does;
//! 4. the volume: zero with a small class-dependent probability (85% for forex, as Finnhub
//!    sends `v = 0`), else lognormal around a class-typical size with a 3% Pareto tail;
//! 5. disorder: 2% of trades carry `ts` 1..=3000 ms before their arrival (on time for a
//!    5 s lateness), 0.05% 10..=60 s before (late);
//! 6. conditions for US-listed stocks: `["1","12"]`, `["12","37"]`, `["1"]` or `["37"]`
//!    on 30% of trades.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp1, LogNormal, Pareto, StandardNormal};
use rand_pcg::Pcg64Mcg;
use tradeflow_model::{Conditions, MAX_TS, MIN_TS, Price, Qty, SCALE, Symbol, Trade};

use super::profile::{AssetClass, Profile};

const MINUTE_MS: f64 = 60_000.0;
/// Half-life of a price jump's offset: the price drifts back over the following hour.
const JUMP_HALF_LIFE_MS: f64 = 20.0 * MINUTE_MS;
const DAY_MS: f64 = 86_400_000.0;

/// One simulated trade of one symbol stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SimTrade {
    /// Position in the symbol's stream: 0, 1, 2, ... (the position used for dead letters).
    pub seq: u64,
    /// When the trade arrives, in ms since the epoch; non-decreasing within a stream.
    /// Emission is paced on it.
    pub arrival_ms: i64,
    /// Event time in ms since the epoch: usually `arrival_ms`, sometimes earlier (disorder).
    pub ts: i64,
    /// Price, a positive multiple of the instrument's tick.
    pub price: Price,
    /// Volume, `>= 0`.
    pub volume: Qty,
    /// Condition codes (US-listed stocks only).
    pub conditions: Conditions,
}

impl SimTrade {
    /// The trade as the pipeline's [`Trade`] for `symbol`.
    pub fn to_trade(&self, symbol: &Symbol) -> Trade {
        Trade {
            symbol: symbol.clone(),
            ts: self.ts,
            price: self.price,
            volume: self.volume,
            conditions: self.conditions.clone(),
        }
    }
}

/// A probability `p` in `[0, 1]` as a threshold on a uniform `u32`, so a coin flip costs
/// half a draw and a compare.
#[derive(Clone, Copy, Debug)]
struct Chance(u32);

impl Chance {
    const fn new(p: f64) -> Self {
        Chance((p * u32::MAX as f64) as u32)
    }
}

/// How trade sizes of one instrument are drawn.
#[derive(Clone, Debug)]
struct VolumeModel {
    zero: Chance,
    tail: Chance,
    body: LogNormal<f64>,
    tail_dist: Pareto<f64>,
    /// Largest size in whole units (well below the 10^10 limit).
    cap: f64,
    /// Whole units only (shares, forex units); otherwise 10^-8 units (crypto).
    whole: bool,
}

impl VolumeModel {
    fn for_profile(p: &Profile) -> Self {
        // (zero share, median size, lognormal sigma, tail scale, tail shape, cap, whole)
        let (zero, median, sigma, tail_scale, shape, cap, whole) = match p.class {
            AssetClass::Stock => (0.002, 60.0, 1.1, 500.0, 1.4, 200_000.0, true),
            AssetClass::Crypto => {
                // Sizes by notional: a median trade of about $300, tail from $5,000.
                let q = 1.0 / p.base_price;
                (0.002, 300.0 * q, 1.6, 5_000.0 * q, 1.3, 5e6 * q, false)
            }
            AssetClass::Forex => (0.85, 50.0, 1.2, 1_000.0, 1.5, 1e7, true),
        };
        VolumeModel {
            zero: Chance::new(zero),
            tail: Chance::new(0.03),
            body: LogNormal::new(f64::ln(median), sigma).expect("finite lognormal parameters"),
            tail_dist: Pareto::new(tail_scale, shape).expect("positive Pareto parameters"),
            cap: cap.min(1e9),
            whole,
        }
    }

    fn sample(&self, rng: &mut Pcg64Mcg, multiplier: f64) -> Qty {
        let coin = rng.next_u64();
        if (coin as u32) < self.zero.0 {
            return Qty(0);
        }
        let size = if ((coin >> 32) as u32) < self.tail.0 { self.tail_dist.sample(rng) } else { self.body.sample(rng) };
        let size = (size * multiplier).min(self.cap);
        // `size` is positive, so `as i64` truncates and `+ 0.5` rounds half up.
        if self.whole {
            Qty((size + 0.5).max(1.0) as i64 * SCALE)
        } else {
            Qty((size * SCALE as f64 + 0.5).max(1.0) as i64)
        }
    }
}

/// Burst state: the next start, or the end of the current burst and its size multiplier.
#[derive(Clone, Debug)]
struct Burst {
    active: bool,
    /// Continuous ms since start: when the current burst ends or the next one starts.
    next_change: f64,
    multiplier: f64,
}

/// One symbol's trades, in arrival order: an `Iterator<Item = SimTrade>` that ends after
/// its share of the configured count (never, when the count is unbounded) or before an
/// arrival would leave SPEC 2's timestamp range.
#[derive(Clone, Debug)]
pub struct SymbolStream {
    rng: Pcg64Mcg,
    start_ms: i64,
    remaining: Option<u64>,
    seq: u64,
    /// Continuous time of the last arrival, ms since `start_ms`.
    t: f64,
    /// The gap before the last arrival, ms.
    gap: f64,
    mean_gap_ms: f64,
    log_price: f64,
    log_base: f64,
    /// Pull of the log price towards `log_base`, per ms.
    reversion: f64,
    /// Standard deviation of the log price per sqrt(ms).
    sigma_ms: f64,
    /// Smallest jump, as a log return.
    min_jump: f64,
    /// What is left of past jumps, as a log offset of the price; it decays with a half-life
    /// of [`JUMP_HALF_LIFE_MS`], so jumps stand out without moving the level for good.
    jump: f64,
    /// Decay of `jump` per ms.
    jump_decay: f64,
    /// Jump sizes scale (1 for stocks and crypto, smaller for forex).
    jump_scale: f64,
    inv_tick: f64,
    tick_units: i64,
    volume: VolumeModel,
    burst: Burst,
    /// `Some` for US-listed stocks: the condition lists, drawn by `CONDITION_ODDS`.
    conditions: Option<[Conditions; 4]>,
}

/// Cumulative odds of the four condition lists (12%, 8%, 6%, 4%: 30% in all).
const CONDITION_ODDS: [Chance; 4] = [Chance::new(0.12), Chance::new(0.20), Chance::new(0.26), Chance::new(0.30)];
const CONDITION_LISTS: [&[&str]; 4] = [&["1", "12"], &["12", "37"], &["1"], &["37"]];

/// Share of trades 10..=60 s behind their arrival (late for a 5 s allowed lateness).
const LATE: Chance = Chance::new(0.0005);
/// Upper threshold of trades 1..=3000 ms behind their arrival (2%, still on time), after
/// the late ones.
const DISORDERED: Chance = Chance::new(0.0205);

impl SymbolStream {
    /// A stream for `profile` whose trades arrive `mean_gap_ms` apart on average, starting
    /// at `start_ms`, ending after `count` trades (or never), drawn from `rng`.
    pub(super) fn new(
        profile: &Profile,
        mean_gap_ms: f64,
        start_ms: i64,
        count: Option<u64>,
        mut rng: Pcg64Mcg,
    ) -> Self {
        let sigma_ms = profile.daily_vol / DAY_MS.sqrt();
        let first_burst = rng.random_range(5.0 * MINUTE_MS..25.0 * MINUTE_MS);
        SymbolStream {
            rng,
            start_ms,
            remaining: count,
            seq: 0,
            t: 0.0,
            gap: 0.0,
            mean_gap_ms,
            log_price: profile.base_price.ln(),
            log_base: profile.base_price.ln(),
            reversion: std::f64::consts::LN_2 / (3.0 * DAY_MS),
            sigma_ms,
            min_jump: 8.0 * sigma_ms * MINUTE_MS.sqrt(),
            jump: 0.0,
            jump_decay: std::f64::consts::LN_2 / JUMP_HALF_LIFE_MS,
            jump_scale: if profile.class == AssetClass::Forex { 0.25 } else { 1.0 },
            inv_tick: SCALE as f64 / profile.tick_units as f64,
            tick_units: profile.tick_units,
            volume: VolumeModel::for_profile(profile),
            burst: Burst { active: false, next_change: first_burst, multiplier: 1.0 },
            conditions: profile.us_listed.then(|| CONDITION_LISTS.map(Conditions::from_list)),
        }
    }

    /// How many trades are left, or `None` when the stream is unbounded.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    /// Opens or closes a burst when the clock has passed the next change.
    fn update_burst(&mut self) {
        while self.t >= self.burst.next_change {
            if self.burst.active {
                self.burst.active = false;
                self.burst.multiplier = 1.0;
                self.burst.next_change += self.rng.random_range(10.0 * MINUTE_MS..30.0 * MINUTE_MS);
            } else {
                self.burst.active = true;
                self.burst.multiplier = self.rng.random_range(5.0..20.0);
                self.burst.next_change += self.rng.random_range(60_000.0..120_000.0);
                if self.rng.random_bool(0.4) {
                    let size = (self.rng.random_range(0.01..0.04) * self.jump_scale).max(self.min_jump);
                    let up = self.rng.random_bool(0.5);
                    self.jump += if up { size } else { -size };
                }
            }
        }
    }

    /// Draws the arrival of the next trade, or `None` when the stream has ended. Must be
    /// followed by [`SymbolStream::complete`] before the next call.
    pub(super) fn advance(&mut self) -> Option<i64> {
        match &mut self.remaining {
            Some(0) => return None,
            Some(n) => *n -= 1,
            None => {}
        }
        self.gap = self.rng.sample::<f64, _>(Exp1) * self.mean_gap_ms;
        self.t += self.gap;
        let arrival_ms = self.start_ms.saturating_add(self.t as i64);
        if arrival_ms >= MAX_TS {
            self.remaining = Some(0);
            return None;
        }
        Some(arrival_ms)
    }

    /// Draws the rest of the trade whose arrival [`SymbolStream::advance`] returned.
    pub(super) fn complete(&mut self, arrival_ms: i64) -> SimTrade {
        if self.t >= self.burst.next_change {
            self.update_burst();
        }

        let gap = self.gap;
        let z: f64 = self.rng.sample(StandardNormal);
        let pull = self.reversion * gap * (self.log_price - self.log_base);
        self.log_price += self.sigma_ms * gap.sqrt() * z - pull;
        // A hard band far outside any realistic path keeps prices inside the valid range.
        self.log_price = self.log_price.clamp(self.log_base - 4.0, self.log_base + 4.0);
        self.jump -= self.jump * (self.jump_decay * gap).min(1.0);
        // One draw decides the side (bit 24), the disorder (bits 0..24, ample resolution
        // for 0.05%) and the conditions (bits 32..64).
        let coin = self.rng.next_u64();
        // Sellers hit the bid (the mid truncated to the tick), buyers lift the ask one tick
        // above it; `as i64` truncates a positive float without a libm call.
        let side = ((coin >> 24) & 1) as f64;
        let ticks = ((self.log_price + self.jump).exp() * self.inv_tick + side) as i64;
        let price = Price(ticks.max(1) * self.tick_units);

        let volume = self.volume.sample(&mut self.rng, self.burst.multiplier);

        let disorder = (coin as u32) << 8;
        let ts = if disorder < LATE.0 {
            arrival_ms - self.rng.random_range(10_000..=60_000)
        } else if disorder < DISORDERED.0 {
            arrival_ms - self.rng.random_range(1..=3_000)
        } else {
            arrival_ms
        }
        .max(MIN_TS);

        let conditions = match &self.conditions {
            Some(lists) => {
                let draw = (coin >> 32) as u32;
                match CONDITION_ODDS.iter().position(|p| draw < p.0) {
                    Some(i) => lists[i].clone(),
                    None => Conditions::none(),
                }
            }
            None => Conditions::none(),
        };

        let seq = self.seq;
        self.seq += 1;
        SimTrade { seq, arrival_ms, ts, price, volume, conditions }
    }
}

impl Iterator for SymbolStream {
    type Item = SimTrade;

    fn next(&mut self) -> Option<SimTrade> {
        let arrival_ms = self.advance()?;
        Some(self.complete(arrival_ms))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining {
            Some(n) => (0, usize::try_from(n).ok()),
            None => (0, None),
        }
    }
}
