//! What a server can write must never steer the operator's cloud (issue 29): every server
//! holds store credentials, so journals, `state.json` and lock objects may have been
//! planted. baton acts only on the operator's objects signed with the host CA key, and
//! even then touches nothing in the cloud that is not the site's.
//!
//! The world: exosim (no VMs: instances are records) with the site's active generation
//! behind its Elastic IP, another site's instance, another deploy key and a second
//! Elastic IP, a backup manifest in the store. Planted objects, hand-made and generated,
//! then `swap --resume/--abort`, `rollback` and `gc`: the other site's things stay as
//! they were, and so do the site's serving instance, its address, state.json and backup.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use baton::cloud::Cloud;
use baton::store::ObjectStore;
use baton::store::fs::FsStore;
use common::exosim::{Exosim, KEY, SECRET};
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const EIP: &str = "203.0.113.10";
const OTHER_EIP: &str = "203.0.113.99";
const OTHER_KEY: &str = "laptop";
const MANIFEST: &str = "backups/manifests/20261122T101500.000Z-g1.json";

struct World {
    project: Project,
    /// The store's files, unsigned: what any server can write.
    raw: Arc<dyn ObjectStore>,
    /// The same store as the operator writes it.
    operator: Arc<dyn ObjectStore>,
    sim: Exosim,
    active: String,
    foreign: String,
    other_eip: String,
    state: Vec<u8>,
}

impl World {
    fn new() -> World {
        let sim = Exosim::start(&["--eip", EIP, "--eip", OTHER_EIP]);
        let store_dir = tempfile::tempdir().unwrap().keep();
        let project = Project::init(&[
            "--cloud-endpoint",
            &sim.url,
            "--store",
            &format!("file://{}", store_dir.display()),
            "--set",
            "instance.template=Linux Debian 13 (Trixie) 64-bit",
            "--set",
            "swap.boot_timeout=5s",
        ]);
        let raw: Arc<dyn ObjectStore> =
            Arc::new(FsStore::new(&store_dir, "file:///store").unwrap());
        let operator = operator_store(project.path(), raw.clone());
        let rt = common::rehearsal::rt();
        let cloud = sim.client();
        let (active, foreign, other_eip) = rt.block_on(async {
            let active = cloud.create_instance(&instance_spec("blog-1", "blog", 1)).await.unwrap();
            let foreign = cloud
                .create_instance(&instance_spec("shop-4", "shop", 4))
                .await
                .unwrap();
            let front = cloud.find_front(EIP.parse().unwrap()).await.unwrap();
            cloud.front_add(&front, &active.id).await.unwrap();
            let other_eip = cloud.find_front(OTHER_EIP.parse().unwrap()).await.unwrap();
            cloud
                .register_ssh_key(
                    OTHER_KEY,
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                )
                .await
                .unwrap();
            (active.id, foreign.id, other_eip)
        });
        let state = json!({"version": 1, "active": {"generation": 1, "instance": active,
            "address": EIP, "since": "2026-11-22T00:00:00Z"}, "leftovers": []});
        rt.block_on(async {
            operator
                .put("state.json", serde_json::to_vec(&state).unwrap())
                .await
                .unwrap();
            raw.put(MANIFEST, b"{}".to_vec()).await.unwrap();
        });
        let state = rt.block_on(raw.get("state.json")).unwrap().unwrap();
        let w = World {
            project,
            raw,
            operator,
            sim,
            active,
            foreign,
            other_eip,
            state,
        };
        // A plain swap would stop at "nothing published" before anything else.
        ok(w.baton(&["publish"]));
        w
    }

    fn baton(&self, args: &[&str]) -> Output {
        Command::new(BATON)
            .args(args)
            .current_dir(self.project.path())
            .env("EXOSCALE_API_KEY", KEY)
            .env("EXOSCALE_API_SECRET", SECRET)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    }

    fn dir(&self) -> &Path {
        self.project.path()
    }

    /// Everything that is not the site's is as it was, and so is what serves the site.
    fn untouched(&self, what: &str) {
        let rt = common::rehearsal::rt();
        let cloud = self.sim.client();
        rt.block_on(async {
            let ids: Vec<String> = cloud
                .list_instances(&BTreeMap::new())
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect();
            assert!(
                ids.contains(&self.foreign),
                "{what}: the other site's instance went"
            );
            assert!(
                ids.contains(&self.active),
                "{what}: the serving instance went"
            );
            let keys: Vec<String> = cloud
                .list_ssh_keys()
                .await
                .unwrap()
                .into_iter()
                .map(|k| k.name)
                .collect();
            assert!(
                keys.contains(&OTHER_KEY.to_string()),
                "{what}: a key not the site's went"
            );
            let holders = |ip: &'static str| {
                let cloud = &cloud;
                async move {
                    cloud
                        .front_members(ip.parse().unwrap())
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|i| i.id)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(
                holders(EIP).await,
                vec![self.active.clone()],
                "{what}: the address"
            );
            assert_eq!(
                holders(OTHER_EIP).await,
                Vec::<String>::new(),
                "{what}: the other address"
            );
            assert!(
                self.raw.get(MANIFEST).await.unwrap().is_some(),
                "{what}: a backup manifest went"
            );
            assert_eq!(
                self.raw.get("state.json").await.unwrap(),
                Some(self.state.clone()),
                "{what}: state.json changed"
            );
        });
    }

    /// Takes every planted journal and lock away again.
    fn clear(&self) {
        let rt = common::rehearsal::rt();
        rt.block_on(async {
            for prefix in ["journal/", "lock/"] {
                for o in self.raw.list(prefix).await.unwrap() {
                    self.raw.delete(&o.key).await.unwrap();
                }
            }
            self.raw
                .put("state.json", self.state.clone())
                .await
                .unwrap();
        });
    }

    fn plant(&self, key: &str, value: &Value, signed: bool) {
        let store = if signed { &self.operator } else { &self.raw };
        common::rehearsal::rt()
            .block_on(store.put(key, serde_json::to_vec(value).unwrap()))
            .unwrap();
    }
}

/// A swap journal as baton writes one, with `state`'s members over the defaults.
fn swap_journal(generation: u64, phase: &str, done: &[&str], state: Value) -> Value {
    let mut s = json!({
        "site": "blog", "generation": generation, "key_name": format!("baton-blog-{generation}"),
        "elastic_ip_id": "", "old": null, "no_handover": false, "instance_id": null,
        "public_ip": null, "host_key": null, "binary_sha256": null, "bundle_sha256": null,
        "uploaded": [],
    });
    for (k, v) in state.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"id": format!("{generation}-x"), "phase": phase, "done": done, "state": s,
           "problems": []})
}

#[test]
fn unsigned_journals_and_state_steer_nothing() {
    let w = World::new();
    // The probe's plants: a foreign instance to delete, the operator's own key, the
    // state and a backup manifest as "artifacts", the site's address onto a stranger.
    let journal = swap_journal(
        2,
        "running",
        &["prepare", "register-key", "create", "attach-address"],
        json!({"instance_id": w.foreign, "key_name": OTHER_KEY, "elastic_ip_id": w.other_eip,
               "uploaded": ["state.json", MANIFEST],
               "old": {"generation": 1, "instance": w.active, "address": EIP, "since": "x"}}),
    );
    w.plant("journal/2-x.json", &journal, false);
    for args in [
        &["swap", "--abort"][..],
        &["swap", "--resume"],
        &["swap"],
        &["gc"],
    ] {
        let out = w.baton(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not signed"),
            "{args:?}: {}",
            stderr(&out)
        );
        w.untouched(&format!("{args:?}"));
    }
    // An unsigned state.json is refused too, with what to do.
    w.clear();
    let planted = json!({"version": 1, "active": {"generation": 9, "instance": w.foreign,
        "address": EIP, "since": "x"}, "previous": {"generation": 8, "instance": w.foreign,
        "address": EIP, "since": "x", "until": "2999-01-01T00:00:00Z"}, "leftovers": []});
    w.plant("state.json", &planted, false);
    for args in [&["rollback"][..], &["gc"], &["status"]] {
        let out = w.baton(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("baton adopt"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // `baton adopt` checks it against the cloud and refuses: the instance is not ours.
    let out = w.baton(&["adopt"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("baton.site"), "{}", stderr(&out));
    w.clear();
    w.untouched("after adopt refused");
}

#[test]
fn a_signed_journal_put_back_is_not_undone() {
    let w = World::new();
    // A real swap of generation 1 cut short before its commit, its journal copied then,
    // and put back now that generation 1 serves: undoing it would delete the server.
    let journal = swap_journal(
        1,
        "running",
        &["prepare", "register-key", "create"],
        json!({"instance_id": w.active}),
    );
    w.plant("journal/1-x.json", &journal, true);
    let out = w.baton(&["swap", "--abort"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not fit state.json"),
        "{}",
        stderr(&out)
    );
    w.untouched("abort of a stale journal");
}

#[test]
fn an_older_store_is_adopted_once_after_a_check() {
    let w = World::new();
    let state = json!({"version": 1, "active": {"generation": 1, "instance": w.active,
        "address": EIP, "since": "2026-11-22T00:00:00Z"},
        "leftovers": [{"kind": "instance", "name": w.foreign, "generation": 4, "error": "x"}]});
    w.plant("state.json", &state, false);
    let out = w.baton(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = w.baton(&["adopt", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("leftover dropped"),
        "{}",
        stdout(&out)
    );
    let out = w.baton(&["adopt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_str(&ok(w.baton(&["status", "--json"]))).unwrap();
    assert_eq!(s["state"]["active"]["instance"], json!(w.active));
    assert_eq!(s["state"]["leftovers"], json!([]));
    // gc had the foreign instance recorded as a leftover; adopted, it is gone from there.
    ok(w.baton(&["gc"]));
    let _ = w.dir();
    let ids: Vec<String> = common::rehearsal::rt()
        .block_on(w.sim.client().list_instances(&BTreeMap::new()))
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(
        ids.contains(&w.foreign),
        "gc deleted the other site's instance"
    );
    let out = w.baton(&["adopt"]);
    assert!(
        stdout(&out).contains("nothing to adopt"),
        "{}",
        stdout(&out)
    );
}

fn id_from(w: &World, pick: u8) -> Value {
    match pick % 6 {
        0 => json!(w.foreign),
        1 => json!(w.active),
        2 => json!("../ssh-key/laptop"),
        3 => json!("00000000-0000-4000-8000-000000000000"),
        4 => json!(w.other_eip),
        _ => Value::Null,
    }
}

/// Generated journals (signed or not) and commands: nothing outside the site is ever
/// touched, and the serving instance, its address, state.json and the backups stay. One
/// world for every generated case (exosim and `baton init` cost more than a case), owned
/// by the test: dropped with it, its exosim does not outlive the test binary.
#[test]
fn no_planted_journal_touches_what_is_not_the_sites() {
    let w = World::new();
    let cases = (
        any::<bool>(),
        any::<bool>(),
        0u64..4,
        prop::sample::select(vec!["running", "needs-attention", "done"]),
        prop::sample::subsequence(
            vec![
                "prepare",
                "register-key",
                "create",
                "attach-address",
                "detach-old",
                "commit",
                "check-previous",
                "attach-previous",
                "detach-failed",
                "commit-rollback",
                "retire-failed",
            ],
            0..6,
        ),
        prop::collection::vec(any::<u8>(), 4),
        prop::sample::select(vec![
            "baton-blog-2",
            OTHER_KEY,
            "baton-blog-../x",
            "baton-shop-2",
        ]),
        prop::sample::subsequence(
            vec![
                "state.json",
                MANIFEST,
                "artifacts/../state.json",
                "journal/1-x.json",
            ],
            0..3,
        ),
        prop::sample::select(vec!["swap --abort", "rollback --abort", "rollback", "gc"]),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let result = runner.run(
        &cases,
        |(signed, rollback, generation, phase, done, ids, key, uploaded, command)| {
            let active =
                json!({"generation": 1, "instance": w.active, "address": EIP, "since": "x"});
            let other = json!({"generation": generation, "instance": id_from(&w, ids[0]),
                "address": EIP, "since": "x"});
            let (key_name, value) = if rollback {
                (
                    format!("journal/rollback-{generation}-x.json"),
                    json!({
                    "id": format!("rollback-{generation}-x"), "phase": phase, "done": done,
                    "problems": [], "state": {"site": "blog", "from": active, "to": other,
                    "elastic_ip_id": id_from(&w, ids[1]), "reason": "r", "watch": null,
                    "keep_failed": false, "hand_back_problem": null, "serving_again_ms": null}}),
                )
            } else {
                (
                    format!("journal/{generation}-x.json"),
                    swap_journal(
                        generation,
                        phase,
                        &done,
                        json!({"instance_id": id_from(&w, ids[2]), "key_name": key,
                           "elastic_ip_id": id_from(&w, ids[3]), "uploaded": uploaded,
                           "old": active, "displaced": other}),
                    ),
                )
            };
            w.plant(&key_name, &value, signed);
            let args: Vec<&str> = command.split(' ').collect();
            let _ = w.baton(&args);
            w.untouched(&format!("{command} with {value}"));
            w.clear();
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn what_status_prints_from_the_store_cannot_drive_the_terminal() {
    let w = World::new();
    // A clear-screen and an OSC 52 clipboard write, in a key and in a lock object.
    let key = "journal/2-\u{1b}[2J\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}.json";
    w.plant(key, &json!({"phase": "running"}), false);
    let out = w.baton(&["status"]);
    let text = stdout(&out);
    assert!(text.contains("2J"), "the key is shown: {text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    w.clear();
}
