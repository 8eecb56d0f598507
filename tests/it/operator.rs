//! `baton status` and `baton plan` against exosim and a file store, through the binary.

use crate::common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use baton::cloud::Cloud;
use baton::store::ObjectStore;
use baton::store::fs::FsStore;
use common::exosim::{Exosim, KEY, SECRET};
use common::*;
use serde_json::{Value, json};

struct Site {
    project: Project,
    store: Arc<dyn ObjectStore>,
    sim: Exosim,
}

impl Site {
    fn new() -> Site {
        let sim = Exosim::start(&[]);
        let store_dir = tempfile::tempdir().unwrap().keep();
        let project = Project::init(&[
            "--cloud-endpoint",
            &sim.url,
            "--store",
            &format!("file://{}", store_dir.display()),
            // These tests are not about the baked image (tests/bake.rs is).
            "--set",
            "instance.template=Linux Debian 13 (Trixie) 64-bit",
        ]);
        let store = operator_store(
            project.path(),
            Arc::new(FsStore::new(&store_dir, "file:///store").unwrap()),
        );
        Site {
            project,
            store,
            sim,
        }
    }

    fn baton(&self, args: &[&str]) -> Output {
        Command::new(BATON)
            .args(args)
            .current_dir(self.project.path())
            .env("EXOSCALE_API_KEY", KEY)
            .env("EXOSCALE_API_SECRET", SECRET)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&ok(self.baton(&a))).unwrap()
    }

    /// The keys under `prefix` in the site's store, sorted.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self.store.list(prefix).await.unwrap();
        listed.into_iter().map(|o| o.key).collect()
    }

    async fn put_json(&self, key: &str, value: Value) {
        self.store
            .put(key, serde_json::to_vec(&value).unwrap())
            .await
            .unwrap();
    }

    async fn instance(&self, generation: u32) -> baton::cloud::Instance {
        let spec = common::instance_spec(&format!("blog-{generation}"), "blog", generation.into());
        self.sim.client().create_instance(&spec).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_a_site_before_its_first_swap() {
    let site = Site::new();
    let s = site.json(&["status"]);
    assert_eq!(s["state"], Value::Null);
    assert_eq!(s["instances"], json!([]));
    assert_eq!(s["last_backup"], Value::Null);
    let text = stdout(&site.baton(&["status"]));
    assert!(
        text.contains("active: none yet") && text.contains("last backup: none"),
        "{text}"
    );
    let p = site.json(&["plan"]);
    assert_eq!(p["generation"], 1);
    assert_eq!(p["replaces"], Value::Null);
    assert_eq!(p["blockers"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_plan_of_a_running_site() {
    let site = Site::new();
    let cloud = site.sim.client();
    let old = site.instance(0).await; // a leftover from some failed swap
    let active = site.instance(1).await;
    let eip = cloud
        .find_front("203.0.113.10".parse().unwrap())
        .await
        .unwrap();
    cloud.front_add(&eip, &active.id).await.unwrap();
    let state = json!({"version": 1, "active": {"generation": 1, "instance": active.id, "address": "203.0.113.10", "since": "2026-11-22T00:00:00Z"}, "leftovers": []});
    site.put_json("state.json", state).await;
    let stamp = chrono::Utc::now() - chrono::Duration::minutes(5);
    site.store
        .put(&baton::store::layout::manifest(&stamp, 1), b"{}".to_vec())
        .await
        .unwrap();
    site.put_json("journal/swap-2.json", json!({"phase": "running"}))
        .await;
    let lock = baton::swap::lock::DeployLock::new(
        site.store.clone(),
        Arc::new(baton::clock::SystemClock),
        Duration::from_secs(600),
    );
    lock.acquire(
        &baton::swap::lock::Holder {
            name: "alice".into(),
            host: "laptop".into(),
            pid: 7,
        },
        Duration::ZERO,
    )
    .await
    .unwrap();

    let s = site.json(&["status"]);
    assert_eq!(s["state"]["active"]["generation"], 1);
    assert_eq!(s["address_holders"], json!([active.id]));
    assert_eq!(s["instances"].as_array().unwrap().len(), 2);
    assert_eq!(s["orphans"], json!([old.id]));
    assert_eq!(s["lock"]["holder"], "alice");
    assert_eq!(s["unfinished"].as_array().unwrap().len(), 1);
    let age = s["last_backup_age_seconds"].as_i64().unwrap();
    assert!((290..=400).contains(&age), "{age}");

    let before = site.sim.state().await["calls"].clone();
    let p = site.json(&["plan"]);
    assert_eq!(p["generation"], 2);
    assert_eq!(p["instance_name"], "blog-2");
    assert_eq!(p["replaces"], json!(active.id));
    let blockers = p["blockers"].to_string();
    assert!(
        blockers.contains("alice") && blockers.contains("swap-2"),
        "{blockers}"
    );
    // Read-only: no write reached the cloud.
    let calls = site.sim.state().await["calls"].clone();
    for op in calls.as_object().unwrap().keys() {
        let read = op.starts_with("list-") || op.starts_with("get-");
        assert!(read || calls[op] == before[op], "plan called {op}");
    }
    assert_eq!(
        site.sim.state().await["instances"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_a_template_that_does_not_exist() {
    let site = Site::new();
    let cfg = std::fs::read_to_string(site.project.config())
        .unwrap()
        .replace("Linux Debian 13 (Trixie) 64-bit", "Linux Debian 99");
    std::fs::write(site.project.config(), cfg).unwrap();
    let out = site.baton(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("template \"Linux Debian 99\" not found")
            && stderr(&out).contains("Linux Debian 13"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_swap_name_a_missing_bundle_or_agent_binary_before_acting() {
    let site = Site::new();
    std::fs::rename(
        site.project.path().join("docker"),
        site.project.path().join("docker.away"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(site.project.config()).unwrap();
    let cfg = cfg.replacen("[swap]", "[swap]\nagent_binary = \"target/nope\"", 1);
    std::fs::write(site.project.config(), cfg).unwrap();
    let p = site.json(&["plan"]);
    let blockers = p["blockers"].to_string();
    assert!(
        blockers.contains("bundle.dir") && blockers.contains("swap.agent_binary"),
        "{p}"
    );
    let text = stdout(&site.baton(&["plan"]));
    assert!(!text.contains("nothing stands in the way"), "{text}");

    // The swap refuses before the lock, an upload or a cloud call that writes.
    site.put_json("site/manifest.json", json!({})).await;
    let out = site.baton(&["swap"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundle.dir"), "{}", stderr(&out));
    let left = site.store.list("").await.unwrap();
    assert!(
        left.iter()
            .all(|o| !o.key.starts_with("artifacts/") && !o.key.starts_with("lock/")),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_situation_one_exit_code_from_every_command() {
    let site = Site::new();
    site.put_json("site/manifest.json", json!({})).await;
    // A 403: exit 2 from status, plan and swap alike, and the key id is not echoed.
    for cmd in ["status", "plan", "swap"] {
        let out = Command::new(BATON)
            .args([cmd])
            .current_dir(site.project.path())
            .env("EXOSCALE_API_KEY", KEY)
            .env("EXOSCALE_API_SECRET", "not-the-secret")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("HTTP 403"), "{cmd}: {err}");
        assert!(!err.contains(KEY), "{cmd} echoed the API key id: {err}");
    }
    // The deploy lock held by a live swap elsewhere: exit 1 from swap and gc alike.
    let now = baton::clock::unix_seconds(std::time::SystemTime::now());
    // Above the epochs the refused runs above left behind.
    site.put_json(
        "lock/000000000099",
        json!({"epoch": 99, "holder": "alice", "host": "elsewhere", "pid": 1,
               "acquired": now, "expires": now + 600, "released": false}),
    )
    .await;
    for cmd in ["swap", "gc"] {
        let out = site.baton(&[cmd]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("alice"), "{cmd}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_at_its_maximum_is_refused_not_wrapped() {
    let site = Site::new();
    site.put_json("site/manifest.json", json!({})).await;
    site.put_json(
        "state.json",
        json!({"version": 1, "active": {"generation": u64::MAX, "instance": "x",
               "address": "198.51.100.10", "since": "2026-12-01T00:00:00Z"}}),
    )
    .await;
    for cmd in ["plan", "swap"] {
        let out = site.baton(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("18446744073709551615"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    // Nothing was created: no blog-0.
    assert_eq!(site.sim.state().await["instances"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_without_cloud_credentials_names_them() {
    let site = Site::new();
    let out = Command::new(BATON)
        .args(["status"])
        .current_dir(site.project.path())
        .env_remove("EXOSCALE_API_KEY")
        .env_remove("EXOSCALE_API_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("EXOSCALE_API_KEY is not set"),
        "{}",
        stderr(&out)
    );
}

/// A finished swap's journal, as the saga writes it.
fn journal(generation: u64, binary: &str, bundle: &str) -> Value {
    let j = baton::swap::saga::Journal {
        id: format!("{generation}-a"),
        phase: baton::swap::saga::Phase::Done,
        done: vec![],
        state: baton::swap::steps::SwapState {
            site: "blog".into(),
            generation,
            binary_sha256: Some(binary.into()),
            bundle_sha256: Some(bundle.into()),
            ..Default::default()
        },
        problems: vec![],
    };
    serde_json::to_value(j).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_deletes_only_what_baton_made_and_no_longer_needs() {
    let site = Site::new();
    let cloud = site.sim.client();
    let orphan = site.instance(2).await;
    let active = site.instance(3).await;
    let state = json!({"version": 1, "active": {"generation": 3, "instance": active.id, "address": "203.0.113.10", "since": "2026-11-22T00:00:00Z"}, "leftovers": []});
    site.put_json("state.json", state).await;
    for name in ["baton-blog-2", "personal"] {
        let k = baton::identity::ssh::generate_key(name).unwrap();
        cloud
            .register_ssh_key(
                name,
                &baton::identity::ssh::public_openssh(k.public_key()).unwrap(),
            )
            .await
            .unwrap();
    }
    for (sha, what) in [
        ("aaaa", "binary in use"),
        ("bbbb", "generation 2's bundle"),
        ("cccc", "named by no journal"),
    ] {
        site.store
            .put(&format!("artifacts/{sha}"), what.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // Every swap's journal names its artifacts: once gc kept all of them for as long as
    // any journal named them, which was forever.
    site.put_json("journal/2-a.json", journal(2, "bbbb", "bbbb"))
        .await;
    site.put_json("journal/3-a.json", journal(3, "aaaa", "aaaa"))
        .await;

    let plan = site.json(&["gc", "--dry-run"]);
    assert_eq!(
        plan,
        json!({"instances": [orphan.id], "ssh_keys": ["baton-blog-2"],
               "artifacts": ["artifacts/bbbb", "artifacts/cccc"], "journals": [],
               "templates": [], "images": []})
    );
    assert_eq!(
        site.sim.state().await["instances"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "--dry-run deleted something"
    );

    ok(site.baton(&["gc"]));
    let world = site.sim.state().await;
    let ids: Vec<&str> = world["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [active.id.as_str()]);
    let keys: Vec<&str> = world["ssh-keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["personal"]);
    assert!(site.store.get("artifacts/aaaa").await.unwrap().is_some());
    assert!(site.store.get("artifacts/bbbb").await.unwrap().is_none());
    assert!(site.store.get("artifacts/cccc").await.unwrap().is_none());
    // The lock it held is released.
    let lock = baton::swap::lock::DeployLock::new(
        site.store.clone(),
        Arc::new(baton::clock::SystemClock),
        Duration::from_secs(600),
    );
    assert_eq!(
        lock.current().await.unwrap().map(|l| l.released),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_refuses_while_a_swap_is_unfinished() {
    let site = Site::new();
    let orphan = site.instance(2).await;
    site.put_json("journal/swap-2.json", json!({"phase": "running"}))
        .await;
    let out = site.baton(&["gc"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unfinished swap") && stderr(&out).contains("--resume"),
        "{}",
        stderr(&out)
    );
    assert!(
        site.sim
            .client()
            .get_instance(&orphan.id)
            .await
            .unwrap()
            .is_some(),
        "gc deleted an instance of an unfinished swap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_prunes_finished_journals_beyond_the_retention() {
    let site = Site::new();
    let active = site.instance(12).await;
    let state = json!({"version": 1, "active": {"generation": 12, "instance": active.id, "address": "203.0.113.10", "since": "2026-11-22T00:00:00Z"}, "leftovers": []});
    site.put_json("state.json", state).await;
    for g in 1..=12 {
        let sha = format!("{g:04}");
        site.store
            .put(&format!("artifacts/{sha}"), b"x".to_vec())
            .await
            .unwrap();
        site.put_json(&format!("journal/{g}-a.json"), journal(g, &sha, &sha))
            .await;
    }
    ok(site.baton(&["gc"]));
    let left = site.keys("journal/").await;
    assert_eq!(left.len(), baton::swap::journal::KEEP_FINISHED, "{left:?}");
    assert!(!left.contains(&"journal/1-a.json".to_string()), "{left:?}");
    assert!(!left.contains(&"journal/2-a.json".to_string()), "{left:?}");
    let artifacts = site.keys("artifacts/").await;
    assert_eq!(
        artifacts,
        ["artifacts/0012"],
        "only the active generation's are kept"
    );
}
