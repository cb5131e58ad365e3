//! The PostgreSQL sink (SPEC 7): live window metrics and anomalies, upserted as they
//! change, in tables a dashboard and the seed's queries read.
//!
//! * [`target`] — which server, database and user (`--postgres`, `DATABASE_URL`,
//!   `POSTGRES_*`), named in messages as `user@host:port/db`, never with the password;
//! * [`migrations`] — the versioned schema (`window_metrics`, `anomalies`, the
//!   `fct_trades` view, `sink_progress`), applied under an advisory lock;
//! * [`operator`] — per worker: complete epochs, in order, consolidated per key;
//! * [`changes`] — per-key coalescing: the latest row or a deletion;
//! * [`batch`] — one transaction's COPY data and merge statements, and the merge rules
//!   that make every write idempotent;
//! * [`writer`] — the process's writer thread: one transaction per batch, retries with
//!   backoff on temporary errors, the commit delay;
//! * [`error`] — Temporary/Permanent classification and messages with the fix;
//! * [`checkpoints`] — where a run without a lake keeps its checkpoints.
//!
//! Guarantees: a reader never sees half a batch (one transaction each); a key's states
//! are written in epoch order by one thread, and a final row is never replaced by a
//! provisional one, so an older state never overwrites a newer one; a replay of the
//! same input converges to the same rows and leaves identical rows untouched; at the end
//! of a run ([`PgSink::finish`]) everything handed over is committed.

pub mod batch;
pub mod changes;
pub mod checkpoints;
pub mod error;
pub mod migrations;
pub mod operator;
pub mod stats;
pub mod target;
pub mod writer;

pub use error::{ErrorClass, PgError};
pub use migrations::{MigrationReport, latest_version};
pub use operator::write_postgres;
pub use stats::PgStats;
pub use target::{PgTarget, redact_url};
pub use writer::{PgOptions, PgSink, migrate_database};
