//! Writing files so that a crash or a refusal never leaves half-written state behind.
//!
//! Every file baton writes goes through here: either it is created whole, with its final
//! permissions from the first byte (a private key is never briefly world-readable), or it
//! is not there at all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Permissions for files that hold a secret: readable by the owner only.
pub const PRIVATE: u32 = 0o600;
/// Permissions for files anyone may read (public keys, certificates, configs).
pub const PUBLIC: u32 = 0o644;

/// An I/O failure together with the file it concerns, so messages can name it.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub fn read_to_string(path: &Path) -> Result<String, FileError> {
    read_small(path).map_err(|e| FileError::new("cannot read", path, e))
}

/// The most any config, key or certificate file may hold: far above what one needs, far
/// below what would hurt to hold in memory.
pub const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// Reads a config, key or certificate file whole, refusing anything that is not a regular
/// file (a link to `/dev/zero` would never end) or holds more than [`SMALL_FILE_LIMIT`].
pub fn read_small(path: &Path) -> io::Result<String> {
    let limit = SMALL_FILE_LIMIT;
    use std::io::Read;
    // Looked at before it is opened: opening a FIFO for reading waits for a writer, so a
    // config or key path that names one would hang baton instead of failing.
    if !fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    let mut text = String::new();
    // One byte over the limit tells a file that is too large from one that fits exactly.
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {} KiB", limit / 1024),
        ));
    }
    Ok(text)
}

pub fn create_dir_all(path: &Path) -> Result<(), FileError> {
    fs::create_dir_all(path).map_err(|e| FileError::new("cannot create directory", path, e))
}

/// Replaces `path` atomically: the bytes go to a temporary file in the same directory,
/// are synced, and the temporary file is renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".baton-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| FileError::new("cannot create a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| FileError::new("cannot write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| FileError::new("cannot rename into place", path, e.error))?;
    Ok(())
}

/// Moves a finished temporary file to `path` atomically, with `mode`.
pub fn persist(file: tempfile::NamedTempFile, path: &Path, mode: u32) -> Result<(), FileError> {
    fs::set_permissions(file.path(), fs::Permissions::from_mode(mode))
        .map_err(|e| FileError::new("cannot set the mode of", file.path(), e))?;
    file.persist(path)
        .map_err(|e| FileError::new("cannot rename into place", path, e.error))?;
    Ok(())
}

/// Creates `path` only if nothing is there yet (`O_EXCL`), with `mode` from the start.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| FileError::new("cannot create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| FileError::new("cannot write", path, e))
}

/// Writes a set of new files all-or-nothing: if any of them cannot be created, the ones
/// already created by this call are removed again, so a failed `baton init` leaves the
/// directory as it found it.
pub fn create_all_new(files: &[(PathBuf, Vec<u8>, u32)]) -> Result<(), FileError> {
    let mut created: Vec<&Path> = Vec::new();
    for (path, bytes, mode) in files {
        if let Err(e) = create_new(path, bytes, *mode) {
            for done in created {
                // Best effort: the original error is what the user needs to see.
                let _ = fs::remove_file(done);
            }
            return Err(e);
        }
        created.push(path);
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"one", PRIVATE).unwrap();
        write_atomic(&p, b"two", PRIVATE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temporary files left beside it
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_all_new_rolls_back_on_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&b, "keep").unwrap();
        let err = create_all_new(&[
            (a.clone(), b"x".to_vec(), PUBLIC),
            (b.clone(), b"y".to_vec(), PUBLIC),
        ])
        .unwrap_err();
        assert_eq!(err.path, b);
        assert!(
            !a.exists(),
            "the file created before the conflict must be removed"
        );
        assert_eq!(fs::read_to_string(&b).unwrap(), "keep");
    }
}

/// `a/b/c`: `/`-separated, relative, no empty, `.` or `..` segment, no backslash and no
/// control character (a newline in a name would garble every report that lists it). The
/// one rule for names that come from a tree or a store and become paths.
pub fn is_plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// `/srv/acme`: absolute, and no `..` anywhere (a host path baton may write).
pub fn is_plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Why a tree of files cannot be read as regular files only.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{dir} cannot be read: {reason}")]
    Unreadable { dir: PathBuf, reason: String },
    /// Every entry that is neither a regular file nor a directory, each with its kind.
    #[error("{}; only regular files and directories are taken", listed(.found))]
    Unsupported { found: Vec<(PathBuf, &'static str)> },
}

/// `a is a symbolic link, b is a special file`: paths escaped, so a name with a newline
/// cannot garble the message.
pub fn listed(found: &[(PathBuf, &'static str)]) -> String {
    found
        .iter()
        .map(|(p, kind)| format!("{:?} is a {kind}", p.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Regular files under `dir`, as sorted '/'-separated relative names with their paths.
/// `dir` itself may be a link (followed: `site -> _site` is how generators are wired);
/// links and special files inside it are refused rather than followed, every one named:
/// what is shipped is exactly what is in the tree.
pub fn regular_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, TreeError> {
    let unreadable = |reason: String| TreeError::Unreadable {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).map_err(|e| unreadable(format!("{}: {e}", d.display())))? {
            let entry = entry.map_err(|e| unreadable(e.to_string()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|e| unreadable(e.to_string()))?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            } else if kind.is_symlink() {
                refused.push((path, "symbolic link"));
            } else {
                refused.push((path, "special file"));
            }
        }
    }
    if !refused.is_empty() {
        refused.sort();
        return Err(TreeError::Unsupported { found: refused });
    }
    out.sort();
    Ok(out)
}
