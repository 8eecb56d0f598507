//! One backup: snapshot, new blocks, changed archives, then the manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::manifest::{self, Archive, Block, FileEntry, Manifest};
use super::prometheus::Tsdb;
use super::{BackupError, Host, HostLock, Refusal, io, may_upload, sha256_file};
use crate::agent_config::AgentConfig;
use crate::store::layout;
use crate::store::{Created, ObjectStore};

/// Transfers in flight at once: enough to fill a link, few enough to bound memory.
pub const PARALLEL_TRANSFERS: usize = 4;
/// Small requests (is this block stored?) in flight at once.
const PARALLEL_CHECKS: usize = 16;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupReport {
    pub manifest: String,
    pub blocks: usize,
    pub blocks_uploaded: usize,
    pub archives: usize,
    pub archives_uploaded: usize,
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(BackupReport),
    Refused(Refusal),
}

/// Deletes the snapshot however the backup ends: it holds hard links to blocks that
/// Prometheus may want to delete after compaction.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("cannot remove snapshot {}: {e}", self.0.display());
        }
    }
}

pub async fn backup(
    store: &dyn ObjectStore,
    tsdb: &dyn Tsdb,
    host: &Host,
    config: &AgentConfig,
    is_final: bool,
) -> Result<Outcome, BackupError> {
    let _lock = lock(host, config, is_final).await?;
    backup_holding_lock(store, tsdb, host, config, is_final).await
}

/// The host's backup lock, as a backup takes it: the hand-over's final backup waits for a
/// scheduled one that started a moment before; any other backup that finds one running
/// gives way.
pub async fn lock(
    host: &Host,
    config: &AgentConfig,
    is_final: bool,
) -> Result<HostLock, BackupError> {
    if is_final {
        HostLock::wait(host, config, super::HANDOVER_LOCK_WAIT).await
    } else {
        HostLock::take(host, config)
    }
}

/// [`backup`], for a caller that holds the host's lock (see [`lock`]).
pub async fn backup_holding_lock(
    store: &dyn ObjectStore,
    tsdb: &dyn Tsdb,
    host: &Host,
    config: &AgentConfig,
    is_final: bool,
) -> Result<Outcome, BackupError> {
    if let Err(refusal) = may_upload(store, host, config).await? {
        return Ok(Outcome::Refused(refusal));
    }
    let started = Instant::now();
    let snapshot = tsdb.snapshot().await?;
    tracing::debug!("snapshot taken after {:?}", started.elapsed());
    let _cleanup = RemoveOnDrop(snapshot.clone());

    let mut block_dirs: Vec<(String, PathBuf)> = std::fs::read_dir(&snapshot)
        .map_err(io("list", &snapshot))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .filter(|n| manifest::is_ulid(n))
                .map(|n| (n.to_string(), e.path()))
        })
        .collect();
    block_dirs.sort();
    let mut report = BackupReport {
        manifest: String::new(),
        blocks: block_dirs.len(),
        blocks_uploaded: 0,
        archives: 0,
        archives_uploaded: 0,
        bytes_uploaded: 0,
        seconds: 0.0,
    };
    // Which blocks the store already has complete: every stored block file listed once,
    // then the indexes of those that have one read all at once.
    let stored: HashMap<String, u64> = store
        .list(layout::BLOCKS)
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let known: Vec<Option<Vec<FileEntry>>> = futures_util::stream::iter(&block_dirs)
        .map(|(ulid, _)| stored_block(store, ulid, &stored))
        .buffered(PARALLEL_CHECKS)
        .try_collect()
        .await?;
    let mut blocks = Vec::new();
    for ((ulid, dir), known) in block_dirs.iter().zip(known) {
        let block = match known {
            Some(files) => Block {
                ulid: ulid.clone(),
                files,
            },
            None => {
                let (block, uploaded) = upload_block(store, ulid, dir).await?;
                report.blocks_uploaded += 1;
                report.bytes_uploaded += uploaded;
                block
            }
        };
        blocks.push(block);
    }
    tracing::debug!(
        "{} blocks checked or uploaded after {:?}",
        blocks.len(),
        started.elapsed()
    );
    let mut archives = Vec::new();
    let scratch = tempfile::tempdir_in(host.path(&config.state_dir))
        .map_err(io("create scratch space in", &config.state_dir))?;
    for path in &config.backup.paths {
        let source = host.path(path);
        if !source.is_dir() {
            tracing::warn!(
                "backup path {} does not exist (yet): skipped",
                source.display()
            );
            continue;
        }
        let (archive, uploaded) = upload_archive(store, path, &source, scratch.path()).await?;
        report.archives += 1;
        if uploaded > 0 {
            report.archives_uploaded += 1;
            report.bytes_uploaded += uploaded;
        }
        archives.push(archive);
    }

    // The state may have changed while we uploaded: a swap may have committed.
    if let Err(refusal) = may_upload(store, host, config).await? {
        return Ok(Outcome::Refused(refusal));
    }
    tracing::debug!(
        "archives done and state re-checked after {:?}",
        started.elapsed()
    );
    let now = chrono::Utc::now();
    let manifest = Manifest {
        version: 1,
        generation: config.generation,
        created: now.to_rfc3339(),
        is_final,
        blocks,
        archives,
    };
    let key = layout::manifest(&now, config.generation);
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Internal {
        doing: "encoding the manifest",
        reason: e.to_string(),
    })?;
    let size = bytes.len() as u64;
    if store.create_new(&key, bytes).await? == Created::AlreadyExists {
        return Err(BackupError::ManifestExists(key));
    }
    report.bytes_uploaded += size;
    report.manifest = key;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(Outcome::Done(report))
}

/// Every file under `dir`, relative, `/`-separated, sorted.
fn files_in(dir: &Path) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io("list", &d))? {
            let e = e.map_err(io("list", &d))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The files of a block the store has complete, if it does: its index (written last)
/// and every file the index names, at its size, among the `stored` block files (key to
/// size). A block that lost a file after its index was written (a prune that raced an
/// upload did that once) is uploaded again rather than named by every later manifest,
/// none of which would then restore.
async fn stored_block(
    store: &dyn ObjectStore,
    ulid: &str,
    stored: &HashMap<String, u64>,
) -> Result<Option<Vec<FileEntry>>, BackupError> {
    let index = layout::block_index(ulid);
    if !stored.contains_key(&index) {
        return Ok(None);
    }
    let Some(files) = store
        .get(&index)
        .await?
        .and_then(|bytes| serde_json::from_slice::<Vec<FileEntry>>(&bytes).ok())
    else {
        return Ok(None);
    };
    let complete = files
        .iter()
        .all(|f| stored.get(&layout::block_file(ulid, &f.path)) == Some(&f.size));
    Ok(complete.then_some(files))
}

/// Uploads a block; its index goes last. Returns bytes sent.
async fn upload_block(
    store: &dyn ObjectStore,
    ulid: &str,
    dir: &Path,
) -> Result<(Block, u64), BackupError> {
    let index_key = layout::block_index(ulid);
    let names = files_in(dir)?;
    let dir_owned = dir.to_path_buf();
    let files: Vec<FileEntry> = futures_util::stream::iter(names)
        .map(|name| {
            let path = dir_owned.join(&name);
            async move {
                let (size, sha256) = tokio::task::spawn_blocking(move || sha256_file(&path))
                    .await
                    .map_err(|e| BackupError::Internal {
                        doing: "hashing a block file",
                        reason: e.to_string(),
                    })??;
                Ok::<_, BackupError>(FileEntry {
                    path: name,
                    size,
                    sha256,
                })
            }
        })
        .buffered(PARALLEL_TRANSFERS)
        .try_collect()
        .await?;
    let block = Block {
        ulid: ulid.to_string(),
        files,
    };
    // Everything but meta.json, in parallel; meta.json last: a block without it is not a
    // block to Prometheus, and a block without our index is not one to us.
    let (meta, rest): (Vec<&FileEntry>, Vec<&FileEntry>) =
        block.files.iter().partition(|f| f.path == "meta.json");
    let sent: u64 = futures_util::stream::iter(rest)
        .map(|f| {
            let (key, path) = (block.key(f), dir.join(&f.path));
            async move { store.put_file(&key, &path).await }
        })
        .buffer_unordered(PARALLEL_TRANSFERS)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
    let mut total = sent;
    for f in meta {
        total += store.put_file(&block.key(f), &dir.join(&f.path)).await?;
    }
    let index = serde_json::to_vec(&block.files).map_err(|e| BackupError::Internal {
        doing: "encoding a block index",
        reason: e.to_string(),
    })?;
    total += index.len() as u64;
    store.put(&index_key, index).await?;
    Ok((block, total))
}

/// Packs `source` and uploads it unless an archive with the same bytes is stored.
async fn upload_archive(
    store: &dyn ObjectStore,
    path: &Path,
    source: &Path,
    scratch: &Path,
) -> Result<(Archive, u64), BackupError> {
    let packed = scratch.join("archive.tar.gz");
    let (src, out) = (source.to_path_buf(), packed.clone());
    tokio::task::spawn_blocking(move || super::archive::pack(&src, &out))
        .await
        .map_err(|e| BackupError::Internal {
            doing: "packing an archive",
            reason: e.to_string(),
        })??;
    let (size, sha256) = sha256_file(&packed)?;
    let key = layout::archive(&sha256);
    let stored = store
        .list(&key)
        .await?
        .iter()
        .any(|o| o.key == key && o.size == size);
    let sent = if stored {
        0
    } else {
        store.put_file(&key, &packed).await?
    };
    Ok((
        Archive {
            path: path.display().to_string(),
            key,
            size,
            sha256,
        },
        sent,
    ))
}
