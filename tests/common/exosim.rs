//! A real exosim process for tests, and a client tuned to test speeds.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use baton::cloud::exoscale::retry::RetryPolicy;
use baton::cloud::exoscale::{Credentials, ExoscaleClient, Timing};
use serde_json::Value;

pub const KEY: &str = "EXOtest0123456789abcdef01";
pub const SECRET: &str = "test-secret-DO-NOT-PRINT-0123456789abcdefg";

/// exosim's binary. Its own crate's tests get it from cargo; baton's tests find it in the
/// same target directory, where `cargo test` (exosim is a default member) builds it for
/// exosim's tests.
pub fn binary() -> std::path::PathBuf {
    if let Some(exe) = option_env!("CARGO_BIN_EXE_exosim") {
        return exe.into();
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/exosim
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps")
        .join("exosim");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p exosim` (`cargo test` in the workspace does)",
        path.display()
    );
    path
}

/// The address a server names on its first line `PREFIX ADDRESS` (reading it is the
/// readiness check). Here, not in mod.rs: exosim's own tests include this file alone.
pub fn first_line_address(child: &mut Child, prefix: &str) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

pub struct Exosim {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Drop for Exosim {
    /// SIGTERM first, as a service manager stops it: exosim then removes its temporary
    /// directory of decoded user-data (every instance's private keys), which SIGKILL
    /// left behind in /tmp, one directory per test. SIGKILL after a deadline.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exosim {
    pub fn start(extra: &[&str]) -> Exosim {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, String)]) -> Exosim {
        let mut child = Command::new(binary())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--key",
                KEY,
                "--secret",
                SECRET,
                "--operation-delay",
                "50ms",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start exosim");
        let url = first_line_address(&mut child, "exosim: listening on ");
        Exosim {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    fn base(&self) -> String {
        self.url.trim_end_matches("/v2").to_string()
    }

    pub async fn state(&self) -> Value {
        self.http
            .get(format!("{}/_sim/state", self.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn config(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/config", self.base()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    pub fn client(&self) -> ExoscaleClient {
        self.client_with(Credentials::new(KEY, SECRET))
    }

    pub fn client_with(&self, creds: Credentials) -> ExoscaleClient {
        ExoscaleClient::new(&self.url, creds, fast_timing()).unwrap()
    }
}

pub fn fast_timing() -> Timing {
    Timing {
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(15),
        },
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        operation_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(10),
    }
}
