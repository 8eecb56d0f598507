//! The lock as a command holds it: taken once, renewed by a task every third of its TTL,
//! released at the end, and a lease lost to someone else noticed before anything a new
//! holder relies on.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{DeployLock, Holder, Lease, LockError};

/// A deploy lock held by this process: a task renews the lease every third of its TTL
/// until [`Held::release`]. Every command that changes what a swap relies on (swap, gc,
/// rollback) holds one, so none of them can run beside another.
pub struct Held {
    lock: Arc<DeployLock>,
    lease: Arc<std::sync::Mutex<Lease>>,
    lost: Lost,
    renewer: tokio::task::JoinHandle<()>,
    /// The expired lease that was taken over, if any: the caller should say so.
    pub took_over: Option<Lease>,
}

impl DeployLock {
    /// Takes the lock (waiting up to `wait`, as [`DeployLock::acquire`]) and keeps it.
    pub async fn hold(self: Arc<Self>, holder: &Holder, wait: Duration) -> Result<Held, LockError> {
        let taken = self.acquire(holder, wait).await?;
        let lease = Arc::new(std::sync::Mutex::new(taken.lease));
        let lost = Lost::default();
        let renewer = tokio::spawn(renew(self.clone(), lease.clone(), lost.clone()));
        Ok(Held {
            lock: self,
            lease,
            lost,
            renewer,
            took_over: taken.took_over,
        })
    }
}

impl Held {
    /// Whether the lease was lost, for whoever must refuse to go on then (the commit).
    pub fn lost(&self) -> Lost {
        self.lost.clone()
    }

    /// Fails once the lease was lost: call it before anything a new holder relies on.
    pub fn check(&self) -> Result<(), LockError> {
        self.lost.check()
    }

    pub fn lease(&self) -> Lease {
        crate::sync::lock(&self.lease).clone()
    }

    /// Stops renewing and ends the lease. A lease that was lost is not ours to end.
    pub async fn release(self) -> Result<(), LockError> {
        self.renewer.abort();
        if self.lost.is_lost() {
            return Ok(());
        }
        let lease = self.lease();
        self.lock.release(&lease).await
    }
}

impl Held {
    /// [`Held::release`] for commands: a failure only makes the next holder wait for the
    /// lease to expire, so it is a warning, not an error.
    pub async fn release_or_warn(self) {
        if let Err(e) = self.release().await {
            tracing::warn!("could not release the deploy lock ({e}); it expires by itself");
        }
    }
}

impl Drop for Held {
    /// A holder that returns early (an error, a panic) stops renewing: its lease then
    /// expires by itself instead of being kept alive by a task nobody waits for.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Set once someone else's epoch came after ours: our epoch and theirs.
#[derive(Clone, Default)]
pub struct Lost(Arc<OnceLock<(u64, u64)>>);

impl Lost {
    pub fn is_lost(&self) -> bool {
        self.0.get().is_some()
    }

    pub fn check(&self) -> Result<(), LockError> {
        match self.0.get() {
            Some(&(ours, now)) => Err(LockError::Lost { ours, now }),
            None => Ok(()),
        }
    }
}

async fn renew(lock: Arc<DeployLock>, lease: Arc<std::sync::Mutex<Lease>>, lost: Lost) {
    loop {
        tokio::time::sleep(lock.ttl / 3).await;
        let current = crate::sync::lock(&lease).clone();
        match lock.renew(&current).await {
            Ok(next) => *crate::sync::lock(&lease) = next,
            Err(e @ LockError::Lost { ours, now }) => {
                tracing::error!("{e}");
                let _ = lost.0.set((ours, now)); // set once: this task ends here
                return;
            }
            // A store hiccup: the lease still has two thirds of its time.
            Err(e) => tracing::warn!("could not renew the deploy lock: {e}"),
        }
    }
}
