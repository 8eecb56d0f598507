//! After the cut-over, on loopback VMs (tests/common/rehearsal.rs): the watch that rolls a
//! failing release back by itself, `baton rollback` inside and outside its window, and the
//! rollback's fault and crash matrices.

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::rehearsal::{Rehearsal, prom_up_at, rt};
use common::{ok, stderr};
use serde_json::{Value, json};

/// Generation 1, then generation 2 with generation 1 kept for `baton rollback`; returns
/// (gen 1's instance, gen 2's).
fn swapped(site_args: &[&str]) -> (Rehearsal, String, String) {
    let r = Rehearsal::start_with(site_args);
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "first deploy: {}", stderr(&out));
    let first = summary["instance"].as_str().unwrap().to_string();
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "swap: {}", stderr(&out));
    let second = summary["instance"].as_str().unwrap().to_string();
    r.assert_serving_keeping(2, &second, &[&first]);
    let state = r.site_state().unwrap();
    assert_eq!(state["previous"]["generation"], 1, "{state}");
    assert_eq!(state["previous"]["instance"], first.as_str(), "{state}");
    (r, first, second)
}

fn kept() -> (Rehearsal, String, String) {
    swapped(&["--keep-previous", "10m"])
}

/// `baton rollback --json ARGS`: the output and its summary.
fn rollback(r: &Rehearsal, args: &[&str]) -> (std::process::Output, Value) {
    let mut a = vec!["rollback", "--json"];
    a.extend_from_slice(args);
    let out = r.baton(&a);
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, summary)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The bundle directories unpacked on `instance`'s loopback VM.
fn bundles(r: &Rehearsal, instance: &str) -> Vec<PathBuf> {
    std::fs::read_dir(r.vm_root(instance).join("opt/baton/bundles"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// `baton swap --json` in the background, its progress going to a file (a pipe nobody
/// reads while the test waits could fill and stall it).
struct Background(std::process::Child, PathBuf);

impl Background {
    fn finish(self) -> (std::process::Output, String) {
        let out = self.0.wait_with_output().unwrap();
        (out, std::fs::read_to_string(&self.1).unwrap())
    }
}

fn spawn_swap(r: &Rehearsal) -> Background {
    let log = r.dir.path().join(format!("swap-{}.log", fastrand::u32(..)));
    let child = r
        .command(&["swap", "--json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Background(child, log)
}

#[test]
fn the_watch_rolls_back_a_release_that_fails_after_the_cut_over() {
    let r = Rehearsal::start_with(&["--watch", "90s", "--keep-previous", "10m"]);
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "first deploy: {}", stderr(&out));
    let first = summary["instance"].as_str().unwrap().to_string();
    let first_ip = r.site_state().unwrap()["active"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let swap = spawn_swap(&r);
    let (second, second_ip) =
        common::wait_for("generation 2 to commit", Duration::from_secs(120), || {
            let s = r.site_state()?;
            (s["active"]["generation"] == 2).then(|| {
                (
                    s["active"]["instance"].as_str().unwrap().to_string(),
                    s["active"]["address"].as_str().unwrap().to_string(),
                )
            })
        });
    let committed = now();
    // A sample generation 2's Prometheus scraped after the cut-over.
    let t2 = common::wait_for("a scrape on generation 2", Duration::from_secs(30), || {
        prom_up_at(&second_ip, None).filter(|t| *t > committed)
    });
    assert!(
        ok(r.baton(&["status"])).contains("generation 2 is being watched"),
        "status shows the watch"
    );
    // The release turns bad 10 s after the cut-over: the scenario, not a synchronisation.
    std::thread::sleep(Duration::from_secs_f64((committed + 10.0 - now()).max(0.0)));
    let broke = Instant::now();
    for b in bundles(&r, &second) {
        std::fs::write(b.join("STATUS"), "500 the release broke").unwrap();
    }
    let (out, err) = swap.finish();
    let took = broke.elapsed();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed the watch and was rolled back"),
        "{err}"
    );
    assert!(
        err.contains("last failing answer: GET / answered 500"),
        "{err}"
    );
    assert!(err.contains("the stack on the failed server says"), "{err}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "rolled-back", "{summary}");
    let rb = &summary["rollback"];
    assert_eq!(rb["outcome"], "done", "{rb}");
    assert_eq!(
        (rb["from_generation"].clone(), rb["to_generation"].clone()),
        (json!(2), json!(1))
    );
    // The stack's own log lines (its 500s), not a complaint about running `bundle.logs`.
    let logs: Vec<&str> = rb["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let logs = logs.join("\n");
    assert!(logs.contains("\"GET / HTTP/1.1\" 500"), "{logs}");
    assert!(!logs.contains("is not set"), "{logs}");
    assert_eq!(rb["hand_back_problem"], Value::Null, "{rb}");
    let figure = rb["first_failure_to_serving_seconds"].as_f64().unwrap();
    assert!(
        figure > 0.0 && figure < took.as_secs_f64(),
        "{figure} of {took:?}"
    );
    // Generation 1 is back; generation 2 is kept for inspection, accounted for.
    r.assert_serving_keeping(1, &first, &[&second]);
    let state = r.site_state().unwrap();
    assert_eq!(state["previous"], Value::Null, "{state}");
    assert_eq!(state["rolled_back"]["generation"], 2, "{state}");
    assert!(state["rolled_back"]["kept_until"].is_string(), "{state}");
    let status = ok(r.baton(&["status"]));
    assert!(status.contains("kept for inspection"), "{status}");
    // What generation 2 recorded after the cut-over came back with generation 1.
    let on_1 = common::wait_for(
        "generation 2's sample on generation 1",
        Duration::from_secs(90),
        || prom_up_at(&first_ip, Some(t2)),
    );
    assert_eq!(on_1, t2);
    // Generation 2 stays given up: the next swap makes generation 3.
    std::fs::remove_file(bundles(&r, &second)[0].join("STATUS")).ok();
    assert_eq!(r.sim()["violations"], json!([]));
}

#[test]
fn baton_rollback_inside_the_window_puts_the_previous_generation_back() {
    let (r, first, second) = kept();
    r.edit(|s| s.replace("on_rollback = \"keep\"", "on_rollback = \"delete\""));
    let (out, summary) = rollback(&r, &[]);
    assert!(out.status.success(), "rollback: {}", stderr(&out));
    assert_eq!(summary["to_generation"], 1, "{summary}");
    assert_eq!(summary["from_generation"], 2, "{summary}");
    assert_eq!(summary["hand_back_problem"], Value::Null, "{summary}");
    let steps: Vec<&str> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "check-previous",
            "attach-previous",
            "verify-previous",
            "detach-failed",
            "hand-back",
            "commit-rollback",
            "retire-failed"
        ]
    );
    // Deleted, as configured; generation 2's data handed back (its final backup).
    r.assert_serving(1, &first);
    assert!(!r.vm_root(&second).exists());
    assert!(
        std::fs::read_dir(r.store().join("backups/manifests"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("-g2.json")),
        "generation 2 handed its data back"
    );
    // Once is all: nothing is kept now.
    let (again, _) = rollback(&r, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing to roll back to"),
        "{}",
        stderr(&again)
    );
    // The next swap makes generation 3, never a second generation 2.
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "swap: {}", stderr(&out));
    assert_eq!(summary["generation"], 3);
    r.assert_serving_keeping(3, summary["instance"].as_str().unwrap(), &[&first]);
    assert_eq!(r.sim()["violations"], json!([]));
}

#[test]
fn a_second_rollback_deletes_the_instance_the_first_one_kept() {
    let (r, first, second) = kept();
    assert!(rollback(&r, &[]).0.status.success());
    r.assert_serving_keeping(1, &first, &[&second]);
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "swap: {}", stderr(&out));
    let third = summary["instance"].as_str().unwrap().to_string();
    assert_eq!(summary["generation"], 3);
    r.assert_serving_keeping(3, &third, &[&first, &second]);
    let (out, _) = rollback(&r, &[]);
    assert!(out.status.success(), "second rollback: {}", stderr(&out));
    // One instance kept for inspection at a time: the newest.
    r.assert_serving_keeping(1, &first, &[&third]);
    assert_eq!(r.site_state().unwrap()["rolled_back"]["generation"], 3);
}

/// No more servers run at once than a swap needs (issue 30): the generation kept before
/// the serving one goes when the next swap starts, before its new server is created, not
/// after its commit. A swap that then fails leaves the serving generation serving, with
/// nothing older to roll back to, and says so nowhere it could mislead: state.json no
/// longer names the deleted server.
#[test]
fn a_swap_retires_the_kept_generation_before_its_new_server_boots() {
    let (r, first, second) = kept();
    // The create fails: at that moment generation 1 must already be gone.
    r.inject("create-instance", "fail");
    let (out, summary) = r.swap(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed at create"), "{err}");
    assert!(err.contains("the old server serves as before"), "{err}");
    assert_eq!(summary["outcome"], "undone");
    let steps: Vec<&str> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"retire-kept"), "{steps:?}");
    r.assert_serving(2, &second);
    assert!(!r.vm_root(&first).exists(), "generation 1's VM is gone");
    assert_eq!(r.site_state().unwrap()["previous"], Value::Null);
    let (out, _) = rollback(&r, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The next swap goes through and keeps generation 2 in turn.
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "swap: {}", stderr(&out));
    r.assert_serving_keeping(3, summary["instance"].as_str().unwrap(), &[&second]);
    assert_eq!(r.site_state().unwrap()["previous"]["generation"], 2);
    assert_eq!(r.sim()["violations"], json!([]));
}

#[test]
fn outside_the_window_there_is_nothing_to_roll_back_to() {
    // keep_previous = 0s: the old server goes as soon as the swap is done.
    let r = Rehearsal::start();
    assert!(r.swap(&[]).0.status.success());
    let (out, summary) = r.swap(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = summary["instance"].as_str().unwrap().to_string();
    let (out, _) = rollback(&r, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to roll back to"),
        "{}",
        stderr(&out)
    );
    r.assert_serving(2, &second);
}

#[test]
fn a_window_that_is_over_refuses_and_gc_deletes_the_kept_generation() {
    let (r, first, second) = kept();
    let path = r.store().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["previous"]["until"] = json!("2026-01-01T00:00:00+00:00");
    std::fs::write(&path, common::sealed_json(&r.site, "state.json", &state)).unwrap();
    let (out, _) = rollback(&r, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("which is past"), "{}", stderr(&out));
    assert!(ok(r.baton(&["status"])).contains("past: gc deletes it"));
    let plan = ok(r.baton(&["gc", "--dry-run"]));
    assert!(plan.contains(&first), "{plan}");
    ok(r.baton(&["gc"]));
    r.assert_serving(2, &second);
    assert_eq!(r.site_state().unwrap()["previous"], Value::Null);
}

#[test]
fn gc_leaves_a_kept_previous_generation_alone_inside_its_window() {
    let (r, first, second) = kept();
    ok(r.baton(&["gc"]));
    r.assert_serving_keeping(2, &second, &[&first]);
    let status = ok(r.baton(&["status"]));
    assert!(status.contains("previous: generation 1"), "{status}");
    assert!(status.contains("`baton rollback` puts it back"), "{status}");
}

/// The rollback fails at `step`: undone, generation 2 still serves, generation 1 still kept,
/// and a plain `baton rollback` then goes through.
fn rollback_fails_cleanly(op: &str, action: &str, step: &str) {
    let (r, first, second) = kept();
    r.inject(op, action);
    let state_before = std::fs::read(r.store().join("state.json")).unwrap();
    let (out, summary) = rollback(&r, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("failed at {step}")), "{err}");
    assert!(err.contains("generation 2 still serves"), "{err}");
    assert_eq!(summary["outcome"], "undone", "{summary}");
    r.assert_serving_keeping(2, &second, &[&first]);
    assert_eq!(
        std::fs::read(r.store().join("state.json")).unwrap(),
        state_before,
        "state.json changed"
    );
    let (out, _) = rollback(&r, &[]);
    assert!(out.status.success(), "retry: {}", stderr(&out));
    r.assert_serving_keeping(1, &first, &[&second]);
}

#[test]
fn fault_in_check_previous() {
    rollback_fails_cleanly("get-instance", "400", "check-previous");
}

#[test]
fn fault_in_attach_previous() {
    rollback_fails_cleanly("attach-instance-to-elastic-ip", "fail", "attach-previous");
}

#[test]
fn fault_in_detach_failed() {
    rollback_fails_cleanly("detach-instance-from-elastic-ip", "fail", "detach-failed");
}

#[test]
fn a_failure_after_the_rollback_commit_is_left_for_gc() {
    let (r, first, second) = kept();
    r.edit(|s| s.replace("on_rollback = \"keep\"", "on_rollback = \"delete\""));
    r.inject("delete-instance", "fail");
    let (out, _) = rollback(&r, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("retire-failed"), "{err}");
    assert!(err.contains(&second), "{err}");
    assert_eq!(r.active(), (1, first.clone()));
    assert_eq!(
        r.site_state().unwrap()["leftovers"][0]["name"],
        second.as_str()
    );
    ok(r.baton(&["gc"]));
    r.assert_serving(1, &first);
}

/// A crash after `step`: the journal blocks swaps and plain rollbacks; `--abort` undoes
/// it (or, past the commit, is refused), and `--resume` finishes it.
fn crash_after(step: &str) {
    let (r, first, second) = kept();
    r.crash(&["rollback"], step);
    for plain in [r.baton(&["rollback"]), r.baton(&["swap"])] {
        assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
        assert!(
            stderr(&plain).contains("did not finish"),
            "{}",
            stderr(&plain)
        );
    }
    let wrong = r.baton(&["swap", "--resume"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("`baton rollback --resume`"),
        "{}",
        stderr(&wrong)
    );
    let past_commit = matches!(step, "commit-rollback" | "retire-failed");
    if past_commit {
        let abort = r.baton(&["rollback", "--abort"]);
        assert_eq!(abort.status.code(), Some(3), "{}", stderr(&abort));
        assert!(
            stderr(&abort).contains("can only be resumed"),
            "{}",
            stderr(&abort)
        );
    } else {
        let abort = r.baton(&["rollback", "--abort"]);
        assert!(abort.status.success(), "abort: {}", stderr(&abort));
        r.assert_serving_keeping(2, &second, &[&first]);
        r.crash(&["rollback"], step);
    }
    let (out, _) = rollback(&r, &["--resume"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    r.assert_serving_keeping(1, &first, &[&second]);
}

crash_tests! {
    crash_after_check_previous => "check-previous",
    crash_after_attach_previous => "attach-previous",
    crash_after_verify_previous => "verify-previous",
    crash_after_detach_failed => "detach-failed",
    crash_after_hand_back => "hand-back",
    crash_after_commit_rollback => "commit-rollback",
    crash_after_retire_failed => "retire-failed",
}

#[test]
fn a_swap_whose_address_has_a_second_holder_and_a_wrong_answer_says_so_and_exits_3() {
    // A long watch that never rolls back (100 failures needed): the test plants a second
    // holder of the address while it runs, and the end-state check must name it.
    let r = Rehearsal::start_with(&["--watch", "20s"]);
    r.edit(|s| s.replace("watch_failures = 3", "watch_failures = 100"));
    assert!(r.swap(&[]).0.status.success());
    let swap = spawn_swap(&r);
    let second = common::wait_for("generation 2 to commit", Duration::from_secs(120), || {
        let s = r.site_state()?;
        (s["active"]["generation"] == 2)
            .then(|| s["active"]["instance"].as_str().unwrap().to_string())
    });
    // And generation 2 itself stops answering well: the watch (100 failures needed) lets
    // it pass, the end-state check must not.
    for b in bundles(&r, &second) {
        std::fs::write(b.join("STATUS"), "503 down after the watch").unwrap();
    }
    // Not the site's: only the address makes it baton's business.
    let planted = r.plant_instance(
        77,
        Some([("owner".to_string(), "someone-else".to_string())].into()),
    );
    let client = r.client();
    let eip: std::net::IpAddr = r.eip.parse().unwrap();
    let eip_id = rt().block_on(client.find_front(eip)).unwrap();
    rt().block_on(client.front_add(&eip_id, &planted.id))
        .unwrap();
    let (out, err) = swap.finish();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("end state"), "{err}");
    assert!(err.contains("the Elastic IP is held by"), "{err}");
    assert!(err.contains(&planted.id), "{err}");
    assert!(
        err.contains("does not answer as generation 2, which state.json names"),
        "{err}"
    );
}
