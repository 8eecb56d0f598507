//! `baton restore`: the newest backup whose every object is present and intact, staged
//! beside its targets and renamed into place, or nothing at all.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::manifest::{self, Manifest};
use super::{BackupError, Host, HostLock, RestoreMarker, io, marker_path};
use crate::agent_config::AgentConfig;
use crate::store::ObjectStore;
use crate::store::layout::MANIFESTS;

/// Downloads in flight at once: they stream to disk, so this costs sockets, not memory.
const PARALLEL_DOWNLOADS: usize = 8;

/// The marker file in the state directory.
pub const MARKER: &str = "restore.json";

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RestoreReport {
    /// The manifest restored, or `None` (first deploy, or data already there).
    pub manifest: Option<String>,
    /// Newer manifests passed over, and why.
    pub fell_back: Vec<String>,
    pub blocks: usize,
    pub archives: usize,
    pub bytes: u64,
    pub note: String,
}

/// Why one manifest could not be used. Only these make restore fall back to an older one;
/// anything else (the network, the disk) stops it, so a passing fault never silently
/// restores older data.
enum Attempt {
    Unusable(String),
    Fatal(BackupError),
}

impl From<BackupError> for Attempt {
    fn from(e: BackupError) -> Self {
        Attempt::Fatal(e)
    }
}

impl From<crate::store::StoreError> for Attempt {
    fn from(e: crate::store::StoreError) -> Self {
        Attempt::Fatal(e.into())
    }
}

fn holds_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() != "lost+found")))
        .unwrap_or(false)
}

fn write_marker(
    host: &Host,
    config: &AgentConfig,
    manifest: Option<String>,
) -> Result<(), BackupError> {
    let marker = RestoreMarker {
        generation: config.generation,
        manifest,
        at: chrono::Utc::now().to_rfc3339(),
    };
    let path = marker_path(host, config);
    let bytes = serde_json::to_vec_pretty(&marker).map_err(|e| BackupError::Internal {
        doing: "encoding the restore marker",
        reason: e.to_string(),
    })?;
    crate::fsutil::write_atomic(&path, &bytes, crate::fsutil::PUBLIC).map_err(|e| BackupError::Io {
        action: "write",
        path,
        source: e.source,
    })
}

/// Manifest keys, newest first.
async fn manifests_newest_first(store: &dyn ObjectStore) -> Result<Vec<String>, BackupError> {
    let mut keys: Vec<String> = store
        .list(MANIFESTS)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort();
    keys.reverse();
    Ok(keys)
}

/// A staging directory beside `target`, on the same filesystem, so the final step is a rename.
fn stage_beside(target: &Path) -> Result<tempfile::TempDir, BackupError> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    tempfile::Builder::new()
        .prefix(".baton-restore-")
        .tempdir_in(parent)
        .map_err(io("create a staging directory in", parent))
}

pub async fn restore(
    store: &dyn ObjectStore,
    host: &Host,
    config: &AgentConfig,
    if_empty: bool,
) -> Result<RestoreReport, BackupError> {
    let _lock = HostLock::take(host, config)?;
    let data_dir = host.path(&config.prometheus.data_dir);
    let mut targets = vec![data_dir.clone()];
    targets.extend(config.backup.paths.iter().map(|p| host.path(p)));
    // Asked first: with no backup at all nothing would be replaced, so data already in a
    // target (a first deploy's own) is no reason to refuse.
    let keys = manifests_newest_first(store).await?;
    if keys.is_empty() {
        write_marker(host, config, None)?;
        return Ok(RestoreReport {
            note: "no backup in the store yet (a first deploy): nothing to restore".into(),
            ..Default::default()
        });
    }
    if let Some(full) = targets.iter().find(|t| holds_data(t)) {
        if !if_empty {
            return Err(BackupError::TargetNotEmpty {
                target: full.clone(),
            });
        }
        // This host's own data is in place (a reboot): it counts as restored.
        write_marker(host, config, None)?;
        return Ok(RestoreReport {
            note: format!("{} already holds data: nothing restored", full.display()),
            ..Default::default()
        });
    }
    let mut fell_back = Vec::new();
    for key in keys {
        match restore_manifest(store, host, config, &key).await {
            Ok(mut report) => {
                write_marker(host, config, Some(key.clone()))?;
                report.manifest = Some(key);
                report.fell_back = fell_back;
                return Ok(report);
            }
            Err(Attempt::Unusable(why)) => {
                tracing::warn!(
                    "backup {key} is unusable ({why}); falling back to the previous one"
                );
                fell_back.push(format!("{key}: {why}"));
            }
            Err(Attempt::Fatal(e)) => return Err(e),
        }
    }
    Err(BackupError::NothingRestorable(fell_back.join("; ")))
}

async fn read_manifest(store: &dyn ObjectStore, key: &str) -> Result<Manifest, Attempt> {
    let bytes = store
        .get(key)
        .await?
        .ok_or_else(|| Attempt::Unusable("the manifest vanished".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Attempt::Unusable(format!("the manifest does not parse: {e}")))
}

/// Downloads one object to `path`, checking size and sha256 against the manifest.
async fn fetch(
    store: &dyn ObjectStore,
    key: &str,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<u64, Attempt> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let got = store
        .get_to_file(key, path, size)
        .await?
        .ok_or_else(|| Attempt::Unusable(format!("object {key} is missing")))?;
    if got.size != size || got.sha256 != sha256 {
        return Err(Attempt::Unusable(format!(
            "object {key} is corrupt: {} bytes with sha256 {}, the manifest says {size} bytes with sha256 {sha256}",
            got.size, got.sha256
        )));
    }
    Ok(got.size)
}

/// Downloads the manifest's blocks into `dest/ULID/…`; returns bytes fetched.
async fn fetch_blocks(
    store: &dyn ObjectStore,
    blocks: &[&manifest::Block],
    dest: &Path,
) -> Result<u64, Attempt> {
    let jobs: Vec<(String, PathBuf, u64, String)> = blocks
        .iter()
        .flat_map(|b| {
            b.files.iter().map(move |f| {
                (
                    b.key(f),
                    dest.join(&b.ulid).join(&f.path),
                    f.size,
                    f.sha256.clone(),
                )
            })
        })
        .collect();
    futures_util::stream::iter(jobs)
        .map(|(key, path, size, sha)| async move { fetch(store, &key, &path, size, &sha).await })
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await
}

async fn restore_manifest(
    store: &dyn ObjectStore,
    host: &Host,
    config: &AgentConfig,
    key: &str,
) -> Result<RestoreReport, Attempt> {
    let m = read_manifest(store, key).await?;
    // Before anything is created: every path below comes from this plan, none from the
    // manifest's text.
    let plan = m.plan(&config.backup.paths).map_err(Attempt::Unusable)?;
    for path in &plan.skipped {
        tracing::warn!(
            "backup {key} has an archive of {path:?}, which is not in backup.paths: left alone"
        );
    }
    let data_dir = host.path(&config.prometheus.data_dir);
    let staged_data = stage_beside(&data_dir)?;
    let blocks: Vec<&manifest::Block> = m.blocks.iter().collect();
    let mut bytes = fetch_blocks(store, &blocks, staged_data.path()).await?;

    let mut staged_paths = Vec::new();
    for (a, path) in &plan.archives {
        let target = host.path(path);
        let staged = stage_beside(&target)?;
        let packed = staged.path().join(".archive.tar.gz");
        bytes += fetch(store, &a.key, &packed, a.size, &a.sha256).await?;
        let tree = staged.path().join("tree");
        std::fs::create_dir(&tree).map_err(io("create", &tree))?;
        let (p, t) = (packed.clone(), tree.clone());
        let unpacked = tokio::task::spawn_blocking(move || super::archive::unpack(&p, &t))
            .await
            .map_err(|e| {
                Attempt::Fatal(BackupError::Internal {
                    doing: "unpacking an archive",
                    reason: e.to_string(),
                })
            })?;
        if let Err(e) = unpacked {
            return Err(Attempt::Unusable(format!("archive of {}: {e}", a.path)));
        }
        staged_paths.push((staged, tree, target));
    }

    // Everything is here and verified: only renames are left.
    place(staged_data.path(), &data_dir)?;
    for (_staged, tree, target) in &staged_paths {
        place(tree, target)?;
    }
    let note = if plan.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "left alone (not in backup.paths): {}",
            plan.skipped.join(", ")
        )
    };
    Ok(RestoreReport {
        blocks: m.blocks.len(),
        archives: plan.archives.len(),
        bytes,
        note,
        ..Default::default()
    })
}

/// Renames `staged` to `target`, replacing an empty directory.
/// (The staging directory's guard then finds nothing at its path, which it ignores.)
fn place(staged: &Path, target: &Path) -> Result<(), BackupError> {
    if target.exists() {
        std::fs::remove_dir(target).map_err(io("replace (it must be empty)", target))?;
    }
    std::fs::rename(staged, target).map_err(io("rename into place", target))
}

/// `--catch-up`: adds the blocks of the newest manifest that this host does not have, to a
/// running Prometheus (it loads new block directories on its next reload).
pub async fn catch_up(
    store: &dyn ObjectStore,
    host: &Host,
    config: &AgentConfig,
) -> Result<RestoreReport, BackupError> {
    // Part of a swap's hand-over: a scheduled backup attempt of this (not yet active) host
    // may hold the lock for a moment.
    let _lock = HostLock::wait(host, config, super::HANDOVER_LOCK_WAIT).await?;
    let data_dir = host.path(&config.prometheus.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(io("create", &data_dir))?;
    let Some(key) = manifests_newest_first(store).await?.into_iter().next() else {
        return Ok(RestoreReport {
            note: "no backup in the store: nothing to catch up".into(),
            ..Default::default()
        });
    };
    let m = match read_manifest(store, &key).await {
        Ok(m) => m,
        Err(Attempt::Unusable(why)) => {
            return Err(BackupError::NothingRestorable(format!("{key}: {why}")));
        }
        Err(Attempt::Fatal(e)) => return Err(e),
    };
    // Block names become directory names inside the data directory: checked first.
    if let Err(why) = m.check_blocks() {
        return Err(BackupError::NothingRestorable(format!("{key}: {why}")));
    }
    let missing: Vec<&manifest::Block> = m
        .blocks
        .iter()
        .filter(|b| !data_dir.join(&b.ulid).exists())
        .collect();
    let staged = tempfile::Builder::new()
        .prefix(".baton-catchup-")
        .tempdir_in(&data_dir)
        .map_err(io("create a staging directory in", &data_dir))?;
    let bytes = match fetch_blocks(store, &missing, staged.path()).await {
        Ok(b) => b,
        Err(Attempt::Unusable(why)) => {
            return Err(BackupError::NothingRestorable(format!("{key}: {why}")));
        }
        Err(Attempt::Fatal(e)) => return Err(e),
    };
    for b in &missing {
        let from = staged.path().join(&b.ulid);
        let to = data_dir.join(&b.ulid);
        std::fs::rename(&from, &to).map_err(io("rename into place", &to))?;
    }
    Ok(RestoreReport {
        manifest: Some(key),
        blocks: missing.len(),
        bytes,
        note: format!("added {} blocks", missing.len()),
        ..Default::default()
    })
}
