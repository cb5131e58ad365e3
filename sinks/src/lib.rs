//! tradeflow sinks.
