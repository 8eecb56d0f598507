//! Host certificates against OpenSSH itself: `ssh-keygen -L` reads them, a real `sshd`
//! serves them, and a real `ssh` whose known_hosts is nothing but `baton known-hosts`
//! logs in without a prompt, and refuses every certificate it should.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use baton::identity::ssh::{self, HostCertRequest};
use common::sshd::Sshd;
use common::*;

/// A client key pair for the test user, made by the real ssh-keygen.
fn client_key(dir: &Path) -> PathBuf {
    let key = dir.join("client");
    let out = Command::new(require("ssh-keygen", "openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-client", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    ok(out);
    key
}

/// A project whose Elastic IP is 127.0.0.1 and whose sshd port is free.
fn project(port: u16, client: &Path) -> Project {
    Project::init(&[
        "--address",
        "127.0.0.1",
        "--ssh-port",
        &port.to_string(),
        "--authorized-key",
        &format!("{}.pub", client.display()),
    ])
}

/// Serves the host key and certificate with the client's key authorized.
fn serve(dir: &Path, port: u16, host_key: &str, cert: &str, client: &Path) -> Sshd {
    let authorized = std::fs::read_to_string(format!("{}.pub", client.display())).unwrap();
    Sshd::start(dir, port, host_key, Some(cert), &authorized)
}

/// A real ssh: strict host key checking, known_hosts from `baton known-hosts` only.
fn ssh_login(known_hosts: &Path, client: &Path, port: u16, host: &str) -> Output {
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    Command::new(require("ssh", "openssh-client"))
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-i")
        .arg(client)
        .args([
            "-p",
            &port.to_string(),
            "-l",
            user.trim(),
            host,
            "echo",
            "logged-in",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The host private key the user-data carries (what the server's sshd would get).
fn rendered_host_key(out: &Path) -> String {
    user_data(out)["ssh_keys"]["ed25519_private"]
        .as_str()
        .unwrap()
        .to_string()
}

fn known_hosts(p: &Project) -> PathBuf {
    let path = p.path().join("known_hosts");
    std::fs::write(&path, ok(p.baton(&["known-hosts"]))).unwrap();
    path
}

fn assert_refused(out: &Output, why: &str) {
    assert!(!out.status.success(), "ssh logged in although {why}");
    assert!(!stdout(out).contains("logged-in"));
    assert!(
        stderr(out).contains("Host key verification failed"),
        "{why}: {}",
        stderr(out)
    );
}

#[test]
fn ssh_keygen_reads_the_host_certificate() {
    let p = Project::init(&[]);
    let out = p.render(7);
    let listing = Command::new(require("ssh-keygen", "openssh-client"))
        .arg("-L")
        .arg("-f")
        .arg(out.join("ssh_host_ed25519_key-cert.pub"))
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = ok(listing);
    assert!(
        text.contains("Type: ssh-ed25519-cert-v01@openssh.com host certificate"),
        "{text}"
    );
    assert!(
        text.contains("Key ID: \"baton site=blog generation=7 instance=blog-7\""),
        "{text}"
    );
    assert!(text.contains("Serial: 7"), "{text}");
    let principals: Vec<&str> = text
        .split("Principals:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("                "))
        .map(str::trim)
        .collect();
    assert_eq!(principals, ["203.0.113.10", "blog.example.org", "blog-7"]);
    let ca = std::fs::read_to_string(p.path().join("keys/host-ca.pub")).unwrap();
    let ca_fp = ssh::fingerprint(&ssh_key::PublicKey::from_openssh(ca.trim()).unwrap());
    assert!(
        text.contains(&format!("Signing CA: ED25519 {ca_fp}")),
        "{text}"
    );

    // Valid from five minutes ago for the configured 90 days.
    let valid = text
        .lines()
        .find(|l| l.trim_start().starts_with("Valid:"))
        .unwrap();
    let parts: Vec<&str> = valid.split_whitespace().collect(); // Valid: from A to B
    let parse = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
    };
    let now = chrono::Utc::now();
    let from = (now - parse(parts[2])).num_seconds();
    let to = (parse(parts[4]) - now).num_seconds();
    assert!(
        (290..=330).contains(&from),
        "valid from {from}s ago: {valid}"
    );
    assert!(
        (90 * 86400 - 30..=90 * 86400).contains(&to),
        "valid for {to}s more: {valid}"
    );
}

#[test]
fn ssh_logs_in_to_every_generation_with_one_unchanging_known_hosts_line() {
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let client = client_key(work.path());
    let p = project(port, &client);
    let kh = known_hosts(&p);
    let kh_before = std::fs::read(&kh).unwrap();
    for generation in 1..=2 {
        let out = p.render(generation);
        let cert = std::fs::read_to_string(out.join("ssh_host_ed25519_key-cert.pub")).unwrap();
        let sshd_dir = p.path().join(format!("sshd-{generation}"));
        std::fs::create_dir(&sshd_dir).unwrap();
        let _sshd = serve(&sshd_dir, port, &rendered_host_key(&out), &cert, &client);
        let login = ssh_login(&kh, &client, port, "127.0.0.1");
        assert!(
            login.status.success(),
            "generation {generation}: {}",
            stderr(&login)
        );
        assert_eq!(stdout(&login).trim(), "logged-in");
    }
    assert_eq!(
        std::fs::read(&kh).unwrap(),
        kh_before,
        "known_hosts must never change"
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let client = client_key(work.path());
    let trusted = project(port, &client);
    let other = project(port, &client);
    let out = other.render(1);
    let cert = std::fs::read_to_string(out.join("ssh_host_ed25519_key-cert.pub")).unwrap();
    let _sshd = serve(work.path(), port, &rendered_host_key(&out), &cert, &client);
    assert_refused(
        &ssh_login(&known_hosts(&trusted), &client, port, "127.0.0.1"),
        "the CA is not trusted",
    );
}

/// Signs a certificate with the project's CA, but with the given principals and window.
fn custom_cert(
    p: &Project,
    principals: &[&str],
    from: SystemTime,
    to: SystemTime,
) -> (String, String) {
    let config = p.load();
    let ca = ssh::load_private(&config.host_ca_key(), "ca", "test").unwrap();
    let host = ssh::generate_key("host").unwrap();
    let req = HostCertRequest {
        key_id: "test".into(),
        serial: 1,
        principals: principals.iter().map(|s| s.to_string()).collect(),
        valid_after: from,
        valid_before: to,
    };
    let cert = ssh::sign_host_certificate(&ca, host.public_key(), &req).unwrap();
    (
        ssh::private_openssh(&host).unwrap().to_string(),
        ssh::certificate_openssh(&cert).unwrap(),
    )
}

#[test]
fn expired_certificate_is_refused() {
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let client = client_key(work.path());
    let p = project(port, &client);
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let (key, cert) = custom_cert(&p, &["127.0.0.1"], now - 2 * day, now - day);
    let _sshd = serve(work.path(), port, &key, &cert, &client);
    assert_refused(
        &ssh_login(&known_hosts(&p), &client, port, "127.0.0.1"),
        "the certificate expired",
    );
}

#[test]
fn name_outside_the_principals_is_refused() {
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let client = client_key(work.path());
    let p = project(port, &client);
    let now = SystemTime::now();
    // Valid, from the right CA, but not for the address we connect to.
    let (key, cert) = custom_cert(
        &p,
        &["blog.example.org", "blog-1"],
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let _sshd = serve(work.path(), port, &key, &cert, &client);
    assert_refused(
        &ssh_login(&known_hosts(&p), &client, port, "127.0.0.1"),
        "127.0.0.1 is not a principal",
    );
    // The control: the same CA and setup with the right principal logs in.
    drop(_sshd);
    let (key, cert) = custom_cert(
        &p,
        &["127.0.0.1"],
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let work2 = tempfile::tempdir().unwrap();
    let _sshd = serve(work2.path(), port, &key, &cert, &client);
    let login = ssh_login(&known_hosts(&p), &client, port, "127.0.0.1");
    assert!(login.status.success(), "{}", stderr(&login));
}
