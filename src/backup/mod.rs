//! The host side: back Prometheus (and a few paths) up to the store, restore the newest
//! verified backup, keep the store tidy.
//!
//! Exactly one writer: a host uploads only while `state.json` names its generation active
//! *and* its own restore finished (the marker [`restore::MARKER`]). A new VM booting during
//! a swap therefore cannot overwrite good backups, and a demoted one stops.

pub mod agent;
pub mod archive;
pub mod manifest;
pub mod prometheus;
pub mod restore;
pub mod retention;
pub mod upload;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent_config::AgentConfig;
use crate::state::{self, StateError};
use crate::store::{ObjectStore, StoreError};

/// Host paths, optionally under another root (tests, chroots): `/srv/prometheus` becomes
/// `ROOT/srv/prometheus`.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    pub fn new(root: Option<&Path>) -> Host {
        Host {
            root: root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
        }
    }

    pub fn path(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error("Prometheus at {url}: {reason}\n  fix: {fix}")]
    Prometheus {
        url: String,
        reason: String,
        fix: &'static str,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another backup or restore is running on this host (lock {0})")]
    Busy(PathBuf),
    #[error(
        "no backup could be restored: {0}\n  fix: check the store; the agent will not upload until a restore is verified"
    )]
    NothingRestorable(String),
    #[error("{0}")]
    Refused(Refusal),
    #[error(
        "manifest {key} does not parse ({reason}): not pruning, since what it names is unknown\n  fix: inspect that object; delete it only if it is no backup"
    )]
    UnreadableManifest { key: String, reason: String },
    /// A worker task died or a value would not encode: a bug, not bad input.
    #[error("internal error while {doing}: {reason}")]
    Internal { doing: &'static str, reason: String },
    #[error("manifest {0} already exists: refusing to overwrite a backup")]
    ManifestExists(String),
    #[error(
        "{target} already holds data: refusing to restore over it\n  fix: pass --if-empty to keep it, or move it away first"
    )]
    TargetNotEmpty { target: PathBuf },
}

impl crate::exit::Classify for BackupError {
    fn is_bad_input(&self) -> bool {
        match self {
            BackupError::TargetNotEmpty { .. } => true,
            BackupError::Store(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

pub(crate) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Why a host may not upload right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotRestored { generation: u64 },
    NoActiveGeneration,
    NotActive { mine: u64, active: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotRestored { generation } => write!(
                f,
                "not uploading: generation {generation} has not verified its own restore yet (run `baton restore`)"
            ),
            Refusal::NoActiveGeneration => write!(
                f,
                "not uploading: state.json names no active generation yet (the first swap has not committed)"
            ),
            Refusal::NotActive { mine, active } => write!(
                f,
                "not uploading: this host is generation {mine}, the store's active generation is {active}"
            ),
        }
    }
}

/// What `baton restore` leaves behind for the agent: this generation restored, from which
/// manifest (none on a first deploy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreMarker {
    pub generation: u64,
    pub manifest: Option<String>,
    pub at: String,
}

pub fn marker_path(host: &Host, config: &AgentConfig) -> PathBuf {
    host.path(&config.state_dir).join(restore::MARKER)
}

/// The one-writer rule, checked before uploading and again before the manifest.
pub async fn may_upload(
    store: &dyn ObjectStore,
    host: &Host,
    config: &AgentConfig,
) -> Result<Result<(), Refusal>, BackupError> {
    let marker: Option<RestoreMarker> = std::fs::read(marker_path(host, config))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if marker.as_ref().map(|m| m.generation) != Some(config.generation) {
        return Ok(Err(Refusal::NotRestored {
            generation: config.generation,
        }));
    }
    match state::read(store).await?.and_then(|s| s.active) {
        None => Ok(Err(Refusal::NoActiveGeneration)),
        Some(a) if a.generation != config.generation => Ok(Err(Refusal::NotActive {
            mine: config.generation,
            active: a.generation,
        })),
        Some(_) => Ok(Ok(())),
    }
}

/// Holds the host-wide lock while a backup or restore runs: two never overlap.
pub struct HostLock {
    _file: std::fs::File,
}

/// How long a swap's hand-over (`backup --final`, `restore --catch-up`) waits for a
/// backup the agent's schedule started a moment before: it finishes, then the hand-over
/// runs. A backup of the largest TSDB measured here takes well under this.
pub const HANDOVER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl HostLock {
    /// Takes the lock, or says another backup or restore holds it.
    pub fn take(host: &Host, config: &AgentConfig) -> Result<HostLock, BackupError> {
        let (file, path) = HostLock::open(host, config)?;
        match HostLock::try_lock(file, &path)? {
            Some(lock) => Ok(lock),
            None => Err(BackupError::Busy(path)),
        }
    }

    /// Takes the lock, waiting for it up to `within` (polling: a flock has no timeout).
    pub async fn wait(
        host: &Host,
        config: &AgentConfig,
        within: std::time::Duration,
    ) -> Result<HostLock, BackupError> {
        let deadline = std::time::Instant::now() + within;
        let (file, path) = HostLock::open(host, config)?;
        loop {
            let attempt = file.try_clone().map_err(io("open", &path))?;
            if let Some(lock) = HostLock::try_lock(attempt, &path)? {
                return Ok(lock);
            }
            if std::time::Instant::now() >= deadline {
                return Err(BackupError::Busy(path));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    fn open(host: &Host, config: &AgentConfig) -> Result<(std::fs::File, PathBuf), BackupError> {
        let dir = host.path(&config.state_dir);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join("backup.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        Ok((file, path))
    }

    fn try_lock(file: std::fs::File, path: &Path) -> Result<Option<HostLock>, BackupError> {
        match file.try_lock() {
            Ok(()) => Ok(Some(HostLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(BackupError::Io {
                action: "lock",
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }
}

/// Size and sha256 (hex) of a file.
pub fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, hex::encode(h.finalize())))
}

pub(crate) fn sha256_file(path: &Path) -> Result<(u64, String), BackupError> {
    sha256_of(path).map_err(io("read", path))
}
