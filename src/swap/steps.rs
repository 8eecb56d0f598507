//! The swap's steps (DESIGN.md, "The swap, as a saga"): each an action with its undo,
//! safe to run twice. What a later step or a `--resume` needs goes into [`SwapState`],
//! which the journal stores; secrets never do (the user-data lives in memory only).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::saga::{Step, StepError};
use crate::cloud::{Cloud, InstanceSpec};
use crate::cloudinit::AgentBinary;
use crate::config::Config;
use crate::remote::{Connector, ExecOutput, RemoteHost, SshTarget, quote};
use crate::state::{self, Active};
use crate::store::ObjectStore;
use crate::store::layout;

/// What the journal keeps of a swap.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SwapState {
    pub site: String,
    pub generation: u64,
    /// The provisioning key's name in the cloud.
    pub key_name: String,
    pub elastic_ip_id: String,
    /// The active generation when the swap started; `None` on the first deploy.
    pub old: Option<Active>,
    /// Skip the hand-over (the old server cannot give one).
    pub no_handover: bool,
    pub instance_id: Option<String>,
    pub public_ip: Option<IpAddr>,
    /// The new server's host key (OpenSSH public key): the only one accepted.
    pub host_key: Option<String>,
    pub binary_sha256: Option<String>,
    pub bundle_sha256: Option<String>,
    /// Artifacts this swap put into the store (not those already there).
    pub uploaded: Vec<String>,
}

impl SwapState {
    pub fn labels(&self) -> BTreeMap<String, String> {
        crate::cloud::generation_labels(&self.site, self.generation)
    }
}

/// What the steps share that is not journalled: clients, keys, the user-data.
pub struct Ctx {
    pub config: Config,
    pub cloud: Arc<dyn Cloud>,
    pub store: Arc<dyn ObjectStore>,
    pub connector: Arc<dyn Connector>,
    pub deploy_key: Arc<russh::keys::PrivateKey>,
    /// Set when the deploy lock was taken over: the commit must not happen.
    pub lock_lost: Arc<AtomicBool>,
    /// Detail lines for the progress output (remote output, what is being waited for).
    pub say: Arc<dyn Fn(String) + Send + Sync>,
    user_data: std::sync::Mutex<Option<Zeroizing<String>>>,
}

impl Ctx {
    pub fn new(
        config: Config,
        cloud: Arc<dyn Cloud>,
        store: Arc<dyn ObjectStore>,
        connector: Arc<dyn Connector>,
        deploy_key: russh::keys::PrivateKey,
        say: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Ctx {
        Ctx {
            config,
            cloud,
            store,
            connector,
            deploy_key: Arc::new(deploy_key),
            lock_lost: Arc::new(AtomicBool::new(false)),
            say,
            user_data: std::sync::Mutex::new(None),
        }
    }

    fn target(&self, ip: IpAddr, host_key: &str) -> Result<SshTarget, StepError> {
        let host_key = ssh_key::PublicKey::from_openssh(host_key)
            .map_err(|e| StepError(format!("the recorded host key cannot be read: {e}")))?;
        Ok(SshTarget {
            addr: SocketAddr::new(ip, self.config.ssh.port),
            user: self.config.ssh.admin_user.clone(),
            host_key,
            client_key: self.deploy_key.clone(),
        })
    }

    async fn connect_new(
        &self,
        s: &SwapState,
        timeout: Duration,
    ) -> Result<Box<dyn RemoteHost>, StepError> {
        let (Some(ip), Some(key)) = (s.public_ip, s.host_key.as_deref()) else {
            return Err(StepError(
                "the new instance's address is not known yet".into(),
            ));
        };
        self.connector
            .connect(&self.target(ip, key)?, timeout)
            .await
            .map_err(StepError::new)
    }

    /// Runs `baton ARGS` as root on `host`, its output shown as it comes; fails with the
    /// end of its output unless it succeeds.
    async fn baton(
        &self,
        host: &dyn RemoteHost,
        args: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.root(host, &format!("baton {args}"), timeout).await
    }

    /// Runs a shell `command` as root on `host`, as [`Ctx::baton`] does.
    async fn root(
        &self,
        host: &dyn RemoteHost,
        command: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let say = self.say.clone();
        let out = exec_root(host, command, timeout, &move |l: String| say(l)).await?;
        if out.status == 0 {
            return Ok(());
        }
        let mut tail = out.stderr_tail(8);
        if tail.is_empty() {
            tail = out.stdout_tail(8);
        }
        Err(StepError(format!(
            "`sudo -n {command}` exited with {}: {}",
            out.status,
            tail.trim()
        )))
    }

    /// Renders the new server's identity and user-data (kept in memory, never journalled)
    /// and records its public host key.
    async fn render(&self, s: &mut SwapState) -> Result<(), StepError> {
        let binary = s
            .binary_sha256
            .clone()
            .ok_or_else(|| StepError("the binary is not uploaded yet".into()))?;
        let url = self
            .store
            .download_url(
                &layout::artifact(&binary),
                self.config.swap.boot_timeout + Duration::from_secs(3600),
            )
            .await
            .map_err(StepError::new)?;
        let agent = AgentBinary {
            url,
            sha256: binary,
        };
        let rendered = crate::generation::render(
            &self.config,
            s.generation,
            Some(&agent),
            self.deploy_key.public_key(),
        )
        .map_err(StepError::new)?;
        s.host_key = Some(
            crate::identity::ssh::public_openssh(rendered.host_key.public_key())
                .map_err(StepError::new)?
                .trim_end()
                .to_string(),
        );
        *crate::sync::lock(&self.user_data) = Some(rendered.user_data.encoded.clone());
        Ok(())
    }

    /// The name the health checks ask a new server for (see `identity::tls::origin_name`).
    fn origin(&self) -> String {
        crate::identity::tls::origin_name(&self.config.site.domain)
    }

    fn https(&self, ip: IpAddr) -> Result<reqwest::Client, StepError> {
        let pem = std::fs::read(self.config.tls_ca_cert()).map_err(|e| {
            StepError(format!(
                "cannot read the TLS CA {}: {e}",
                self.config.tls_ca_cert().display()
            ))
        })?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(StepError::new)?;
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&self.origin(), SocketAddr::new(ip, 443))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            // Each probe is a new visitor: a kept-alive connection would stay with
            // whichever server it first reached.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(StepError::new)
    }
}

/// One HTTPS look at the site under `name` (the client resolves it to the server): the
/// generation `/.well-known/baton` names, if `/` also answers 2xx; otherwise what went wrong.
async fn probe(client: &reqwest::Client, name: &str) -> Result<u64, String> {
    let base = format!("https://{name}");
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .map_err(|e| crate::cloud::exoscale::error_chain(&e))?;
    if !page.status().is_success() {
        let status = page.status();
        let body = page.text().await.unwrap_or_default();
        return Err(format!(
            "GET / answered {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    let marker = client
        .get(format!("{base}/.well-known/baton"))
        .send()
        .await
        .map_err(|e| crate::cloud::exoscale::error_chain(&e))?;
    let status = marker.status();
    let body = marker.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("GET /.well-known/baton answered {status}"));
    }
    body.trim().parse().map_err(|_| {
        format!(
            "GET /.well-known/baton answered {:?}, not a generation",
            body.trim()
        )
    })
}

/// Polls until `want` consecutive answers name `generation`, or `timeout`.
async fn until_generation(
    ctx: &Ctx,
    ip: IpAddr,
    generation: u64,
    want: u32,
    timeout: Duration,
) -> Result<(), String> {
    let client = ctx.https(ip).map_err(|e| e.0)?;
    let origin = ctx.origin();
    let start = Instant::now();
    let mut streak = 0;
    loop {
        let last = match probe(&client, &origin).await {
            Ok(g) if g == generation => {
                streak += 1;
                if streak >= want {
                    return Ok(());
                }
                continue;
            }
            Ok(g) => format!("generation {g} answered"),
            Err(e) => e,
        };
        streak = 0;
        if start.elapsed() >= timeout {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `sudo -n COMMAND` on `host` within `timeout` (cloud-init's sudo rule for the admin user).
async fn exec_root(
    host: &dyn RemoteHost,
    command: &str,
    timeout: Duration,
    on_line: &(dyn Fn(String) + Send + Sync),
) -> Result<ExecOutput, StepError> {
    let command = format!("sudo -n {command}");
    tokio::time::timeout(timeout, host.exec(&command, on_line))
        .await
        .map_err(|_| {
            StepError(format!(
                "`{command}` did not finish within {}",
                humantime::format_duration(timeout)
            ))
        })?
        .map_err(StepError::new)
}

/// baton reaches a new server with cloud-init's runcmd, well after sshd answers: this waits
/// for it, or for cloud-init to finish without it (then the end of cloud-init's log says
/// why). `BATON_ROOT` is set only on the loopback rehearsal's servers.
const AWAIT_BATON: &str = "sh -c 'until command -v baton >/dev/null; do \
    if [ -e \"${BATON_ROOT:-}/var/lib/cloud/instance/boot-finished\" ]; then \
    echo \"cloud-init finished without installing baton; the end of its log:\"; \
    tail -n 15 /var/log/cloud-init-output.log; exit 1; fi; sleep 1; done'";

fn remaining(start: Instant, total: Duration) -> Duration {
    total.saturating_sub(start.elapsed())
}

async fn sha256_file(path: PathBuf) -> Result<String, StepError> {
    tokio::task::spawn_blocking(move || {
        crate::backup::sha256_of(&path)
            .map(|(_, h)| h)
            .map_err(|e| StepError(format!("cannot read {}: {e}", path.display())))
    })
    .await
    .map_err(StepError::new)?
}

/// Puts an artifact into the store with `put(key)` unless it is there; records it when
/// this swap made it.
async fn ensure_artifact<F>(
    ctx: &Ctx,
    s: &mut SwapState,
    sha: &str,
    put: impl FnOnce(String) -> F,
) -> Result<(), StepError>
where
    F: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let key = layout::artifact(sha);
    let present = ctx
        .store
        .list(&key)
        .await
        .map_err(StepError::new)?
        .iter()
        .any(|o| o.key == key);
    if !present {
        put(key.clone()).await.map_err(StepError::new)?;
        if !s.uploaded.contains(&key) {
            s.uploaded.push(key);
        }
    }
    Ok(())
}

pub struct Prepare(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Prepare {
    fn name(&self) -> &'static str {
        "prepare"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let binary_path = match &ctx.config.swap.agent_binary {
            Some(p) => ctx.config.resolve(p),
            None => std::env::current_exe().map_err(StepError::new)?,
        };
        let binary = sha256_file(binary_path.clone()).await?;
        let store = ctx.store.clone();
        ensure_artifact(ctx, s, &binary, |key| async move {
            store.put_file(&key, &binary_path).await.map(|_| ())
        })
        .await?;
        s.binary_sha256 = Some(binary);

        let dir = ctx.config.resolve(&ctx.config.bundle.dir);
        let bundle = tokio::task::spawn_blocking(move || {
            crate::bundle::zip_dir(&dir, &std::env::temp_dir())
        })
        .await
        .map_err(StepError::new)?
        .map_err(StepError::new)?;
        let store = ctx.store.clone();
        let sha = bundle.sha256.clone();
        ensure_artifact(ctx, s, &sha, |key| async move {
            store.put_file(&key, bundle.file.path()).await.map(|_| ())
        })
        .await?;
        s.bundle_sha256 = Some(sha);
        ctx.render(s).await
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        for key in std::mem::take(&mut s.uploaded) {
            self.0.store.delete(&key).await.map_err(StepError::new)?;
        }
        Ok(())
    }
}

pub struct RegisterKey(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for RegisterKey {
    fn name(&self) -> &'static str {
        "register-key"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let public = crate::identity::ssh::public_openssh(self.0.deploy_key.public_key())
            .map_err(StepError::new)?;
        self.0
            .cloud
            .register_ssh_key(&s.key_name, public.trim_end())
            .await
            .map_err(StepError::new)
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        self.0
            .cloud
            .delete_ssh_key(&s.key_name)
            .await
            .map_err(StepError::new)
    }
}

pub struct Create(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Create {
    fn name(&self) -> &'static str {
        "create"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        // After a crash the user-data is gone: an instance an earlier attempt created is
        // used as it is (its host key is the journalled one); otherwise render afresh.
        let found = ctx
            .cloud
            .list_instances(&s.labels())
            .await
            .map_err(StepError::new)?;
        if let Some(i) = found.into_iter().next() {
            s.instance_id = Some(i.id);
            return Ok(());
        }
        let user_data = crate::sync::lock(&ctx.user_data).clone();
        let user_data = match user_data {
            Some(u) => u,
            None => {
                ctx.render(s).await?;
                crate::sync::lock(&ctx.user_data)
                    .clone()
                    .ok_or_else(|| StepError("rendering left no user-data".into()))?
            }
        };
        let spec = InstanceSpec {
            ssh_key: Some(s.key_name.clone()),
            user_data: user_data.to_string(),
            ..ctx.config.instance_spec(s.generation)
        };
        let instance = ctx
            .cloud
            .create_instance(&spec)
            .await
            .map_err(StepError::new)?;
        (ctx.say)(format!("instance {} ({})", instance.name, instance.id));
        s.instance_id = Some(instance.id);
        Ok(())
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        // By label too: a crash can land between the create and the journal.
        let mut ids: Vec<String> = self
            .0
            .cloud
            .list_instances(&s.labels())
            .await
            .map_err(StepError::new)?
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.extend(s.instance_id.clone());
        ids.sort();
        ids.dedup();
        for id in ids {
            self.0
                .cloud
                .delete_instance(&id)
                .await
                .map_err(StepError::new)?;
        }
        Ok(())
    }
}

pub struct Wait(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Wait {
    fn name(&self) -> &'static str {
        "wait"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let start = Instant::now();
        let total = ctx.config.swap.boot_timeout;
        let id = s
            .instance_id
            .clone()
            .ok_or_else(|| StepError("no instance to wait for".into()))?;
        let instance = ctx
            .cloud
            .wait_running(&id, total)
            .await
            .map_err(StepError::new)?;
        let ip = instance
            .public_ip
            .ok_or_else(|| StepError(format!("instance {id} is running without a public IP")))?;
        s.public_ip = Some(ip);
        (ctx.say)(format!(
            "running at {ip}; waiting for SSH with the pinned host key"
        ));
        let host = ctx.connect_new(s, remaining(start, total)).await?;
        (ctx.say)("SSH answered; waiting for cloud-init and baton restore".into());
        let left = remaining(start, total).max(Duration::from_secs(1));
        ctx.root(host.as_ref(), AWAIT_BATON, left).await?;
        let left = remaining(start, total).max(Duration::from_secs(1));
        ctx.baton(
            host.as_ref(),
            &format!("host ready --timeout {}s", left.as_secs().max(1)),
            left + Duration::from_secs(10),
        )
        .await
    }
}

pub struct Up(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Up {
    fn name(&self) -> &'static str {
        "up"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let sha = s
            .bundle_sha256
            .clone()
            .ok_or_else(|| StepError("no bundle recorded".into()))?;
        let host = ctx.connect_new(s, Duration::from_secs(60)).await?;
        ctx.baton(
            host.as_ref(),
            &format!(
                "host up --sha256 {sha} --command {}",
                quote(&ctx.config.bundle.up)
            ),
            ctx.config.swap.health_timeout,
        )
        .await
    }
}

pub struct Health(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Health {
    fn name(&self) -> &'static str {
        "health"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let ip = s
            .public_ip
            .ok_or_else(|| StepError("no address to check".into()))?;
        let Err(last) =
            until_generation(ctx, ip, s.generation, 1, ctx.config.swap.health_timeout).await
        else {
            return Ok(());
        };
        // Show why: the stack's own view, over SSH.
        let mut why = format!(
            "https://{} on {ip} did not answer as generation {} within {}: {last}",
            ctx.origin(),
            s.generation,
            humantime::format_duration(ctx.config.swap.health_timeout)
        );
        if let Ok(host) = ctx.connect_new(s, Duration::from_secs(20)).await {
            let args = format!(
                "baton host logs --command {}",
                quote(&ctx.config.bundle.logs)
            );
            let quiet = |_: String| {};
            if let Ok(out) = exec_root(host.as_ref(), &args, Duration::from_secs(30), &quiet).await
            {
                why.push_str("\n  the stack on the server says:");
                for l in out.stdout_tail(20).lines() {
                    why.push_str(&format!("\n    {l}"));
                }
            }
        }
        Err(StepError(why))
    }
}

pub struct HandOver(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for HandOver {
    fn name(&self) -> &'static str {
        "hand-over"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(old) = s.old.clone() else {
            return Ok(());
        };
        if s.no_handover {
            (ctx.say)("skipped (--no-handover)".into());
            return Ok(());
        }
        let timeout = ctx.config.swap.handover_timeout;
        let ip: IpAddr = old.address.parse().map_err(|_| {
            StepError(format!(
                "state.json names {:?} as the old server's address",
                old.address
            ))
        })?;
        let key = old.host_key.as_deref().ok_or_else(|| {
            StepError(format!(
                "state.json has no host key for generation {}: baton cannot reach it safely\n  \
                 fix: `baton swap --no-handover` (the data since its last backup stays behind)",
                old.generation
            ))
        })?;
        let target = ctx.target(ip, key)?;
        let host = ctx
            .connector
            .connect(&target, Duration::from_secs(60))
            .await
            .map_err(|e| {
                StepError(format!(
                    "the old server (generation {}) cannot hand over: {e}\n  fix: if it is \
                     broken, `baton swap --no-handover` replaces it from the last backup",
                    old.generation
                ))
            })?;
        (ctx.say)(format!("final backup on generation {}", old.generation));
        ctx.baton(host.as_ref(), "backup --final", timeout).await?;
        (ctx.say)(format!("catch-up on generation {}", s.generation));
        let new = ctx.connect_new(s, Duration::from_secs(60)).await?;
        ctx.baton(new.as_ref(), "restore --catch-up", timeout).await
    }
}

pub struct AttachAddress(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for AttachAddress {
    fn name(&self) -> &'static str {
        "attach-address"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let id = s
            .instance_id
            .as_deref()
            .ok_or_else(|| StepError("no instance".into()))?;
        self.0
            .cloud
            .attach_elastic_ip(&s.elastic_ip_id, id)
            .await
            .map_err(StepError::new)
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        match s.instance_id.as_deref() {
            Some(id) => self
                .0
                .cloud
                .detach_elastic_ip(&s.elastic_ip_id, id)
                .await
                .map_err(StepError::new),
            None => Ok(()),
        }
    }
}

pub struct VerifyAddress(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for VerifyAddress {
    fn name(&self) -> &'static str {
        "verify-address"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let eip = ctx.config.cloud.elastic_ip;
        until_generation(ctx, eip, s.generation, 1, ctx.config.swap.health_timeout)
            .await
            .map_err(|last| {
                StepError(format!(
                    "requests through {eip} did not reach generation {}: {last}",
                    s.generation
                ))
            })
    }
}

pub struct DetachOld(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for DetachOld {
    fn name(&self) -> &'static str {
        "detach-old"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(old) = &s.old else {
            return Ok(());
        };
        ctx.cloud
            .detach_elastic_ip(&s.elastic_ip_id, &old.instance)
            .await
            .map_err(StepError::new)?;
        // Now every request must reach the new generation.
        let eip = ctx.config.cloud.elastic_ip;
        until_generation(ctx, eip, s.generation, 5, ctx.config.swap.health_timeout)
            .await
            .map_err(|last| {
                StepError(format!(
                    "after detaching the old server, {eip} still does not answer as generation {} only: {last}",
                    s.generation
                ))
            })
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        match &s.old {
            Some(old) => self
                .0
                .cloud
                .attach_elastic_ip(&s.elastic_ip_id, &old.instance)
                .await
                .map_err(StepError::new),
            None => Ok(()),
        }
    }
}

pub struct Commit(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Commit {
    fn name(&self) -> &'static str {
        "commit"
    }

    fn commits(&self) -> bool {
        true
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        if ctx.lock_lost.load(Ordering::SeqCst) {
            return Err(StepError(
                "the deploy lock was taken over: another swap may be running, so this one \
                 does not commit"
                    .into(),
            ));
        }
        let mut site = state::read(ctx.store.as_ref())
            .await
            .map_err(StepError::new)?
            .unwrap_or_default();
        let current = site.active.as_ref().map(|a| a.generation);
        if current == Some(s.generation) {
            return Ok(()); // committed before a crash
        }
        if current != s.old.as_ref().map(|a| a.generation) {
            return Err(StepError(format!(
                "state.json changed during the swap (active generation {current:?}, expected \
                 {:?}): not committing",
                s.old.as_ref().map(|a| a.generation)
            )));
        }
        site.version = 1;
        site.active = Some(Active {
            generation: s.generation,
            instance: s.instance_id.clone().unwrap_or_default(),
            address: s.public_ip.map(|i| i.to_string()).unwrap_or_default(),
            since: chrono::Utc::now().to_rfc3339(),
            host_key: s.host_key.clone(),
        });
        state::write(ctx.store.as_ref(), &site)
            .await
            .map_err(StepError::new)
    }
}

pub struct CleanUp(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for CleanUp {
    fn name(&self) -> &'static str {
        "clean-up"
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let mut failed = Vec::new();
        if let Some(old) = &s.old
            && let Err(e) = ctx.cloud.delete_instance(&old.instance).await
        {
            failed.push(format!(
                "instance {} (generation {}): {e}",
                old.instance, old.generation
            ));
        }
        if let Err(e) = ctx.cloud.delete_ssh_key(&s.key_name).await {
            failed.push(format!("SSH key {}: {e}", s.key_name));
        }
        if failed.is_empty() {
            return Ok(());
        }
        // Past the commit nothing is undone: record what is left for `baton gc`.
        if let Ok(Some(mut site)) = state::read(ctx.store.as_ref()).await {
            site.leftovers
                .extend(failed.iter().map(|f| serde_json::Value::String(f.clone())));
            let _ = state::write(ctx.store.as_ref(), &site).await;
        }
        Err(StepError(format!(
            "left behind (run `baton gc`): {}",
            failed.join("; ")
        )))
    }
}

/// The steps in order.
pub fn all(ctx: &Arc<Ctx>) -> Vec<Box<dyn Step<SwapState>>> {
    vec![
        Box::new(Prepare(ctx.clone())),
        Box::new(RegisterKey(ctx.clone())),
        Box::new(Create(ctx.clone())),
        Box::new(Wait(ctx.clone())),
        Box::new(Up(ctx.clone())),
        Box::new(Health(ctx.clone())),
        Box::new(HandOver(ctx.clone())),
        Box::new(AttachAddress(ctx.clone())),
        Box::new(VerifyAddress(ctx.clone())),
        Box::new(DetachOld(ctx.clone())),
        Box::new(Commit(ctx.clone())),
        Box::new(CleanUp(ctx.clone())),
    ]
}
