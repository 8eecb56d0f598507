//! Extra paths (the proxy's ACME state, say) as tar + gzip, made so that the same tree
//! always gives the same bytes (so an unchanged path is recognised by its hash and not
//! uploaded again), and unpacked so that nothing can land outside the target.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive entry {entry:?} is refused: {why}")]
    Hostile { entry: String, why: &'static str },
    #[error(
        "archive {archive} is refused: it unpacks to more than {limit} (what a server wrote \
         to the store must not fill this one's disk)"
    )]
    TooBig { archive: PathBuf, limit: String },
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

/// How many links one resolution may pass through before it is called a loop (Linux's
/// own limit).
const MAX_LINK_HOPS: usize = 40;

/// Whether the symlink at `link` (relative to `root`) resolves to a place inside `root`,
/// following every link it meets on the way as the kernel would, including links that
/// other entries made (`d/s -> ..` makes `d/s/d/s/../..` leave). Missing components are
/// taken as plain directories: a dangling link inside the tree is harmless.
fn link_resolves_inside(root: &Path, link: &Path) -> Result<bool, io::Error> {
    use std::collections::VecDeque;
    let mut at: Vec<std::ffi::OsString> = link
        .parent()
        .map(|p| p.iter().map(|s| s.to_os_string()).collect())
        .unwrap_or_default();
    let mut pending: VecDeque<PathBuf> = VecDeque::new();
    let mut hops = 0;
    let queue_target = |pending: &mut VecDeque<PathBuf>, target: PathBuf| {
        for c in target.components().rev() {
            pending.push_front(c.as_os_str().into());
        }
    };
    queue_target(&mut pending, std::fs::read_link(root.join(link))?);
    while let Some(part) = pending.pop_front() {
        match part.components().next() {
            Some(Component::Normal(name)) => {
                at.push(name.to_os_string());
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>());
                if std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Ok(false);
                    }
                    at.pop();
                    queue_target(&mut pending, std::fs::read_link(&here)?);
                }
            }
            Some(Component::ParentDir) => {
                if at.pop().is_none() {
                    return Ok(false);
                }
            }
            Some(Component::CurDir) | None => {}
            Some(Component::RootDir | Component::Prefix(_)) => return Ok(false),
        }
    }
    Ok(true)
}

/// Makes sure every directory from `dest` down to `dest/rel` is a real directory
/// (creating the missing ones when `create`): never one that is a link, which would
/// redirect whatever is written below it.
fn real_dirs(dest: &Path, rel: &Path, create: bool) -> Result<(), &'static str> {
    let mut here = dest.to_path_buf();
    for part in rel.iter() {
        here.push(part);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Err("is below a symbolic link"),
            Ok(_) => return Err("is below a file"),
            Err(_) if create => std::fs::create_dir(&here).map_err(|_| "cannot be created")?,
            Err(_) => return Err("is below a directory not unpacked before it"),
        }
    }
    Ok(())
}

/// Unpacks `archive` into `dest` (which must exist and be empty). Nothing is ever written
/// through a link, and any entry that would land or point outside `dest` (absolute, `..`,
/// a link that resolves outside, even through other links, a device) refuses the whole
/// archive; the caller unpacks into a staging directory, so nothing half-done is kept.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let compressed = std::fs::metadata(archive)
        .map_err(io_err("open", archive))?
        .len();
    unpack_within(archive, dest, Limits::for_archive(compressed))
}

/// What one archive may unpack to. Archives come from the store, which every server
/// writes (issue 29): a 2 MB gzip of zeros is 2 GiB on disk. TSDB chunks are compressed
/// already and an index compresses a few times, so 64 times the archive's size and 64 MiB
/// more is room for any backup baton writes; a block holds a handful of files.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl Limits {
    pub fn for_archive(compressed: u64) -> Limits {
        Limits {
            bytes: compressed.saturating_mul(64).saturating_add(64 << 20),
            entries: 100_000,
        }
    }
}

/// [`unpack`] with the limits given.
pub fn unpack_within(archive: &Path, dest: &Path, limits: Limits) -> Result<(), ArchiveError> {
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut links = Vec::new();
    let too_big = |limit: String| ArchiveError::TooBig {
        archive: archive.to_path_buf(),
        limit,
    };
    let (mut written, mut entries) = (0u64, 0u64);
    for entry in tar.entries().map_err(io_err("read", archive))? {
        let mut entry = entry.map_err(io_err("read", archive))?;
        entries += 1;
        if entries > limits.entries {
            return Err(too_big(format!("{} entries", limits.entries)));
        }
        let raw = entry.path().map_err(io_err("read", archive))?.into_owned();
        let name = raw.display().to_string();
        let hostile = |why| ArchiveError::Hostile {
            entry: name.clone(),
            why,
        };
        let rel = safe_relative(&raw).map_err(hostile)?;
        real_dirs(dest, rel.parent().unwrap_or(Path::new("")), true).map_err(hostile)?;
        let target = dest.join(&rel);
        let existing = std::fs::symlink_metadata(&target).ok();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777; // never setuid/setgid
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                match existing {
                    None => std::fs::create_dir(&target).map_err(io_err("create", &target))?,
                    Some(m) if m.file_type().is_dir() => {}
                    Some(_) => return Err(hostile("replaces an earlier entry")),
                }
                set_mode(&target, mode | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if existing.is_some() {
                    return Err(hostile("replaces an earlier entry"));
                }
                // O_EXCL: never opens through a link that appeared in the meantime.
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err("write", &target))?;
                // One byte past what is left tells "exactly the limit" from "more".
                let left = limits.bytes - written;
                let copied = io::copy(&mut (&mut entry).take(left + 1), &mut out)
                    .map_err(io_err("write", &target))?;
                if copied > left {
                    drop(out);
                    let _ = std::fs::remove_file(&target);
                    return Err(too_big(format!("{} bytes", limits.bytes)));
                }
                written += copied;
                set_mode(&target, mode)?;
            }
            tar::EntryType::Symlink => {
                if existing.is_some() {
                    return Err(hostile("replaces an earlier entry"));
                }
                let link = entry
                    .link_name()
                    .map_err(io_err("read", archive))?
                    .ok_or_else(|| hostile("is a link without a target"))?;
                std::os::unix::fs::symlink(&link, &target).map_err(io_err("link", &target))?;
                links.push((rel, name.clone()));
            }
            tar::EntryType::Link => {
                if existing.is_some() {
                    return Err(hostile("replaces an earlier entry"));
                }
                let link = entry
                    .link_name()
                    .map_err(io_err("read", archive))?
                    .ok_or_else(|| hostile("is a link without a target"))?;
                let link = safe_relative(&link)
                    .map_err(|_| hostile("is a hard link pointing outside the target"))?;
                // linkat follows links in the source's directories: an earlier entry
                // must be a regular file reached through real directories only.
                let source = dest.join(&link);
                let regular = std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file());
                let parent = link.parent().unwrap_or(Path::new(""));
                if !regular || real_dirs(dest, parent, false).is_err() {
                    return Err(hostile(
                        "is a hard link to something not unpacked before it",
                    ));
                }
                std::fs::hard_link(&source, &target).map_err(io_err("link", &target))?;
            }
            _ => return Err(hostile("is a device, FIFO or other special file")),
        }
    }
    // Judged once the whole tree stands, so a link made later cannot redirect an earlier one.
    for (rel, name) in links {
        let inside = link_resolves_inside(dest, &rel).map_err(io_err("read link", &rel))?;
        if !inside {
            return Err(ArchiveError::Hostile {
                entry: name,
                why: "is a link that resolves outside the target",
            });
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

    fn tree(links: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::create_dir_all(root.path().join("d")).unwrap();
        for (at, to) in links {
            std::os::unix::fs::symlink(to, root.path().join(at)).unwrap();
        }
        root
    }

    fn inside(root: &tempfile::TempDir, link: &str) -> bool {
        link_resolves_inside(root.path(), Path::new(link)).unwrap()
    }

    /// A gzipped tar of `files` (name, length of zeros).
    fn zeros_archive(dir: &Path, files: &[(&str, usize)]) -> PathBuf {
        let path = dir.join("a.tar.gz");
        let gz = GzEncoder::new(File::create(&path).unwrap(), Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (name, len) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(*len as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, io::repeat(0).take(*len as u64))
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn an_archive_that_unpacks_past_its_limits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // 16 MiB of zeros gzip to about 16 KiB: 1000 times, where a backup is a few.
        let bomb = zeros_archive(dir.path(), &[("chunks/000001", 16 << 20)]);
        let compressed = std::fs::metadata(&bomb).unwrap().len();
        assert!(compressed < 64 << 10, "{compressed}");
        let limits = Limits {
            bytes: 1 << 20,
            entries: 10,
        };
        let dest = dir.path().join("bomb");
        std::fs::create_dir(&dest).unwrap();
        let err = unpack_within(&bomb, &dest, limits).unwrap_err();
        assert!(matches!(err, ArchiveError::TooBig { .. }), "{err}");
        assert!(
            !dest.join("chunks/000001").exists(),
            "the file that went past the limit is removed"
        );
        // The same bytes within the limits unpack.
        let fits = Limits {
            bytes: 16 << 20,
            entries: 10,
        };
        let dest = dir.path().join("fits");
        std::fs::create_dir(&dest).unwrap();
        unpack_within(&bomb, &dest, fits).unwrap();
        // Entries are counted too (inodes run out before bytes do).
        let many: Vec<(String, usize)> = (0..11).map(|i| (format!("f{i}"), 0)).collect();
        let many: Vec<(&str, usize)> = many.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let crowd = zeros_archive(&dir.path().join("fits"), &many);
        let dest = dir.path().join("crowd");
        std::fs::create_dir(&dest).unwrap();
        let err = unpack_within(&crowd, &dest, limits).unwrap_err();
        assert!(err.to_string().contains("10 entries"), "{err}");
        // The default for an archive of that size: 64 times it and 64 MiB.
        assert_eq!(Limits::for_archive(1 << 20).bytes, (64 << 20) + (64 << 20));
    }

    #[test]
    fn links_are_judged_from_where_they_sit() {
        let t = tree(&[
            ("a/b/up", "../c"),
            ("a/out", "../../c"),
            ("a/abs", "/etc/passwd"),
            ("a/b/zig", "x/../../../c"),
        ]);
        assert!(inside(&t, "a/b/up"));
        assert!(!inside(&t, "a/out"));
        assert!(!inside(&t, "a/abs"));
        assert!(inside(&t, "a/b/zig")); // x/.. then ../.. : back at the root
    }

    #[test]
    fn links_are_followed_through_other_links() {
        // The probe's chain: every piece looks harmless as text.
        let t = tree(&[("d/s", ".."), ("esc", "d/s/d/s/../../..")]);
        assert!(inside(&t, "d/s"));
        assert!(!inside(&t, "esc"));
        let t = tree(&[("loop1", "loop2"), ("loop2", "loop1")]);
        assert!(
            !inside(&t, "loop1"),
            "a loop is refused, not followed forever"
        );
    }
}
