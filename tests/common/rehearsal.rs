//! A swap rehearsal on this machine: exosim with loopback VMs behind it (scripts/loopback-vm:
//! real sshd with the user-data's host key, real `baton restore`, real Prometheus and an
//! HTTPS stack), the Elastic IP forwarded to whoever holds it, a file store, and a project
//! made by `baton init`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use super::exosim::{Exosim, KEY, SECRET};
use super::moto::Moto;
use super::{BATON, free_port, ok, require, stderr};

/// The cloud a rehearsal runs against.
pub enum Backend {
    Exosim(Exosim),
    /// moto, and whether the front is an ALB target group (else an Elastic IP).
    Moto {
        moto: Moto,
        alb: bool,
    },
}

pub struct Rehearsal {
    pub dir: tempfile::TempDir,
    pub cloud: Backend,
    pub net: String,
    pub eip: String,
    pub ssh_port: u16,
    pub site: PathBuf,
    pub vms: PathBuf,
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        // Power off whatever is left (a failed test): the hook stops its processes.
        if let Ok(entries) = std::fs::read_dir(&self.vms) {
            for e in entries.flatten() {
                if e.path().join("instance.json").exists() {
                    let _ = Command::new(scripts().join("loopback-vm"))
                        .args(["delete", &e.file_name().to_string_lossy(), "-", "-"])
                        .env("LOOPBACK_VM_DIR", &self.vms)
                        .output();
                }
            }
        }
    }
}

/// What every rehearsal stands on, whatever the cloud: a directory, a /24 of loopback of
/// its own (tests run side by side), sshd's port and the machines' directory.
struct Ground {
    dir: tempfile::TempDir,
    net: String,
    ssh_port: u16,
    vms: PathBuf,
}

impl Ground {
    /// `base`: the second octet's range (each cloud its own, so they never share a /24).
    fn new(base: u32) -> Ground {
        require("sshd", "openssh-server");
        require("prometheus", "prometheus");
        require("sudo", "sudo");
        let dir = tempfile::tempdir().unwrap();
        let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let net = format!("127.{}.{}", base + std::process::id() % 50, 10 + n);
        let vms = dir.path().join("vms");
        std::fs::create_dir_all(&vms).unwrap();
        Ground {
            dir,
            net,
            ssh_port: free_port(),
            vms,
        }
    }

    /// The project made by scripts/loopback-site with `site_args`, `baton init`'s
    /// `init` args, a file store, and its content published.
    fn published(
        self,
        cloud: Backend,
        address: String,
        site_args: &[&str],
        init: &[&str],
    ) -> Rehearsal {
        let site = self.dir.path().join("site");
        let store = self.dir.path().join("store");
        // A small stand-in for the binary the server would download: the loopback VMs
        // run the local baton, so uploading 300 MB of debug build per test buys nothing.
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("agent-binary"), b"#!/bin/sh\nexit 0\n").unwrap();
        ok(Command::new(scripts().join("loopback-site"))
            .arg(BATON)
            .arg(&site)
            .args(["--boot-timeout", "40s", "--health-timeout", "15s"])
            .args(["--handover-timeout", "60s"])
            .args(site_args)
            .args(["--agent-binary", "agent-binary", "--"])
            .args(init)
            .args(["--ssh-port", &self.ssh_port.to_string()])
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .output()
            .unwrap());
        let r = Rehearsal {
            dir: self.dir,
            cloud,
            net: self.net,
            eip: address,
            ssh_port: self.ssh_port,
            site,
            vms: self.vms,
        };
        ok(r.command(&["publish"]).output().unwrap());
        r
    }
}

impl Rehearsal {
    pub fn start() -> Rehearsal {
        Rehearsal::start_with(&[])
    }

    /// With more of scripts/loopback-site's options, e.g. `["--watch", "30s"]`.
    pub fn start_with(site_args: &[&str]) -> Rehearsal {
        let ground = Ground::new(100);
        let eip = format!("{}.2", ground.net);
        let vm = scripts().join("loopback-vm");
        let exosim = Exosim::start_with_env(
            &[
                "--eip",
                &eip,
                "--forward",
                "443",
                "--forward",
                &ground.ssh_port.to_string(),
                "--on-create",
                &format!("{} create", vm.display()),
                "--on-delete",
                &format!("{} delete", vm.display()),
            ],
            &[
                ("LOOPBACK_VM_DIR", ground.vms.display().to_string()),
                ("LOOPBACK_VM_BATON", BATON.to_string()),
                ("LOOPBACK_VM_NET", ground.net.clone()),
            ],
        );
        let url = exosim.url.clone();
        let init = ["--address", &eip, "--cloud-endpoint", &url];
        ground.published(Backend::Exosim(exosim), eip.clone(), site_args, &init)
    }

    /// The same rehearsal on AWS as moto models it (scripts/moto-rehearsal): loopback
    /// machines behind moto's instances, and the front an Elastic IP or (`alb`) a target
    /// group with a stand-in load balancer.
    pub fn start_aws(alb: bool) -> Rehearsal {
        let ground = Ground::new(200);
        let lb = format!("{}.1", ground.net);
        let port = ground.ssh_port.to_string();
        let vm = scripts().join("loopback-vm").display().to_string();
        let mut extra = vec![
            "--net",
            &ground.net,
            "--forward",
            "443",
            "--forward",
            &port,
            "--vm",
            &vm,
        ];
        if alb {
            extra.extend(["--alb-address", &lb]);
        }
        let moto = Moto::start(
            &extra,
            &[
                ("LOOPBACK_VM_DIR", ground.vms.display().to_string()),
                ("LOOPBACK_VM_BATON", BATON.to_string()),
            ],
        );
        let (subnet, eip, group) = super::moto::account(&moto, alb);
        let address = if alb { lb.clone() } else { eip };
        let mut init = vec![
            "--cloud".to_string(),
            "aws".into(),
            "--region".into(),
            super::moto::REGION.into(),
            "--subnet".into(),
            subnet,
            "--address".into(),
            address.clone(),
            "--cloud-endpoint".into(),
            moto.url.clone(),
        ];
        if let Some(arn) = group {
            init.extend(["--front".into(), "alb".into(), "--target-group".into(), arn]);
        }
        let init: Vec<&str> = init.iter().map(String::as_str).collect();
        // An AMI moto knows, by name and owner as an operator may name one.
        let site_args = [
            "--template",
            "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721",
            "--set",
            "instance.image_owner=amazon",
        ];
        ground.published(Backend::Moto { moto, alb }, address, &site_args, &init)
    }

    pub fn exosim(&self) -> &Exosim {
        match &self.cloud {
            Backend::Exosim(e) => e,
            Backend::Moto { .. } => panic!("this rehearsal runs on moto"),
        }
    }

    pub fn moto(&self) -> &Moto {
        match &self.cloud {
            Backend::Moto { moto, .. } => moto,
            Backend::Exosim(_) => panic!("this rehearsal runs on exosim"),
        }
    }

    /// baton's own client for the rehearsal's cloud, as the swap makes it.
    pub fn client(&self) -> std::sync::Arc<dyn baton::cloud::Cloud> {
        match &self.cloud {
            Backend::Exosim(e) => std::sync::Arc::new(e.client()),
            Backend::Moto { moto, .. } => {
                let config = baton::config::Config::load(&self.config()).unwrap();
                let baton::cloud::Provider::Aws(settings) = config.provider() else {
                    panic!("a moto rehearsal's site is on AWS");
                };
                std::sync::Arc::new(
                    rt().block_on(baton::cloud::aws::AwsClient::with_credentials(
                        baton::cloud::aws::Settings {
                            endpoint: Some(moto.url.clone()),
                            ..settings
                        },
                        super::moto::KEY,
                        super::moto::SECRET,
                    ))
                    .unwrap(),
                )
            }
        }
    }

    pub fn config(&self) -> PathBuf {
        self.site.join("baton.toml")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Rewrites baton.toml; the edit must change something.
    pub fn edit(&self, f: impl FnOnce(&str) -> String) {
        let before = std::fs::read_to_string(self.config()).unwrap();
        let after = f(&before);
        assert_ne!(before, after, "the edit changed nothing");
        std::fs::write(self.config(), after).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BATON);
        c.args(args)
            .arg("-c")
            .arg(self.config())
            .env_remove("BATON_FAILPOINT_CRASH_AFTER");
        match &self.cloud {
            Backend::Exosim(_) => {
                c.env("EXOSCALE_API_KEY", KEY)
                    .env("EXOSCALE_API_SECRET", SECRET);
            }
            Backend::Moto { .. } => {
                c.envs(Moto::env());
            }
        }
        c
    }

    pub fn baton(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `baton swap --json ARGS`, its summary, and the whole output.
    pub fn swap(&self, args: &[&str]) -> (Output, Value) {
        let mut a = vec!["swap", "--json"];
        a.extend_from_slice(args);
        let out = self.baton(&a);
        let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, summary)
    }

    /// The cloud's state in exosim's shape (instances, elastic-ips with their holders,
    /// ssh-keys, violations), whichever the cloud: the end-state checks read it alike.
    /// On moto with an ALB front, the target group's targets are the "holders".
    pub fn sim(&self) -> Value {
        match &self.cloud {
            Backend::Exosim(e) => rt().block_on(e.state()),
            Backend::Moto { moto, alb } => {
                let s = moto.state();
                let holders: Vec<Value> = if *alb {
                    s["target-groups"][0]["targets"].as_array().unwrap().clone()
                } else {
                    s["addresses"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|a| a["instance"].as_str().map(|i| json!(i)))
                        .collect()
                };
                json!({
                    "instances": s["instances"],
                    "elastic-ips": [{ "instances": holders }],
                    "ssh-keys": s["key-pairs"],
                    "violations": s["violations"],
                    "calls": s["calls"],
                })
            }
        }
    }

    /// Makes the `nth` next call of `op` answer with `action` (exosim's fault syntax).
    pub fn inject(&self, op: &str, action: &str) {
        let calls = self.sim()["calls"][op].as_u64().unwrap_or(0);
        rt().block_on(
            self.exosim()
                .config(json!({ "faults": [format!("{op}:{}:{action}", calls + 1)] })),
        );
    }

    /// Changes how the next VM boots (see scripts/loopback-vm).
    pub fn next_vm(&self, behaviour: Value) {
        std::fs::write(self.vms.join("next.json"), behaviour.to_string()).unwrap();
    }

    pub fn site_state(&self) -> Option<Value> {
        std::fs::read(self.store().join("state.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    pub fn active(&self) -> (u64, String) {
        let s = self.site_state().expect("state.json exists");
        (
            s["active"]["generation"].as_u64().unwrap(),
            s["active"]["instance"].as_str().unwrap().to_string(),
        )
    }

    /// The generation that answers HTTPS through the Elastic IP, checked with curl against
    /// the project's TLS CA (a fresh connection each time).
    pub fn generation_via_address(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(self.site.join("keys/tls-ca.crt"))
            .args([
                "--resolve",
                &format!("blog.example.org:443:{}", self.eip),
                "https://blog.example.org/.well-known/baton",
            ])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }

    /// Everything that says generation `generation` on `instance` serves, and nothing else
    /// is left: one instance, the address on it alone, no provisioning key, lock released,
    /// no unfinished journal, the site answering through the address.
    pub fn assert_serving(&self, generation: u64, instance: &str) {
        self.assert_serving_keeping(generation, instance, &[]);
    }

    /// As [`Rehearsal::assert_serving`], with `kept` instances (a previous generation, a
    /// rolled back one) still there on purpose.
    pub fn assert_serving_keeping(&self, generation: u64, instance: &str, kept: &[&str]) {
        assert_eq!(self.active(), (generation, instance.to_string()));
        let sim = self.sim();
        let mut instances: Vec<&str> = sim["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        instances.sort();
        let mut expected = vec![instance];
        expected.extend_from_slice(kept);
        expected.sort();
        assert_eq!(instances, expected, "instances in exosim");
        let holders: Vec<&str> = sim["elastic-ips"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["instances"].as_array().unwrap())
            .map(|i| i.as_str().unwrap())
            .collect();
        assert_eq!(holders, vec![instance], "Elastic IP holders");
        let keys: Vec<&str> = sim["ssh-keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .filter(|n| n.starts_with("baton-"))
            .collect();
        assert!(keys.is_empty(), "provisioning keys left: {keys:?}");
        if let Backend::Moto { .. } = self.cloud {
            // Every EC2/ELBv2 request so far, held to botocore's service models.
            assert_eq!(sim["violations"], json!([]), "requests AWS would refuse");
        }
        let status: Value = serde_json::from_str(&ok(self.baton(&["status", "--json"]))).unwrap();
        assert_eq!(status["lock"], Value::Null, "lock still held: {status}");
        assert_eq!(status["unfinished"], json!([]), "{status}");
        assert_eq!(status["orphans"], json!([]), "{status}");
        assert_eq!(self.generation_via_address(), generation.to_string());
    }

    pub fn vm_root(&self, instance: &str) -> PathBuf {
        self.vms.join(instance)
    }

    /// Creates an instance behind baton's back, booting generation `generation`'s
    /// user-data, with `labels` in place of the site's when given (someone else's VM).
    pub fn plant_instance(
        &self,
        generation: u64,
        labels: Option<std::collections::BTreeMap<String, String>>,
    ) -> baton::cloud::Instance {
        let out = self.dir.path().join(format!("render-{generation}"));
        ok(self.baton(&[
            "render",
            "--generation",
            &generation.to_string(),
            "--out",
            out.to_str().unwrap(),
        ]));
        let config = baton::config::Config::load(&self.config()).unwrap();
        let mut spec = baton::cloud::InstanceSpec {
            user_data: std::fs::read_to_string(out.join("user-data.b64")).unwrap(),
            ..config.instance_spec(generation)
        };
        if let Some(labels) = labels {
            spec.labels = labels;
            spec.name = format!("not-baton-{generation}");
        }
        rt().block_on(self.client().create_instance(&spec)).unwrap()
    }

    /// Runs `baton ARGS` that dies (like `kill -9`) right after `step` is journalled.
    pub fn crash(&self, args: &[&str], step: &str) {
        let crashed = self
            .command(args)
            .env("BATON_FAILPOINT_CRASH_AFTER", step)
            .output()
            .unwrap();
        assert!(
            crashed.status.code().is_none(),
            "did not crash: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
    }
}

/// The time of the newest sample of `up` at `time` (default now) on the Prometheus at `ip`.
pub fn prom_up_at(ip: &str, time: Option<f64>) -> Option<f64> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "3", "--get"])
        .arg(format!("http://{ip}:9090/api/v1/query"))
        .args(["--data-urlencode", "query=timestamp(up)"]);
    if let Some(t) = time {
        cmd.args(["--data-urlencode", &format!("time={t}")]);
    }
    let v: Value = serde_json::from_slice(&cmd.output().ok()?.stdout).ok()?;
    let sample_time: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
    // With a time given, only that very sample counts.
    if time.is_some_and(|t| (t - sample_time).abs() > 1e-6) {
        return None;
    }
    Some(sample_time)
}

/// What the swap tests of every cloud check alike.
impl Rehearsal {
    /// A first deploy, checked; returns the rehearsal and the instance.
    pub fn deployed(self) -> (Rehearsal, String) {
        let (out, summary) = self.swap(&[]);
        assert!(out.status.success(), "first deploy: {}", stderr(&out));
        assert_eq!(summary["generation"], 1);
        let instance = summary["instance"].as_str().unwrap().to_string();
        self.assert_serving(1, &instance);
        (self, instance)
    }

    /// The object names under the store's artifacts/.
    pub fn artifacts(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join("artifacts"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The swap fails at `step`; everything must be as before it started.
    pub fn fails_cleanly(&self, old: &str, step: &str, why: &str) -> Value {
        let state_before = std::fs::read(self.store().join("state.json")).unwrap();
        let artifacts_before = self.artifacts();
        let (out, summary) = self.swap(&[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("failed at {step}")), "{err}");
        assert!(err.contains(why), "expected {why:?} in:\n{err}");
        assert!(err.contains("the old server serves as before"), "{err}");
        assert_eq!(summary["outcome"], "undone");
        self.assert_serving(1, old);
        assert_eq!(
            std::fs::read(self.store().join("state.json")).unwrap(),
            state_before,
            "state.json changed"
        );
        assert_eq!(self.artifacts(), artifacts_before, "artifacts left behind");
        summary
    }

    /// A changed bundle whose upload the store refuses (a directory where its object
    /// goes): a real failure inside the prepare step. Returns the bundle's hash.
    pub fn block_the_next_bundle(&self) -> String {
        let stack = self.config().parent().unwrap().join("stack");
        std::fs::write(stack.join("changed.txt"), "a new release").unwrap();
        let out = ok(self.baton(&[
            "bundle",
            "--out",
            &self.dir.path().join("b.zip").display().to_string(),
        ]));
        let sha = out.trim().to_string();
        std::fs::create_dir_all(self.store().join("artifacts").join(&sha).join("in-the-way"))
            .unwrap();
        sha
    }

    /// A swap whose deletion of the old instance fails (the fault set up by the caller):
    /// past the commit it is not undone, exits 3 naming the leftover, and `baton gc`
    /// finishes it.
    pub fn leaves_the_old_for_gc(&self, old: &str) {
        let r = self;
        let (out, summary) = r.swap(&[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains("needs attention"), "{err}");
        assert!(err.contains(old), "{err}");
        let new = summary["instance"].as_str().unwrap().to_string();
        assert_eq!(r.active(), (2, new.clone()));
        let leftovers = r.site_state().unwrap()["leftovers"].clone();
        assert_eq!(leftovers[0]["kind"], "instance", "{leftovers}");
        assert_eq!(leftovers[0]["name"], old, "{leftovers}");
        assert_eq!(leftovers[0]["generation"], 1, "{leftovers}");
        assert!(
            ok(r.baton(&["status"])).contains(&format!("leftover: instance {old} (generation 1)")),
            "status names the leftover"
        );
        // Not unfinished: a new swap or gc may run. gc deletes the old instance, and with
        // it the record of the leftover.
        ok(r.baton(&["gc"]));
        r.assert_serving(2, &new);
        assert_eq!(r.site_state().unwrap()["leftovers"], json!([]));
        assert!(!ok(r.baton(&["status"])).contains("leftover"));
    }

    /// `bundle.up` fails after starting the stack, as a failed image pull would.
    pub fn break_the_next_up(&self) {
        self.edit(|t| {
            t.replace(
                "up = \"python3 loopback-stack start\"",
                "up = \"python3 loopback-stack start && echo pull failed >&2 && exit 4\"",
            )
        });
    }

    /// Stops `instance`'s Prometheus: its final backup cannot be taken.
    pub fn stop_prometheus(&self, instance: &str) {
        let pid =
            std::fs::read_to_string(self.vm_root(instance).join("run/prometheus.pid")).unwrap();
        ok(Command::new("kill").arg(pid.trim()).output().unwrap());
    }

    /// Kills the swap right after `step` is journalled, then `--abort`s it (or, past the
    /// commit, sees abort refused), then crashes a new swap there again and `--resume`s it.
    pub fn crash_after(&self, old: &str, step: &str) {
        let r = self;
        r.crash(&["swap"], step);
        let past_commit = matches!(step, "commit" | "clean-up" | "watch" | "retire");
        let plain = r.baton(&["swap"]);
        assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
        assert!(
            stderr(&plain).contains("did not finish"),
            "{}",
            stderr(&plain)
        );
        if past_commit {
            let abort = r.baton(&["swap", "--abort"]);
            assert_eq!(abort.status.code(), Some(3), "{}", stderr(&abort));
            assert!(
                stderr(&abort).contains("can only be resumed"),
                "{}",
                stderr(&abort)
            );
            let (out, summary) = r.swap(&["--resume"]);
            assert!(out.status.success(), "resume: {}", stderr(&out));
            r.assert_serving(2, summary["instance"].as_str().unwrap());
            return;
        }
        let abort = r.baton(&["swap", "--abort"]);
        assert!(abort.status.success(), "abort: {}", stderr(&abort));
        r.assert_serving(1, old);

        r.crash(&["swap"], step);
        let (out, summary) = r.swap(&["--resume"]);
        assert!(out.status.success(), "resume: {}", stderr(&out));
        r.assert_serving(2, summary["instance"].as_str().unwrap());
    }
}
