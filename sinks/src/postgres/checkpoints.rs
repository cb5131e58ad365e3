//! Checkpoints kept in PostgreSQL, for a run without a lake (`--no-lake --postgres`).
//!
//! The objects a lake keeps under `_checkpoints/<job>/` (each process's manifest and
//! every component's parts) are rows of `tradeflow_checkpoints (key, bytes, written_at)`
//! under the same keys (migration 3). Parts wait in memory until the coordinator commits
//! a boundary ([`crate::checkpoint`]); it writes them in one transaction, waits for the
//! sink's writer to have committed every epoch before the boundary, and then upserts the
//! manifest: a manifest is never ahead of the rows it covers, and a resumed run's
//! idempotent merges converge to the rows of an uninterrupted run.
//!
//! One writer per job and process: the store's connection holds a session-level advisory
//! lock on `hashtextextended('tradeflow checkpoints <job> p<process>', 0)` for the whole
//! run. The server releases it when the connection ends, so a killed run's lock is free
//! within moments (a new run waits up to [`LOCK_WAIT`] for it); a run that finds it held
//! for longer refuses to start, naming the holder's backend. After an outage the store
//! reconnects and takes the lock again (ending its own earlier connection if the server
//! still keeps it); if another run took it meanwhile, the checkpoint fails and the run
//! stops.

use super::error::{ErrorClass, Failure, PgError};
use super::target::PgTarget;
use super::writer::{Backoff, connect_with_retry};
use crate::checkpoint::CheckpointStore;
use postgres::Client;
use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tradeflow_model::checkpoint::PartPayload;

/// How long a starting run waits for the job's lock (a killed run's connection closing).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A job's checkpoints in a PostgreSQL database (see the module docs).
pub struct PgCheckpointStore {
    target: PgTarget,
    retry_for: Duration,
    /// The advisory lock's name: `tradeflow checkpoints <job> p<process>`.
    lock_name: String,
    client: Mutex<Option<Client>>,
    /// The server process of the connection that took the lock last.
    backend: Mutex<Option<i32>>,
    /// Parts handed over since the last barrier, in order.
    pending: Mutex<Vec<(String, PartPayload)>>,
}

impl PgCheckpointStore {
    /// Connects to `target` (migrating its schema) and takes the lock of `job`'s
    /// `process`, waiting up to [`LOCK_WAIT`] for a run that is gone to release it.
    pub fn open(target: PgTarget, retry_for: Duration, job: &str, process: usize) -> Result<Self, PgError> {
        let store = PgCheckpointStore {
            target,
            retry_for,
            lock_name: format!("tradeflow checkpoints {job} p{process}"),
            client: Mutex::new(None),
            backend: Mutex::new(None),
            pending: Mutex::default(),
        };
        let waited = Instant::now();
        loop {
            match store.connect()? {
                Ok(client) => {
                    *lock(&store.client) = Some(client);
                    return Ok(store);
                }
                Err(_) if waited.elapsed() < LOCK_WAIT => std::thread::sleep(Duration::from_millis(200)),
                Err(held) => return Err(held),
            }
        }
    }

    /// A migrated connection holding the job's lock; the inner error when another run
    /// holds it. A temporary failure taking the lock is retried for `retry_for`. If the
    /// holder is this store's own earlier connection (dropped after a network failure the
    /// server has not noticed yet), that server process is ended and the lock taken.
    fn connect(&self) -> Result<Result<Client, PgError>, PgError> {
        let mut backoff = Backoff::new(self.retry_for);
        loop {
            let (mut client, _) = connect_with_retry(&self.target, self.retry_for)?;
            match self.take_lock(&mut client) {
                Ok(Ok(())) => return Ok(Ok(client)),
                Ok(Err(held)) => return Ok(Err(held)),
                Err(e) => {
                    let delay = backoff.next(Failure::Pg(e), &self.target, "taking the job's checkpoint lock")?;
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// Takes the job's lock on `client`, or says who holds it.
    fn take_lock(&self, client: &mut Client) -> Result<Result<(), PgError>, postgres::Error> {
        let name = &self.lock_name;
        // Taken: this connection's server process is recorded, to recognise it later.
        let try_lock = |client: &mut Client| -> Result<bool, postgres::Error> {
            let sql = "SELECT pg_try_advisory_lock(hashtextextended($1, 0)), pg_backend_pid()";
            let row = client.query_one(sql, &[name])?;
            let taken: bool = row.try_get(0)?;
            if taken {
                *lock(&self.backend) = Some(row.try_get(1)?);
            }
            Ok(taken)
        };
        if try_lock(client)? {
            return Ok(Ok(()));
        }
        let holder = client.query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'unknown')
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid,
                    (SELECT hashtextextended($1, 0) AS k) key
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.classid = ((key.k >> 32) & 4294967295)::oid
                AND l.objid = (key.k & 4294967295)::oid
              LIMIT 1",
            &[name],
        )?;
        let holder = holder.map(|row| (row.get::<_, i32>(0), row.get::<_, String>(1), row.get::<_, String>(2)));
        if let (Some((pid, _, _)), Some(ours)) = (&holder, *lock(&self.backend))
            && *pid == ours
        {
            tracing::warn!(
                "PostgreSQL {}: the job's checkpoint lock is still held by this run's earlier connection (server process {pid}); ending it",
                self.target.name()
            );
            client.execute("SELECT pg_terminate_backend($1)", &[pid])?;
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                if try_lock(client)? {
                    return Ok(Ok(()));
                }
            }
        }
        let holder = holder
            .map(|(pid, app, from)| format!(" (server process {pid}, application {app:?}, from {from})"))
            .unwrap_or_default();
        Ok(Err(PgError::Server {
            server: self.target.name().to_owned(),
            origin: self.target.origin().to_owned(),
            message: format!("another run of the job holds its checkpoints: the lock {name:?}{holder}"),
            fix: "fix: stop that run first, or give this one another --job".into(),
            class: ErrorClass::Permanent,
        }))
    }

    /// Runs `op` on the connection, reconnecting and retrying temporary failures for
    /// `retry_for`; errors name the server, never the password.
    fn with_client<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, String> {
        let mut client = lock(&self.client);
        let mut backoff = Backoff::new(self.retry_for);
        loop {
            if client.is_none() {
                *client = Some(self.connect().and_then(|held| held).map_err(|e| e.to_string())?);
            }
            let failure = match op(client.as_mut().expect("connected")) {
                Ok(value) => return Ok(value),
                Err(e) => Failure::Pg(e),
            };
            // A temporary failure drops the connection (and the lock with it): the retry
            // starts on a new one.
            *client = None;
            let delay = backoff.next(failure, &self.target, what).map_err(|e| e.to_string())?;
            std::thread::sleep(delay);
        }
    }
}

impl CheckpointStore for PgCheckpointStore {
    fn location(&self) -> String {
        format!("PostgreSQL {} (table tradeflow_checkpoints)", self.target.name())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.with_client(&format!("reading checkpoint {key}"), |client| {
            let row = client.query_opt("SELECT bytes FROM tradeflow_checkpoints WHERE key = $1", &[&key])?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.with_client(&format!("writing checkpoint {key}"), |client| {
            client.execute(UPSERT, &[&key, &bytes]).map(|_| ())
        })
    }

    /// One attempt, no retries: a part left behind is only garbage, and retrying each
    /// through an outage would hold up the checkpoints.
    fn delete(&self, key: &str) -> Result<(), String> {
        let mut client = lock(&self.client);
        let Some(connected) = client.as_mut() else { return Err("not connected".into()) };
        let deleted = connected.execute("DELETE FROM tradeflow_checkpoints WHERE key = $1", &[&key]);
        deleted.map(drop).map_err(|e| {
            *client = None;
            self.target.scrub(&Failure::Pg(e).describe())
        })
    }

    fn publish(&self, key: String, payload: PartPayload) {
        lock(&self.pending).push((key, payload));
    }

    fn barrier(&self) -> Result<(), String> {
        let parts = std::mem::take(&mut *lock(&self.pending));
        if parts.is_empty() {
            return Ok(());
        }
        fn read((key, payload): &(String, PartPayload)) -> Result<(&String, Cow<'_, [u8]>), String> {
            match payload {
                PartPayload::Bytes(bytes) => Ok((key, Cow::Borrowed(bytes))),
                PartPayload::File(path) => std::fs::read(path)
                    .map(|bytes| (key, Cow::Owned(bytes)))
                    .map_err(|e| format!("reading the checkpoint part {key} from {}: {e}", path.display())),
            }
        }
        let written = parts.iter().map(read).collect::<Result<Vec<_>, String>>().and_then(|rows| {
            self.with_client(&format!("writing {} checkpoint parts", rows.len()), |client| {
                let mut tx = client.transaction()?;
                let upsert = tx.prepare(UPSERT)?;
                for (key, bytes) in &rows {
                    tx.execute(&upsert, &[key, &bytes.as_ref()])?;
                }
                tx.commit()
            })
        });
        match written {
            Ok(()) => {
                for (_, payload) in parts {
                    if let PartPayload::File(path) = payload {
                        let _ = std::fs::remove_file(path);
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Kept for the next barrier: a later manifest may name these parts.
                let mut pending = lock(&self.pending);
                let newer = std::mem::replace(&mut *pending, parts);
                pending.extend(newer);
                Err(e)
            }
        }
    }
}

const UPSERT: &str = "INSERT INTO tradeflow_checkpoints (key, bytes) VALUES ($1, $2)
     ON CONFLICT (key) DO UPDATE SET bytes = EXCLUDED.bytes, written_at = now()";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
