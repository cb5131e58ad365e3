//! tradeflow.
fn main() {}
