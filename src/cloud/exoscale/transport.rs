//! The transport of Exoscale's API: credentials, signed requests (`signing`), retries
//! (`retry`), operations waited for, and the path segments ids may become. What the
//! requests mean is the client's business (`exoscale/mod.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::retry::{RetryPolicy, parse_retry_after, retryable_status};
use super::{signing, wire};
use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::cloud::CloudError;

pub const ENV_KEY: &str = "EXOSCALE_API_KEY";
pub const ENV_SECRET: &str = "EXOSCALE_API_SECRET";

/// How long a signature stays valid: long enough for a slow network, short enough that
/// a captured request is soon useless.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// An API key and its secret. The secret is only ever fed to the HMAC.
#[derive(Clone)]
pub struct Credentials {
    pub key: String,
    secret: Zeroizing<String>,
}

impl Credentials {
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            key: key.into(),
            secret: Zeroizing::new(secret.into()),
        }
    }

    /// From `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`, and nowhere else.
    pub fn from_env() -> Result<Self, CloudError> {
        let get = |var: &'static str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or(CloudError::MissingCredentials {
                    var,
                    key_var: ENV_KEY,
                    secret_var: ENV_SECRET,
                    rights: "an API key with compute rights",
                })
        };
        Ok(Credentials::new(get(ENV_KEY)?, get(ENV_SECRET)?))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Knobs that tests turn down and a real cloud needs as they are.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub retry: RetryPolicy,
    /// First wait between two polls of an operation; grows to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// How long an operation may stay pending.
    pub operation_timeout: Duration,
    /// Per-request network timeout.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            retry: RetryPolicy::default(),
            // An operation's end is noticed at most a second late: a swap waits on about
            // six of them, and each late second is baton's overhead (BENCHMARKS.md).
            poll_min: Duration::from_millis(250),
            poll_max: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(10 * 60),
            request_timeout: Duration::from_secs(60),
        }
    }
}

pub struct ExoscaleClient {
    http: reqwest::Client,
    endpoint: Url,
    credentials: Credentials,
    pub(super) timing: Timing,
    clock: Arc<dyn Clock>,
}

/// One failed attempt, with what the retry loop needs to decide.
struct Failure {
    error: CloudError,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// The retry state of one request: how many attempts, since when.
struct Backoff<'a> {
    policy: &'a RetryPolicy,
    request: String,
    start: Instant,
    attempts: u32,
}

impl Backoff<'_> {
    /// After a failed attempt: sleeps before the next one, or returns the error that ends
    /// the request (not retryable, or the policy's attempts, time or `Retry-After` say stop).
    async fn wait(&mut self, f: Failure) -> Result<(), CloudError> {
        if !f.retryable {
            return Err(f.error);
        }
        match self
            .policy
            .delay(self.attempts, self.start.elapsed(), f.retry_after)
        {
            Some(wait) => {
                tracing::warn!("{}: {}; retrying in {wait:?}", self.request, f.error);
                tokio::time::sleep(wait).await;
                self.attempts += 1;
                Ok(())
            }
            None => Err(CloudError::GaveUp {
                request: self.request.clone(),
                attempts: self.attempts + 1,
                elapsed: self.start.elapsed(),
                last: f.error.to_string(),
            }),
        }
    }
}

impl ExoscaleClient {
    fn backoff(&self, request: String) -> Backoff<'_> {
        Backoff {
            policy: &self.timing.retry,
            request,
            start: Instant::now(),
            attempts: 0,
        }
    }

    /// `endpoint` is the API base, e.g. `https://api-ch-gva-2.exoscale.com/v2`.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        timing: Timing,
    ) -> Result<Self, CloudError> {
        let endpoint = Url::parse(endpoint.trim_end_matches('/')).map_err(|e| {
            CloudError::Invalid(format!("cloud endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .timeout(timing.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CloudError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(ExoscaleClient {
            http,
            endpoint,
            credentials,
            timing,
            clock: Arc::new(SystemClock),
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> Url {
        let mut url = self.endpoint.clone();
        url.set_path(&format!("{}{path}", self.endpoint.path()));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One signed request, no retries. Returns the body of a 2xx answer.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let url = self.url(path, query);
        let request = format!("{method} {}", url.path());
        let expires = unix_seconds(self.clock.now() + SIGNATURE_LIFETIME);
        let auth = signing::authorization(
            &self.credentials.key,
            &self.credentials.secret,
            method.as_str(),
            url.path(),
            query,
            body,
            expires,
        );
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("Authorization", auth);
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_vec());
        }
        let transport = |e: reqwest::Error| Failure {
            error: CloudError::Http {
                request: request.clone(),
                status: 0,
                message: crate::cause::chain(&e),
            },
            retryable: true,
            retry_after: None,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let bytes = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let message = serde_json::from_slice::<wire::ErrorBody>(&bytes)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        let error = if status == StatusCode::FORBIDDEN {
            CloudError::Forbidden {
                request,
                key: crate::cloud::key_tail(&self.credentials.key),
                message,
                key_var: ENV_KEY,
                secret_var: ENV_SECRET,
            }
        } else {
            CloudError::Http {
                request,
                status: status.as_u16(),
                message,
            }
        };
        Err(Failure {
            error,
            retryable: retryable_status(status.as_u16()),
            retry_after,
        })
    }

    /// A request with retries. Only for requests that are safe to repeat.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&impl Serialize>,
    ) -> Result<Vec<u8>, CloudError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| CloudError::Invalid(e.to_string()))?,
            None => Vec::new(),
        };
        let mut backoff = self.backoff(format!("{method} {path}"));
        loop {
            match self.attempt(&method, path, query, &body).await {
                Ok(bytes) => return Ok(bytes),
                Err(f) => backoff.wait(f).await?,
            }
        }
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, CloudError> {
        let bytes = self.call(Method::GET, path, query, None::<&()>).await?;
        decode(&format!("GET {path}"), &bytes)
    }

    /// Sends a write, then waits for its operation; returns the referenced resource's id.
    pub(super) async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Option<String>, CloudError> {
        let bytes = self.call(method.clone(), path, &[], body).await?;
        let op: wire::Operation = decode(&format!("{method} {path}"), &bytes)?;
        self.wait_operation(op).await
    }

    /// Polls `GET /operation/{id}` until it succeeds, fails, or runs out of time.
    pub async fn wait_operation(
        &self,
        mut op: wire::Operation,
    ) -> Result<Option<String>, CloudError> {
        let start = Instant::now();
        let mut wait = self.timing.poll_min;
        loop {
            let command = op
                .reference
                .as_ref()
                .and_then(|r| r.command.clone())
                .unwrap_or_else(|| "operation".into());
            match op.state.as_str() {
                "success" => return Ok(op.reference.and_then(|r| r.id)),
                "pending" => {}
                state => {
                    return Err(CloudError::OperationFailed {
                        id: op.id,
                        command,
                        reason: op.reason.unwrap_or_else(|| state.to_string()),
                        message: op.message.unwrap_or_default(),
                    });
                }
            }
            if start.elapsed() >= self.timing.operation_timeout {
                return Err(CloudError::OperationTimeout {
                    id: op.id,
                    command,
                    state: op.state,
                    after: start.elapsed(),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(self.timing.poll_max);
            op = self
                .get(&format!("/operation/{}", uuid("operation", &op.id)?), &[])
                .await?;
        }
    }

    /// POSTs a create to `path` and waits for it, never blindly twice: before each attempt,
    /// `found` looks for what an earlier one made and lost the answer of (a dropped
    /// connection, a 5xx after the fact).
    pub(super) async fn create_once<T, F>(
        &self,
        path: &str,
        body: &impl Serialize,
        found: impl Fn() -> F,
    ) -> Result<Created<T>, CloudError>
    where
        F: std::future::Future<Output = Result<Option<T>, CloudError>>,
    {
        let body = serde_json::to_vec(body).map_err(|e| CloudError::Invalid(e.to_string()))?;
        let request = format!("POST {path}");
        let mut backoff = self.backoff(request.clone());
        let bytes = loop {
            if let Some(existing) = found().await? {
                return Ok(Created::Found(existing));
            }
            match self.attempt(&Method::POST, path, &[], &body).await {
                Ok(bytes) => break bytes,
                Err(f) => backoff.wait(f).await?,
            }
        };
        let op: wire::Operation = decode(&request, &bytes)?;
        let id = self
            .wait_operation(op)
            .await?
            .ok_or_else(|| CloudError::Decode {
                request,
                reason: "the operation names nothing it created".into(),
            })?;
        Ok(Created::New(id))
    }
}

pub(super) fn decode<T: DeserializeOwned>(request: &str, bytes: &[u8]) -> Result<T, CloudError> {
    serde_json::from_slice(bytes).map_err(|e| CloudError::Decode {
        request: request.to_string(),
        reason: e.to_string(),
    })
}

/// What [`ExoscaleClient::create_once`] ended with.
pub(super) enum Created<T> {
    /// What an earlier attempt had made.
    Found(T),
    /// The id of what this one made.
    New(String),
}

/// An id as one path segment. Exoscale's ids are UUIDs (the spec's `format: uuid`), and
/// nothing else may go into a path: an "id" of `../ssh-key/NAME` (or `%2e%2e`) would be
/// resolved by the URL into another resource (issue 29). Canonical form, lower case.
pub(super) fn uuid(kind: &str, id: &str) -> Result<String, CloudError> {
    uuid::Uuid::try_parse(id)
        .ok()
        .filter(|_| id.len() == 36)
        .map(|u| u.hyphenated().to_string())
        .ok_or_else(|| {
            CloudError::Invalid(format!(
                "{kind} id {:?} is not a UUID, as Exoscale's ids are: refused before any request",
                crate::redact::clipped(id)
            ))
        })
}

/// An SSH key's name as one path segment: letters, digits, `.`, `_`, `-`, and never
/// `.` or `..` alone (baton's own are `baton-SITE-N`).
pub(super) fn key_segment(name: &str) -> Result<&str, CloudError> {
    let fine = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(name)
    } else {
        Err(CloudError::Invalid(format!(
            "SSH key name {:?} is not one path segment of letters, digits, '.', '_' and '-': \
             refused before any request",
            crate::redact::clipped(name)
        )))
    }
}

#[cfg(test)]
mod segment_tests {
    use super::*;

    #[test]
    fn only_uuids_and_plain_key_names_reach_a_path() {
        let id = "5E2B8D6C-6B9E-4A55-A3C4-8A5A5B8B6E01";
        assert_eq!(uuid("instance", id).unwrap(), id.to_lowercase());
        for bad in [
            "../ssh-key/laptop",
            "%2e%2e/ssh-key/laptop",
            "5e2b8d6c6b9e4a55a3c48a5a5b8b6e01",
            "5e2b8d6c-6b9e-4a55-a3c4-8a5a5b8b6e01/../x",
            "",
        ] {
            assert!(uuid("instance", bad).is_err(), "{bad}");
        }
        assert_eq!(key_segment("baton-blog-7").unwrap(), "baton-blog-7");
        for bad in ["..", ".", "a/b", "%2e%2e", "a b", ""] {
            assert!(key_segment(bad).is_err(), "{bad}");
        }
    }
}
