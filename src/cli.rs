//! The command line.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "baton",
    version,
    about = "Keeps one web server alive by replacing it instead of changing it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The operator's config file.
    #[arg(short = 'c', long = "config", default_value = DEFAULT_PATH, value_name = "FILE")]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented baton.toml, create the SSH host CA and the TLS CA, and print the
    /// known_hosts line.
    Init(Box<InitArgs>),
    /// Print the `@cert-authority` line for ~/.ssh/known_hosts (append it once).
    KnownHosts(ConfigArg),
    /// Write the user-data and certificates a swap would send for one generation.
    Render(RenderArgs),
    /// Show the active generation, who holds the address, the last backup, any unfinished
    /// swap, the lock and leftovers.
    Status(ReportArgs),
    /// Show what `baton swap` would do, checking the cloud and the store read-only.
    Plan(ReportArgs),
    /// Delete what baton made and no longer needs: instances not active, provisioning
    /// keys, artifacts no journal refers to.
    Gc(GcArgs),
    /// (host) Back up Prometheus and the configured paths now.
    Backup(BackupArgs),
    /// (host) Bring the newest verified backup back into empty data directories.
    Restore(RestoreArgs),
    /// (host) Back up on the configured schedule until stopped; serve metrics.
    Agent(HostArgs),
    /// (host) Delete backups the retention policy no longer keeps.
    Prune(PruneArgs),
    /// Replace the server: create the next generation, prove it, move the address, delete
    /// the old one. Resumable (`--resume`) and undoable (`--abort`).
    Swap(SwapArgs),
    /// Put the previous generation back (kept for `swap.keep_previous` after a swap): the
    /// address moves back in seconds, the monitoring data goes with it.
    Rollback(RollbackArgs),
    /// Write the reproducible zip of the compose bundle and print its sha256.
    Bundle(BundleArgs),
    /// Build the golden image from the recipe (`image/`) and register it with the cloud as
    /// a template; a recipe baked before is found again by its hash.
    Bake(BakeArgs),
    /// Send the site's content (`content.dir`) to the store; servers pull it within
    /// `content.pull_interval`, no swap needed.
    Publish(PublishArgs),
    /// Sign a store an older baton wrote: state.json and finished journals are checked
    /// against the cloud, then signed with the host CA key (once per site).
    Adopt(AdoptArgs),
    /// (host) The steps a swap runs on a server over SSH.
    #[command(subcommand)]
    Host(HostCommand),
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Say what would be signed, sign nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SwapArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Finish the unfinished swap from its journal.
    #[arg(long, conflicts_with_all = ["abort", "dry_run"])]
    pub resume: bool,
    /// Undo the unfinished swap.
    #[arg(long, conflicts_with = "dry_run")]
    pub abort: bool,
    /// Print what a swap would do (as `baton plan`), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a server that cannot hand over (broken, unreachable): the new one starts
    /// from the last backup, and what the old one recorded since is lost.
    #[arg(long)]
    pub no_handover: bool,
    /// Boot this template instead of `instance.template` (by default the newest bake of
    /// the recipe as it is now: `baton bake`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["resume", "abort"])]
    pub template: Option<String>,
    /// Wait this long for the deploy lock when another swap holds it (e.g. 10m).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_wait: std::time::Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Finish the unfinished rollback from its journal.
    #[arg(long, conflicts_with = "abort")]
    pub resume: bool,
    /// Undo the unfinished rollback.
    #[arg(long)]
    pub abort: bool,
    /// Wait this long for the deploy lock when a swap holds it (e.g. 10m).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_wait: std::time::Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BakeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Show the recipe, its hash and what a bake would do; build and register nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Build the image into the local cache only: no store, no cloud (e.g. on a machine
    /// with the mirror, before a bake on one with the cloud).
    #[arg(long, conflicts_with = "dry_run")]
    pub build_only: bool,
    /// Wait this long for the deploy lock when a swap holds it (e.g. 10m).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_wait: std::time::Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where to write the zip.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Wait until cloud-init finished without errors and `baton restore` succeeded.
    Ready {
        #[command(flatten)]
        host: HostArgs,
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Fetch the bundle from the store by its sha256, unpack it, and start the stack.
    Up {
        #[command(flatten)]
        host: HostArgs,
        #[arg(long, value_name = "HEX")]
        sha256: String,
        /// The bundle's size: the download stops past it (the store is written by every
        /// server). Without it, 4 GiB.
        #[arg(long, value_name = "BYTES")]
        size: Option<u64>,
        /// The command that starts the stack, run in the unpacked bundle.
        #[arg(long = "command", value_name = "SHELL")]
        command: String,
    },
    /// Run a command in the running bundle's directory (what a failed health check shows).
    Logs {
        #[command(flatten)]
        host: HostArgs,
        #[arg(long = "command", value_name = "SHELL")]
        command: String,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub report: ReportArgs,
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The host side's config and paths.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// The host's config file.
    #[arg(short = 'c', long = "config", env = "BATON_AGENT_CONFIG", default_value = crate::agent_config::PATH, value_name = "FILE")]
    pub path: PathBuf,
    /// Treat DIR as the root for every host path in the config (for tests and chroots).
    #[arg(long, env = "BATON_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// The hand-over backup a swap takes on the old host.
    #[arg(long = "final")]
    pub is_final: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Do nothing (and succeed) when the data directories already hold data.
    #[arg(long)]
    pub if_empty: bool,
    /// On a running host: add the blocks of the newest backup that are missing here.
    #[arg(long, conflicts_with = "if_empty")]
    pub catch_up: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Print the plan, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write baton.toml and keys/ into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Site name: names instances (`NAME-GENERATION`) and labels.
    #[arg(long, default_value = "blog")]
    pub site: String,
    /// The site's domain.
    #[arg(long, default_value = "blog.example.org")]
    pub domain: String,
    /// The cloud: exoscale or aws.
    #[arg(long, default_value = "exoscale", value_parser = ["exoscale", "aws"])]
    pub cloud: String,
    /// AWS: the region.
    #[arg(long, default_value = "eu-central-1")]
    pub region: String,
    /// AWS: the subnet new servers start in.
    #[arg(long, default_value = "subnet-0123456789abcdef0")]
    pub subnet: String,
    /// AWS: elastic-ip (an Elastic IP moves to each new server) or alb (an ALB target
    /// group, given by --target-group).
    #[arg(long, default_value = "elastic-ip", value_parser = ["elastic-ip", "alb"])]
    pub front: String,
    /// AWS, --front alb: the target group's ARN.
    #[arg(long, value_name = "ARN", required_if_eq("front", "alb"))]
    pub target_group: Option<String>,
    /// The address the site answers on: the Elastic IP that follows the active server
    /// (with --front alb: an address of the load balancer that baton checks the site
    /// through).
    #[arg(long, visible_alias = "elastic-ip", default_value = "203.0.113.10")]
    pub address: IpAddr,
    /// The port sshd listens on.
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
    /// The compute API endpoint (omit for Exoscale's own).
    #[arg(long, value_name = "URL")]
    pub cloud_endpoint: Option<String>,
    /// The object store: s3://bucket/prefix or file:///path.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The S3 endpoint for an s3:// store.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://sos-ch-gva-2.exo.io"
    )]
    pub store_endpoint: String,
    /// Public key files for the admin user [default: ~/.ssh/id_*.pub, or a new keys/admin].
    #[arg(long = "authorized-key", value_name = "FILE")]
    pub authorized_keys: Vec<PathBuf>,
    /// Sets any key of baton.toml as it is written, e.g. `--set swap.boot_timeout=2m`
    /// (repeatable). VALUE is read as TOML (a number, true, ["a", "b"], "text") and as
    /// plain text when it is not; the template's comments stay.
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The generation to render for (the next swap's is the active one plus 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub generation: u64,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Where the new host downloads the baton binary (a pre-signed URL).
    #[arg(long, value_name = "URL", requires = "agent_sha256")]
    pub agent_url: Option<String>,
    /// The sha256 the downloaded binary must have.
    #[arg(long, value_name = "HEX", requires = "agent_url")]
    pub agent_sha256: Option<String>,
}
