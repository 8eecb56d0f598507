//! Extra paths (the proxy's ACME state, say) as tar + gzip, made so that the same tree
//! always gives the same bytes (so an unchanged path is recognised by its hash and not
//! uploaded again), and unpacked so that nothing can land outside the target.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive entry {entry:?} is refused: {why}")]
    Hostile { entry: String, why: &'static str },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir`'s tree into `out` as a reproducible tar.gz: entries sorted, times, owners
/// and gzip header fixed, modes kept.
pub fn pack(dir: &Path, out: &Path) -> Result<(), ArchiveError> {
    let file = File::create(out).map_err(io_err("create", out))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.follow_symlinks(false);
    let mut entries = Vec::new();
    collect(dir, dir, &mut entries)?;
    entries.sort();
    for rel in entries {
        let path = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err("read link", &path))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &rel, &target)
                .map_err(io_err("archive", &path))?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &rel, io::empty())
                .map_err(io_err("archive", &path))?;
        } else if meta.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let f = File::open(&path).map_err(io_err("read", &path))?;
            tar.append_data(&mut header, &rel, f)
                .map_err(io_err("archive", &path))?;
        }
    }
    let gz = tar.into_inner().map_err(io_err("finish", out))?;
    gz.finish()
        .and_then(|mut f| f.flush().and_then(|()| f.sync_all()))
        .map_err(io_err("finish", out))?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArchiveError> {
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let ft = entry.file_type().map_err(io_err("stat", &path))?;
        out.push(rel);
        if ft.is_dir() {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

/// A relative path with only normal components, or why not.
fn safe_relative(p: &Path) -> Result<PathBuf, &'static str> {
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => clean.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains .."),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    if clean.as_os_str().is_empty() {
        Err("is empty")
    } else {
        Ok(clean)
    }
}

/// Whether a symlink at `entry` pointing to `target` stays inside the archive's root.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = entry.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Unpacks `archive` into `dest` (which must exist and be empty). Any entry that would
/// land outside `dest` (absolute, `..`, a link pointing out, a device) refuses the whole
/// archive; the caller unpacks into a staging directory, so nothing half-done is kept.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(io_err("read", archive))? {
        let mut entry = entry.map_err(io_err("read", archive))?;
        let raw = entry.path().map_err(io_err("read", archive))?.into_owned();
        let name = raw.display().to_string();
        let hostile = |why| ArchiveError::Hostile {
            entry: name.clone(),
            why,
        };
        let rel = safe_relative(&raw).map_err(hostile)?;
        let target = dest.join(&rel);
        let kind = entry.header().entry_type();
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            // A parent that is a symlink would redirect the write.
            if std::fs::symlink_metadata(parent)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
            {
                return Err(hostile("is below a symbolic link"));
            }
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777; // never setuid/setgid
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(io_err("create", &target))?;
                set_mode(&target, mode | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = File::create(&target).map_err(io_err("write", &target))?;
                io::copy(&mut entry, &mut out).map_err(io_err("write", &target))?;
                set_mode(&target, mode)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_err("read", archive))?
                    .ok_or_else(|| hostile("is a link without a target"))?;
                if !link_stays_inside(&rel, &link) {
                    return Err(hostile("is a link pointing outside the target"));
                }
                std::os::unix::fs::symlink(&link, &target).map_err(io_err("link", &target))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err("read", archive))?
                    .ok_or_else(|| hostile("is a link without a target"))?;
                let link = safe_relative(&link)
                    .map_err(|_| hostile("is a hard link pointing outside the target"))?;
                std::fs::hard_link(dest.join(link), &target).map_err(io_err("link", &target))?;
            }
            _ => return Err(hostile("is a device, FIFO or other special file")),
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ArchiveError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("set mode of", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_from_where_they_sit() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("../c")));
        assert!(!link_stays_inside(
            Path::new("a/b"),
            Path::new("/etc/passwd")
        ));
        assert!(!link_stays_inside(
            Path::new("a/b"),
            Path::new("x/../../../c")
        ));
    }
}
