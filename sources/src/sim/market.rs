//! The trades one worker emits: its symbols' streams merged in arrival order.
//!
//! Order: `arrival_ms`, ties broken by symbol index, then by `seq` (which a stream's own
//! order already gives). Because every stream depends only on `(config, symbol index)`,
//! the merge of several markets over disjoint symbol sets, ordered the same way, is the
//! market over their union.
//!
//! Arrival times are whole milliseconds and at the usual rates every millisecond holds
//! several trades, so the merge walks millisecond by millisecond: within the current
//! millisecond it emits the lanes' trades in lane order, and only when no lane has a trade
//! left there does it scan the lanes for the next millisecond. That costs a few compares
//! per trade and no unpredictable heap sifting.

use tradeflow_model::Symbol;

use super::{Plan, SimConfig, SimTrade, SymbolStream};

/// Arrival of a lane whose stream has ended.
const ENDED: i64 = i64::MAX;

/// One owned symbol and its stream, whose next arrival is drawn ahead (the rest of that
/// trade is drawn when it is emitted, which keeps the stream's order of draws).
#[derive(Debug)]
struct Lane {
    index: usize,
    symbol: Symbol,
    stream: SymbolStream,
}

/// The merged arrival-ordered stream of the symbols a worker owns.
#[derive(Debug)]
pub struct Market {
    /// Owned symbols in index order.
    lanes: Vec<Lane>,
    /// Each lane's next arrival, [`ENDED`] once its stream has ended.
    arrivals: Vec<i64>,
    /// Arrival of the next trade, [`ENDED`] when there is none.
    now: i64,
    /// Lane of the next trade: the first lane whose next trade arrives at `now`.
    at: usize,
}

impl Market {
    /// The market of the symbols whose index (in [`SimConfig::resolved_symbols`]) satisfies
    /// `owned`.
    ///
    /// # Panics
    ///
    /// When a symbol is invalid: validate the config with [`SimConfig::check`] first.
    pub fn new(cfg: &SimConfig, owned: impl Fn(usize) -> bool) -> Market {
        let plan = Plan::new(cfg);
        let mut lanes = Vec::new();
        let mut arrivals = Vec::new();
        for index in (0..plan.len()).filter(|&i| owned(i)) {
            let (symbol, mut stream) = plan.stream(index);
            arrivals.push(stream.advance().unwrap_or(ENDED));
            lanes.push(Lane { index, symbol, stream });
        }
        let mut market = Market { lanes, arrivals, now: ENDED, at: 0 };
        market.settle(0);
        market
    }

    /// The next trade in arrival order, with its symbol index and symbol; `None` once
    /// every owned stream has ended.
    #[allow(clippy::should_implement_trait)] // it lends `&Symbol`, so it cannot be an Iterator
    pub fn next(&mut self) -> Option<(usize, &Symbol, SimTrade)> {
        if self.now == ENDED {
            return None;
        }
        let at = self.at;
        let lane = &mut self.lanes[at];
        let trade = lane.stream.complete(self.now);
        self.arrivals[at] = lane.stream.advance().unwrap_or(ENDED);
        // The same lane may hold another trade in this millisecond: search from it.
        self.settle(at);
        let lane = &self.lanes[at];
        Some((lane.index, &lane.symbol, trade))
    }

    /// Points `at` to the next trade: the first lane from `from` on with a trade at `now`,
    /// or else the first lane with the earliest next arrival.
    fn settle(&mut self, from: usize) {
        let now = self.now;
        if now != ENDED
            && let Some(offset) = self.arrivals[from..].iter().position(|&a| a == now)
        {
            self.at = from + offset;
            return;
        }
        let (mut earliest, mut at) = (ENDED, 0);
        for (lane, &arrival) in self.arrivals.iter().enumerate() {
            if arrival < earliest {
                (earliest, at) = (arrival, lane);
            }
        }
        self.now = earliest;
        self.at = at;
    }

    /// The arrival time of the next trade, or `None` once every owned stream has ended.
    pub fn peek_arrival(&self) -> Option<i64> {
        (self.now != ENDED).then_some(self.now)
    }

    /// The owned symbols with their indices, in index order.
    pub fn symbols(&self) -> impl Iterator<Item = (usize, &Symbol)> {
        self.lanes.iter().map(|lane| (lane.index, &lane.symbol))
    }

    /// True when the market owns no symbols or every owned stream has ended.
    pub fn is_done(&self) -> bool {
        self.now == ENDED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: u64) -> SimConfig {
        SimConfig { count: Some(count), seed: 7, ..SimConfig::default() }
    }

    type Row = (i64, usize, SimTrade);

    fn drain(mut market: Market) -> Vec<Row> {
        let mut out = Vec::new();
        while let Some((index, _, trade)) = market.next() {
            out.push((trade.arrival_ms, index, trade));
        }
        out
    }

    #[test]
    fn emits_in_arrival_order_with_index_ties() {
        let rows = drain(Market::new(&config(50_000), |_| true));
        assert_eq!(rows.len(), 50_000);
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!((a.0, a.1, a.2.seq) < (b.0, b.1, b.2.seq), "{a:?} then {b:?}");
        }
    }

    #[test]
    fn owned_split_merges_back_to_the_whole_market() {
        let cfg = config(60_000);
        let all = drain(Market::new(&cfg, |_| true));
        let even = drain(Market::new(&cfg, |i| i % 2 == 0));
        let odd = drain(Market::new(&cfg, |i| i % 2 == 1));
        assert!(!even.is_empty() && !odd.is_empty());
        assert_eq!(even.len() + odd.len(), all.len());

        // As a multiset.
        let mut union: Vec<&Row> = even.iter().chain(&odd).collect();
        let mut whole: Vec<&Row> = all.iter().collect();
        union.sort();
        whole.sort();
        assert_eq!(union, whole);

        // Each symbol's subsequence, in emission order.
        for index in 0..cfg.resolved_symbols().len() {
            let part = if index % 2 == 0 { &even } else { &odd };
            let of =
                |rows: &[Row]| -> Vec<SimTrade> { rows.iter().filter(|r| r.1 == index).map(|r| r.2.clone()).collect() };
            assert_eq!(of(part), of(&all), "symbol {index}");
        }

        // And the ordered merge of the two halves is the whole market, trade for trade.
        let mut merged: Vec<Row> = even.into_iter().chain(odd).collect();
        merged.sort_by_key(|r| (r.0, r.1, r.2.seq));
        assert_eq!(merged, all);
    }

    #[test]
    fn peek_symbols_and_end() {
        let cfg = SimConfig {
            symbols: vec!["AAPL".into(), "MSFT".into(), "NVDA".into()],
            count: Some(10),
            ..SimConfig::default()
        };
        let mut market = Market::new(&cfg, |i| i != 1);
        let owned: Vec<_> = market.symbols().map(|(i, s)| (i, s.to_string())).collect();
        assert_eq!(owned, [(0, "AAPL".to_string()), (2, "NVDA".to_string())]);
        let mut n = 0;
        while let Some(peeked) = market.peek_arrival() {
            let (index, symbol, trade) = market.next().unwrap();
            assert_eq!(peeked, trade.arrival_ms);
            assert_ne!(index, 1);
            assert_eq!(symbol.as_str(), cfg.resolved_symbols()[index]);
            n += 1;
        }
        assert!(market.is_done());
        assert!(market.next().is_none());
        assert!(n > 0 && n < 10, "MSFT's share is not emitted: {n}");

        // Lanes that end before they start (a zero share of the count) are skipped.
        for count in [0, 1, 3, 25] {
            let market = Market::new(&config(count), |_| true);
            assert_eq!(market.is_done(), count == 0);
            assert_eq!(drain(market).len() as u64, count);
        }

        let nothing = Market::new(&cfg, |_| false);
        assert!(nothing.is_done());
        assert_eq!(nothing.peek_arrival(), None);
    }
}
