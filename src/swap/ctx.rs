//! What the swap's steps share that is not journalled: the clients, baton's deploy key,
//! the rendered user-data, and running commands on a server over SSH.

use super::lock::Lost;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::saga::StepError;
use super::state::SwapState;
use crate::cloud::Cloud;
use crate::cloud::front::Front;
use crate::cloudinit::AgentBinary;
use crate::config::Config;
use crate::remote::{Connector, ExecOutput, RemoteHost, SshTarget};
use crate::store::ObjectStore;
use crate::store::layout;

/// What the steps share that is not journalled: clients, keys, the user-data.
pub struct Ctx {
    pub config: Config,
    /// The config's front, as its provider describes it.
    pub front: Front,
    pub cloud: Arc<dyn Cloud>,
    pub store: Arc<dyn ObjectStore>,
    pub connector: Arc<dyn Connector>,
    pub deploy_key: Arc<russh::keys::PrivateKey>,
    /// Set when the deploy lock was taken over: the commit must not happen.
    pub lock_lost: Lost,
    /// Detail lines for the progress output (remote output, what is being waited for).
    pub say: Arc<dyn Fn(String) + Send + Sync>,
    pub user_data: std::sync::Mutex<Option<Zeroizing<String>>>,
}

impl Ctx {
    pub fn new(
        config: Config,
        cloud: Arc<dyn Cloud>,
        store: Arc<dyn ObjectStore>,
        connector: Arc<dyn Connector>,
        deploy_key: russh::keys::PrivateKey,
        lock_lost: Lost,
        say: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Ctx {
        Ctx {
            front: config.front(),
            config,
            cloud,
            store,
            connector,
            deploy_key: Arc::new(deploy_key),
            lock_lost,
            say,
            user_data: std::sync::Mutex::new(None),
        }
    }

    pub fn target(&self, ip: IpAddr, host_key: &str) -> Result<SshTarget, StepError> {
        let host_key = ssh_key::PublicKey::from_openssh(host_key)
            .map_err(|e| StepError(format!("the recorded host key cannot be read: {e}")))?;
        Ok(SshTarget {
            addr: SocketAddr::new(ip, self.config.ssh.port),
            user: self.config.ssh.admin_user.clone(),
            host_key,
            client_key: self.deploy_key.clone(),
        })
    }

    /// Where `instance` answers now. A front that serves one member at a time takes
    /// addresses with it: on AWS the holder of an Elastic IP answers on it alone, and the
    /// one it left gets a new address. There the cloud is asked; elsewhere an address
    /// never changes and the recorded one is used.
    pub async fn address_now(
        &self,
        instance: &str,
        recorded: Option<IpAddr>,
    ) -> Result<IpAddr, StepError> {
        if !self.front.one_at_a_time {
            return recorded.ok_or_else(|| {
                StepError(format!("the address of instance {instance} is not known"))
            });
        }
        // The instance an address just left may wait a moment for its new one.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .cloud
                .get_instance(instance)
                .await
                .map_err(StepError::new)?;
            match found.map(|i| i.public_ip) {
                Some(Some(ip)) => return Ok(ip),
                Some(None) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {
                    return recorded.ok_or_else(|| {
                        StepError(format!("instance {instance} has no public address"))
                    });
                }
            }
        }
    }

    /// Where the generation state.json records answers now. A recorded address that does
    /// not parse is named as state.json's; the cloud's own errors pass through as they are.
    pub async fn address_of(&self, a: &crate::state::Active) -> Result<IpAddr, StepError> {
        let recorded = a.address.parse().ok();
        self.address_now(&a.instance, recorded)
            .await
            .map_err(|e| match recorded {
                None => StepError(format!(
                    "state.json names {:?} as generation {}'s address",
                    a.address, a.generation
                )),
                Some(_) => e,
            })
    }

    pub async fn connect_new(
        &self,
        s: &SwapState,
        timeout: Duration,
    ) -> Result<Box<dyn RemoteHost>, StepError> {
        let (Some(id), Some(key)) = (s.instance_id.as_deref(), s.host_key.as_deref()) else {
            return Err(StepError(
                "the new instance's address is not known yet".into(),
            ));
        };
        let ip = self.address_now(id, s.public_ip).await?;
        self.connector
            .connect(&self.target(ip, key)?, timeout)
            .await
            .map_err(StepError::new)
    }

    /// Runs `baton ARGS` as root on `host`, its output shown as it comes; fails with the
    /// end of its output unless it succeeds.
    pub async fn baton(
        &self,
        host: &dyn RemoteHost,
        args: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.root(host, &format!("baton {args}"), timeout).await
    }

    /// As [`Ctx::baton`], for work a serving host does beside its site (the hand-over's
    /// final backup and catch-up): at a lower CPU priority, so the site's requests go
    /// first. On the rehearsal's emulated VMs, with the backup at the site's priority, the
    /// site answered in 0.19 s (median) during the hand-over against 0.11 s before it
    /// (BENCHMARKS.md); a small VM on a cloud loses the same way, in less time.
    ///
    /// Where systemd runs the host (the golden image; `/run/systemd/system` is how
    /// systemd itself tells), in a scope of CPU weight 20: systemd enables the cpu
    /// controller, so an SSH session's slice shares the CPU with the services' slice, the
    /// site's among them, by weight, and `nice` counts only inside one. Elsewhere (a host
    /// without systemd, like the tests' loopback servers) `nice` alone.
    pub async fn baton_beside_site(
        &self,
        host: &dyn RemoteHost,
        args: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let run = format!("nice -n 10 baton {args}");
        let script = format!(
            "if [ -d /run/systemd/system ]; then exec systemd-run --scope --quiet --collect \
             --property=CPUWeight=20 {run}; fi; exec {run}"
        );
        let command = format!("sh -c {}", crate::remote::quote(&script));
        self.run_root(host, &command, &format!("baton {args}"), timeout)
            .await
    }

    /// Runs a shell `command` as root on `host`, as [`Ctx::baton`] does.
    pub async fn root(
        &self,
        host: &dyn RemoteHost,
        command: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.run_root(host, command, command, timeout).await
    }

    /// [`Ctx::root`], naming the command `shown` in its error.
    async fn run_root(
        &self,
        host: &dyn RemoteHost,
        command: &str,
        shown: &str,
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
            "`sudo -n {shown}` exited with {}: {}",
            out.status,
            tail.trim()
        )))
    }

    /// The end of what `bundle.logs` says on `host`, or `None` when it cannot be had (the
    /// server is the thing that is broken): for messages, never for a decision.
    pub async fn bundle_logs(&self, host: &dyn RemoteHost) -> Option<Vec<String>> {
        let args = format!(
            "baton host logs --command {}",
            crate::remote::quote(&self.config.bundle.logs)
        );
        let quiet = |_: String| {};
        let out = exec_root(host, &args, Duration::from_secs(30), &quiet)
            .await
            .ok()?;
        // A `bundle.logs` that fails says why on stderr: that is worth showing too.
        let mut tail = out.stdout_tail(20);
        if out.status != 0 || tail.trim().is_empty() {
            tail.push_str(&out.stderr_tail(8));
        }
        Some(tail.lines().map(str::to_string).collect())
    }

    /// Renders the new server's identity and user-data (kept in memory, never journalled)
    /// and records its public host key.
    pub async fn render(&self, s: &mut SwapState) -> Result<(), StepError> {
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
    pub fn origin(&self) -> String {
        crate::identity::tls::origin_name(&self.config.site.domain)
    }

    pub fn https(&self, ip: IpAddr) -> Result<reqwest::Client, StepError> {
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

/// `sudo -n COMMAND` on `host` within `timeout` (cloud-init's sudo rule for the admin user).
pub async fn exec_root(
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
