//! One file per subcommand.

pub mod adopt;
pub mod agent;
pub mod backup;
pub mod bake;
pub mod bundle;
pub mod gc;
pub mod host;
pub mod init;
pub mod known_hosts;
pub mod plan;
mod progress;
pub mod prune;
pub mod publish;
pub mod render;
pub mod restore;
pub mod rollback;
pub mod status;
pub mod swap;

use crate::cli::{Cli, Command};
use crate::error::Error;

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::KnownHosts(args) => known_hosts::run(&args.path),
        Command::Render(args) => render::run(&args),
        Command::Status(args) => block_on(status::run(&args)),
        Command::Plan(args) => block_on(plan::run(&args)),
        Command::Gc(args) => block_on(gc::run(&args)),
        Command::Backup(args) => block_on(backup::run(&args)),
        Command::Restore(args) => block_on(restore::run(&args)),
        Command::Agent(args) => block_on(agent::run(&args)),
        Command::Prune(args) => block_on(prune::run(&args)),
        Command::Host(args) => block_on(host::run(&args)),
        Command::Bundle(args) => bundle::run(&args),
        Command::Bake(args) => block_on(bake::run(&args)),
        Command::Publish(args) => block_on(publish::run(&args)),
        Command::Swap(args) => block_on(swap::run(&args)),
        Command::Adopt(args) => block_on(adopt::run(&args)),
        Command::Rollback(args) => block_on(rollback::run(&args)),
    }
}

/// The async commands run on a runtime made here, so the sync ones start instantly.
fn block_on(f: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            Error::bad_input(
                format!("cannot start the async runtime: {e}"),
                "check the process limits",
            )
        })?
        .block_on(f)
}

/// The host side's config, store and path mapping, opened once per command.
pub(crate) struct HostContext {
    pub config: crate::agent_config::AgentConfig,
    pub host: crate::backup::Host,
    pub store: std::sync::Arc<dyn crate::store::ObjectStore>,
}

impl HostContext {
    pub async fn open(args: &crate::cli::HostArgs) -> Result<HostContext, Error> {
        let config = crate::agent_config::AgentConfig::load(&args.path)?;
        let host = crate::backup::Host::new(args.root.as_deref());
        // Over SSH (a swap's hand-over, an operator's `sudo baton backup`) the service's
        // environment file is not loaded: read it, the process environment first.
        let file =
            std::fs::read_to_string(host.path(std::path::Path::new(crate::agent_config::ENV_PATH)))
                .unwrap_or_default();
        let from_file = zeroize::Zeroizing::new(file);
        let env = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    from_file
                        .lines()
                        .find_map(|l| l.strip_prefix(var)?.strip_prefix('='))
                        .map(str::to_string)
                })
        };
        let mut store = crate::store::open_with(&config.store, &env).await?;
        // The operator's objects are checked with the host CA's public key: this server,
        // like every other, can write to the store, but not as the operator.
        if let Some(ca) = &config.store_signer {
            let ca = ssh_key::PublicKey::from_openssh(ca).map_err(|e| {
                Error::bad_input(
                    format!(
                        "{}: store_signer is not an OpenSSH public key: {e}",
                        args.path.display()
                    ),
                    "the swap writes it; render the user-data again",
                )
            })?;
            store = std::sync::Arc::new(crate::store::sealed::Sealed::verifying(store, ca));
        }
        Ok(HostContext {
            host,
            config,
            store,
        })
    }

    pub fn tsdb(&self) -> crate::backup::prometheus::PrometheusAdmin {
        crate::backup::prometheus::PrometheusAdmin::new(
            &self.config.prometheus.url,
            &self.host.path(&self.config.prometheus.data_dir),
        )
    }
}

/// Prints `value` as JSON, or `human` when --json was not given.
pub(crate) fn print(json: bool, value: &impl serde::Serialize, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", printable(&human()));
    }
}

/// `text` with every control character but the newline shown escaped: what a report
/// prints comes partly from the store, which every server can write, and a planted
/// terminal escape (a cleared screen, fake lines, OSC 52 into the clipboard) or a bidi
/// override must reach the operator's terminal as visible text, not as a command.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n') || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The operator side's cloud client and store, from baton.toml and the environment. The
/// cloud is fenced to the site (`cloud::guard`) and the store signs and checks the
/// operator's own objects (`store::sealed`): what the store says never reaches the cloud
/// unchecked, since every server can write to it.
pub(crate) async fn operator(
    config: &crate::config::Config,
) -> Result<
    (
        std::sync::Arc<dyn crate::cloud::Cloud>,
        std::sync::Arc<dyn crate::store::ObjectStore>,
    ),
    Error,
> {
    let provider = config.provider().open().await?;
    let cloud = std::sync::Arc::new(crate::cloud::guard::SiteOnly::new(
        provider,
        &config.site.name,
        &config.key_prefix(),
        config.front().address,
    ));
    let store = crate::store::open(&config.store).await?;
    Ok((cloud, sealed(config, store)?))
}

/// The store as the operator sees it: signing with the host CA key, or, where only its
/// public half is at hand (a read-only look from another machine), checking only.
pub(crate) fn sealed(
    config: &crate::config::Config,
    store: std::sync::Arc<dyn crate::store::ObjectStore>,
) -> Result<std::sync::Arc<dyn crate::store::ObjectStore>, Error> {
    use crate::store::sealed::Sealed;
    let key = config.host_ca_key();
    let sealed = if key.exists() {
        let ca = crate::identity::ssh::load_private(
            &key,
            "the SSH host CA key (ssh.host_ca)",
            "keep the CA that `baton init` made in keys/, unencrypted, mode 0600",
        )?;
        Sealed::signing(store, ca)
    } else {
        let ca = crate::identity::ssh::load_public(&config.host_ca_pub(), "ssh.host_ca's .pub")?;
        Sealed::verifying(store, ca)
    };
    Ok(std::sync::Arc::new(sealed))
}

/// Opens the cloud and the store for `config`, lets `check` look at the store first, and
/// runs the saga under the deploy lock with step lines on stderr.
pub(crate) async fn execute<F>(
    config: crate::config::Config,
    saga: crate::swap::run::SagaKind,
    mode: crate::swap::run::Mode,
    lock_wait: std::time::Duration,
    template: Option<String>,
    check: impl FnOnce(std::sync::Arc<dyn crate::store::ObjectStore>) -> F,
) -> Result<crate::swap::run::Finished, Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let deploy_key = crate::generation::deploy_key(&config)?;
    let (cloud, store) = operator(&config).await?;
    check(store.clone()).await?;
    let progress = std::sync::Arc::new(progress::StepLines::new());
    let request = crate::swap::run::Request {
        saga,
        mode,
        lock_wait,
        holder: crate::swap::lock::Holder::this_process(),
        template,
    };
    let services = crate::swap::run::Services {
        config,
        cloud,
        store,
        connector: std::sync::Arc::new(crate::remote::SshConnector),
        clock: std::sync::Arc::new(crate::clock::SystemClock),
        deploy_key,
    };
    let finished = crate::swap::run::run(request, services, progress.clone()).await?;
    drop(progress);
    Ok(finished)
}
