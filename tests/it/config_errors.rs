//! Bad input: every kind gets a message naming the file, the field and the fix, exit code 2,
//! and nothing written.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Edits baton.toml, runs `baton render`, and returns stderr after checking the refusal.
pub(crate) fn refused(project: &Project, edit: impl FnOnce(String) -> String) -> String {
    let text = std::fs::read_to_string(project.config()).unwrap();
    let edited = edit(text.clone());
    assert_ne!(text, edited, "the edit must change the file");
    std::fs::write(project.config(), edited).unwrap();
    refused_as_is(project)
}

pub(crate) fn refused_as_is(project: &Project) -> String {
    let out = project.baton(&["render", "--generation", "1", "--out", "out"]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, got {}:\n{err}",
        out.status
    );
    assert!(err.contains("fix:"), "no fix in:\n{err}");
    assert!(
        !project.path().join("out").exists(),
        "nothing may be written on bad input"
    );
    err
}

pub(crate) fn assert_has(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "missing {n:?} in:\n{haystack}");
    }
}

#[test]
fn unknown_field_is_named_with_its_section() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replacen("name = \"blog\"", "name = \"blog\"\ncolour = \"blue\"", 1)
    });
    assert_has(
        &err,
        &[
            "baton.toml",
            "field `site.colour`",
            "unknown field `colour`",
            "expected",
        ],
    );
}

#[test]
fn wrong_type_is_named() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| t.replace("disk_gb = 20", "disk_gb = \"twenty\""));
    assert_has(
        &err,
        &["baton.toml", "field `instance.disk_gb`", "invalid type"],
    );
}

#[test]
fn missing_ca_file_is_named_with_the_fix() {
    let p = Project::init(&[]);
    std::fs::remove_file(p.path().join("keys/host-ca")).unwrap();
    let err = refused_as_is(&p);
    assert_has(
        &err,
        &[
            "field `ssh.host_ca`",
            "names a file that does not exist",
            "baton init",
        ],
    );
}

#[test]
fn missing_deploy_key_is_named_with_the_fix() {
    // A project made before `baton init` wrote keys/deploy.
    let p = Project::init(&[]);
    std::fs::remove_file(p.path().join("keys/deploy")).unwrap();
    let err = refused_as_is(&p);
    assert_has(
        &err,
        &["baton's deploy key", "keys/deploy", "ssh-keygen -t ed25519"],
    );
    let swap = p.baton(&["swap"]);
    assert_eq!(swap.status.code(), Some(2), "{}", stderr(&swap));
    assert_has(&stderr(&swap), &["keys/deploy", "ssh-keygen -t ed25519"]);
}

#[test]
fn loosely_readable_ca_key_is_refused() {
    let p = Project::init(&[]);
    let key = p.path().join("keys/tls-ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused_as_is(&p);
    assert_has(
        &err,
        &["field `tls.ca_key`", "readable by others", "chmod 600"],
    );
}

#[test]
fn address_that_does_not_parse() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| t.replace("\"203.0.113.10\"", "\"203.0.113\""));
    assert_has(
        &err,
        &[
            "field `front.address`",
            "the value (9 characters) is not an IP address",
        ],
    );
}

#[test]
fn a_bad_value_is_described_never_echoed() {
    // Pasted into the wrong field, a secret must not come back on the terminal or in CI logs.
    let p = Project::init(&[]);
    let secret = "EXOabc123SECRETdef456";
    for (from, to) in [
        ("\"203.0.113.10\"", format!("\"{secret}\"")),
        ("zone = \"ch-gva-2\"", format!("zone = \"{secret}\"")),
        ("disk_gb = 20", format!("disk_gb = \"{secret}\"")),
    ] {
        let err = refused(&p, |t| t.replace(from, &to));
        assert!(
            !err.contains("SECRET"),
            "{from}: the value was echoed:\n{err}"
        );
        std::fs::write(
            p.config(),
            std::fs::read_to_string(p.config())
                .unwrap()
                .replace(&to, from),
        )
        .unwrap();
    }
}

/// A key id pasted where a name, a table, a schedule or a path goes (issue 29, item 4).
const PASTED: &str = "EXOabc123PASTEDdef456";

#[test]
fn nothing_pasted_into_the_file_comes_back_in_a_message() {
    let p = Project::init(&[]);
    let original = std::fs::read_to_string(p.config()).unwrap();
    for (from, to) in [
        ("[swap]", format!("[swap] {PASTED}")),
        ("[swap]", format!("[{PASTED}]\nx = 1\n[swap]")),
        ("[swap]", format!("[swap.{PASTED}]\n[swap]")),
        (
            "zone = \"ch-gva-2\"",
            format!("zone = \"ch-gva-2\"\n{PASTED} = 1"),
        ),
        (
            "on_rollback = \"keep\"",
            format!("on_rollback = \"{PASTED}\""),
        ),
        (
            "schedule = \"* * * * *\"",
            format!("schedule = \"* * * * {PASTED}\""),
        ),
        (
            "schedule = \"* * * * *\"",
            format!("schedule = \"* * * {PASTED} *\""),
        ),
        (
            "schedule = \"* * * * *\"",
            format!("schedule = \"* * 1 * {PASTED}\""),
        ),
        (
            "host_ca = \"keys/host-ca\"",
            format!("host_ca = \"{PASTED}\""),
        ),
    ] {
        let err = refused(&p, |t| t.replacen(from, &to, 1));
        assert!(!err.contains("PASTED"), "{to}: echoed:\n{err}");
        std::fs::write(p.config(), &original).unwrap();
    }
}

#[test]
fn nothing_pasted_into_init_set_comes_back_in_a_message() {
    for set in [
        PASTED.to_string(),
        format!("{PASTED}=1"),
        format!("{PASTED}.key=1"),
        format!("cloud.{PASTED}=1"),
        format!("cloud.zone={PASTED}"),
        format!("swap.on_rollback={PASTED}"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = baton(dir.path(), &["init", "--dir", ".", "--set", &set]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{set}: {err}");
        assert!(err.contains("fix:"), "{set}: {err}");
        assert!(!err.contains("PASTED"), "{set}: echoed:\n{err}");
    }
}

#[test]
fn a_bare_secret_line_is_never_taken_for_a_field_name() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace(
            "zone = \"ch-gva-2\"",
            "zone = \"ch-gva-2\"\nEXOSCALE_API_SECRET Zm9vYmFyLXNlY3JldA",
        )
    });
    assert!(!err.contains("Zm9vYmFy"), "the secret was echoed:\n{err}");
    assert_has(&err, &["field `cloud` (line"]);
}

#[test]
fn a_config_that_is_a_device_or_huge_is_refused_at_once() {
    let p = Project::init(&[]);
    std::fs::remove_file(p.config()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.config()).unwrap();
    let out = p.baton(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(&stderr(&out), &["baton.toml", "not a regular file"]);

    std::fs::remove_file(p.config()).unwrap();
    let f = std::fs::File::create(p.config()).unwrap();
    f.set_len(64 << 20).unwrap(); // sparse: 64 MiB of nothing
    let out = p.baton(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(&stderr(&out), &["baton.toml", "larger than 1024 KiB"]);
}

#[test]
fn a_config_that_is_a_fifo_is_refused_instead_of_hanging() {
    let p = Project::init(&[]);
    std::fs::remove_file(p.config()).unwrap();
    let made = Command::new("mkfifo").arg(p.config()).status().unwrap();
    assert!(made.success());
    // Nothing ever writes to it: opened before it was checked, baton waited forever.
    let mut child = Command::new(BATON)
        .args(["plan"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = common::wait_for("baton to refuse the FIFO", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert_eq!(exited.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_has(&err, &["baton.toml", "not a regular file"]);
}

#[test]
fn a_key_path_that_is_a_directory_gets_no_chmod_advice() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace("host_ca = \"keys/host-ca\"", "host_ca = \"/etc\"")
    });
    assert_has(&err, &["field `ssh.host_ca`", "/etc is not a regular file"]);
    assert!(!err.contains("chmod"), "{err}");
}

#[test]
fn init_with_a_bad_name_writes_nothing_and_a_retry_works() {
    for bad in [
        ["--site", "Not A Name"],
        ["--domain", "not a domain"],
        ["--store", "ftp://x"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["init", "--dir", "."];
        args.extend(bad);
        let out = baton(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_has(&stderr(&out), &["baton.toml", "fix:"]);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{bad:?} left {left:?}");
        ok(baton(dir.path(), &["init", "--dir", "."]));
    }
}

#[test]
fn init_sets_keys_and_keeps_the_templates_comments() {
    let dir = tempfile::tempdir().unwrap();
    ok(baton(
        dir.path(),
        &[
            "init",
            "--dir",
            ".",
            "--set",
            "swap.boot_timeout=3m",
            "--set",
            "bundle.up=make up --now",
            "--set",
            "instance.disk_gb=50",
            "--set",
            "instance.security_groups=[\"web\", \"ssh\"]",
        ],
    ));
    let text = std::fs::read_to_string(dir.path().join("baton.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["swap"]["boot_timeout"].as_str(), Some("3m"));
    assert_eq!(config["bundle"]["up"].as_str(), Some("make up --now"));
    assert_eq!(config["instance"]["disk_gb"].as_integer(), Some(50));
    assert_eq!(
        config["instance"]["security_groups"],
        toml::Value::Array(vec!["web".into(), "ssh".into()])
    );
    assert!(text.contains("# Crontab syntax"), "comments lost:\n{text}");
}

#[test]
fn init_with_a_bad_set_writes_nothing() {
    for (set, says) in [
        ("swap.nope=1", &["swap.nope", "unknown field"][..]),
        ("nope.key=1", &["--set #1", "no table `nope`", "fix:"]),
        ("swap.boot_timeout", &["--set", "no '='", "fix:"]),
        ("instance.disk_gb=lots", &["instance.disk_gb", "fix:"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = baton(dir.path(), &["init", "--dir", ".", "--set", set]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", stderr(&out));
        assert_has(&stderr(&out), says);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{set} left {left:?}");
    }
}

#[test]
fn cron_that_does_not_parse() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace("schedule = \"* * * * *\"", "schedule = \"61 * * * *\"")
    });
    assert_has(&err, &["field `backup.schedule`", "does not parse"]);
    let err = refused(&p, |t| {
        t.replace("schedule = \"61 * * * *\"", "schedule = \"* * * *\"")
    });
    assert_has(
        &err,
        &["field `backup.schedule`", "has 4 fields", "crontab"],
    );
}

#[test]
fn secret_in_the_file_is_refused_without_echoing_it() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace(
            "zone = \"ch-gva-2\"",
            "zone = \"ch-gva-2\"\napi_secret = \"hunter2-VERY-SECRET\"",
        )
    });
    assert_has(
        &err,
        &[
            "field `cloud.api_secret`",
            "looks like a secret",
            "EXOSCALE_API_SECRET",
        ],
    );
    assert!(!err.contains("hunter2"), "the secret leaked into:\n{err}");
}

#[test]
fn syntax_error_names_the_line_without_quoting_it() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace("zone = \"ch-gva-2\"", "token = \"abc-SECRET\" oops")
    });
    let text = std::fs::read_to_string(p.config()).unwrap();
    let line = text.lines().position(|l| l.starts_with("token")).unwrap() + 1;
    assert_has(
        &err,
        &["baton.toml", &format!("field `cloud.token` (line {line})")],
    );
    assert!(!err.contains("abc-SECRET"), "the line was quoted:\n{err}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace("domain = \"blog.example.org\"", "domain = \"not a domain\"")
            .replace("admin_user = \"deploy\"", "admin_user = \"root\"")
            .replace("url = \"s3://baton-blog/prod\"", "url = \"ftp://x\"")
    });
    assert_has(
        &err,
        &[
            "field `site.domain`",
            "field `ssh.admin_user`",
            "field `store.url`",
        ],
    );
}

#[test]
fn missing_config_file_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = baton(dir.path(), &["known-hosts", "-c", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_has(&stderr(&out), &["nope.toml", "baton init"]);
}

#[test]
fn init_refuses_to_overwrite_keys() {
    let p = Project::init(&[]);
    let before: Vec<Vec<u8>> = ["keys/host-ca", "keys/tls-ca.key", "baton.toml"]
        .iter()
        .map(|f| std::fs::read(p.path().join(f)).unwrap())
        .collect();
    // only one key left in place is enough to refuse, and nothing new is written
    std::fs::remove_file(p.path().join("keys/tls-ca.crt")).unwrap();
    let out = p.baton(&["init", "--dir", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert_has(
        &stderr(&out),
        &["refusing to overwrite", "keys/host-ca", "fix:"],
    );
    assert!(
        !p.path().join("keys/tls-ca.crt").exists(),
        "init wrote part of its files"
    );
    let after: Vec<Vec<u8>> = ["keys/host-ca", "keys/tls-ca.key", "baton.toml"]
        .iter()
        .map(|f| std::fs::read(p.path().join(f)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn init_writes_private_keys_owner_only() {
    let p = Project::init(&[]);
    for (file, mode) in [
        ("keys/host-ca", 0o600),
        ("keys/tls-ca.key", 0o600),
        ("keys/admin", 0o600),
    ] {
        let m = std::fs::metadata(p.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file}");
    }
}

#[test]
fn oversized_user_data_names_its_size() {
    let p = Project::init(&[]);
    // Random keys do not compress: 600 of them are well over the API's 32 KiB.
    let keys: Vec<String> = (0..600)
        .map(|i| {
            let k = baton::identity::ssh::generate_key(&format!("k{i}")).unwrap();
            baton::identity::ssh::public_openssh(k.public_key())
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let list = toml::Value::Array(keys.into_iter().map(toml::Value::String).collect()).to_string();
    let err = refused(&p, |t| {
        let start = t.find("authorized_keys = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}authorized_keys = {list}{}", &t[..start], &t[end..])
    });
    assert_has(
        &err,
        &["encoded user-data is", "over the cloud's limit of 32768"],
    );
}

#[test]
fn values_a_swap_could_never_use_are_refused_not_promised() {
    let p = Project::init(&[]);
    for (from, to, field) in [
        ("disk_gb = 20", "disk_gb = 4294967295", "instance.disk_gb"),
        (
            "boot_timeout = \"10m\"",
            "boot_timeout = \"0s\"",
            "swap.boot_timeout",
        ),
        (
            "watch_failures = 3",
            "watch_failures = 0",
            "swap.watch_failures",
        ),
        (
            "watch_interval = \"5s\"",
            "watch_interval = \"10m\"",
            "swap.watch_interval",
        ),
        (
            "keep_previous = \"30m\"",
            "keep_previous = \"30d\"",
            "swap.keep_previous",
        ),
        (
            "on_rollback = \"keep\"",
            "on_rollback = \"maybe\"",
            "swap.on_rollback",
        ),
        // Once a panic (exit 101) in the certificate's time arithmetic.
        (
            "cert_lifetime = \"90d\"",
            "cert_lifetime = \"5000000000y\"",
            "ssh.cert_lifetime",
        ),
    ] {
        let err = refused(&p, |t| t.replace(from, to));
        assert_has(&err, &[&format!("field `{field}`")]);
        std::fs::write(
            p.config(),
            std::fs::read_to_string(p.config())
                .unwrap()
                .replace(to, from),
        )
        .unwrap();
    }
}

#[test]
fn an_authorized_key_with_a_line_break_is_refused() {
    let p = Project::init(&[]);
    let evil = "\\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil mallory";
    let err = refused(&p, |t| {
        let start = t.find("authorized_keys = [\"").unwrap() + "authorized_keys = [\"".len();
        let end = start + t[start..].find('"').unwrap();
        format!("{}{evil}{}", &t[..end], &t[end..])
    });
    assert_has(
        &err,
        &["field `ssh.authorized_keys`", "entry 1", "line break"],
    );
}
