//! Versioned, idempotent schema migrations, embedded in the binary.
//!
//! `schema_migrations` records each applied version. Migrating takes a session-level
//! advisory lock first, so two processes starting at once (`-n 2`, or `tradeflow migrate`
//! beside a run) apply each migration exactly once: the second waits, then finds nothing
//! left to do. Each migration runs in its own transaction together with its
//! `schema_migrations` row, so a failure leaves the database at the previous version.
//! A database migrated by a newer tradeflow (a version this binary does not know) is
//! refused rather than written with an older idea of the schema.

use postgres::Client;

/// One migration.
#[derive(Copy, Clone, Debug)]
pub struct Migration {
    /// Its version; applied in increasing order.
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "window_metrics, anomalies, fct_trades, sink_progress",
        sql: include_str!("migrations/0001_schema.sql"),
    },
    Migration { version: 2, name: "window_metrics.digest", sql: include_str!("migrations/0002_window_digest.sql") },
    Migration { version: 3, name: "tradeflow_checkpoints", sql: include_str!("migrations/0003_checkpoints.sql") },
];

/// The advisory lock key that serialises migrations ("tradeflo" in ASCII).
const LOCK_KEY: i64 = 0x7472_6164_6566_6c6f;

/// What migrating did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version now.
    pub version: i32,
    /// The versions applied by this call (empty: it was up to date).
    pub applied: Vec<i32>,
}

/// Why migrating failed.
#[derive(Debug)]
pub enum MigrationError {
    /// The server said no.
    Pg(postgres::Error),
    /// The database is at a version this binary does not know.
    TooNew {
        /// The database's version.
        found: i32,
        /// The newest this binary knows.
        known: i32,
    },
}

impl From<postgres::Error> for MigrationError {
    fn from(e: postgres::Error) -> Self {
        MigrationError::Pg(e)
    }
}

/// The newest version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database up to [`latest_version`] (see the module documentation).
pub fn migrate(client: &mut Client) -> Result<MigrationReport, MigrationError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])?;
    let result = migrate_locked(client);
    // The lock is released with the session anyway; unlock now so that a long-lived
    // connection does not hold it.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
    let report = result?;
    unlocked?;
    Ok(report)
}

fn migrate_locked(client: &mut Client) -> Result<MigrationReport, MigrationError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let found: Option<i32> = client.query_one("SELECT max(version) FROM schema_migrations", &[])?.get(0);
    let found = found.unwrap_or(0);
    let known = latest_version();
    if found > known {
        return Err(MigrationError::TooNew { found, known });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let mut tx = client.transaction()?;
        tx.batch_execute(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )?;
        tx.commit()?;
        applied.push(migration.version);
    }
    Ok(MigrationReport { version: known.max(found), applied })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 1);
        assert!(MIGRATIONS.iter().all(|m| !m.sql.trim().is_empty()));
    }
}
