//! tradeflow operators.
