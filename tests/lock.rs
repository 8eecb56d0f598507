//! The deploy lock on both stores: one winner, a clear message for the loser, waiting,
//! takeover of an expired lease naming its holder, and a lost lease detected.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use baton::clock::Clock;
use baton::store::ObjectStore;
use baton::store::fs::FsStore;
use baton::swap::lock::{DeployLock, Holder, LockError};
use common::s3::S3Server;

/// A clock tests can move forward.
struct Manual(Mutex<SystemTime>);

impl Clock for Manual {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

fn holder(name: &str) -> Holder {
    Holder {
        name: name.into(),
        host: format!("{name}-laptop"),
        pid: 42,
    }
}

async fn lock_semantics(store: Arc<dyn ObjectStore>) {
    let clock = Arc::new(Manual(Mutex::new(SystemTime::now())));
    let mut lock = DeployLock::new(store.clone(), clock.clone(), Duration::from_secs(600));
    lock.poll = Duration::from_millis(20);
    let lock = Arc::new(lock);

    // Two at once: exactly one wins, the other names the winner.
    let (alice, bob) = (holder("alice"), holder("bob"));
    let (a, b) = tokio::join!(
        lock.acquire(&alice, Duration::ZERO),
        lock.acquire(&bob, Duration::ZERO)
    );
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        (a, b) => panic!("expected one winner: {a:?} / {b:?}"),
    };
    let winner = won.lease.holder.clone();
    match &lost {
        LockError::Busy { holder, host, .. } => {
            assert_eq!(*holder, winner);
            assert_eq!(*host, format!("{winner}-laptop"));
        }
        other => panic!("expected Busy, got {other}"),
    }
    assert!(lost.to_string().contains("--lock-wait"), "{lost}");

    // Renewing keeps it; a waiter gets it once it is released.
    let renewed = lock.renew(&won.lease).await.unwrap();
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move {
            lock.acquire(&holder("carol"), Duration::from_secs(10))
                .await
        })
    };
    lock.release(&renewed).await.unwrap();
    let carol = waiter.await.unwrap().unwrap();
    assert_eq!(carol.lease.holder, "carol");
    assert_eq!(carol.took_over, None);
    assert!(
        matches!(lock.renew(&renewed).await, Err(LockError::Lost { .. })),
        "a released lease cannot be renewed"
    );

    // Carol's swap dies; after the lease expires, dave takes over and is told whose it was.
    *clock.0.lock().unwrap() += Duration::from_secs(601);
    let dave = lock.acquire(&holder("dave"), Duration::ZERO).await.unwrap();
    assert_eq!(
        dave.took_over.as_ref().map(|l| l.holder.as_str()),
        Some("carol")
    );
    // Carol comes back: her lease is gone, and she is told so.
    let err = lock.renew(&carol.lease).await.unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
    assert_eq!(lock.current().await.unwrap().unwrap().holder, "dave");
    // Only the head epoch is left behind.
    assert_eq!(store.list("lock/").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    lock_semantics(Arc::new(FsStore::new(dir.path(), "file:///test").unwrap())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_on_an_s3_server() {
    let s3 = S3Server::start();
    lock_semantics(Arc::new(s3.store("locktest"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_contenders_one_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::new(dir.path(), "file:///test").unwrap());
    let lock = Arc::new(DeployLock::new(
        store,
        Arc::new(baton::clock::SystemClock),
        Duration::from_secs(600),
    ));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let lock = lock.clone();
            tokio::spawn(async move {
                lock.acquire(&holder(&format!("h{i}")), Duration::ZERO)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}
