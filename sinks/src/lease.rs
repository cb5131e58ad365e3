//! One writer per job and process: a lease object in the lake.
//!
//! Two runs of the same job (the same sources, settings and lake; see `--job`) writing
//! one lake at once would overwrite each other's files and checkpoints. So each process
//! of a run holds `_checkpoints/<job>/lease-p<process>.json` while it runs: it names the
//! run, host and pid, and is renewed every [`RENEW`]. A run refuses to start while another
//! live holder's lease is there, with an error that names the holder. A lease is stale,
//! and taken over, when it expired (its holder stopped renewing it [`TTL`] ago: it died
//! on another machine), or when its holder was on this machine and its process is gone
//! (a `kill -9`: the next run need not wait). A run removes its lease when it ends.
//!
//! Object stores have no locks: two runs starting within the same instant can both
//! write a lease. Each reads its lease back after writing it, and at every renewal, and
//! a run that finds another's lease in its place stops with an error: at most one of
//! them goes on past its first renewal.

use crate::checkpoint::Objects;
use crate::lake::Lake;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tradeflow_lake::host::{hostname, process_alive};
use tradeflow_model::{format_ts, wall_ms};

/// How long a lease stays valid without renewal.
pub const TTL: Duration = Duration::from_secs(30);
/// How often a holder renews its lease.
pub const RENEW: Duration = Duration::from_secs(10);

/// The lease object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    job: String,
    run_id: String,
    process: usize,
    host: String,
    pid: u32,
    /// Wall-clock ms of the last renewal.
    renewed_at: i64,
    /// Wall-clock ms after which the lease is stale.
    expires_at: i64,
}

/// A held lease: renewed by a thread, released when dropped.
pub struct LeaseHeld(Arc<Lease>);

impl Drop for LeaseHeld {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The lease and its state, shared with the renewing thread.
pub struct Lease {
    objects: Objects,
    key: String,
    mine: Mutex<Holder>,
    released: AtomicBool,
}

impl Lease {
    /// Takes the lease of `job`'s `process` in `lake` for `run_id`, or explains who holds it.
    /// `lost` is called (once, from the renewing thread) if another run takes it over.
    pub fn acquire(
        lake: &Lake,
        job: &str,
        process: usize,
        run_id: &str,
        lost: impl FnOnce(String) + Send + 'static,
    ) -> Result<LeaseHeld, String> {
        let objects = Objects::new(lake)?;
        let key = format!("_checkpoints/{job}/lease-p{process}.json");
        if let Some(bytes) = objects.get(&key)? {
            match serde_json::from_slice::<Holder>(&bytes) {
                Ok(holder) => {
                    if let Some(live) = still_held(&holder) {
                        return Err(format!(
                            "job {job} is already running: process {process} of run {} on host {} (pid {}) holds {key} in {}, renewed {}{live}. Stop that run first, or give this one another --job (or another --lake)",
                            holder.run_id,
                            holder.host,
                            holder.pid,
                            lake.url(),
                            format_ts(holder.renewed_at),
                        ));
                    }
                    tracing::info!(
                        "job {job}: taking over the lease of run {} (host {}, pid {}), which is gone",
                        holder.run_id,
                        holder.host,
                        holder.pid
                    );
                }
                Err(e) => tracing::warn!("job {job}: {key} is unreadable ({e}); replacing it"),
            }
        }
        let now = wall_ms();
        let mine = Holder {
            job: job.to_owned(),
            run_id: run_id.to_owned(),
            process,
            host: hostname(),
            pid: std::process::id(),
            renewed_at: now,
            expires_at: now + TTL.as_millis() as i64,
        };
        let lease = Lease { objects, key, mine: Mutex::new(mine), released: AtomicBool::new(false) };
        lease.write()?;
        // Another run that wrote at the same instant: the last writer holds it.
        std::thread::sleep(Duration::from_millis(50));
        lease.check()?;
        let lease = Arc::new(lease);
        let renewing = lease.clone();
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                if let Err(e) = renewing.renew_until_released() {
                    lost(e);
                }
            })
            .map_err(|e| format!("starting the lease thread: {e}"))?;
        Ok(LeaseHeld(lease))
    }

    fn write(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&*self.mine.lock().unwrap_or_else(|e| e.into_inner()))
            .map_err(|e| e.to_string())?;
        self.objects.put(&self.key, bytes)
    }

    /// Fails when the lease object is no longer this run's.
    fn check(&self) -> Result<(), String> {
        let mine = self.mine.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let found = self.objects.get(&self.key)?.and_then(|b| serde_json::from_slice::<Holder>(&b).ok());
        match found {
            Some(h) if h.run_id == mine.run_id && h.host == mine.host && h.pid == mine.pid => Ok(()),
            Some(h) => Err(format!(
                "job {}: run {} on host {} (pid {}) took over {}: another run of the same job is writing this lake; stop one of them",
                mine.job, h.run_id, h.host, h.pid, self.key
            )),
            None => Err(format!("job {}: {} disappeared while this run held it", mine.job, self.key)),
        }
    }

    fn renew_until_released(&self) -> Result<(), String> {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while !self.released.load(Ordering::Acquire) {
            std::thread::sleep(step);
            waited += step;
            if waited < RENEW {
                continue;
            }
            waited = Duration::ZERO;
            self.check()?;
            {
                let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
                mine.renewed_at = wall_ms();
                mine.expires_at = mine.renewed_at + TTL.as_millis() as i64;
            }
            self.write()?;
        }
        Ok(())
    }

    /// Stops renewing and removes the lease (if it is still this run's).
    fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.check().is_ok() {
            let _ = self.objects.delete(&self.key);
        }
    }
}

/// `None` when `holder`'s lease is stale; else why it is still held (for the message).
fn still_held(holder: &Holder) -> Option<String> {
    let now = wall_ms();
    if holder.expires_at <= now {
        return None;
    }
    if holder.host == hostname() && holder.pid != std::process::id() && !process_alive(holder.pid) {
        return None;
    }
    Some(format!("; the lease expires at {} unless renewed", format_ts(holder.expires_at)))
}
