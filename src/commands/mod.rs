//! One file per subcommand.

pub mod agent;
pub mod backup;
pub mod bake;
pub mod bundle;
pub mod gc;
pub mod host;
pub mod init;
pub mod known_hosts;
pub mod plan;
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
        let store = crate::store::open_with(&config.store, &env).await?;
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
        println!("{}", human());
    }
}

/// The operator side's cloud client and store, from baton.toml and the environment.
pub(crate) async fn operator(
    config: &crate::config::Config,
) -> Result<
    (
        std::sync::Arc<dyn crate::cloud::Cloud>,
        std::sync::Arc<dyn crate::store::ObjectStore>,
    ),
    Error,
> {
    let cloud: std::sync::Arc<dyn crate::cloud::Cloud> = match config.aws() {
        Some(settings) => std::sync::Arc::new(crate::cloud::aws::AwsClient::new(settings).await?),
        None => {
            let creds = crate::cloud::exoscale::Credentials::from_env()?;
            std::sync::Arc::new(crate::cloud::exoscale::ExoscaleClient::new(
                &config.cloud_endpoint(),
                creds,
                Default::default(),
            )?)
        }
    };
    let store = crate::store::open(&config.store).await?;
    Ok((cloud, store))
}
