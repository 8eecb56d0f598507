//! `baton swap` against exosim with loopback VMs (tests/common/rehearsal.rs): the happy
//! path, a fault injected at every step, a crash after every step, and two swaps at once.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::rehearsal::{Rehearsal, prom_up_at, rt};
use common::{ok, stderr};
use serde_json::{Value, json};

fn deployed() -> (Rehearsal, String) {
    Rehearsal::start().deployed()
}

fn fails_cleanly(r: &Rehearsal, old: &str, step: &str, why: &str) -> Value {
    r.fails_cleanly(old, step, why)
}

fn crash_after(step: &str) {
    let (r, old) = deployed();
    r.crash_after(&old, step);
}

#[test]
fn first_deploy_then_two_swaps_move_the_site_and_its_data() {
    let (r, first) = deployed();
    let known_hosts = r.dir.path().join("known_hosts");
    std::fs::write(&known_hosts, ok(r.baton(&["known-hosts"]))).unwrap();
    let known_before = std::fs::read(&known_hosts).unwrap();
    let ssh_login = || {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(r.site.join("keys/deploy"))
            .args(["-p", &r.ssh_port.to_string()])
            .arg(format!("batonvm@{}", r.eip))
            .arg("cat $BATON_ROOT/etc/baton/generation")
            .output()
            .unwrap()
    };
    // Real ssh, through the address, trusting only the CA line.
    assert_eq!(ok(ssh_login()).trim(), "1");
    // A moment generation 1's Prometheus has a sample for.
    let gen1_ip = r.site_state().unwrap()["active"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    // The time of a sample generation 1's Prometheus scraped.
    let t1: f64 = common::wait_for(
        "generation 1's first scrape",
        Duration::from_secs(30),
        || prom_up_at(&gen1_ip, None),
    );

    let mut previous = first;
    for generation in [2u64, 3] {
        let (out, summary) = r.swap(&[]);
        assert!(out.status.success(), "swap: {}", stderr(&out));
        assert_eq!(summary["generation"], generation);
        assert_eq!(summary["replaced"], Value::String(previous.clone()));
        let steps: Vec<&str> = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps.len(), 15, "{steps:?}");
        let instance = summary["instance"].as_str().unwrap().to_string();
        r.assert_serving(generation, &instance);
        // The old VM is off: its directory and processes are gone.
        assert!(!r.vm_root(&previous).exists());
        assert_eq!(ok(ssh_login()).trim(), generation.to_string());
        previous = instance;
    }
    assert_eq!(std::fs::read(&known_hosts).unwrap(), known_before);

    // Prometheus data went along: a sample generation 1 scraped before any swap is
    // answered by generation 3's Prometheus.
    let ip = r.site_state().unwrap()["active"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let on_3 = common::wait_for("generation 3's Prometheus", Duration::from_secs(30), || {
        prom_up_at(&ip, Some(t1))
    });
    assert_eq!(on_3, t1);
    assert!(
        std::fs::read_dir(r.store().join("backups/manifests"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("-g2.json")),
        "generation 2 handed over"
    );
    assert_eq!(r.sim()["violations"], json!([]));
}

#[test]
fn fault_in_prepare() {
    let (r, old) = deployed();
    // A changed bundle must be uploaded and the store refuses it: a real failure inside
    // the step (a missing local file is refused before the swap starts, by the preflight).
    let sha = r.block_the_next_bundle();
    fails_cleanly(&r, &old, "prepare", &sha);
}

#[test]
fn a_missing_agent_binary_is_refused_before_the_swap_starts() {
    let (r, _old) = deployed();
    r.edit(|t| {
        t.replace(
            "agent_binary = \"agent-binary\"",
            "agent_binary = \"missing\"",
        )
    });
    let journals_before = std::fs::read_dir(r.store().join("journal"))
        .unwrap()
        .count();
    let (out, _) = r.swap(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("swap.agent_binary"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(r.store().join("journal"))
            .unwrap()
            .count(),
        journals_before,
        "a refused swap leaves no journal"
    );
}

#[test]
fn a_swap_before_anything_is_published_is_refused_before_it_starts() {
    let r = Rehearsal::start();
    std::fs::remove_file(r.store().join("site/manifest.json")).unwrap();
    let (out, _) = r.swap(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("baton publish"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(r.sim()["instances"].as_array().unwrap().len(), 0);
    assert!(!r.store().join("journal").exists());
}

#[test]
fn fault_in_register_key() {
    let (r, old) = deployed();
    r.inject("register-ssh-key", "400");
    fails_cleanly(&r, &old, "register-key", "400");
}

#[test]
fn fault_in_create() {
    let (r, old) = deployed();
    r.inject("create-instance", "fail");
    fails_cleanly(&r, &old, "create", "create-instance");
}

#[test]
fn a_vm_that_never_answers_ssh_is_rolled_back_within_the_boot_timeout() {
    let (r, old) = deployed();
    r.edit(|t| t.replace("boot_timeout = \"40s\"", "boot_timeout = \"8s\""));
    r.next_vm(json!({"ssh": false}));
    let summary = fails_cleanly(&r, &old, "wait", "did not answer SSH");
    let wait = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "wait")
        .unwrap()["seconds"]
        .as_f64()
        .unwrap();
    // It kept trying for most of the boot timeout, and gave up within it (plus one
    // connection attempt's own timeout).
    assert!((5.0..13.0).contains(&wait), "waited {wait}s");
}

#[test]
fn fault_in_wait_restore_fails() {
    let (r, old) = deployed();
    r.next_vm(json!({"restore": "fail"}));
    fails_cleanly(&r, &old, "wait", "baton restore failed on this server");
}

#[test]
fn fault_in_wait_cloud_init_error() {
    let (r, old) = deployed();
    r.next_vm(json!({"cloud_init_error": "runcmd: install-agent exited 1"}));
    fails_cleanly(&r, &old, "wait", "cloud-init reported errors");
}

#[test]
fn fault_in_up() {
    let (r, old) = deployed();
    r.break_the_next_up();
    fails_cleanly(&r, &old, "up", "pull failed");
}

#[test]
fn fault_in_health_shows_the_stack_and_its_logs() {
    let (r, old) = deployed();
    std::fs::write(r.site.join("stack/STATUS"), "503 database unreachable").unwrap();
    let summary = fails_cleanly(&r, &old, "health", "503");
    let problems = summary["problems"].to_string();
    assert!(
        problems.contains("the stack on the server says"),
        "{problems}"
    );
    assert!(problems.contains(r#"\"GET / HTTP/1.1\" 503"#), "{problems}");
    // It names what was asked for: the origin name, not the public one.
    assert!(
        problems.contains("https://origin.blog.example.org on "),
        "{problems}"
    );
}

#[test]
fn fault_in_hand_over() {
    let (r, old) = deployed();
    r.stop_prometheus(&old);
    fails_cleanly(&r, &old, "hand-over", "backup --final");
}

#[test]
fn fault_in_attach_address() {
    let (r, old) = deployed();
    r.inject("attach-instance-to-elastic-ip", "fail");
    fails_cleanly(&r, &old, "attach-address", "attach-instance-to-elastic-ip");
}

#[test]
fn fault_in_detach_old() {
    let (r, old) = deployed();
    r.inject("detach-instance-from-elastic-ip", "fail");
    fails_cleanly(&r, &old, "detach-old", "detach-instance-from-elastic-ip");
}

#[test]
fn a_failure_after_the_commit_is_left_for_gc_not_undone() {
    let (r, old) = deployed();
    r.inject("delete-instance", "fail");
    r.leaves_the_old_for_gc(&old);
}

#[test]
fn a_swap_waiting_for_the_lock_takes_it_from_a_crashed_holder_and_refuses_its_journal() {
    let (r, old) = deployed();
    // A takes the lock and dies after its first step, unreaped (a zombie: gone for good
    // but still in /proc). B, started while A holds the lock, waits for it, takes it over
    // from the dead holder, and must then refuse to start beside A's unfinished journal.
    let mut a = r
        .command(&["swap"])
        .env("BATON_FAILPOINT_CRASH_AFTER", "prepare")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for(
        "the first swap to hold the lock",
        Duration::from_secs(30),
        || {
            let newest = std::fs::read_dir(r.store().join("lock"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .max()?;
            let lease: Value = serde_json::from_slice(&std::fs::read(newest).ok()?).ok()?;
            (lease["released"] == false && lease["pid"] == a.id()).then_some(())
        },
    );
    let b = r.baton(&["swap", "--lock-wait", "2m"]);
    assert_eq!(b.status.code(), Some(2), "{}", stderr(&b));
    assert!(stderr(&b).contains("did not finish"), "{}", stderr(&b));
    // A died (by signal); until now it was an unreaped zombie, which B took as dead.
    assert!(
        a.wait().unwrap().code().is_none(),
        "the first swap did not crash"
    );
    ok(r.baton(&["swap", "--abort"]));
    r.assert_serving(1, &old);
}

// A crash after every step of the swap, resumed and aborted.
swap_crash_matrix!();

#[test]
fn two_swaps_at_once_one_runs_the_other_names_the_holder_or_waits() {
    let (r, _) = deployed();
    let a = r
        .command(&["swap", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = r
        .command(&["swap", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    let outcomes = [a.status.success(), b.status.success()];
    assert_eq!(
        outcomes.iter().filter(|s| **s).count(),
        1,
        "a: {}\nb: {}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if outcomes[0] { &b } else { &a };
    assert!(
        stderr(loser).contains("another swap holds the deploy lock"),
        "{}",
        stderr(loser)
    );
    // With --lock-wait the second one waits its turn and then replaces the first's work.
    let first = r
        .command(&["swap", "--json", "--lock-wait", "3m"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (waited, _) = r.swap(&["--lock-wait", "3m"]);
    assert!(first.wait_with_output().unwrap().status.success());
    assert!(waited.status.success(), "{}", stderr(&waited));
    let (generation, instance) = r.active();
    assert_eq!(generation, 4);
    r.assert_serving(4, &instance);
}

#[test]
fn a_swap_that_leaves_an_extra_instance_or_key_says_so_and_exits_3() {
    let (r, _old) = deployed();
    // An instance of the site that no generation accounts for, as a leak would leave.
    let planted = r.plant_instance(99, None);
    // And a deploy key that outlived its swap.
    let deploy_pub = std::fs::read_to_string(r.site.join("keys/deploy.pub")).unwrap();
    rt().block_on(baton::cloud::Cloud::register_ssh_key(
        r.client().as_ref(),
        "baton-blog-98",
        deploy_pub.trim(),
    ))
    .unwrap();
    let (out, summary) = r.swap(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("end state"), "{err}");
    assert!(err.contains(&planted.id), "{err}");
    assert!(err.contains("baton-blog-98"), "{err}");
    // The swap itself went through, and `baton gc`, as the message says, deletes the
    // extra instance.
    let new = summary["instance"].as_str().unwrap().to_string();
    assert_eq!(r.active(), (2, new.clone()));
    ok(r.baton(&["gc"]));
    r.assert_serving(2, &new);
}
