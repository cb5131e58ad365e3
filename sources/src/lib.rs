//! tradeflow sources.
