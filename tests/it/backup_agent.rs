//! The backup agent on a host: its schedule, its metrics, the final backup on SIGTERM,
//! one backup at a time, and `prune`'s order (manifests first, then what no manifest
//! references). Against the same real S3 server and Prometheus as `backup.rs`.

use crate::common;

use std::process::Command;
use std::time::Duration;

use super::backup::*;
use common::s3::S3Server;
use common::*;
use serde_json::json;

#[test]
fn the_agent_backs_up_on_schedule_serves_metrics_and_backs_up_once_more_on_sigterm() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "agent");
    wait_for_samples(&prom, 2);
    let config = std::fs::read_to_string(&host.config).unwrap();
    let port: u16 = config
        .split("listen = \"127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut child = host.command(&s3, &["agent"]).spawn().unwrap();
    let metrics = wait_for("two scheduled backups", Duration::from_secs(60), || {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let done: u64 = text
            .lines()
            .find(|l| l.starts_with("baton_backups_total "))?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()?;
        (done >= 2).then_some(text)
    });
    assert!(
        metrics.contains("# TYPE baton_backup_last_success_timestamp_seconds gauge"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("baton_backup_uploaded_bytes_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let before = manifests(&s3, "agent").len();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "agent exit: {status}");
    let after = manifests(&s3, "agent").len();
    assert!(
        after > before,
        "no final backup on SIGTERM ({before} -> {after})"
    );
}

#[test]
fn only_one_backup_runs_at_a_time_on_a_host() {
    let s3 = S3Server::start();
    let host = HostDir::new(&s3, "lock", 1, "http://127.0.0.1:9");
    let config = baton::agent_config::AgentConfig::load(&host.config).unwrap();
    let h = baton::backup::Host::new(Some(host.root.path()));
    let _held = baton::backup::HostLock::take(&h, &config).unwrap();
    let out = host.baton(&s3, &["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another backup or restore is running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_final_backup_waits_for_one_already_running_then_runs() {
    // A swap's hand-over must not fail because the agent's schedule started a backup a
    // moment before (seen in the qemu rehearsal): `--final` waits for it, then runs.
    let s3 = S3Server::start();
    let host = HostDir::new(&s3, "wait", 1, "http://127.0.0.1:9");
    let config = baton::agent_config::AgentConfig::load(&host.config).unwrap();
    let h = baton::backup::Host::new(Some(host.root.path()));
    let held = baton::backup::HostLock::take(&h, &config).unwrap();
    let child = host
        .command(&s3, &["backup", "--final"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Released only once the final backup has opened the lock file and waits on it.
    let fd_dir = format!("/proc/{}/fd", child.id());
    wait_for(
        "the final backup to wait on the lock",
        Duration::from_secs(20),
        || {
            std::fs::read_dir(&fd_dir).ok()?.flatten().find_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                target.ends_with("backup.lock").then_some(())
            })
        },
    );
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(
        !stderr(&out).contains("another backup or restore is running"),
        "{}",
        stderr(&out)
    );
    // It went on to what a backup does next: ask whether this host may upload (it may
    // not: it has not restored), instead of giving up on the lock.
    assert!(stderr(&out).contains("not uploading"), "{}", stderr(&out));
}

#[test]
fn prune_plans_then_deletes_manifests_first_and_unreferenced_blocks() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "prune");
    let mut names = Vec::new();
    for n in 0..3 {
        wait_for_samples(&prom, 2 + 2 * n);
        names.push(
            host.json(&s3, &["backup"])["manifest"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // keep only the newest (the hourly and daily rules keep it too)
    let config = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("keep_last = 60", "keep_last = 1")
        .replace("keep_hourly = 48", "keep_hourly = 0")
        .replace("keep_daily = 14", "keep_daily = 0");
    std::fs::write(&host.config, config).unwrap();
    let plan = host.json(&s3, &["prune", "--dry-run"]);
    assert_eq!(plan["keep"], json!([names[2]]));
    assert_eq!(plan["delete_manifests"], json!([names[0], names[1]]));
    assert_eq!(
        plan["delete_blocks"], 2,
        "the two older head blocks: {plan}"
    );
    assert_eq!(
        manifests(&s3, "prune").len(),
        3,
        "--dry-run deleted something"
    );
    ok(host.baton(&s3, &["prune"]));
    assert_eq!(manifests(&s3, "prune"), [names[2].clone()]);
    let fresh = HostDir::new(&s3, "prune", 2, "http://unused");
    assert_eq!(
        fresh.json(&s3, &["restore"])["manifest"],
        json!(names[2]),
        "the kept backup is whole"
    );
}

/// A store that notes, each time a prune lists the blocks, whether the host's backup
/// lock was held then (another taker of the lock is refused).
struct LockProbe {
    inner: baton::store::s3::S3Store,
    host: baton::backup::Host,
    config: baton::agent_config::AgentConfig,
    held_while_listing_blocks: std::sync::Mutex<Vec<bool>>,
}

#[async_trait::async_trait]
impl baton::store::ObjectStore for LockProbe {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), baton::store::StoreError> {
        self.inner.put(key, bytes).await
    }
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
    ) -> Result<u64, baton::store::StoreError> {
        self.inner.put_file(key, path).await
    }
    async fn create_new(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<baton::store::Created, baton::store::StoreError> {
        self.inner.create_new(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, baton::store::StoreError> {
        self.inner.get(key).await
    }
    async fn get_to_file(
        &self,
        key: &str,
        path: &std::path::Path,
        limit: u64,
    ) -> Result<Option<baton::store::Downloaded>, baton::store::StoreError> {
        self.inner.get_to_file(key, path, limit).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<baton::store::ObjectMeta>, baton::store::StoreError> {
        if prefix == baton::store::layout::BLOCKS {
            let held = baton::backup::HostLock::take(&self.host, &self.config).is_err();
            self.held_while_listing_blocks.lock().unwrap().push(held);
        }
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), baton::store::StoreError> {
        self.inner.delete(key).await
    }
    async fn download_url(
        &self,
        key: &str,
        valid: Duration,
    ) -> Result<String, baton::store::StoreError> {
        self.inner.download_url(key, valid).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn the_agent_prunes_holding_the_lock_so_a_waiting_final_backup_cannot_lose_a_block() {
    // The prune deletes every block no manifest names: a final backup that got the lock
    // the moment the scheduled backup let go had its new block's files deleted under it
    // (a CI run's catch-up found the block without its chunks). The prune must run
    // before the lock is let go.
    let s3 = S3Server::start();
    let (host, _prom) = active_host(&s3, "prunelock");
    let config = baton::agent_config::AgentConfig::load(&host.config).unwrap();
    let h = baton::backup::Host::new(Some(host.root.path()));
    let tsdb = baton::backup::prometheus::PrometheusAdmin::new(
        &config.prometheus.url,
        &h.path(&config.prometheus.data_dir),
    );
    let store = LockProbe {
        inner: s3.store("prunelock"),
        host: h.clone(),
        config: config.clone(),
        held_while_listing_blocks: Default::default(),
    };
    let metrics = std::sync::Mutex::new(baton::backup::agent::Metrics::default());
    let outcome = rt()
        .block_on(baton::backup::agent::backup_once(
            &store, &tsdb, &h, &config, &metrics, false,
        ))
        .unwrap();
    assert!(
        matches!(outcome, baton::backup::upload::Outcome::Done(_)),
        "{outcome:?}"
    );
    let seen = store.held_while_listing_blocks.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the prune never listed the blocks");
    assert!(
        seen.iter().all(|held| *held),
        "the prune listed the blocks without the host's lock: {seen:?}"
    );
    // The lock is free again afterwards.
    baton::backup::HostLock::take(&h, &config).unwrap();
}
