//! Backups and restores against Debian's Prometheus 2.42 and a real S3-compatible server
//! (s3s-fs, signatures checked), through the real `baton` binary.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use baton::store::ObjectStore;
use common::prom::{Prometheus, synthetic_blocks};
use common::s3::S3Server;
use common::*;
use serde_json::{Value, json};

/// One simulated host: its root directory (data under ROOT/srv/prometheus, state under
/// ROOT/var/lib/baton) and its agent.toml.
pub(crate) struct HostDir {
    pub(crate) root: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

impl HostDir {
    pub(crate) fn new(
        s3: &S3Server,
        prefix: &str,
        generation: u64,
        prometheus_url: &str,
    ) -> HostDir {
        let root = tempfile::tempdir().unwrap();
        let config = root.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "generation = {generation}\n\n[store]\nurl = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\n\
                 [prometheus]\nurl = \"{prometheus_url}\"\ndata_dir = \"/srv/prometheus\"\n\n\
                 [backup]\nschedule = \"* * * * * *\"\npaths = [\"/srv/acme\"]\nkeep_last = 60\nkeep_hourly = 48\nkeep_daily = 14\n\n\
                 [metrics]\nlisten = \"127.0.0.1:{}\"\n",
                s3.url(prefix),
                s3.endpoint,
                free_port()
            ),
        )
        .unwrap();
        HostDir { root, config }
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.path("srv/prometheus")
    }

    /// `baton ARGS -c agent.toml --root ROOT` with the store's credentials.
    pub(crate) fn command(&self, s3: &S3Server, args: &[&str]) -> Command {
        let mut cmd = Command::new(BATON);
        cmd.args(args)
            .arg("-c")
            .arg(&self.config)
            .arg("--root")
            .arg(self.root.path())
            .envs(s3.env());
        cmd
    }

    pub(crate) fn baton(&self, s3: &S3Server, args: &[&str]) -> Output {
        self.command(s3, args).output().unwrap()
    }

    pub(crate) fn json(&self, s3: &S3Server, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&ok(self.baton(s3, &a))).unwrap()
    }
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn set_active(s3: &S3Server, prefix: &str, generation: u64) {
    let store = s3.store(prefix);
    let state = json!({"version": 1, "active": {"generation": generation, "instance": "i", "address": "203.0.113.10", "since": "2026-11-22T00:00:00Z"}, "leftovers": []});
    rt().block_on(store.put("state.json", serde_json::to_vec(&state).unwrap()))
        .unwrap();
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Synthetic history (6h to 2h ago) plus a Prometheus that keeps scraping itself.
pub(crate) fn running_host(s3: &S3Server, prefix: &str, generation: u64) -> (HostDir, Prometheus) {
    let host = HostDir::new(s3, prefix, generation, "http://prometheus.invalid");
    synthetic_blocks(
        &host.data(),
        &host.path("work"),
        5,
        now() - 6 * 3600,
        now() - 2 * 3600,
    );
    let prom = Prometheus::start(&host.data(), &host.path("work"));
    let config = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("http://prometheus.invalid", &prom.url);
    std::fs::write(&host.config, config).unwrap();
    std::fs::create_dir_all(host.path("srv/acme")).unwrap();
    std::fs::write(
        host.path("srv/acme/acme.json"),
        r#"{"certs": ["blog.example.org"]}"#,
    )
    .unwrap();
    (host, prom)
}

/// A running generation 1 after its first-deploy restore (nothing in the store, but its
/// own data counts), named active in state.json: a host that may back up.
pub(crate) fn active_host(s3: &S3Server, prefix: &str) -> (HostDir, Prometheus) {
    let (host, prom) = running_host(s3, prefix, 1);
    ok(host.baton(s3, &["restore", "--if-empty"]));
    set_active(s3, prefix, 1);
    (host, prom)
}

pub(crate) fn wait_for_samples(prom: &Prometheus, at_least: u64) {
    wait_for("self-scraped samples", Duration::from_secs(30), || {
        let v = prom.query("count_over_time(up[1h])")?;
        let n: u64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n >= at_least).then_some(())
    });
}

pub(crate) fn manifests(s3: &S3Server, prefix: &str) -> Vec<String> {
    rt().block_on(s3.store(prefix).list("backups/manifests/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[test]
fn backup_restore_and_a_second_prometheus_answers_the_same() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "site");
    wait_for_samples(&prom, 3);

    let first = host.json(&s3, &["backup"]);
    assert!(first["blocks"].as_u64().unwrap() >= 2, "{first}");
    assert_eq!(first["blocks_uploaded"], first["blocks"]);
    assert_eq!(first["archives_uploaded"], 1);
    assert!(
        !host
            .data()
            .join("snapshots")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "the snapshot was not deleted"
    );

    // Restore into an empty host, start a second Prometheus there.
    let fresh = HostDir::new(&s3, "site", 2, "http://unused");
    let restored = fresh.json(&s3, &["restore"]);
    assert_eq!(restored["manifest"], first["manifest"]);
    assert_eq!(
        std::fs::read_to_string(fresh.path("srv/acme/acme.json")).unwrap(),
        r#"{"certs": ["blog.example.org"]}"#
    );
    let marker: Value =
        serde_json::from_slice(&std::fs::read(fresh.path("var/lib/baton/restore.json")).unwrap())
            .unwrap();
    assert_eq!(marker["generation"], 2);
    let second = Prometheus::start(&fresh.data(), &fresh.path("work"));

    let (start, end) = (now() - 6 * 3600, now() - 2 * 3600);
    let original = prom.range("baton_test_value", start, end, 300);
    assert_eq!(original.as_array().unwrap().len(), 5, "{original}");
    assert_eq!(second.range("baton_test_value", start, end, 300), original);
    // The live (head) samples came along too: every raw sample of the original's own `up`
    // series that the snapshot covers (before its newest block's maxTime, exclusive) is
    // exactly what the copy has. (Not "before the backup began": a scrape stamped just
    // before that may be appended just after the snapshot.)
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(s3.object_path("site", first["manifest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let cut_ms = manifest["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let meta = s3.object_path(
                "site",
                &format!("backups/blocks/{}/meta.json", b["ulid"].as_str().unwrap()),
            );
            serde_json::from_slice::<Value>(&std::fs::read(meta).unwrap()).unwrap()["maxTime"]
                .as_i64()
                .unwrap()
        })
        .max()
        .unwrap();
    let covered_until = (cut_ms - 1) as f64 / 1000.0;
    let raw = |p: &Prometheus| {
        p.query_at(
            &format!(
                "up{{instance=\"{}\"}}[10m]",
                prom.url.trim_start_matches("http://")
            ),
            Some(covered_until),
        )
        .unwrap()["data"]["result"][0]["values"]
            .clone()
    };
    let original_samples = raw(&prom);
    let restored_samples = raw(&second);
    assert!(
        original_samples.as_array().is_some_and(|a| a.len() >= 3),
        "{original_samples}"
    );
    assert_eq!(
        restored_samples, original_samples,
        "restored head samples differ from the original's"
    );

    // Restoring again over data is refused (exit 2, nothing touched) unless --if-empty.
    let again = fresh.baton(&s3, &["restore"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds data"));
    ok(fresh.baton(&s3, &["restore", "--if-empty"]));
}

#[test]
fn a_second_backup_uploads_only_the_new_blocks() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "incr");
    wait_for_samples(&prom, 2);
    let first = host.json(&s3, &["backup"]);
    let before = s3.request_count();
    let stored_before: Vec<String> = rt()
        .block_on(s3.store("incr").list("backups/blocks/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    wait_for_samples(&prom, 5);
    let second = host.json(&s3, &["backup"]);

    // The historical blocks are stored; only the snapshot's head block is new.
    assert_eq!(second["blocks"], first["blocks"]);
    assert_eq!(second["blocks_uploaded"], 1, "{second}");
    assert_eq!(
        second["archives_uploaded"], 0,
        "an unchanged path was uploaded again"
    );
    let puts: Vec<String> = s3
        .requests_since(before)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path)
        .collect();
    for old in &stored_before {
        assert!(
            !puts.iter().any(|p| p.ends_with(old.as_str())),
            "{old} was uploaded again"
        );
    }
    // Byte count: exactly the new block's objects plus the manifest.
    let store = s3.store("incr");
    let all = rt().block_on(store.list("backups/")).unwrap();
    let new_bytes: u64 = all
        .iter()
        .filter(|o| o.key.starts_with("backups/blocks/") && !stored_before.contains(&o.key))
        .map(|o| o.size)
        .sum();
    let manifest_bytes = all
        .iter()
        .find(|o| o.key == second["manifest"].as_str().unwrap())
        .unwrap()
        .size;
    assert_eq!(
        second["bytes_uploaded"].as_u64().unwrap(),
        new_bytes + manifest_bytes
    );
    // Incremental: it sent less than a full backup of the same snapshot, by the blocks it
    // only referenced. (Not "less than the first backup": the head block is sent whole
    // each time and grows, so a second backup can outweigh a first one that held little
    // more than a young head.)
    let manifest: Value = serde_json::from_slice(
        &rt()
            .block_on(store.get(second["manifest"].as_str().unwrap()))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let blocks = manifest["blocks"].as_array().unwrap();
    let block_bytes = |b: &Value| -> u64 {
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["size"].as_u64().unwrap())
            .sum()
    };
    let referenced_only: u64 = blocks
        .iter()
        .filter(|b| {
            stored_before
                .iter()
                .any(|k| k.contains(b["ulid"].as_str().unwrap()))
        })
        .map(block_bytes)
        .sum();
    assert!(
        referenced_only > 0,
        "the second backup referenced no stored block"
    );
    let full: u64 = blocks.iter().map(block_bytes).sum();
    assert!(
        second["bytes_uploaded"].as_u64().unwrap() < full + manifest_bytes,
        "{second}: a full backup would be {full} + {manifest_bytes}"
    );
}

#[test]
fn a_corrupt_or_missing_object_falls_back_to_the_previous_backup() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "corrupt");
    wait_for_samples(&prom, 2);
    let first = host.json(&s3, &["backup"]);
    wait_for_samples(&prom, 4);
    let second = host.json(&s3, &["backup"]);

    // Damage a chunk of the block only the newest backup has.
    let m: Value = serde_json::from_slice(
        &std::fs::read(s3.object_path("corrupt", second["manifest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let firsts: Value = serde_json::from_slice(
        &std::fs::read(s3.object_path("corrupt", first["manifest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let old: Vec<&Value> = firsts["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["ulid"])
        .collect();
    let newest = m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| !old.contains(&&b["ulid"]))
        .unwrap();
    let chunk = newest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().starts_with("chunks/"))
        .unwrap();
    let object = s3.object_path(
        "corrupt",
        &format!(
            "backups/blocks/{}/{}",
            newest["ulid"].as_str().unwrap(),
            chunk["path"].as_str().unwrap()
        ),
    );
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();

    let fresh = HostDir::new(&s3, "corrupt", 2, "http://unused");
    let out = fresh.baton(&s3, &["restore", "--json"]);
    let report: Value = serde_json::from_str(&ok_ref(&out)).unwrap();
    assert_eq!(report["manifest"], first["manifest"], "{report}");
    assert!(
        report["fell_back"][0]
            .as_str()
            .unwrap()
            .contains("is corrupt"),
        "{report}"
    );
    assert!(
        stderr(&out).contains("skipped"),
        "the fallback must be said: {}",
        stderr(&out)
    );
    assert!(
        !fresh.path("srv").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".baton-restore")),
        "staging left behind"
    );

    // Missing instead of corrupt: the same.
    std::fs::remove_file(&object).unwrap();
    let fresh = HostDir::new(&s3, "corrupt", 3, "http://unused");
    let report = fresh.json(&s3, &["restore"]);
    assert_eq!(report["manifest"], first["manifest"]);
    assert!(
        report["fell_back"][0]
            .as_str()
            .unwrap()
            .contains("is missing"),
        "{report}"
    );
}

pub(crate) fn ok_ref(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}):\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn a_host_that_is_not_active_or_not_restored_uploads_nothing() {
    let s3 = S3Server::start();
    let host = HostDir::new(&s3, "passive", 1, "http://127.0.0.1:9");
    // Not restored yet.
    let before = s3.request_count();
    let out = host.baton(&s3, &["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has not verified its own restore"),
        "{}",
        stderr(&out)
    );
    // Restored, but another generation is active.
    ok(host.baton(&s3, &["restore", "--if-empty"]));
    set_active(&s3, "passive", 2);
    let out = host.baton(&s3, &["backup"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("this host is generation 1, the store's active generation is 2"),
        "{}",
        stderr(&out)
    );
    let writes: Vec<_> = s3
        .requests_since(before)
        .into_iter()
        .filter(|r| r.method == "PUT" && !r.path.ends_with("state.json"))
        .collect();
    assert!(writes.is_empty(), "a passive host wrote: {writes:?}");
    // Pruning is writing too.
    let out = host.baton(&s3, &["prune"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not uploading"), "{}", stderr(&out));
}

#[test]
fn kill_9_during_an_upload_leaves_the_previous_backup_restorable() {
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "kill");
    wait_for_samples(&prom, 2);
    let first = host.json(&s3, &["backup"]);
    wait_for_samples(&prom, 4);

    s3.put_delay_ms
        .store(400, std::sync::atomic::Ordering::SeqCst);
    let before = s3.request_count();
    let mut child = host.command(&s3, &["backup"]).spawn().unwrap();
    wait_for(
        "the second backup's first block upload",
        Duration::from_secs(30),
        || {
            s3.requests_since(before)
                .iter()
                .any(|r| r.method == "PUT" && r.path.contains("/backups/blocks/"))
                .then_some(())
        },
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    s3.put_delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);

    assert_eq!(
        manifests(&s3, "kill"),
        [first["manifest"].as_str().unwrap()],
        "a manifest was written by the killed backup"
    );
    let fresh = HostDir::new(&s3, "kill", 2, "http://unused");
    let restored = fresh.json(&s3, &["restore"]);
    assert_eq!(restored["manifest"], first["manifest"]);
    assert_eq!(restored["fell_back"], json!([]));
    // And the next backup completes, re-uploading what the killed one left half-done.
    let third = host.json(&s3, &["backup"]);
    assert_eq!(third["blocks_uploaded"], 1, "{third}");
}

#[test]
fn a_block_that_lost_a_file_in_the_store_is_uploaded_again() {
    // A prune that raced an upload once left a block's index without its chunks; every
    // later backup trusted the index and named the broken block, so none would restore.
    let s3 = S3Server::start();
    let (host, prom) = active_host(&s3, "heal");
    wait_for_samples(&prom, 2);
    let first = host.json(&s3, &["backup"]);
    let store = s3.store("heal");
    let chunk = rt()
        .block_on(store.list("backups/blocks/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .find(|k| k.contains("/chunks/"))
        .expect("a stored chunk");
    rt().block_on(store.delete(&chunk)).unwrap();
    let second = host.json(&s3, &["backup"]);
    assert_eq!(second["blocks"], first["blocks"]);
    // The damaged block and the snapshot's head block.
    assert_eq!(second["blocks_uploaded"], 2, "{second}");
    let keys: Vec<String> = rt()
        .block_on(store.list("backups/blocks/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(keys.contains(&chunk), "{chunk} was not uploaded again");
}
