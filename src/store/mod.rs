//! The object store, behind a trait: `s3://bucket/prefix` on any S3-compatible service, or
//! `file:///path` on a local folder with the same semantics.
//!
//! Keys are relative to the store's prefix and use `/`. Writes are whole or absent: a
//! reader never sees half an object. `create_new` only creates (it is how the lock and
//! manifests avoid ever overwriting anything).

pub mod fs;
pub mod layout;
pub mod s3;
pub mod sealed;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use serde::{Deserialize, Serialize};

/// `[store]` in baton.toml and in the agent's config: where the store is and how to reach
/// it. Credentials are never here; they come from the environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `s3://bucket/prefix` or `file:///absolute/path`.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// What a download wrote, and its sha256 (hex), computed as the bytes went by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub size: u64,
    pub sha256: String,
}

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store URL {url:?} is not usable: {reason}\n  fix: write s3://bucket/prefix or file:///absolute/path"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "{var} is not set: the s3 store needs credentials\n  fix: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE naming a profile that has them"
    )]
    MissingCredentials { var: &'static str },
    #[error("object key {0:?} is not allowed (empty, absolute, or with . or .. segments)")]
    BadKey(String),
    #[error("{op} {key} in {store}: {reason}")]
    Io {
        op: &'static str,
        key: String,
        store: String,
        reason: String,
    },
    #[error(
        "{store} ignores conditional writes (If-None-Match: *): baton cannot lock or protect \
         manifests there\n  fix: use a store that supports conditional PUT (AWS S3, Exoscale SOS, \
         MinIO, Garage) or the local file store"
    )]
    NoConditionalWrites { store: String },
    /// Credentials or rights to fix: exit 2, as the cloud's 403 is.
    #[error(
        "the store refused to {op} {key} in {store} (HTTP 403: {code}: {message})\n  fix: \
         check the store key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY here, \
         /etc/baton/agent.env on a server), its rights on the bucket, and this machine's clock"
    )]
    Forbidden {
        op: &'static str,
        key: String,
        store: String,
        code: String,
        message: String,
    },
    #[error(
        "{key} in {store} is refused: {why}. Only the operator writes it, signed with the \
         site's host CA key, and every server can write to the store\n  fix: if a baton older \
         than the signatures wrote it, `baton adopt` checks what it names against the cloud and \
         signs it; otherwise someone else wrote it: look at it, and at who holds the store's keys"
    )]
    NotSealed {
        key: String,
        store: String,
        why: String,
    },
    /// Every server writes to the store: an object may be far larger than what names it
    /// says, or endless. Reading stops at the limit.
    #[error(
        "object {key} in {store} is larger than the {limit} bytes expected of it: nothing \
         past that was read (a server may have written it)"
    )]
    TooLarge {
        key: String,
        store: String,
        limit: u64,
    },
}

/// What [`ObjectStore::get`] reads at most: it serves JSON (manifests, state, journals,
/// locks) and indexes, all far smaller; an endless object must not exhaust memory.
pub const MAX_SMALL_OBJECT: u64 = 64 << 20;

impl crate::exit::Classify for StoreError {
    /// A URL or credentials to fix first: exit 2 wherever it surfaces.
    fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::BadUrl { .. }
                | StoreError::MissingCredentials { .. }
                | StoreError::Forbidden { .. }
                | StoreError::NotSealed { .. }
        )
    }
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes `bytes` at `key`, replacing what is there.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Uploads the file at `path` (multipart when large; memory stays bounded).
    async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StoreError>;
    /// Writes `bytes` at `key` only if nothing is there yet.
    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError>;
    /// Reads `key` whole, at most [`MAX_SMALL_OBJECT`] bytes ([`StoreError::TooLarge`]).
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Streams `key` into `path`, hashing on the way; `Ok(None)` when there is no such
    /// object, [`StoreError::TooLarge`] as soon as it passes `limit` bytes (what the
    /// manifest or the journal that names it says it holds).
    async fn get_to_file(
        &self,
        key: &str,
        path: &Path,
        limit: u64,
    ) -> Result<Option<Downloaded>, StoreError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Deletes `key`; a missing object is success.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// A URL a host without this store's credentials can fetch `key` from until `valid`
    /// has passed (pre-signed for S3; a `file://` URL for the file store, local only).
    async fn download_url(
        &self,
        key: &str,
        valid: std::time::Duration,
    ) -> Result<String, StoreError>;
    /// A human name for messages: the URL.
    fn describe(&self) -> String;
}

/// Opens the store a config names. S3 credentials come from the environment only.
pub async fn open(config: &Settings) -> Result<Arc<dyn ObjectStore>, StoreError> {
    open_with(config, &|var| std::env::var(var).ok()).await
}

/// Opens the store with credentials looked up in `env`.
pub async fn open_with(
    config: &Settings,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let Some(path) = config.url.strip_prefix("file://") {
        return Ok(Arc::new(fs::FsStore::new(Path::new(path), &config.url)?));
    }
    if config.url.starts_with("s3://") {
        return Ok(Arc::new(s3::S3Store::from_config(config, env).await?));
    }
    Err(StoreError::BadUrl {
        url: config.url.clone(),
        reason: "unknown scheme".into(),
    })
}

/// Keys are `/`-separated, relative, without `.`/`..` segments: they can never name a
/// path outside a file store's root.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_cannot_escape() {
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", ".."] {
            assert!(super::check_key(bad).is_err(), "{bad}");
        }
        super::check_key("backups/blocks/01H/chunks/000001").unwrap();
    }
}
