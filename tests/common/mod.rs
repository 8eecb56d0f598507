//! Helpers shared by the integration tests: a project made by the real `baton init`, the
//! real binary, and the real peers (sshd, ssh, ssh-keygen, cloud-init, nft).
#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod exosim;
#[cfg(feature = "aws")]
pub mod moto;
pub mod prom;
pub mod rehearsal;
pub mod s3;
pub mod sshd;

pub const BATON: &str = env!("CARGO_BIN_EXE_baton");

/// The store as the operator's side of the project in `project` sees it: the operator's
/// objects (state.json, journals, the lock) signed with its host CA key, as every baton
/// command on that side signs them (`baton::store::sealed`). What a test plants through
/// it is what baton itself could have written; what it plants beside it is not.
pub fn operator_store(
    project: &Path,
    store: std::sync::Arc<dyn baton::store::ObjectStore>,
) -> std::sync::Arc<dyn baton::store::ObjectStore> {
    let ca = baton::identity::ssh::load_private(&project.join("keys/host-ca"), "the CA", "")
        .expect("the project's host CA");
    std::sync::Arc::new(baton::store::sealed::Sealed::signing(store, ca))
}

/// `value` signed as the operator's object at `key`, for a test that writes the store's
/// files directly.
pub fn sealed_json(project: &Path, key: &str, value: &serde_json::Value) -> Vec<u8> {
    let ca = baton::identity::ssh::load_private(&project.join("keys/host-ca"), "the CA", "")
        .expect("the project's host CA");
    baton::store::sealed::seal(key, &serde_json::to_vec(value).unwrap(), &ca).unwrap()
}

/// An instance of `site`'s `generation` as baton's swap would label it, for a test that
/// makes servers in exosim by hand.
pub fn instance_spec(name: &str, site: &str, generation: u64) -> baton::cloud::InstanceSpec {
    baton::cloud::InstanceSpec {
        name: name.into(),
        labels: std::collections::BTreeMap::from([
            ("baton.site".into(), site.into()),
            ("baton.generation".into(), generation.to_string()),
        ]),
        template: "Linux Debian 13 (Trixie) 64-bit".into(),
        instance_type: "standard.small".into(),
        disk_gb: 20,
        security_groups: vec!["web".into()],
        ssh_key: None,
        user_data: baton::cloudinit::encode("#cloud-config\n")
            .unwrap()
            .to_string(),
        member: 0,
    }
}

/// Runs baton with `args` in `dir`, with no operator secrets in the environment.
pub fn baton(dir: &Path, args: &[&str]) -> Output {
    Command::new(BATON)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir) // never the developer's own ~/.ssh
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("run baton")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}):\n{}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A project directory made by `baton init` with `extra` flags.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn init(extra: &[&str]) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["init", "--dir", "."];
        args.extend_from_slice(extra);
        ok(baton(dir.path(), &args));
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("baton.toml")
    }

    pub fn baton(&self, args: &[&str]) -> Output {
        baton(self.path(), args)
    }

    /// Renders `generation` into `out/gen-N` and returns that directory.
    pub fn render(&self, generation: u64) -> PathBuf {
        let out = self.path().join(format!("out/gen-{generation}"));
        ok(self.baton(&[
            "render",
            "--generation",
            &generation.to_string(),
            "--out",
            out.to_str().unwrap(),
        ]));
        out
    }

    pub fn load(&self) -> baton::config::Config {
        baton::config::Config::load(&self.config()).expect("config loads")
    }
}

/// The rendered user-data as a YAML value.
pub fn user_data(out: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(out.join("user-data")).unwrap();
    serde_norway::from_str(&text).expect("user-data is YAML")
}

/// Requires a program from Debian's packages; `.ci/run` installs them all.
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} is missing: install Debian's {package} (`.ci/run` does)");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics naming `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process killed when the test ends; its log is printed if the test failed.
pub struct Running(pub std::process::Child, pub PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "{}:\n{}",
                self.1.display(),
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

/// A `file://` object store under `dir`, with the runtime its calls are made on.
pub fn file_store(
    dir: &Path,
) -> (
    tokio::runtime::Runtime,
    std::sync::Arc<dyn baton::store::ObjectStore>,
) {
    let config = baton::store::Settings {
        url: format!("file://{}", dir.display()),
        endpoint: None,
        region: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(baton::store::open_with(&config, &|_| None))
        .unwrap();
    (rt, store)
}

/// `crash_tests!` for every step of the swap, in its order.
#[allow(unused_macros)]
macro_rules! swap_crash_matrix {
    () => {
        crash_tests! {
            crash_after_prepare => "prepare",
            crash_after_register_key => "register-key",
            crash_after_retire_kept => "retire-kept",
            crash_after_create => "create",
            crash_after_wait => "wait",
            crash_after_up => "up",
            crash_after_health => "health",
            crash_after_hand_over => "hand-over",
            crash_after_attach_address => "attach-address",
            crash_after_verify_address => "verify-address",
            crash_after_detach_old => "detach-old",
            crash_after_commit => "commit",
            crash_after_clean_up => "clean-up",
            crash_after_watch => "watch",
            crash_after_retire => "retire",
        }
    };
}

/// One test per step: `crash_tests! { name => "step", ... }` runs `crash_after("step")`,
/// the calling file's crash-and-recover check.
#[allow(unused_macros)]
macro_rules! crash_tests {
    ($($name:ident => $step:literal),* $(,)?) => {
        $(#[test] fn $name() { crash_after($step) })*
    };
}
