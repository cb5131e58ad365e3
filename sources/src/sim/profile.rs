//! Instrument profiles: what market a symbol trades in, where its price starts, how much
//! it moves, how busy it is and how its trade sizes are distributed.
//!
//! Well-known symbols (the default universe and a few more) have hand-set profiles with
//! late-2023 price levels, matching the default start time. Any other symbol gets a
//! profile derived from a stable hash of its name: its asset class from the exchange
//! prefix (`BINANCE:` → crypto, `OANDA:` → forex, none → stock), its base price, volatility
//! and activity weight from the hash, so the same name always simulates the same way.

use tradeflow_model::SCALE;

/// The market an instrument trades in; it decides ticks, volumes and conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssetClass {
    /// Equities and ETFs: integer share volumes, 0.01 tick.
    Stock,
    /// Crypto pairs: fractional volumes with up to 8 decimals.
    Crypto,
    /// Currency pairs: volume usually exactly 0 (as Finnhub sends it), 0.00001 tick.
    Forex,
}

/// How one instrument is simulated.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The instrument's market.
    pub class: AssetClass,
    /// True for US-listed stocks (no exchange prefix): their trades carry condition codes.
    pub us_listed: bool,
    /// Starting (and long-run mean) price in whole units.
    pub base_price: f64,
    /// Standard deviation of the log price over 24 simulated hours.
    pub daily_vol: f64,
    /// Relative activity: the symbol's share of the trade rate and of `count`.
    pub weight: u64,
    /// Price tick in 10^-8 units; every simulated price is a positive multiple of it.
    pub tick_units: i64,
}

/// Hand-set profiles: (symbol, class, base price, daily volatility, weight).
const KNOWN: &[(&str, AssetClass, f64, f64, u64)] = &[
    ("AAPL", AssetClass::Stock, 190.0, 0.015, 75),
    ("MSFT", AssetClass::Stock, 370.0, 0.015, 55),
    ("NVDA", AssetClass::Stock, 480.0, 0.030, 70),
    ("TSLA", AssetClass::Stock, 235.0, 0.035, 80),
    ("AMZN", AssetClass::Stock, 143.0, 0.020, 50),
    ("GOOGL", AssetClass::Stock, 133.0, 0.018, 35),
    ("META", AssetClass::Stock, 330.0, 0.022, 40),
    ("AMD", AssetClass::Stock, 115.0, 0.030, 45),
    ("SPY", AssetClass::Stock, 450.0, 0.008, 60),
    ("BRK.B", AssetClass::Stock, 360.0, 0.009, 10),
    ("JPM", AssetClass::Stock, 150.0, 0.013, 20),
    ("NFLX", AssetClass::Stock, 470.0, 0.025, 25),
    ("BINANCE:BTCUSDT", AssetClass::Crypto, 37_000.0, 0.025, 100),
    ("BINANCE:ETHUSDT", AssetClass::Crypto, 2_000.0, 0.030, 70),
    ("BINANCE:SOLUSDT", AssetClass::Crypto, 57.0, 0.050, 35),
    ("BINANCE:BNBUSDT", AssetClass::Crypto, 245.0, 0.030, 20),
    ("BINANCE:DOGEUSDT", AssetClass::Crypto, 0.075, 0.050, 20),
    ("COINBASE:BTC-USD", AssetClass::Crypto, 37_000.0, 0.025, 50),
    ("COINBASE:ETH-USD", AssetClass::Crypto, 2_000.0, 0.030, 30),
    ("KRAKEN:XBT/USD", AssetClass::Crypto, 37_000.0, 0.025, 25),
    ("OANDA:EUR_USD", AssetClass::Forex, 1.08, 0.005, 15),
    ("OANDA:GBP_USD", AssetClass::Forex, 1.24, 0.0055, 10),
    ("OANDA:USD_JPY", AssetClass::Forex, 150.0, 0.006, 12),
    ("OANDA:AUD_USD", AssetClass::Forex, 0.65, 0.006, 6),
    ("OANDA:USD_TRY", AssetClass::Forex, 28.6, 0.008, 2),
    ("IC MARKETS:1", AssetClass::Forex, 1.08, 0.005, 8),
];

/// Exchange prefixes of crypto venues (Finnhub's spelling).
const CRYPTO_VENUES: &[&str] = &[
    "BINANCE",
    "BINANCEUS",
    "COINBASE",
    "KRAKEN",
    "BITFINEX",
    "BITSTAMP",
    "GEMINI",
    "HUOBI",
    "OKEX",
    "OKX",
    "BYBIT",
    "KUCOIN",
    "POLONIEX",
    "BITTREX",
    "HITBTC",
    "GATEIO",
];

/// Exchange prefixes of forex venues (Finnhub's spelling).
const FOREX_VENUES: &[&str] = &["OANDA", "FXCM", "FOREX.COM", "FXPRO", "IC MARKETS", "FHFX", "OCTAFX", "PEPPERSTONE"];

/// The profile of `symbol`: hand-set for well-known symbols, derived from a stable hash of
/// the name otherwise.
pub fn profile_of(symbol: &str) -> Profile {
    if let Some(&(_, class, base, vol, weight)) = KNOWN.iter().find(|k| k.0 == symbol) {
        return Profile::new(symbol, class, base, vol, weight);
    }
    let class = match symbol.split_once(':') {
        Some((venue, _)) if CRYPTO_VENUES.contains(&venue.to_ascii_uppercase().as_str()) => AssetClass::Crypto,
        Some((venue, _)) if FOREX_VENUES.contains(&venue.to_ascii_uppercase().as_str()) => AssetClass::Forex,
        _ => AssetClass::Stock,
    };
    let mut h = name_hash(symbol);
    let mut unit = || {
        h = splitmix64(h);
        (h >> 11) as f64 / (1u64 << 53) as f64
    };
    // Log-uniform base prices; volatility and weight uniform in a class-typical range.
    let log_uniform = |u: f64, lo: f64, hi: f64| (lo.ln() + u * (hi / lo).ln()).exp();
    let (base, vol, weight) = match class {
        AssetClass::Stock => (log_uniform(unit(), 5.0, 500.0), 0.012 + 0.025 * unit(), 20 + (unit() * 30.0) as u64),
        AssetClass::Crypto => (log_uniform(unit(), 0.05, 1_000.0), 0.03 + 0.03 * unit(), 10 + (unit() * 30.0) as u64),
        AssetClass::Forex => {
            let base = if symbol.contains("JPY") { 100.0 + 60.0 * unit() } else { log_uniform(unit(), 0.5, 2.0) };
            (base, 0.004 + 0.004 * unit(), 2 + (unit() * 8.0) as u64)
        }
    };
    // Round the base to 4 significant digits, as a quoted price would be.
    let digits = 10f64.powi(3 - base.log10().floor() as i32);
    Profile::new(symbol, class, (base * digits).round() / digits, vol, weight)
}

impl Profile {
    fn new(symbol: &str, class: AssetClass, base_price: f64, daily_vol: f64, weight: u64) -> Self {
        let tick = match class {
            AssetClass::Stock => 0.01,
            AssetClass::Crypto if base_price >= 10.0 => 0.01,
            AssetClass::Crypto if base_price >= 0.1 => 0.0001,
            AssetClass::Crypto => 0.000_001,
            // Pairs quoted around 100 or more (USD_JPY) use three decimals, as brokers do.
            AssetClass::Forex if base_price >= 50.0 => 0.001,
            AssetClass::Forex => 0.000_01,
        };
        Profile {
            class,
            us_listed: class == AssetClass::Stock && !symbol.contains(':'),
            base_price,
            daily_vol,
            weight,
            tick_units: (tick * SCALE as f64).round() as i64,
        }
    }
}

/// A stable 64-bit hash of a symbol name (FNV-1a, then a splitmix finaliser), the same on
/// every platform and release.
pub(super) fn name_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h)
}

/// The splitmix64 finaliser: a bijective, well-mixing map of 64-bit values.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_symbols_have_realistic_levels_and_ticks() {
        let aapl = profile_of("AAPL");
        assert_eq!(aapl.class, AssetClass::Stock);
        assert!(aapl.us_listed);
        assert_eq!(aapl.tick_units, 1_000_000);
        let btc = profile_of("BINANCE:BTCUSDT");
        assert_eq!(btc.class, AssetClass::Crypto);
        assert!(!btc.us_listed);
        assert!((30_000.0..45_000.0).contains(&btc.base_price));
        assert!(btc.weight > profile_of("OANDA:USD_TRY").weight * 10);
        let eur = profile_of("OANDA:EUR_USD");
        assert_eq!(eur.class, AssetClass::Forex);
        assert_eq!(eur.tick_units, 1_000);
        assert_eq!(profile_of("OANDA:USD_JPY").tick_units, 100_000);
        assert_eq!(profile_of("IC MARKETS:1").class, AssetClass::Forex);
    }

    #[test]
    fn unknown_symbols_get_a_stable_class_typical_profile() {
        let a = profile_of("ZZZQ");
        assert_eq!(a, profile_of("ZZZQ"));
        assert_eq!(a.class, AssetClass::Stock);
        assert!((5.0..=500.0).contains(&a.base_price), "{a:?}");
        assert_ne!(a.base_price, profile_of("ZZZR").base_price);
        let c = profile_of("bybit:PEPEUSDT");
        assert_eq!(c.class, AssetClass::Crypto);
        assert!((0.05..=1_000.0).contains(&c.base_price), "{c:?}");
        let f = profile_of("FXCM:EUR/NOK");
        assert_eq!(f.class, AssetClass::Forex);
        assert!((0.5..=2.0).contains(&f.base_price), "{f:?}");
        let j = profile_of("OANDA:CHF_JPY");
        assert!((100.0..=160.0).contains(&j.base_price), "{j:?}");
        assert_eq!(j.tick_units, 100_000);
        assert_eq!(profile_of("NYSE:IBM").class, AssetClass::Stock);
        assert!(!profile_of("NYSE:IBM").us_listed);
    }

    #[test]
    fn unknown_profiles_are_pinned() {
        // The simulated market of an unknown symbol must not change between releases.
        let p = profile_of("ZZZQ");
        assert_eq!((p.base_price, p.weight), (36.65, 26));
        let c = profile_of("bybit:PEPEUSDT");
        assert_eq!((c.base_price, c.weight), (145.0, 12));
    }
}
