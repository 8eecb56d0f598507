//! The deploy lock: one swap at a time per store, as a lease with holder, host and expiry.
//!
//! S3 offers create-if-absent (`If-None-Match: *`) but no compare-and-swap on overwrite,
//! so the lock is a sequence of create-only objects `lock/EPOCH`, and the one with the
//! highest epoch is the truth. Every transition (take, take over an expired lease, renew,
//! release) creates the next epoch: of two contenders exactly one can create it, and
//! nothing is ever overwritten. The winner deletes the epochs below its own.
//!
//! Every server can write to the store, so an object under `lock/` that the site's key did
//! not sign (store::sealed) is a plant: it is never the head, and a transition steps over
//! the key it occupies. One at the largest epoch, or at the epoch a renewal needs next,
//! cannot block a swap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, unix_seconds};
use crate::store::{Created, ObjectStore, StoreError};

use crate::store::layout::{self, LOCKS as PREFIX};

mod held;

pub use held::{Held, Lost};

/// No lease baton writes runs further ahead than this (its longest TTL is 10 minutes; the
/// rest is room for clocks that disagree): one that does was not written by baton, and
/// honouring it (one that expired in year 5138 was) would block every swap for good.
pub const MAX_LEASE_AHEAD: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    pub holder: String,
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub acquired: u64,
    pub expires: u64,
    pub released: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "another swap holds the deploy lock: {holder} on {host} (pid {pid}) since {since}, until {until}\n  \
         fix: wait for it (--lock-wait 15m), or if that swap is dead, let the lease expire and run again"
    )]
    Busy {
        holder: String,
        host: String,
        pid: u32,
        since: String,
        until: String,
    },
    #[error(
        "the deploy lock was taken over (epoch {now} after ours, {ours}): another swap may be running\n  fix: stop, run `baton status`, then decide"
    )]
    Lost { ours: u64, now: u64 },
    #[error("lock object {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the deploy lock's epoch is at its maximum ({key})\n  fix: nothing baton wrote: delete \
         the objects under lock/ while no swap runs"
    )]
    Exhausted { key: String },
}

impl crate::exit::Classify for LockError {
    fn is_bad_input(&self) -> bool {
        match self {
            LockError::Store(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// Who is asking: shown to whoever finds the lock taken.
#[derive(Debug, Clone)]
pub struct Holder {
    pub name: String,
    pub host: String,
    pub pid: u32,
}

impl Holder {
    fn of(lease: &Lease) -> Holder {
        Holder {
            name: lease.holder.clone(),
            host: lease.host.clone(),
            pid: lease.pid,
        }
    }

    pub fn this_process() -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
        Holder {
            name: user,
            host,
            pid: std::process::id(),
        }
    }
}

impl Lease {
    /// Whether this lease keeps `holder` from taking the lock now: released, expired and
    /// dead-on-this-machine leases are taken over at once.
    pub fn stands_in_the_way(&self, now: u64, holder: &Holder) -> bool {
        !self.released && self.expires > now && !dead_here(self, holder)
    }
}

/// The outcome of taking the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub lease: Lease,
    /// The expired lease that was taken over, if any: the caller should say so.
    pub took_over: Option<Lease>,
}

/// A lease held by a process of this machine that no longer runs (a swap killed on this
/// laptop): waiting for its expiry would only delay the `--resume`.
fn dead_here(lease: &Lease, holder: &Holder) -> bool {
    lease.host == holder.host && lease.pid != holder.pid && !running(lease.pid)
}

/// Whether `pid` is a process that can still act: a zombie (killed, not yet reaped by its
/// parent) cannot.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any
        // character: look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub struct DeployLock {
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// How often a waiting swap looks again.
    pub poll: Duration,
}

fn next(epoch: u64) -> Result<u64, LockError> {
    epoch.checked_add(1).ok_or_else(|| LockError::Exhausted {
        key: layout::lock(epoch),
    })
}

/// The first epoch above `after` whose key no object holds: a planted object occupies its
/// key for good (create-only), so a transition steps over it.
fn next_free(after: u64, taken: &BTreeSet<u64>) -> Result<u64, LockError> {
    let mut epoch = next(after)?;
    while taken.contains(&epoch) {
        epoch = next(epoch)?;
    }
    Ok(epoch)
}

/// Plants skipped on the way down to the head before baton gives up and says so.
const MOST_PLANTS: usize = 64;

/// What `lock/` holds: the head (the highest epoch whose object is the operator's, with
/// its bytes) and every epoch a key names, plants included.
struct Scan {
    head: Option<(u64, Vec<u8>)>,
    taken: BTreeSet<u64>,
}

fn rfc3339(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .map_or_else(|| unix.to_string(), |t| t.to_rfc3339())
}

impl DeployLock {
    pub fn new(store: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>, ttl: Duration) -> DeployLock {
        DeployLock {
            store,
            clock,
            ttl,
            poll: Duration::from_secs(2),
        }
    }

    /// The current lease (the highest epoch the site's key signed), if any. A signed head
    /// that is not a lease baton could have written (it does not parse, names another
    /// epoch, or runs further ahead than [`MAX_LEASE_AHEAD`]) holds nothing: it reads as
    /// released at its epoch, so the next transition builds on it and the lock is never
    /// stuck.
    pub async fn current(&self) -> Result<Option<Lease>, LockError> {
        Ok(self.lease_of(self.scan().await?.head))
    }

    fn lease_of(&self, head: Option<(u64, Vec<u8>)>) -> Option<Lease> {
        let (epoch, bytes) = head?;
        let now = unix_seconds(self.clock.now());
        let lease = match serde_json::from_slice::<Lease>(&bytes) {
            Ok(l) if l.epoch == epoch && l.expires <= now + MAX_LEASE_AHEAD.as_secs() => l,
            Ok(_) => Self::void(epoch, "a lease no baton writes"),
            Err(_) => Self::void(epoch, "an object that is no lease"),
        };
        Some(lease)
    }

    /// Reads `lock/` from the highest epoch down to the first object the operator wrote.
    async fn scan(&self) -> Result<Scan, LockError> {
        let taken: BTreeSet<u64> = self
            .store
            .list(PREFIX)
            .await?
            .into_iter()
            .filter_map(|o| layout::lock_epoch(&o.key))
            .collect();
        let mut plants = 0;
        for &epoch in taken.iter().rev() {
            match self.store.get(&layout::lock(epoch)).await {
                Ok(Some(bytes)) => {
                    return Ok(Scan {
                        head: Some((epoch, bytes)),
                        taken,
                    });
                }
                // Deleted between list and get: a winner's clean-up; look lower.
                Ok(None) => {}
                // Nobody's lease: deleted where it is found (its key stays in `taken`, so
                // this look steps over it all the same).
                Err(StoreError::NotSealed { .. }) => {
                    tracing::warn!(
                        "lock object {} is not signed by the site's key (a server wrote it): \
                         deleted",
                        layout::lock(epoch)
                    );
                    let _ = self.store.delete(&layout::lock(epoch)).await;
                    plants += 1;
                    if plants >= MOST_PLANTS {
                        return Err(LockError::Corrupt {
                            key: layout::lock(epoch),
                            reason: format!(
                                "{plants} objects under {PREFIX} that the site's key did not \
                                 sign: a server wrote them\n  fix: delete them while no swap \
                                 runs, and look for the server that could"
                            ),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Scan { head: None, taken })
    }

    fn void(epoch: u64, what: &str) -> Lease {
        tracing::warn!("lock object {} is {what}: ignored", layout::lock(epoch));
        Lease {
            epoch,
            holder: format!("(ignored: {what})"),
            host: String::new(),
            pid: 0,
            acquired: 0,
            expires: 0,
            released: true,
        }
    }

    fn lease(&self, epoch: u64, holder: &Holder, acquired: u64, released: bool) -> Lease {
        let now = unix_seconds(self.clock.now());
        Lease {
            epoch,
            holder: holder.name.clone(),
            host: holder.host.clone(),
            pid: holder.pid,
            acquired,
            expires: now + self.ttl.as_secs(),
            released,
        }
    }

    async fn create(&self, lease: &Lease) -> Result<Created, LockError> {
        let bytes = serde_json::to_vec_pretty(lease).map_err(|e| LockError::Corrupt {
            key: layout::lock(lease.epoch),
            reason: e.to_string(),
        })?;
        Ok(self
            .store
            .create_new(&layout::lock(lease.epoch), bytes)
            .await?)
    }

    /// Whether `epoch` is the head: a slow contender can re-create an epoch that a winner
    /// already cleaned up, below the real head. Its object is then removed again.
    async fn confirm(&self, epoch: u64) -> Result<bool, LockError> {
        if self.head().await? == Some(epoch) {
            return Ok(true);
        }
        let _ = self.store.delete(&layout::lock(epoch)).await;
        Ok(false)
    }

    /// The head's epoch.
    async fn head(&self) -> Result<Option<u64>, LockError> {
        Ok(self.scan().await?.head.map(|(epoch, _)| epoch))
    }

    /// Creates `lease` at the first free epoch above `after`; `None` when someone else's
    /// lease became the head meanwhile. A plant that took the key between the look and
    /// the create only costs another look.
    async fn advance(
        &self,
        after: u64,
        lease: impl Fn(u64) -> Lease,
    ) -> Result<Option<Lease>, LockError> {
        loop {
            let scan = self.scan().await?;
            if scan.head.as_ref().is_some_and(|(head, _)| *head != after) {
                return Ok(None);
            }
            let ours = lease(next_free(after, &scan.taken)?);
            if self.create(&ours).await? == Created::Created {
                return Ok(self.confirm(ours.epoch).await?.then_some(ours));
            }
        }
    }

    async fn clean_below(&self, epoch: u64) {
        if let Ok(list) = self.store.list(PREFIX).await {
            for o in list
                .into_iter()
                .filter(|o| layout::lock_epoch(&o.key).is_some_and(|e| e < epoch))
            {
                let _ = self.store.delete(&o.key).await; // stale epochs: harmless if left
            }
        }
    }

    /// Takes the lock, waiting up to `wait` for a live lease to end.
    pub async fn acquire(&self, holder: &Holder, wait: Duration) -> Result<Taken, LockError> {
        let started = std::time::Instant::now();
        loop {
            let scan = self.scan().await?;
            let taken = scan.taken.clone();
            let current = self.lease_of(scan.head);
            let now = unix_seconds(self.clock.now());
            let (epoch, took_over) = match &current {
                None => (next_free(0, &taken)?, None),
                Some(l) if l.released => (next_free(l.epoch, &taken)?, None),
                Some(l) if !l.stands_in_the_way(now, holder) => {
                    (next_free(l.epoch, &taken)?, Some(l.clone()))
                }
                Some(l) => {
                    if started.elapsed() + self.poll > wait {
                        return Err(LockError::Busy {
                            holder: l.holder.clone(),
                            host: l.host.clone(),
                            pid: l.pid,
                            since: rfc3339(l.acquired),
                            until: rfc3339(l.expires),
                        });
                    }
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
            };
            let lease = self.lease(epoch, holder, now, false);
            if self.create(&lease).await? == Created::Created && self.confirm(epoch).await? {
                self.clean_below(epoch).await;
                return Ok(Taken { lease, took_over });
            }
            // Someone else (or a plant) created that epoch first: look again.
        }
    }

    /// Extends the lease; fails if someone else's epoch came after ours.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, LockError> {
        let holder = Holder::of(lease);
        let renewed = self
            .advance(lease.epoch, |epoch| {
                self.lease(epoch, &holder, lease.acquired, false)
            })
            .await?;
        match renewed {
            Some(renewed) => {
                self.clean_below(renewed.epoch).await;
                Ok(renewed)
            }
            None => Err(self.lost(lease).await?),
        }
    }

    /// Ends the lease. A released epoch is free for the taking at once, so a waiter may
    /// build the next epoch on it before we look at the head again: a head above ours is
    /// then a successor, not a thief. That reading holds because ours was still the head
    /// just before: a thief would have had to create, renew and clean up in between.
    pub async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let head = self.head().await?.unwrap_or(0);
        if head != lease.epoch {
            return Err(LockError::Lost {
                ours: lease.epoch,
                now: head,
            });
        }
        let holder = Holder::of(lease);
        loop {
            let taken = self.scan().await?.taken;
            let released = self.lease(
                next_free(lease.epoch, &taken)?,
                &holder,
                lease.acquired,
                true,
            );
            if self.create(&released).await? == Created::Created {
                if self.head().await? == Some(released.epoch) {
                    self.clean_below(released.epoch).await;
                }
                return Ok(());
            }
            // A waiter's epoch, or a plant's: only a plant leaves ours the head.
            if self.head().await? != Some(lease.epoch) {
                return Err(self.lost(lease).await?);
            }
        }
    }

    /// The error for a transition of `ours` that someone else's epoch beat, naming theirs.
    async fn lost(&self, ours: &Lease) -> Result<LockError, LockError> {
        let now = self
            .current()
            .await?
            .map_or(ours.epoch.saturating_add(1), |l| l.epoch);
        Ok(LockError::Lost {
            ours: ours.epoch,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Holder, Lease};

    #[test]
    fn only_a_live_lease_of_another_process_stands_in_the_way() {
        let me = Holder::this_process();
        let lease = |host: &str, pid: u32, expires: u64, released: bool| Lease {
            epoch: 1,
            holder: "alice".into(),
            host: host.into(),
            pid,
            acquired: 0,
            expires,
            released,
        };
        assert!(lease("elsewhere", 42, 200, false).stands_in_the_way(100, &me));
        assert!(
            !lease("elsewhere", 42, 100, false).stands_in_the_way(100, &me),
            "expired"
        );
        assert!(
            !lease("elsewhere", 42, 200, true).stands_in_the_way(100, &me),
            "released"
        );
        // A swap killed on this machine: its pid no longer runs (pids stop below 2^22).
        let dead = lease(&me.host, u32::MAX - 1, 200, false);
        assert!(!dead.stands_in_the_way(100, &me), "dead here");
        let parent = lease(&me.host, std::os::unix::process::parent_id(), 200, false);
        assert!(parent.stands_in_the_way(100, &me), "alive here");
    }

    #[test]
    fn this_process_runs_and_an_exited_unreaped_child_does_not() {
        assert!(super::running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // It exits at once; until it is reaped it is a zombie, which must not count.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while super::running(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} still runs"
            );
            std::thread::yield_now();
        }
        child.wait().unwrap();
        assert!(!super::running(pid));
    }
}
