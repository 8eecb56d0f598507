//! A backup is its manifest: written last, it lists every object with its size and sha256.
//! Objects without a manifest that names them are not a backup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::layout::{self, ARCHIVES};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub generation: u64,
    pub created: String,
    /// The hand-over backup a swap takes on the old host.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub blocks: Vec<Block>,
    pub archives: Vec<Archive>,
}

/// One immutable TSDB block, named by its ULID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Block {
    pub ulid: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the block directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A host path (e.g. `/srv/acme`) as a tar + gzip archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Archive {
    pub path: String,
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// What a manifest is allowed to make restore do on this host, decided before anything
/// is downloaded or created.
///
/// The store is shared by every generation, and every host holds credentials to write
/// it, so one compromised host could plant a manifest for the next one to restore as
/// root: a manifest is input, not instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Each archive to restore, with the configured path it goes to (the config's path,
    /// never the manifest's text).
    pub archives: Vec<(&'a Archive, &'a Path)>,
    /// Archives of paths this host does not back up (the config changed, or the manifest
    /// is hostile): left alone, and said so.
    pub skipped: Vec<String>,
}

impl Manifest {
    /// Checks every name the manifest would turn into a path or a key, and matches its
    /// archives to `paths` (the host's `backup.paths`). `Err` says why the manifest cannot
    /// be used at all; restore then falls back to an older one.
    pub fn plan<'a>(&'a self, paths: &'a [PathBuf]) -> Result<Plan<'a>, String> {
        self.check_blocks()?;
        let mut archives = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = HashSet::new();
        for a in &self.archives {
            if !a.key.starts_with(ARCHIVES) || crate::store::check_key(&a.key).is_err() {
                return Err(format!(
                    "archive of {:?} names object {:?}, which is not under {ARCHIVES}",
                    a.path, a.key
                ));
            }
            // Exact match against the configured paths: never a path the manifest builds.
            match paths.iter().find(|p| p.as_path() == Path::new(&a.path)) {
                Some(target) if crate::fsutil::is_plain_absolute(target) => {
                    if !seen.insert(target) {
                        return Err(format!("archive of {} appears twice", a.path));
                    }
                    archives.push((a, target.as_path()));
                }
                _ => skipped.push(a.path.clone()),
            }
        }
        Ok(Plan { archives, skipped })
    }

    /// The blocks alone (what `--catch-up` uses): ULID names, plain relative file paths,
    /// no file that is also another's directory.
    pub fn check_blocks(&self) -> Result<(), String> {
        let mut ulids = HashSet::new();
        for b in &self.blocks {
            if !is_ulid(&b.ulid) {
                return Err(format!("block {:?} is not named by a ULID", b.ulid));
            }
            if !ulids.insert(b.ulid.as_str()) {
                return Err(format!("block {} appears twice", b.ulid));
            }
            let files: HashSet<&str> = b.files.iter().map(|f| f.path.as_str()).collect();
            if files.len() != b.files.len() {
                return Err(format!("block {} lists a file twice", b.ulid));
            }
            for f in &b.files {
                if !crate::fsutil::is_plain_relative(&f.path) {
                    return Err(format!(
                        "block {} lists file {:?}, which is not a plain relative path",
                        b.ulid, f.path
                    ));
                }
                let mut dir = f.path.as_str();
                while let Some((parent, _)) = dir.rsplit_once('/') {
                    if files.contains(parent) {
                        return Err(format!(
                            "block {} lists {parent:?} both as a file and as a directory",
                            b.ulid
                        ));
                    }
                    dir = parent;
                }
            }
        }
        Ok(())
    }
}

impl Block {
    pub fn key(&self, file: &FileEntry) -> String {
        layout::block_file(&self.ulid, &file.path)
    }
}

/// A ULID: 26 Crockford base32 characters (what Prometheus names blocks).
pub fn is_ulid(name: &str) -> bool {
    name.len() == 26
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_sort_by_time_and_ulids_are_checked() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:00.123Z")
            .unwrap()
            .to_utc();
        let key = layout::manifest(&t, 7);
        let later = layout::manifest(&(t + chrono::Duration::seconds(1)), 3);
        assert!(later > key);
        assert!(
            is_ulid("01HZX3K5V0J9W8Q7E6R5T4Y3M2")
                && !is_ulid("snapshots")
                && !is_ulid("01hzx3k5v0j9w8q7e6r5t4y3m2")
        );
    }
}
