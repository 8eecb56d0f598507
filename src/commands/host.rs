//! `baton host ready|up|logs`: what a swap runs on a server over SSH. Each prints plain
//! lines (the operator streams them) and fails with the reason, never a bare exit code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent_config::AgentConfig;
use crate::backup::{Host, RestoreMarker, marker_path};
use crate::cli::{HostArgs, HostCommand};
use crate::error::Error;

/// cloud-init writes this when every boot stage ran (whatever the outcome).
pub const BOOT_FINISHED: &str = "/var/lib/cloud/instance/boot-finished";
/// cloud-init's summary: `v1.errors` lists module failures. `cloud-init status --wait` on
/// 22.4 returns at the first error, so the file is read instead.
pub const CLOUD_INIT_RESULT: &str = "/var/lib/cloud/data/result.json";
/// Unpacked bundles by sha256, and the link to the running one.
pub const BUNDLES: &str = "/opt/baton/bundles";
pub const STACK: &str = "/opt/baton/stack";
/// Written by `baton restore` when it fails, so `ready` reports the reason at once.
pub const RESTORE_FAILED: &str = "restore-failed";

pub async fn run(command: &HostCommand) -> Result<(), Error> {
    match command {
        HostCommand::Ready { host, timeout } => ready(host, *timeout).await,
        HostCommand::Up {
            host,
            sha256,
            size,
            command,
        } => up(host, sha256, size.unwrap_or(MAX_BUNDLE), command).await,
        HostCommand::Logs { host, command } => {
            // The compose file interpolates these for every command, `logs` too: without
            // them `docker compose logs` refuses to read it and shows nothing.
            let config = AgentConfig::load(&host.path)?;
            let h = Host::new(host.root.as_deref());
            let site = Some((config.generation, config.domain.as_str()));
            shell(&h.path(Path::new(STACK)), command, site).await
        }
    }
}

async fn ready(args: &HostArgs, timeout: Duration) -> Result<(), Error> {
    let config = AgentConfig::load(&args.path)?;
    let host = Host::new(args.root.as_deref());
    let deadline = Instant::now() + timeout;
    let boot_finished = host.path(Path::new(BOOT_FINISHED));
    let mut said = None;
    let mut say = |what: &'static str| {
        if said != Some(what) {
            println!("{what}");
            said = Some(what);
        }
    };
    loop {
        if !boot_finished.exists() {
            say("waiting for cloud-init to finish");
        } else {
            cloud_init_errors(&host)?;
            let marker: Option<RestoreMarker> = std::fs::read(marker_path(&host, &config))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(m) = marker.filter(|m| m.generation == config.generation) {
                println!(
                    "cloud-init finished; restore done ({})",
                    m.manifest.as_deref().unwrap_or("nothing to restore yet")
                );
                return Ok(());
            }
            let failed = host.path(&config.state_dir).join(RESTORE_FAILED);
            if let Ok(why) = std::fs::read_to_string(&failed) {
                return Err(Error::Failed(format!(
                    "baton restore failed on this server: {}",
                    why.trim()
                )));
            }
            say("cloud-init finished; waiting for baton restore");
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "not ready after {}: {}",
                humantime::format_duration(timeout),
                said.unwrap_or("?")
            )));
        }
        // Polling files the boot writes: there is nothing to subscribe to.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cloud_init_errors(host: &Host) -> Result<(), Error> {
    let path = host.path(Path::new(CLOUD_INIT_RESULT));
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Failed(format!("{} is not JSON: {e}", path.display())))?;
    let errors: Vec<String> = v["v1"]["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "cloud-init reported errors: {} (see /var/log/cloud-init-output.log)",
            errors.join("; ")
        )))
    }
}

/// What `host up` downloads at most when the swap did not say the bundle's size.
const MAX_BUNDLE: u64 = 4 << 30;

async fn up(args: &HostArgs, sha256: &str, size: u64, command: &str) -> Result<(), Error> {
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::bad_input(
            format!("--sha256 {sha256:?} is not a sha256"),
            "pass the bundle's 64 hex digits",
        ));
    }
    let ctx = super::HostContext::open(args).await?;
    let dir = ctx.host.path(Path::new(BUNDLES)).join(sha256);
    if dir.exists() {
        println!("bundle {} already unpacked", &sha256[..12]);
    } else {
        let key = crate::store::layout::artifact(sha256);
        // Streamed to a file beside its target and hashed on the way: never in memory.
        let parent = ctx.host.path(Path::new(BUNDLES));
        crate::fsutil::create_dir_all(&parent)?;
        let download = tempfile::Builder::new()
            .prefix(".bundle-")
            .tempfile_in(&parent)
            .map_err(|e| crate::fsutil::FileError::new("cannot create a file in", &parent, e))?;
        let got = ctx
            .store
            .get_to_file(&key, download.path(), size)
            .await?
            .ok_or_else(|| {
                Error::Failed(format!(
                    "the bundle {key} is not in {}",
                    ctx.store.describe()
                ))
            })?;
        if got.sha256 != sha256 {
            return Err(Error::Failed(format!(
                "the bundle {key} has sha256 {}, not {sha256}: refusing it",
                got.sha256
            )));
        }
        crate::bundle::unpack(download.path(), &dir)?;
        println!("bundle {} unpacked into {}", &sha256[..12], dir.display());
    }
    let link = ctx.host.path(Path::new(STACK));
    point_link(&link, &dir)?;
    shell(
        &link,
        command,
        Some((ctx.config.generation, ctx.config.domain.as_str())),
    )
    .await
}

/// Points `link` at `target` atomically (a new link renamed over the old one).
fn point_link(link: &Path, target: &Path) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Failed(format!("cannot link {}: {e}", link.display()));
    let mut tmp = PathBuf::from(link);
    tmp.set_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(fail)?;
    std::fs::rename(&tmp, link).map_err(fail)
}

/// Runs `command` with `sh -c` in `dir`, its output passed through.
/// With `site`, the command sees BATON_GENERATION and BATON_DOMAIN (the compose file
/// needs both).
async fn shell(dir: &Path, command: &str, site: Option<(u64, &str)>) -> Result<(), Error> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(dir);
    if let Some((generation, domain)) = site {
        cmd.env("BATON_GENERATION", generation.to_string());
        cmd.env("BATON_DOMAIN", domain);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| Error::Failed(format!("cannot run `{command}` in {}: {e}", dir.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "`{command}` in {} failed ({status})",
            dir.display()
        )))
    }
}
