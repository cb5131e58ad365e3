//! Runnable tradeflow examples (see `examples/`): each is one file with a doc header
//! saying what it shows and how to run it. The test suite compiles them all.
