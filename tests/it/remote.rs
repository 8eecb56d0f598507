//! RemoteHost over russh against Debian's sshd on loopback.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::identity::ssh;
use baton::remote::{RemoteError, RemoteHost, SshHost, SshTarget};
use common::sshd::{Sshd, current_user};
use common::*;

struct Fixture {
    dir: tempfile::TempDir,
    port: u16,
    host_key: ssh_key::PrivateKey,
    target: SshTarget,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let host_key = ssh::generate_key("host").unwrap();
    let client = ssh::generate_key("client").unwrap();
    let target = SshTarget {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        user: current_user(),
        host_key: host_key.public_key().clone(),
        client_key: Arc::new(client),
    };
    Fixture {
        dir,
        port,
        host_key,
        target,
    }
}

impl Fixture {
    fn serve(&self, key: &ssh_key::PrivateKey) -> Sshd {
        let authorized = ssh::public_openssh(self.target.client_key.public_key()).unwrap();
        Sshd::start(
            &self.dir.path().join("sshd"),
            self.port,
            &ssh::private_openssh(key).unwrap(),
            None,
            &authorized,
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_lines_and_returns_the_exit_status() {
    let f = fixture();
    let _sshd = f.serve(&f.host_key);
    let host = SshHost::connect(&f.target).await.unwrap();
    let lines = Mutex::new(Vec::new());
    let out = host
        .exec(
            "echo one; echo two; echo oops >&2; printf three; exit 3",
            &|l| lines.lock().unwrap().push(l),
        )
        .await
        .unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(*lines.lock().unwrap(), ["one", "two", "three"]);
    assert_eq!(out.stdout_text(), "one\ntwo\nthree");
    assert_eq!(out.stderr_tail(5), "oops");
    host.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_host_key_is_refused_at_once() {
    let f = fixture();
    let impostor = ssh::generate_key("impostor").unwrap();
    let _sshd = f.serve(&impostor);
    let started = std::time::Instant::now();
    let err = SshHost::connect_until(&f.target, Duration::from_secs(30))
        .await
        .err()
        .expect("connected to an impostor");
    match &err {
        RemoteError::HostKeyMismatch { expected, got, .. } => {
            assert_eq!(*expected, ssh::fingerprint(f.host_key.public_key()));
            assert_eq!(*got, ssh::fingerprint(impostor.public_key()));
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    assert!(err.to_string().contains("refusing to connect"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a mismatch must not be retried until the deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_until_waits_for_a_server_that_is_still_booting() {
    let f = fixture();
    let target = f.target.clone();
    let connecting =
        tokio::spawn(async move { SshHost::connect_until(&target, Duration::from_secs(30)).await });
    // Nothing listens yet; sshd comes up once the client has been refused a few times.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!connecting.is_finished());
    let _sshd = f.serve(&f.host_key);
    let host = connecting.await.unwrap().unwrap();
    assert_eq!(
        host.exec("echo up", &|_| {}).await.unwrap().stdout_text(),
        "up\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_gives_up_at_the_deadline() {
    let f = fixture();
    let err = SshHost::connect_until(&f.target, Duration::from_secs(2))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
}
