//! The deploy lock on both stores: one winner, a clear message for the loser, waiting,
//! takeover of an expired lease naming its holder, and a lost lease detected.

use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use baton::clock::Clock;
use baton::store::fs::FsStore;
use baton::store::{Created, Downloaded, ObjectMeta, ObjectStore, StoreError};
use baton::swap::lock::{DeployLock, Holder, Lease, LockError};
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
async fn lock_on_motos_s3() {
    let moto = common::moto::Moto::plain();
    lock_semantics(Arc::new(moto.s3_store("baton-lock", "locktest").await)).await;
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

/// A store on which another party acts right after a given object is created, before the
/// creator looks again: the interleaving a waiter's 2-second poll hits only by chance.
struct ActsAfterCreate {
    inner: FsStore,
    key: String,
    then: Mutex<Option<Lease>>,
}

#[async_trait]
impl ObjectStore for ActsAfterCreate {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put(key, bytes).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        self.inner.put_file(key, path).await
    }
    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError> {
        let created = self.inner.create_new(key, bytes).await?;
        let successor = self.then.lock().unwrap().take_if(|_| key == self.key);
        if let Some(lease) = successor {
            // What a waiter's acquire does on a released head: the next epoch, then it
            // cleans up below.
            let next = format!("lock/{:012}", lease.epoch);
            let bytes = serde_json::to_vec(&lease).unwrap();
            assert_eq!(self.inner.create_new(&next, bytes).await?, Created::Created);
            self.inner.delete(key).await?;
        }
        Ok(created)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_to_file(
        &self,
        key: &str,
        path: &Path,
        limit: u64,
    ) -> Result<Option<Downloaded>, StoreError> {
        self.inner.get_to_file(key, path, limit).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn download_url(&self, key: &str, valid: Duration) -> Result<String, StoreError> {
        self.inner.download_url(key, valid).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[tokio::test]
async fn a_release_is_not_lost_when_a_waiter_takes_the_lock_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(baton::clock::SystemClock);
    let store: Arc<dyn ObjectStore> = Arc::new(ActsAfterCreate {
        inner: FsStore::new(dir.path(), "file:///test").unwrap(),
        // alice takes epoch 1, renews to 2, releases with 3; bob builds 4 on it.
        key: "lock/000000000003".into(),
        then: Mutex::new(Some(Lease {
            epoch: 4,
            holder: "bob".into(),
            host: "bob-laptop".into(),
            pid: 7,
            acquired: 0,
            expires: baton::clock::unix_seconds(SystemTime::now()) + 600,
            released: false,
        })),
    });
    let lock = DeployLock::new(store.clone(), clock, Duration::from_secs(600));
    let alice = lock
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    let renewed = lock.renew(&alice.lease).await.unwrap();
    lock.release(&renewed).await.unwrap();
    let head = lock.current().await.unwrap().unwrap();
    assert_eq!((head.epoch, head.holder.as_str()), (4, "bob"));
    // And alice, asking again, is told it is not hers any more.
    assert!(matches!(
        lock.release(&renewed).await,
        Err(LockError::Lost { ours: 2, now: 4 })
    ));
}

#[tokio::test]
async fn a_release_after_the_lease_was_taken_over_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::new(dir.path(), "file:///test").unwrap());
    let clock = Arc::new(Manual(Mutex::new(SystemTime::now())));
    let lock = DeployLock::new(store, clock.clone(), Duration::from_secs(600));
    let alice = lock
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    // Alice's swap hangs past its lease; bob takes over and renews, which removes the
    // epoch alice would release into, so her create would succeed below bob's head.
    *clock.0.lock().unwrap() += Duration::from_secs(601);
    let bob = lock.acquire(&holder("bob"), Duration::ZERO).await.unwrap();
    let bob = lock.renew(&bob.lease).await.unwrap();
    let err = lock.release(&alice.lease).await.unwrap_err();
    assert!(matches!(err, LockError::Lost { ours: 1, now: 3 }), "{err}");
    assert_eq!(lock.current().await.unwrap().unwrap(), bob);
}

fn file_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FsStore::new(dir.path(), "file:///lock").unwrap());
    (dir, store)
}

fn lock_on(store: &Arc<dyn ObjectStore>) -> DeployLock {
    DeployLock::new(
        store.clone(),
        Arc::new(baton::clock::SystemClock),
        Duration::from_secs(120),
    )
}

#[tokio::test]
async fn stray_and_corrupt_lock_objects_do_not_block_the_lock() {
    let (_dir, store) = file_store();
    // A note someone left, a huge epoch-like name that is not one, and a corrupt head.
    store
        .put("lock/README", b"do not touch".to_vec())
        .await
        .unwrap();
    store.put("lock/zzzz", b"{}".to_vec()).await.unwrap();
    store
        .put("lock/000000000007", b"not json".to_vec())
        .await
        .unwrap();
    let lock = lock_on(&store);
    let taken = lock
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        taken.lease.epoch, 8,
        "built on the corrupt head, not on a stray name"
    );
    lock.release(&taken.lease).await.unwrap();
    assert!(lock.current().await.unwrap().unwrap().released);
    // The strays are left alone: they are not baton's.
    assert!(store.get("lock/README").await.unwrap().is_some());
}

#[tokio::test]
async fn a_lease_further_ahead_than_baton_writes_is_not_honoured() {
    let (_dir, store) = file_store();
    let now = baton::clock::unix_seconds(SystemTime::now());
    let planted = Lease {
        epoch: 3,
        holder: "mallory".into(),
        host: "elsewhere".into(),
        pid: 1,
        acquired: now,
        expires: 99_999_999_999, // year 5138
        released: false,
    };
    store
        .put("lock/000000000003", serde_json::to_vec(&planted).unwrap())
        .await
        .unwrap();
    let lock = lock_on(&store);
    let taken = lock
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.lease.epoch, 4);
    assert_eq!(taken.lease.holder, "alice");
}

#[tokio::test]
async fn an_epoch_at_its_maximum_is_a_clear_error_not_a_wrap() {
    let (_dir, store) = file_store();
    let max = Lease {
        epoch: u64::MAX,
        holder: "x".into(),
        host: "y".into(),
        pid: 1,
        acquired: 0,
        expires: 0,
        released: true,
    };
    store
        .put(
            &format!("lock/{:012}", u64::MAX),
            serde_json::to_vec(&max).unwrap(),
        )
        .await
        .unwrap();
    let err = lock_on(&store)
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("fix:"), "{err}");
    assert_eq!(baton::state::next_generation(Some(u64::MAX)), None);
    assert_eq!(baton::state::next_generation(None), Some(1));
}

/// Polls `f` until it holds, failing after `secs`.
async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_renews_itself_and_notices_when_it_is_taken_over() {
    let (_dir, store) = file_store();
    let clock = Arc::new(Manual(Mutex::new(SystemTime::now())));
    // A 3 s lease renews every second.
    let lock = Arc::new(DeployLock::new(
        store.clone(),
        clock.clone(),
        Duration::from_secs(3),
    ));
    let held = lock
        .clone()
        .hold(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(held.lease().epoch, 1);
    until(20, "the lease is renewed", || held.lease().epoch >= 2).await;
    held.check().unwrap();

    // Alice's lease runs out on the clock every lock reads; bob takes over, and alice's
    // next renewal finds his epoch above hers.
    *clock.0.lock().unwrap() += Duration::from_secs(60);
    let bob = lock.acquire(&holder("bob"), Duration::ZERO).await.unwrap();
    assert!(bob.took_over.is_some());
    let lost = held.lost();
    until(20, "alice notices", || lost.is_lost()).await;
    let err = held.check().unwrap_err();
    assert!(
        matches!(err, LockError::Lost { now, .. } if now >= bob.lease.epoch),
        "{err}"
    );
    // Releasing a lost lease leaves the thief's alone.
    held.release().await.unwrap();
    assert_eq!(lock.current().await.unwrap().unwrap(), bob.lease);
}

/// Every server can write to the store (issue 29): objects under `lock/` that the site's
/// key did not sign, at the largest epoch and at the epoch a renewal needs next, block
/// neither the lock nor its renewal nor its release.
#[tokio::test]
async fn objects_a_server_planted_under_lock_block_nothing() {
    let project = common::Project::init(&[]);
    let (_dir, raw) = file_store();
    let store = common::operator_store(project.path(), raw.clone());
    let now = baton::clock::unix_seconds(SystemTime::now());
    let plant = |epoch: u64| {
        let raw = raw.clone();
        async move {
            let live = Lease {
                epoch,
                holder: "mallory".into(),
                host: "web-1".into(),
                pid: 1,
                acquired: now,
                expires: now + 600,
                released: false,
            };
            raw.put(
                &baton::store::layout::lock(epoch),
                serde_json::to_vec(&live).unwrap(),
            )
            .await
            .unwrap();
        }
    };
    plant(u64::MAX).await;
    plant(1).await;
    let lock = lock_on(&store);
    assert_eq!(
        lock.current().await.unwrap(),
        None,
        "a plant is never the head"
    );
    // That look deleted them (nobody's): planted again, for the lock to step over.
    plant(u64::MAX).await;
    plant(1).await;
    let taken = lock
        .acquire(&holder("alice"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        taken.lease.epoch, 2,
        "over the plant at 1, below the one at the maximum"
    );
    assert_eq!(taken.took_over, None);
    plant(3).await;
    let renewed = lock.renew(&taken.lease).await.unwrap();
    assert_eq!(renewed.epoch, 4, "the renewal steps over the plant at 3");
    assert_eq!(lock.current().await.unwrap(), Some(renewed.clone()));
    plant(5).await;
    lock.release(&renewed).await.unwrap();
    let released = lock.current().await.unwrap().unwrap();
    assert!(released.released && released.epoch > 4, "{released:?}");
    let bob = lock.acquire(&holder("bob"), Duration::ZERO).await.unwrap();
    assert_eq!(bob.lease.epoch, released.epoch + 1);
    // Where a plant was found, it is gone: it was nobody's.
    for epoch in [1, 3, 5, u64::MAX] {
        let key = baton::store::layout::lock(epoch);
        assert_eq!(raw.get(&key).await.unwrap(), None, "{key}");
    }
}
