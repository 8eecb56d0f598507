//! `s3://bucket/prefix` through aws-sdk-s3, for any S3-compatible service.
//!
//! The SDK's defaults are tuned for AWS: it sends CRC32 checksum headers and aws-chunked
//! bodies that many S3-compatible stores reject. Checksums are therefore "when required".
//! Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`), or else the shared files' profile `AWS_PROFILE` names; never from
//! instance metadata, which baton's hosts block.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use super::Settings as StoreConfig;
use super::{Created, Downloaded, ObjectMeta, ObjectStore, StoreError, check_key};

/// Files above this go up in parts, so memory stays at one part per transfer.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
pub const PART_SIZE: usize = 8 << 20;

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    conditional_writes: OnceCell<bool>,
}

/// The keys of a profile in AWS's shared files, read once: a swap's store calls fit well
/// inside the hour an assumed role's keys last.
async fn profile_credentials(profile: &str) -> Result<Credentials, StoreError> {
    use aws_sdk_s3::config::ProvideCredentials;
    aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_name(profile)
        .build()
        .provide_credentials()
        .await
        .map_err(|_| StoreError::MissingCredentials {
            var: "AWS_ACCESS_KEY_ID",
        })
}

impl S3Store {
    /// Credentials come from `env` (the process environment, or a host's agent.env): the
    /// keys (and a session token with temporary ones), or else `AWS_PROFILE`.
    pub async fn from_config(
        config: &StoreConfig,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<S3Store, StoreError> {
        let get = |var: &'static str| env(var).filter(|v| !v.is_empty());
        let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_PROFILE")) {
            // A session token comes with temporary keys (an assumed role, SSO's export).
            (Some(key), _) => Credentials::new(
                key,
                get("AWS_SECRET_ACCESS_KEY").ok_or(StoreError::MissingCredentials {
                    var: "AWS_SECRET_ACCESS_KEY",
                })?,
                get("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ),
            // An operator on AWS may name a profile instead, as for the cloud.
            (None, Some(profile)) => profile_credentials(&profile).await?,
            (None, None) => {
                return Err(StoreError::MissingCredentials {
                    var: "AWS_ACCESS_KEY_ID",
                });
            }
        };
        let endpoint = config.endpoint.clone().ok_or_else(|| StoreError::BadUrl {
            url: config.url.clone(),
            reason: "an s3:// store needs [store] endpoint".into(),
        })?;
        let region = config
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_string());
        Self::new(&config.url, &endpoint, &region, credentials)
    }

    pub fn new(
        url: &str,
        endpoint: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<S3Store, StoreError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::BadUrl {
                url: url.into(),
                reason: "not s3://".into(),
            })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::BadUrl {
                url: url.into(),
                reason: "no bucket".into(),
            });
        }
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .build(),
            )
            .build();
        Ok(S3Store {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            url: url.to_string(),
            conditional_writes: OnceCell::new(),
        })
    }

    fn full(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    fn io<E: std::error::Error + 'static>(&self, op: &'static str, key: &str, e: E) -> StoreError {
        StoreError::Io {
            op,
            key: key.to_string(),
            store: self.url.clone(),
            reason: DisplayErrorContext(e).to_string(),
        }
    }

    /// An SDK error as the HTTP status, the service's code and its message, nothing
    /// more: S3's answers can carry the request's access key id (and with temporary keys
    /// its session token), as SignatureDoesNotMatch's does, and they never reach a log.
    fn sdk<E>(
        &self,
        op: &'static str,
        key: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let reason = match &e {
            SdkError::ServiceError(se) if se.raw().status().as_u16() == 403 => {
                let err = se.err();
                return StoreError::Forbidden {
                    op,
                    key: key.to_string(),
                    store: self.url.clone(),
                    code: err.code().unwrap_or("(no code)").to_string(),
                    message: err.message().unwrap_or("(no message)").to_string(),
                };
            }
            SdkError::ServiceError(se) => {
                let err = se.err();
                format!(
                    "HTTP {}: {}: {}",
                    se.raw().status().as_u16(),
                    err.code().unwrap_or("(no code)"),
                    err.message().unwrap_or("(no message)")
                )
            }
            SdkError::ResponseError(r) => format!(
                "an answer that could not be read (HTTP {})",
                r.raw().status().as_u16()
            ),
            _ => DisplayErrorContext(&e).to_string(),
        };
        StoreError::Io {
            op,
            key: key.to_string(),
            store: self.url.clone(),
            reason,
        }
    }

    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError> {
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Created::Created),
            Err(e) if status(&e) == Some(412) => Ok(Created::AlreadyExists),
            Err(e) => Err(self.sdk("create", key, e)),
        }
    }

    /// Writes one probe object twice: a server that honours `If-None-Match: *` refuses
    /// the second. Done once per process; the answer is remembered.
    async fn supports_conditional_writes(&self) -> Result<bool, StoreError> {
        self.conditional_writes
            .get_or_try_init(|| async {
                let key = format!(".baton-probe/{}", uuid::Uuid::new_v4());
                let first = self.put_if_absent(&key, b"probe".to_vec()).await?;
                let second = self.put_if_absent(&key, b"probe".to_vec()).await?;
                self.delete(&key).await?;
                Ok((first, second) == (Created::Created, Created::AlreadyExists))
            })
            .await
            .copied()
    }

    async fn multipart(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        let full = self.full(key)?;
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.sdk("start upload of", key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| self.io("open local file for", key, e))?;
            let mut parts = Vec::new();
            let mut total = 0u64;
            let mut buf = vec![0u8; PART_SIZE];
            for number in 1.. {
                let mut filled = 0;
                while filled < PART_SIZE {
                    let n = file
                        .read(&mut buf[filled..])
                        .await
                        .map_err(|e| self.io("read local file for", key, e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 && number > 1 {
                    break;
                }
                total += filled as u64;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(buf[..filled].to_vec()))
                    .send()
                    .await
                    .map_err(|e| self.sdk("upload a part of", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
                if filled < PART_SIZE {
                    break;
                }
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.sdk("complete upload of", key, e))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            // Parts of an abandoned upload cost storage until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl S3Store {
    /// [`StoreError::TooLarge`] when `len` (what the server announced, or what arrived
    /// so far) passes `limit`: the download stops there.
    fn within(&self, key: &str, len: Option<i64>, limit: u64) -> Result<(), StoreError> {
        match len {
            Some(len) if u64::try_from(len).unwrap_or(0) > limit => Err(StoreError::TooLarge {
                key: key.to_string(),
                store: self.describe(),
                limit,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.sdk("write", key, e))?;
        Ok(())
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| self.io("stat local file for", key, e))?
            .len();
        if size > MULTIPART_THRESHOLD {
            return self.multipart(key, path).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| self.io("read local file for", key, e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .body(body)
            .send()
            .await
            .map_err(|e| self.sdk("write", key, e))?;
        Ok(size)
    }

    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError> {
        if !self.supports_conditional_writes().await? {
            return Err(StoreError::NoConditionalWrites {
                store: self.url.clone(),
            });
        }
        self.put_if_absent(key, bytes).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .send()
            .await
        {
            Ok(mut out) => {
                let limit = super::MAX_SMALL_OBJECT;
                self.within(key, out.content_length(), limit)?;
                let mut bytes = Vec::new();
                while let Some(chunk) = out
                    .body
                    .try_next()
                    .await
                    .map_err(|e| self.io("read", key, e))?
                {
                    bytes.extend_from_slice(&chunk);
                    self.within(key, Some(bytes.len() as i64), limit)?;
                }
                Ok(Some(bytes))
            }
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || status(&e) == Some(404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk("read", key, e)),
        }
    }

    async fn get_to_file(
        &self,
        key: &str,
        path: &Path,
        limit: u64,
    ) -> Result<Option<Downloaded>, StoreError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        use tokio::io::AsyncWriteExt;
        let mut out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || status(&e) == Some(404) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.sdk("read", key, e)),
        };
        self.within(key, out.content_length(), limit)?;
        // Network chunks are small; each tokio file write is a trip to the blocking pool.
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| self.io("write local copy of", key, e))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut total = 0u64;
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| self.io("read", key, e))?
        {
            total += chunk.len() as u64;
            self.within(key, Some(total as i64), limit)?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| self.io("write local copy of", key, e))?;
        }
        file.flush()
            .await
            .map_err(|e| self.io("write local copy of", key, e))?;
        Ok(Some(Downloaded {
            size: total,
            sha256: hex::encode(hasher.finalize()),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.sdk("list", prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key()
                    && k.len() >= strip
                    && !k[strip..].starts_with(".baton-probe/")
                {
                    out.push(ObjectMeta {
                        key: k[strip..].to_string(),
                        size: o.size().unwrap_or(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.sdk("delete", key, e)),
        }
    }

    async fn download_url(
        &self,
        key: &str,
        valid: std::time::Duration,
    ) -> Result<String, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid)
            .map_err(|e| self.io("pre-sign", key, e))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key)?)
            .presigned(config)
            .await
            .map_err(|e| self.io("pre-sign", key, e))?;
        Ok(request.uri().to_string())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
