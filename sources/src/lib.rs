//! tradeflow sources: the outside world turned into trades and rejects.
//!
//! * [`format`] — record formats, independent of transport: one NDJSON line (a Finnhub
//!   message or a flat trade) parsed zero-copy into trades and rejects, and the NDJSON
//!   writers that produce the same encodings.
//! * [`url`] — `--source` URLs parsed into validated specs.
//! * [`lateness`] — per-partition watermarks, the lateness rule, idle partitions.
//! * [`source`] — every kind of source behind one trait, and the one registration.
//! * [`driver`] — the one place that holds a source's timely capability.
//! * [`file`] — `file://` sources, parsed in parallel, sequenced in file order.
//! * [`sim`] — the seeded market simulator, as a source and a generator.
//! * [`finnhub`] — Finnhub's WebSocket feed (`finnhub://`), and a compatible server.
//! * [`lake`] — replaying the lake's trades (`lake://`, `lake+s3://`).
//! * [`kafka`] — Kafka topics (`kafka://`), live or replayed, and the producer.
//! * [`changelog`] — a run's changelog replayed into a new dataflow (differential's
//!   capture source).

pub mod batch;
pub mod changelog;
pub mod driver;
pub mod file;
pub mod finnhub;
pub mod format;
pub mod kafka;
pub mod lake;
pub mod lateness;
pub mod sim;
pub mod source;
pub mod stdin;
pub mod url;
