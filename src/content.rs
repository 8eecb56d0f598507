//! Published content: the operator's `site/` directory, put into the store by content hash
//! (`baton publish`), and pulled by the server into a fresh release directory behind a
//! symlink that is switched in one rename (`baton agent`, and `baton restore` at boot).
//! Content changes need no new server.
//!
//! Store layout: `site/objects/<sha256>` holds each distinct file once; `site/manifest.json`
//! maps every path to its hash and is written after all the objects it names, so a server
//! that reads it finds them. A later publish deletes objects no manifest names any more; a
//! server that was mid-pull then misses one, keeps serving what it has, and tries again at
//! its next interval.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::layout::{self, SITE_MANIFEST as MANIFEST, SITE_OBJECTS as OBJECTS};
use crate::store::{ObjectStore, StoreError};

/// On the server: `<dir>/current` points at `releases/<id>`.
const CURRENT: &str = "current";
const RELEASES: &str = "releases";

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("the site directory {dir} cannot be published: {reason}\n  fix: {fix}")]
    Local {
        dir: PathBuf,
        reason: String,
        fix: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} in the store is not a site manifest: {reason}")]
    BadManifest { key: String, reason: String },
    #[error(
        "{key} is gone from the store (a newer publish removed it while this pull ran); the \
         next pull takes the newer manifest"
    )]
    Missing { key: String },
    #[error("{key} has sha256 {got}, not {want}: refusing it")]
    Mismatch {
        key: String,
        want: String,
        got: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::exit::Classify for ContentError {
    fn is_bad_input(&self) -> bool {
        match self {
            ContentError::Local { .. } => true,
            ContentError::Store(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContentError {
    let path = path.to_path_buf();
    move |source| ContentError::Io {
        action,
        path,
        source,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
}

impl Manifest {
    fn parse(key: &str, bytes: &[u8]) -> Result<Manifest, ContentError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ContentError::BadManifest {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        for (path, entry) in &manifest.files {
            let bad = |reason: &str| ContentError::BadManifest {
                key: key.to_string(),
                reason: format!("{path:?}: {reason}"),
            };
            if !crate::fsutil::is_plain_relative(path) {
                return Err(bad("not a plain relative path"));
            }
            if entry.sha256.len() != 64 || !entry.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("not a sha256"));
            }
        }
        Ok(manifest)
    }

    fn to_bytes(&self) -> Vec<u8> {
        // Invariant: a map of strings to plain structs always serialises.
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Names a release by what it holds: the same content gives the same id.
    fn id(&self) -> String {
        crate::bundle::sha256_hex(&self.to_bytes())[..16].to_string()
    }
}

/// What `baton publish` changed (or, with `--dry-run`, would change).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    pub dry_run: bool,
    pub release: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    pub uploaded_objects: usize,
    pub uploaded_bytes: u64,
    pub deleted_objects: usize,
    /// Where `content.dir` leads when it is itself a link (`site -> _site`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follows_link: Option<String>,
}

impl PublishReport {
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The regular files under `dir` with their hashes.
fn scan(dir: &Path) -> Result<(Manifest, BTreeMap<String, PathBuf>), ContentError> {
    let local = |reason: String, fix| ContentError::Local {
        dir: dir.to_path_buf(),
        reason,
        fix,
    };
    let files = crate::fsutil::regular_files(dir).map_err(|e| {
        local(
            e.to_string(),
            "publish regular files only: replace links with copies, remove special files",
        )
    })?;
    if files.is_empty() {
        return Err(local(
            "it holds no files, and publishing it would empty the site".into(),
            "put the site's pages in it (`baton init` writes a sample)",
        ));
    }
    let mut manifest = Manifest::default();
    let mut paths = BTreeMap::new();
    for (name, path) in files {
        if !crate::fsutil::is_plain_relative(&name) {
            return Err(local(
                format!("{name:?} is not a plain file name"),
                "rename it",
            ));
        }
        let (size, sha256) = crate::backup::sha256_of(&path).map_err(io("read", &path))?;
        manifest
            .files
            .insert(name.clone(), FileEntry { sha256, size });
        paths.insert(name, path);
    }
    Ok((manifest, paths))
}

async fn published(store: &dyn ObjectStore) -> Result<Option<Manifest>, ContentError> {
    match store.get(MANIFEST).await? {
        Some(bytes) => Ok(Some(Manifest::parse(MANIFEST, &bytes)?)),
        None => Ok(None),
    }
}

/// Whether anything has been published yet (a server without content answers 404).
pub async fn is_published(store: &dyn ObjectStore) -> Result<bool, ContentError> {
    Ok(store.get(MANIFEST).await?.is_some())
}

/// Makes the store's `site/` match `dir`: uploads the objects it lacks, then the manifest,
/// then deletes the objects nothing names any more.
pub async fn publish(
    store: &dyn ObjectStore,
    dir: &Path,
    dry_run: bool,
) -> Result<PublishReport, ContentError> {
    let (new, paths) = scan(dir)?;
    let old = published(store).await?.unwrap_or_default();
    let mut report = PublishReport {
        dry_run,
        release: new.id(),
        follows_link: std::fs::read_link(dir)
            .ok()
            .map(|t| t.display().to_string()),
        ..Default::default()
    };
    for (path, entry) in &new.files {
        match old.files.get(path) {
            None => report.added.push(path.clone()),
            Some(o) if o != entry => report.changed.push(path.clone()),
            Some(_) => report.unchanged += 1,
        }
    }
    report.removed = old
        .files
        .keys()
        .filter(|p| !new.files.contains_key(*p))
        .cloned()
        .collect();

    let stored: BTreeSet<String> = store
        .list(OBJECTS)
        .await?
        .into_iter()
        .filter_map(|o| o.key.strip_prefix(OBJECTS).map(str::to_string))
        .collect();
    let wanted: BTreeMap<&str, &str> = new
        .files
        .iter()
        .map(|(path, e)| (e.sha256.as_str(), path.as_str()))
        .collect();
    for (sha, path) in &wanted {
        if stored.contains(*sha) {
            continue;
        }
        report.uploaded_objects += 1;
        report.uploaded_bytes += new.files[*path].size;
        if !dry_run {
            store
                .put_file(&layout::site_object(sha), &paths[*path])
                .await?;
        }
    }
    if new != old && !dry_run {
        store.put(MANIFEST, new.to_bytes()).await?;
    }
    for sha in stored.iter().filter(|s| !wanted.contains_key(s.as_str())) {
        report.deleted_objects += 1;
        if !dry_run {
            store.delete(&layout::site_object(sha)).await?;
        }
    }
    Ok(report)
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Pulled {
    NothingPublished,
    Unchanged {
        release: String,
    },
    Switched {
        release: String,
        files: usize,
        downloaded: usize,
        reused: usize,
    },
}

/// Brings the published content into `root/releases/<id>` and points `root/current` at it
/// in one rename, so a reader sees the old tree or the new one, never a mix. Keeps the
/// previous release too: a reader that resolved `current` just before the switch finishes
/// in a tree that still exists.
pub async fn pull(store: &dyn ObjectStore, root: &Path) -> Result<Pulled, ContentError> {
    let Some(manifest) = published(store).await? else {
        return Ok(Pulled::NothingPublished);
    };
    let id = manifest.id();
    let releases = root.join(RELEASES);
    let current = current_release(root);
    if current.as_deref() == Some(id.as_str()) {
        return Ok(Pulled::Unchanged { release: id });
    }
    std::fs::create_dir_all(&releases).map_err(io("create", &releases))?;
    let target = releases.join(&id);
    let (mut downloaded, mut reused) = (0, 0);
    if !target.is_dir() {
        // Files already on disk in the current release are linked, not fetched again.
        let previous: BTreeMap<String, PathBuf> = match &current {
            Some(cur) => read_release_manifest(&releases, cur)
                .map(|m| {
                    m.files
                        .into_iter()
                        .map(|(path, e)| (e.sha256, releases.join(cur).join(path)))
                        .collect()
                })
                .unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let staging = releases.join(format!(".{id}.partial"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
        }
        match fill(store, &manifest, &staging, &previous).await {
            Ok(counts) => (downloaded, reused) = counts,
            Err(e) => {
                // A failed pull leaves nothing behind; the next one starts over.
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
        std::fs::create_dir_all(&staging).map_err(io("create", &staging))?;
        crate::fsutil::write_atomic(
            &releases.join(format!("{id}.json")),
            &manifest.to_bytes(),
            crate::fsutil::PUBLIC,
        )
        .map_err(|e| ContentError::Io {
            action: "write",
            path: e.path,
            source: e.source,
        })?;
        std::fs::rename(&staging, &target).map_err(io("rename", &staging))?;
    }
    switch(root, &id)?;
    prune(&releases, &id, current.as_deref());
    Ok(Pulled::Switched {
        release: id,
        files: manifest.files.len(),
        downloaded,
        reused,
    })
}

/// Fills `staging` with the manifest's files: linked from `previous` (by content hash)
/// where it has them, fetched and checked otherwise. Returns (fetched, linked).
async fn fill(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    staging: &Path,
    previous: &BTreeMap<String, PathBuf>,
) -> Result<(usize, usize), ContentError> {
    let (mut downloaded, mut reused) = (0, 0);
    // Each object once per pull, whatever number of paths name it: the manifest is
    // written by whoever holds store keys, and 400 paths of one 1 MiB object must not
    // become 400 MiB on the server (issue 29). The rest are links to the first.
    let mut pulled: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for (path, entry) in &manifest.files {
        let dest = staging.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        let have = pulled
            .get(entry.sha256.as_str())
            .or_else(|| previous.get(&entry.sha256));
        if let Some(have) = have
            && std::fs::hard_link(have, &dest).is_ok()
        {
            reused += 1;
            continue;
        }
        let key = layout::site_object(&entry.sha256);
        let got = store
            .get_to_file(&key, &dest, entry.size)
            .await?
            .ok_or_else(|| ContentError::Missing { key: key.clone() })?;
        if got.sha256 != entry.sha256 || got.size != entry.size {
            return Err(ContentError::Mismatch {
                key,
                want: entry.sha256.clone(),
                got: got.sha256,
            });
        }
        pulled.insert(&entry.sha256, dest);
        downloaded += 1;
    }
    Ok((downloaded, reused))
}

/// Pulls every `interval` until `stop` fires; failures are logged and retried, the tree
/// being served stays as it is. `seen` hears every outcome (the agent counts them).
pub async fn keep_pulling(
    store: std::sync::Arc<dyn ObjectStore>,
    root: PathBuf,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    seen: impl Fn(&Result<Pulled, ContentError>) + Send,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let result = pull(store.as_ref(), &root).await;
        seen(&result);
        match result {
            Ok(Pulled::Switched {
                release,
                files,
                downloaded,
                reused,
            }) => tracing::info!(
                "site: now serving release {release} ({files} files: {downloaded} fetched, \
                 {reused} kept)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("site: pull failed, still serving the current release: {e}"),
        }
    }
}

/// The release `root/current` points at, if any.
pub fn current_release(root: &Path) -> Option<String> {
    let target = std::fs::read_link(root.join(CURRENT)).ok()?;
    let name = target.strip_prefix(RELEASES).ok()?;
    Some(name.to_str()?.to_string())
}

fn read_release_manifest(releases: &Path, id: &str) -> Option<Manifest> {
    let key = format!("{id}.json");
    Manifest::parse(&key, &std::fs::read(releases.join(&key)).ok()?).ok()
}

/// Points `root/current` at `releases/<id>` with a relative link (it must resolve inside the
/// proxy's container as well) renamed over the old one.
fn switch(root: &Path, id: &str) -> Result<(), ContentError> {
    let link = root.join(CURRENT);
    let tmp = root.join(".current.new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new(RELEASES).join(id), &tmp).map_err(io("link", &tmp))?;
    std::fs::rename(&tmp, &link).map_err(io("switch", &link))
}

/// Removes every release but `keep` and `previous`, and leftovers of interrupted pulls.
fn prune(releases: &Path, keep: &str, previous: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(releases) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix(".json").unwrap_or(&name);
        if id == keep || Some(id) == previous {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = result {
            tracing::warn!("cannot remove the old release {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "two\nlines.html",
            "tab\there",
        ] {
            assert!(!crate::fsutil::is_plain_relative(bad), "{bad:?} accepted");
        }
        for good in ["index.html", "posts/hello.html", ".well-known/x"] {
            assert!(crate::fsutil::is_plain_relative(good), "{good:?} refused");
        }
        let hostile = br#"{"files":{"../../etc/cron.d/x":{"sha256":"00","size":1}}}"#;
        assert!(matches!(
            Manifest::parse(MANIFEST, hostile),
            Err(ContentError::BadManifest { .. })
        ));
    }
}
