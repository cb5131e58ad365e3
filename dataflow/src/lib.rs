//! tradeflow binary.
