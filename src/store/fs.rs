//! A store on a local folder: the rehearsal's store, and the tests' second implementation.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Created, Downloaded, ObjectMeta, ObjectStore, StoreError, check_key};

pub struct FsStore {
    root: PathBuf,
    url: String,
}

impl FsStore {
    pub fn new(root: &Path, url: &str) -> Result<FsStore, StoreError> {
        if !root.is_absolute() {
            return Err(StoreError::BadUrl {
                url: url.to_string(),
                reason: "the path is not absolute".into(),
            });
        }
        std::fs::create_dir_all(root).map_err(|e| StoreError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(FsStore {
            root: root.to_path_buf(),
            url: url.to_string(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, op: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_string(),
            store: self.url.clone(),
            reason: e.to_string(),
        }
    }

    /// A synced temporary file beside `target`, holding `bytes`.
    fn staged(
        &self,
        key: &str,
        target: &Path,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = target.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| self.io("create directory for", key, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".baton-tmp-")
            .tempfile_in(dir)
            .map_err(|e| self.io("stage", key, e))?;
        fill(tmp.as_file_mut())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| self.io("write", key, e))?;
        Ok(tmp)
    }
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl FsStore {
    /// Opens `key` for reading if it holds at most `limit` bytes; `None` when missing.
    fn open_within(&self, key: &str, limit: u64) -> Result<Option<std::fs::File>, StoreError> {
        let file = match std::fs::File::open(self.path(key)?) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read", key, e)),
        };
        let len = file.metadata().map_err(|e| self.io("stat", key, e))?.len();
        if len > limit {
            return Err(self.too_large(key, limit));
        }
        Ok(Some(file))
    }

    fn too_large(&self, key: &str, limit: u64) -> StoreError {
        StoreError::TooLarge {
            key: key.to_string(),
            store: self.url.clone(),
            limit,
        }
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let target = self.path(key)?;
        let tmp = self.staged(key, &target, |f| f.write_all(&bytes))?;
        tmp.persist(&target)
            .map_err(|e| self.io("rename into place", key, e.error))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        let target = self.path(key)?;
        let source = path.to_path_buf();
        let tmp = self.staged(key, &target, |f| {
            std::io::copy(&mut std::fs::File::open(&source)?, f).map(|_| ())
        })?;
        let size = tmp
            .as_file()
            .metadata()
            .map_err(|e| self.io("stat", key, e))?
            .len();
        tmp.persist(&target)
            .map_err(|e| self.io("rename into place", key, e.error))?;
        Ok(size)
    }

    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError> {
        let target = self.path(key)?;
        let tmp = self.staged(key, &target, |f| f.write_all(&bytes))?;
        // link(2) fails if the target exists: an atomic create-if-absent, whole or nothing.
        match std::fs::hard_link(tmp.path(), &target) {
            Ok(()) => Ok(Created::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExists),
            Err(e) => Err(self.io("create", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::Read;
        let Some(src) = self.open_within(key, super::MAX_SMALL_OBJECT)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        src.take(super::MAX_SMALL_OBJECT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io("read", key, e))?;
        if bytes.len() as u64 > super::MAX_SMALL_OBJECT {
            return Err(self.too_large(key, super::MAX_SMALL_OBJECT));
        }
        Ok(Some(bytes))
    }

    async fn get_to_file(
        &self,
        key: &str,
        path: &Path,
        limit: u64,
    ) -> Result<Option<Downloaded>, StoreError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        use std::io::Read;
        let Some(mut src) = self.open_within(key, limit)? else {
            return Ok(None);
        };
        let mut dst =
            std::fs::File::create(path).map_err(|e| self.io("write local copy of", key, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(|e| self.io("read", key, e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            // The file grew after the look at its length.
            if total > limit {
                return Err(self.too_large(key, limit));
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])
                .map_err(|e| self.io("write local copy of", key, e))?;
        }
        Ok(Some(Downloaded {
            size: total,
            sha256: hex::encode(hasher.finalize()),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let url = self.url.clone();
        run_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::Io {
                            op: "list",
                            key: prefix.clone(),
                            store: url.clone(),
                            reason: e.to_string(),
                        });
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with(".baton-tmp-") {
                        continue; // a write in progress (or abandoned by a crash)
                    }
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().into_owned();
                        if key.starts_with(&prefix) {
                            out.push(ObjectMeta {
                                key,
                                size: meta.len(),
                            });
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("delete", key, e)),
        }
    }

    async fn download_url(
        &self,
        key: &str,
        _valid: std::time::Duration,
    ) -> Result<String, StoreError> {
        Ok(format!("file://{}", self.path(key)?.display()))
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
