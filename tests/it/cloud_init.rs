//! The rendered user-data against Debian's cloud-init, nft and sh: what a new server boots.

use crate::common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;
use serde_norway::Value;

const SCHEMA: &str =
    "/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn schema_accepts(file: &Path) -> (bool, String) {
    let out = Command::new(require("cloud-init", "cloud-init"))
        .args(["schema", "--config-file"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// Every top-level key cloud-init's own schema defines. `cloud-init schema` lets unknown
/// top-level keys pass (a typo silently disables a module), so the tests check them here.
fn known_top_level_keys() -> BTreeSet<String> {
    require("cloud-init", "cloud-init");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA).unwrap()).unwrap();
    let mut keys = BTreeSet::new();
    for part in schema["allOf"].as_array().unwrap() {
        let name = part["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/$defs/");
        if let Some(props) = schema["$defs"][name]["properties"].as_object() {
            keys.extend(props.keys().cloned());
        }
    }
    for k in [
        "bootcmd",
        "runcmd",
        "users",
        "ssh_keys",
        "write_files",
        "package_upgrade",
    ] {
        assert!(
            keys.contains(k),
            "schema parsing went wrong: no {k} in {keys:?}"
        );
    }
    keys
}

fn unknown_top_level_keys(doc: &Value) -> Vec<String> {
    let known = known_top_level_keys();
    doc.as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .filter(|k| !known.contains(k))
        .collect()
}

fn write_file<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
}

#[test]
fn cloud_init_accepts_every_rendered_variant() {
    let p = Project::init(&["--ssh-port", "2222"]);
    let plain = p.render(1);
    let with_agent = p.path().join("agent");
    ok(p.baton(&[
        "render",
        "--generation",
        "2",
        "--out",
        with_agent.to_str().unwrap(),
        "--agent-url",
        "https://sos-ch-gva-2.exo.io/baton-blog/artifacts/x?X-Amz-Signature=abc&b=1",
        "--agent-sha256",
        SHA,
    ]));
    let with_creds = p.path().join("creds");
    let out = Command::new(BATON)
        .args([
            "render",
            "--generation",
            "3",
            "--out",
            with_creds.to_str().unwrap(),
        ])
        .current_dir(p.path())
        .env("AWS_ACCESS_KEY_ID", "EXOAKID")
        .env("AWS_SECRET_ACCESS_KEY", "very-secret-value")
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("very-secret") && !stderr(&out).contains("very-secret"));
    ok(out);
    for dir in [&plain, &with_agent, &with_creds] {
        let (accepted, report) = schema_accepts(&dir.join("user-data"));
        assert!(
            accepted,
            "cloud-init schema rejected {}:\n{report}",
            dir.display()
        );
        assert_eq!(
            unknown_top_level_keys(&user_data(dir)),
            Vec::<String>::new()
        );
    }
    // The credentials reach the host in an owner-only file, and only when set.
    let env = write_file(&user_data(&with_creds), "/etc/baton/agent.env")
        .expect("agent.env")
        .clone();
    assert_eq!(env["permissions"].as_str(), Some("0600"));
    assert!(
        env["content"]
            .as_str()
            .unwrap()
            .contains("AWS_SECRET_ACCESS_KEY=very-secret-value")
    );
    assert!(write_file(&user_data(&plain), "/etc/baton/agent.env").is_none());
}

#[test]
fn an_unknown_top_level_key_is_caught_although_cloud_init_schema_lets_it_pass() {
    let p = Project::init(&[]);
    let out = p.render(1);
    let text = std::fs::read_to_string(out.join("user-data")).unwrap();
    let typo = text.replacen("ssh_pwauth:", "ssh_pwauht:", 1);
    let bad = out.join("user-data-typo");
    std::fs::write(&bad, &typo).unwrap();
    let (accepted, _) = schema_accepts(&bad);
    assert!(
        accepted,
        "cloud-init schema now flags unknown keys: this check could become its own"
    );
    let doc: Value = serde_norway::from_str(&typo).unwrap();
    assert_eq!(unknown_top_level_keys(&doc), ["ssh_pwauht"]);
}

#[test]
fn broken_user_data_is_rejected_by_cloud_init_schema() {
    // The peer must be able to fail: a wrong type in a key we use.
    let p = Project::init(&[]);
    let out = p.render(1);
    let text = std::fs::read_to_string(out.join("user-data")).unwrap();
    let bad = out.join("user-data-bad");
    std::fs::write(
        &bad,
        text.replacen("ssh_pwauth: false", "ssh_pwauth: [no]", 1),
    )
    .unwrap();
    assert!(!schema_accepts(&bad).0);
}

#[test]
fn encoded_form_is_gzip_then_base64_of_the_yaml() {
    let p = Project::init(&[]);
    let out = p.render(4);
    let b64 = std::fs::read_to_string(out.join("user-data.b64")).unwrap();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    let mut yaml = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut yaml)
        .unwrap();
    assert_eq!(
        yaml,
        std::fs::read_to_string(out.join("user-data")).unwrap()
    );
    assert!(yaml.starts_with("#cloud-config\n"));
}

#[test]
fn user_data_sets_up_what_the_server_needs() {
    let p = Project::init(&["--ssh-port", "2222"]);
    let out = p.render(5);
    let doc = user_data(&out);
    let config = p.load();

    let user = &doc["users"][0];
    assert_eq!(user["name"].as_str(), Some("deploy"));
    assert_eq!(user["lock_passwd"].as_bool(), Some(true));
    assert_eq!(user["sudo"].as_str(), Some("ALL=(ALL) NOPASSWD:ALL"));
    assert_eq!(
        user["ssh_authorized_keys"][0].as_str(),
        Some(config.ssh.authorized_keys[0].as_str())
    );
    assert_eq!(
        doc["users"].as_sequence().unwrap().len(),
        1,
        "no default user"
    );
    assert_eq!(doc["disable_root"].as_bool(), Some(true));
    assert_eq!(doc["ssh_pwauth"].as_bool(), Some(false));

    // sshd: our port, no root, no passwords, the host key we rendered with its certificate
    let sshd = write_file(&doc, "/etc/ssh/sshd_config.d/10-baton.conf").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    for line in [
        "Port 2222",
        "PermitRootLogin no",
        "PasswordAuthentication no",
    ] {
        assert!(
            sshd.lines().any(|l| l == line),
            "{line} missing from:\n{sshd}"
        );
    }
    let public = std::fs::read_to_string(out.join("ssh_host_ed25519_key.pub")).unwrap();
    assert_eq!(
        doc["ssh_keys"]["ed25519_public"].as_str(),
        Some(public.trim())
    );
    let cert = std::fs::read_to_string(out.join("ssh_host_ed25519_key-cert.pub")).unwrap();
    assert_eq!(
        doc["ssh_keys"]["ed25519_certificate"].as_str(),
        Some(cert.trim())
    );

    // the Elastic IP on lo, as a /32
    let boot: Vec<&str> = doc["bootcmd"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        boot.contains(&"ip address replace 203.0.113.10/32 dev lo"),
        "{boot:?}"
    );

    // the host agent's config names this generation and the store
    let agent: baton::agent_config::AgentConfig = toml::from_str(
        write_file(&doc, "/etc/baton/agent.toml").unwrap()["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(agent.generation, 5);
    assert_eq!(agent.store, config.store);
    assert_eq!(agent.backup.schedule.as_written(), "* * * * *");
    for unit in [
        "baton-restore.service",
        "baton-agent.service",
        "baton-boot.service",
        "baton-scrub.service",
    ] {
        assert!(
            write_file(&doc, &format!("/etc/systemd/system/{unit}")).is_some(),
            "{unit}"
        );
    }
    // Scheduled backups yield to the site by cgroup weight (systemd's cpu controller
    // shares the CPU between services by weight first; Nice= counts only inside one).
    let agent_unit =
        write_file(&doc, "/etc/systemd/system/baton-agent.service").unwrap()["content"]
            .as_str()
            .unwrap();
    let weight: u32 = agent_unit
        .lines()
        .find_map(|l| l.strip_prefix("CPUWeight="))
        .expect("the agent's unit sets CPUWeight")
        .parse()
        .unwrap();
    assert!(
        weight < 100,
        "CPUWeight={weight} is not below a service's default 100"
    );
    let key = write_file(&doc, "/srv/tls/origin.key").unwrap();
    assert_eq!(key["permissions"].as_str(), Some("0600"));

    // upgrades nothing, installs nothing
    assert_eq!(doc["package_update"].as_bool(), Some(false));
    assert_eq!(doc["package_upgrade"].as_bool(), Some(false));
    assert!(doc.get("packages").is_none());
}

#[test]
fn fetches_nothing_but_the_pinned_agent() {
    let p = Project::init(&[]);
    let url = "https://sos-ch-gva-2.exo.io/baton-blog/artifacts/abc?X-Amz-Signature=x";
    let out = p.path().join("agent");
    ok(p.baton(&[
        "render",
        "--generation",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--agent-url",
        url,
        "--agent-sha256",
        SHA,
    ]));
    let doc = user_data(&out);
    let runcmd = doc["runcmd"].as_sequence().unwrap();
    let install = runcmd[0].as_sequence().unwrap();
    assert_eq!(install[1].as_str(), Some(url));
    assert_eq!(install[2].as_str(), Some(SHA));
    // No other URL anywhere in the commands cloud-init runs.
    let commands = serde_norway::to_string(&(&doc["runcmd"], &doc["bootcmd"])).unwrap();
    assert_eq!(commands.matches("://").count(), 1, "{commands}");
    assert!(runcmd.iter().any(|c| {
        c.as_sequence()
            .unwrap()
            .iter()
            .any(|w| w.as_str() == Some("baton-restore.service"))
    }));
}

#[test]
fn agent_flags_come_in_pairs_and_are_checked() {
    let p = Project::init(&[]);
    let o = p.baton(&[
        "render",
        "--generation",
        "1",
        "--out",
        "o",
        "--agent-url",
        "https://x/y",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = p.baton(&[
        "render",
        "--generation",
        "1",
        "--out",
        "o",
        "--agent-url",
        "https://x/y",
        "--agent-sha256",
        "abc",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a sha256"), "{}", stderr(&o));
    let o = p.baton(&["render", "--generation", "0", "--out", "o"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!p.path().join("o").exists());
}

#[test]
fn metadata_block_is_valid_nftables() {
    let nft = require("nft", "nftables");
    let p = Project::init(&[]);
    let doc = user_data(&p.render(1));
    let script = doc["bootcmd"][0].as_str().unwrap();
    // Nobody may reach it, root included (the user-data holds the host's private keys).
    assert!(
        script.contains("ip daddr 169.254.169.254 reject"),
        "{script}"
    );
    assert!(!script.contains("skuid"), "{script}");
    // The exact text the server runs, with nft in check mode (parses, applies nothing).
    let checked = script.replacen("nft -f -", &format!("{} -c -f -", nft.display()), 1);
    let out = Command::new("sh").arg("-c").arg(&checked).output().unwrap();
    assert!(
        out.status.success(),
        "nft rejected the ruleset:\n{}",
        stderr(&out)
    );
    let broken = checked.replacen("reject", "rejekt", 1);
    let out = Command::new("sh").arg("-c").arg(&broken).output().unwrap();
    assert!(
        !out.status.success(),
        "nft -c accepts anything: the check above proves nothing"
    );
}

#[test]
fn install_agent_refuses_a_binary_with_the_wrong_sha256() {
    require("curl", "curl");
    let p = Project::init(&[]);
    let doc = user_data(&p.render(1));
    let script = p.path().join("install-agent");
    std::fs::write(
        &script,
        write_file(&doc, "/usr/local/lib/baton/install-agent").unwrap()["content"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let payload = p.path().join("payload");
    std::fs::write(&payload, b"#!/bin/sh\necho agent\n").unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&payload).unwrap()))
    };
    let bin_dir = p.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let target = bin_dir.join("baton");
    let run = |sha: &str| {
        Command::new("sh")
            .arg(&script)
            .arg(format!("file://{}", payload.display()))
            .arg(sha)
            .env("BATON_BIN", &target)
            .output()
            .unwrap()
    };
    let wrong = run(SHA);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("refusing"), "{}", stderr(&wrong));
    assert_eq!(
        std::fs::read_dir(&bin_dir).unwrap().count(),
        0,
        "nothing may be left behind"
    );
    ok(run(&sha));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&payload).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn every_generation_gets_a_fresh_host_key() {
    let p = Project::init(&[]);
    let a = std::fs::read_to_string(p.render(1).join("ssh_host_ed25519_key.pub")).unwrap();
    let b = std::fs::read_to_string(p.render(2).join("ssh_host_ed25519_key.pub")).unwrap();
    assert_ne!(a, b);
}

#[test]
fn later_boots_block_the_metadata_address_before_the_network_and_provisioning_happens_once() {
    let p = Project::init(&[]);
    let doc = user_data(&p.render(1));
    let file = |path: &str| {
        write_file(&doc, path).unwrap_or_else(|| panic!("{path} missing"))["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The ruleset later boots load is the one the first boot ran, which nft checks in
    // metadata_block_is_valid_nftables.
    let block = file("/etc/baton/metadata-block.nft");
    let bootcmd = doc["bootcmd"][0].as_str().unwrap();
    assert!(bootcmd.contains(&block), "{bootcmd}");

    let boot = file("/etc/systemd/system/baton-boot.service");
    for line in [
        "Before=network-pre.target",
        "DefaultDependencies=no",
        "ExecStart=nft -f /etc/baton/metadata-block.nft",
        "ExecStart=ip address replace 203.0.113.10/32 dev lo",
    ] {
        assert!(boot.lines().any(|l| l == line), "{line} not in:\n{boot}");
    }
    let scrub = file("/etc/systemd/system/baton-scrub.service");
    assert!(scrub.contains("After=cloud-final.service"), "{scrub}");
    assert!(scrub.contains("/etc/cloud/cloud-init.disabled"), "{scrub}");
    assert!(scrub.contains("user-data.txt"), "{scrub}");
    let runcmd = serde_norway::to_string(&doc["runcmd"]).unwrap();
    assert!(
        runcmd.contains("baton-boot.service") && runcmd.contains("baton-scrub.service"),
        "{runcmd}"
    );
    // systemd itself reads both units: it exits 0 on an unknown key but says so, so
    // silence is the check (and a misspelt key shows that it can fail).
    let analyze = require("systemd-analyze", "systemd");
    let verify = |units: &[(&str, String)]| {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = units
            .iter()
            .map(|(name, text)| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        let out = Command::new(&analyze)
            .arg("verify")
            .args(&paths)
            .output()
            .unwrap();
        format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout))
    };
    let said = verify(&[
        ("baton-boot.service", boot.clone()),
        ("baton-scrub.service", scrub.clone()),
    ]);
    assert!(said.trim().is_empty(), "systemd-analyze: {said}");
    let misspelt = scrub.replace("After=", "Afterr=");
    assert!(
        !verify(&[("baton-scrub.service", misspelt)])
            .trim()
            .is_empty()
    );
}

/// The servers' store key comes from variables of its own, and never is the operator's
/// cloud key (issue 29): on AWS the `AWS_*` key is the cloud's, so it never reaches a
/// server; a servers' key with the cloud key's id is refused on both clouds.
#[test]
fn the_servers_store_key_is_never_the_clouds() {
    let render = |p: &Project, out: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(BATON);
        c.args(["render", "--generation", "2", "--out", out])
            .current_dir(p.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("EXOSCALE_API_KEY");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let agent_env = |p: &Project, out: &str| {
        write_file(&user_data(&p.path().join(out)), "/etc/baton/agent.env")
            .map(|f| f["content"].as_str().unwrap().to_string())
    };
    // AWS: the operator's key is the cloud's; the servers get theirs, or nothing.
    let aws = Project::init(&["--cloud", "aws"]);
    let operator = [
        ("AWS_ACCESS_KEY_ID", "AKIAOPERATOR0001"),
        ("AWS_SECRET_ACCESS_KEY", "op-secret"),
    ];
    ok(render(&aws, "a", &operator));
    assert_eq!(agent_env(&aws, "a"), None, "the cloud key reached a server");
    let servers = [
        operator[0],
        operator[1],
        ("BATON_SERVER_ACCESS_KEY_ID", "AKIASERVERS00002"),
        ("BATON_SERVER_SECRET_ACCESS_KEY", "servers-secret"),
    ];
    ok(render(&aws, "b", &servers));
    let env = agent_env(&aws, "b").expect("agent.env");
    assert!(env.contains("AWS_ACCESS_KEY_ID=AKIASERVERS00002"), "{env}");
    assert!(
        !env.contains("AKIAOPERATOR0001") && !env.contains("op-secret"),
        "{env}"
    );
    // The same key id as the cloud's: refused, the secret never echoed.
    let same = [
        operator[0],
        operator[1],
        ("BATON_SERVER_ACCESS_KEY_ID", "AKIAOPERATOR0001"),
        ("BATON_SERVER_SECRET_ACCESS_KEY", "op-secret"),
    ];
    let out = render(&aws, "c", &same);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("operator's cloud key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("op-secret") && !stderr(&out).contains("AKIAOPERATOR0001"));
    // Exoscale: one API key for both the cloud and the store is refused the same way.
    let exo = Project::init(&[]);
    let both = [
        ("EXOSCALE_API_KEY", "EXObothkey0001"),
        ("AWS_ACCESS_KEY_ID", "EXObothkey0001"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
    ];
    let out = render(&exo, "d", &both);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("EXOSCALE_API_KEY"),
        "{}",
        stderr(&out)
    );
}
