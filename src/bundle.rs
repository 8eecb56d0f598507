//! The docker-compose bundle: a reproducible zip of the `docker/` directory (sorted entries,
//! fixed times, modes reduced to 0644/0755), so the same tree always gives the same bytes
//! and the same content hash, and an unpacker that refuses anything escaping its target.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "the bundle directory {dir} cannot be read: {reason}\n  fix: create it (bundle.dir in \
         baton.toml names it) with the compose file in it"
    )]
    Unreadable { dir: PathBuf, reason: String },
    #[error(
        "{}, which a bundle cannot carry\n  fix: replace each with a regular file \
         (the bundle holds regular files and directories only)",
        crate::fsutil::listed(.found)
    )]
    Unsupported { found: Vec<(PathBuf, &'static str)> },
    #[error("the bundle directory {dir} holds no files\n  fix: put the compose file in it")]
    Empty { dir: PathBuf },
    #[error("cannot write the bundle: {0}")]
    Write(String),
    #[error("the bundle is damaged or hostile: {0}")]
    Bad(String),
    #[error("cannot unpack the bundle into {target}: {reason}")]
    Unpack { target: PathBuf, reason: String },
}

impl crate::exit::Classify for BundleError {
    fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BundleError::Unreadable { .. }
                | BundleError::Unsupported { .. }
                | BundleError::Empty { .. }
        )
    }
}

/// A zip in a temporary file (deleted with this value) and its sha256: bundles are
/// streamed from disk to disk, so their size costs no memory.
pub struct Bundle {
    pub file: tempfile::NamedTempFile,
    pub sha256: String,
    pub size: u64,
    pub files: usize,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Regular files under `dir`, as sorted '/'-separated relative names; at least one.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let files = crate::fsutil::regular_files(dir).map_err(|e| match e {
        crate::fsutil::TreeError::Unreadable { reason, .. } => BundleError::Unreadable {
            dir: dir.to_path_buf(),
            reason,
        },
        crate::fsutil::TreeError::Unsupported { found } => BundleError::Unsupported { found },
    })?;
    if files.is_empty() {
        return Err(BundleError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// Checks that `dir` can be bundled (it exists, holds files, only regular ones) without
/// zipping it: what `baton plan` and a swap's preflight ask before anything is uploaded.
pub fn check_dir(dir: &Path) -> Result<(), BundleError> {
    files_under(dir).map(|_| ())
}

/// Zips `dir` reproducibly into a temporary file in `scratch` (where it is to end up, so
/// that persisting it is a rename).
pub fn zip_dir(dir: &Path, scratch: &Path) -> Result<Bundle, BundleError> {
    use std::os::unix::fs::PermissionsExt;
    let files = files_under(dir)?;
    let write = |e: zip::result::ZipError| BundleError::Write(e.to_string());
    let io = |e: std::io::Error| BundleError::Write(e.to_string());
    let out = tempfile::Builder::new()
        .prefix(".baton-bundle-")
        .tempfile_in(scratch)
        .map_err(io)?;
    let mut zip = ZipWriter::new(out.reopen().map_err(io)?);
    for (name, path) in &files {
        let unreadable = |e: std::io::Error| BundleError::Unreadable {
            dir: dir.to_path_buf(),
            reason: format!("{}: {e}", path.display()),
        };
        let mut source = std::fs::File::open(path).map_err(unreadable)?;
        let meta = source.metadata().map_err(unreadable)?;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(DateTime::default())
            .unix_permissions(mode)
            .large_file(meta.len() >= u64::from(u32::MAX));
        zip.start_file(name.as_str(), options).map_err(write)?;
        std::io::copy(&mut source, &mut zip).map_err(unreadable)?;
    }
    zip.finish().map_err(write)?.sync_all().map_err(io)?;
    let (size, sha256) = crate::backup::sha256_of(out.path()).map_err(io)?;
    Ok(Bundle {
        file: out,
        sha256,
        size,
        files: files.len(),
    })
}

/// Unpacks the zip at `archive` into `target`, which must not exist yet: everything goes
/// into a staging directory beside it first, so a bad entry leaves nothing behind.
pub fn unpack(archive: &Path, target: &Path) -> Result<(), BundleError> {
    let fail = |reason: String| BundleError::Unpack {
        target: target.to_path_buf(),
        reason,
    };
    let parent = target
        .parent()
        .ok_or_else(|| fail("it has no parent directory".into()))?;
    std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    let staging = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempdir_in(parent)
        .map_err(|e| fail(e.to_string()))?;
    let file = std::fs::File::open(archive).map_err(|e| fail(e.to_string()))?;
    let mut archive = ZipArchive::new(file).map_err(|e| BundleError::Bad(e.to_string()))?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| BundleError::Bad(e.to_string()))?;
        let name = entry
            .name()
            .map_or_else(|_| "(not UTF-8)".to_string(), |n| n.into_owned());
        let Some(rel) = entry.enclosed_name() else {
            return Err(BundleError::Bad(format!(
                "entry {name:?} would land outside the target"
            )));
        };
        if entry.is_symlink() {
            return Err(BundleError::Bad(format!(
                "entry {name:?} is a symbolic link"
            )));
        }
        let dest = staging.path().join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| fail(e.to_string()))?;
            continue;
        }
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| fail(e.to_string()))?;
        }
        let mode = if entry.unix_mode().unwrap_or(0) & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        // The staging directory is new and ours alone: O_EXCL refuses a repeated entry.
        let mut out = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&dest)
                .map_err(|e| BundleError::Bad(format!("{name}: {e}")))?
        };
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| BundleError::Bad(format!("{name}: {e}")))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        fail(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("grafana/dashboards")).unwrap();
        std::fs::write(dir.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(dir.join("grafana/dashboards/site.json"), "{}").unwrap();
    }

    #[test]
    fn same_tree_same_bytes_and_a_change_changes_them() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        let first = zip_dir(a.path(), &std::env::temp_dir()).unwrap();
        let other = zip_dir(b.path(), &std::env::temp_dir()).unwrap();
        assert_eq!(first.sha256, other.sha256);
        assert_eq!(first.files, 2);
        std::fs::write(b.path().join("compose.yaml"), "services: {x: {}}\n").unwrap();
        assert_ne!(
            zip_dir(b.path(), &std::env::temp_dir()).unwrap().sha256,
            first.sha256
        );
    }

    #[test]
    fn unpacks_what_it_packed_and_refuses_a_symlink() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let z = zip_dir(src.path(), &std::env::temp_dir()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("stack");
        unpack(z.file.path(), &target).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("grafana/dashboards/site.json")).unwrap(),
            "{}"
        );
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        let e = zip_dir(src.path(), &std::env::temp_dir())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn an_escaping_entry_leaves_nothing_behind() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("ok.txt", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"fine").unwrap();
        zip.start_file("../evil.txt", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"evil").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let out = tempfile::tempdir().unwrap();
        let zipped = out.path().join("evil.zip");
        std::fs::write(&zipped, bytes).unwrap();
        let e = unpack(&zipped, &out.path().join("stack")).unwrap_err();
        assert!(e.to_string().contains("outside the target"), "{e}");
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "evil.zip")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
