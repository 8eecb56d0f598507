//! Exoscale's compute API v2, spoken directly over reqwest with rustls.

pub mod retry;
pub mod signing;
pub mod wire;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use self::retry::{RetryPolicy, parse_retry_after, retryable_status};
use super::{
    Cloud, CloudError, ElasticIp, Instance, InstanceSpec, SshKey, Template, TemplateSpec, names,
};
use crate::clock::{Clock, SystemClock, unix_seconds};

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
    timing: Timing,
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
    async fn call(
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

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, CloudError> {
        let bytes = self.call(Method::GET, path, query, None::<&()>).await?;
        decode(&format!("GET {path}"), &bytes)
    }

    /// Sends a write, then waits for its operation; returns the referenced resource's id.
    async fn write(
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
    async fn create_once<T, F>(
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

    async fn templates(&self, visibility: &str) -> Result<Vec<wire::Template>, CloudError> {
        let list: wire::TemplateList = self
            .get("/template", &[("visibility".into(), visibility.into())])
            .await?;
        Ok(list.templates)
    }

    /// The newest template named `name`: a public one, else one of the account's own
    /// (a baked image; its name never looks like Exoscale's).
    async fn resolve_template(&self, name: &str) -> Result<String, CloudError> {
        let newest = |list: &[wire::Template]| {
            // Several builds can share a name: take the newest.
            list.iter()
                .filter(|t| t.name.as_deref() == Some(name))
                .max_by(|a, b| a.created_at.cmp(&b.created_at))
                .map(|t| t.id.clone())
        };
        let public = self.templates("public").await?;
        if let Some(id) = newest(&public) {
            return Ok(id);
        }
        let own = self.templates("private").await?;
        match newest(&own) {
            Some(id) => Ok(id),
            None => Err(CloudError::NotFound {
                what: format!("template {name:?}"),
                hint: format!(
                    "set instance.template to one of the zone's templates, e.g. {}",
                    names(
                        own.iter()
                            .chain(&public)
                            .filter_map(|t| t.name.clone())
                            .take(5)
                            .map(|n| format!("{n:?}"))
                    )
                ),
            }),
        }
    }

    async fn resolve_instance_type(&self, name: &str) -> Result<String, CloudError> {
        let list: wire::InstanceTypeList = self.get("/instance-type", &[]).await?;
        let full = |t: &wire::InstanceType| {
            format!(
                "{}.{}",
                t.family.as_deref().unwrap_or(""),
                t.size.as_deref().unwrap_or("")
            )
        };
        list.instance_types
            .iter()
            .find(|t| full(t) == name)
            .map(|t| t.id.clone())
            .ok_or_else(|| CloudError::NotFound {
                what: format!("instance type {name:?}"),
                hint: format!(
                    "set instance.type to FAMILY.SIZE, one of {}",
                    names(list.instance_types.iter().map(full))
                ),
            })
    }

    async fn resolve_security_groups(
        &self,
        wanted: &[String],
    ) -> Result<Vec<wire::IdRef>, CloudError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let list: wire::SecurityGroupList = self.get("/security-group", &[]).await?;
        wanted
            .iter()
            .map(|name| {
                list.security_groups
                    .iter()
                    .find(|g| g.name.as_deref() == Some(name))
                    .map(|g| wire::IdRef { id: g.id.clone() })
                    .ok_or_else(|| CloudError::NotFound {
                        what: format!("security group {name:?}"),
                        hint: format!(
                            "create it in the zone or fix instance.security_groups; the zone has {}",
                            names(list.security_groups.iter().filter_map(|g| g.name.clone()))
                        ),
                    })
            })
            .collect()
    }

    async fn all_instances(&self, query: &[(String, String)]) -> Result<Vec<Instance>, CloudError> {
        let list: wire::InstanceList = self.get("/instance", query).await?;
        Ok(list.instances.into_iter().map(Instance::from).collect())
    }

    async fn holders(&self, eip_id: &str) -> Result<(IpAddr, Vec<Instance>), CloudError> {
        let eip: wire::ElasticIp = self
            .get(&format!("/elastic-ip/{}", uuid("elastic IP", eip_id)?), &[])
            .await?;
        let ip = parse_ip(&eip.ip, "elastic-ip")?;
        Ok((ip, self.instances_with_ip(ip).await?))
    }
}

impl From<wire::Instance> for Instance {
    fn from(w: wire::Instance) -> Self {
        Instance {
            public_ip: w.public_ip.and_then(|ip| ip.parse().ok()),
            name: w.name.unwrap_or_default(),
            state: w.state.unwrap_or_default(),
            labels: w.labels,
            elastic_ips: w.elastic_ips.into_iter().map(|r| r.id).collect(),
            created_at: w.created_at,
            template_id: w.template.map(|t| t.id),
            id: w.id,
        }
    }
}

fn decode<T: DeserializeOwned>(request: &str, bytes: &[u8]) -> Result<T, CloudError> {
    serde_json::from_slice(bytes).map_err(|e| CloudError::Decode {
        request: request.to_string(),
        reason: e.to_string(),
    })
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, CloudError> {
    s.parse().map_err(|_| CloudError::Decode {
        request: what.to_string(),
        reason: format!("{s:?} is not an IP address"),
    })
}

fn template_of(t: wire::Template) -> Template {
    Template {
        name: t.name.unwrap_or_default(),
        id: t.id,
        created_at: t.created_at,
        description: t.description,
        size: t.size,
    }
}

/// What [`ExoscaleClient::create_once`] ended with.
enum Created<T> {
    /// What an earlier attempt had made.
    Found(T),
    /// The id of what this one made.
    New(String),
}

/// For deletes and detaches: a target that is already gone is what was wanted.
fn gone_is_ok<T>(result: Result<T, CloudError>) -> Result<(), CloudError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_reason(&e, "not-found") => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_status(e: &CloudError, code: u16) -> bool {
    matches!(e, CloudError::Http { status, .. } if *status == code)
}

fn is_reason(e: &CloudError, wanted: &str) -> bool {
    matches!(e, CloudError::OperationFailed { reason, .. } if reason == wanted)
}

#[async_trait]
impl Cloud for ExoscaleClient {
    async fn preflight(&self, spec: &InstanceSpec) -> Result<(), CloudError> {
        if !spec.template.is_empty() {
            self.resolve_template(&spec.template).await?;
        }
        self.resolve_instance_type(&spec.instance_type).await?;
        self.resolve_security_groups(&spec.security_groups).await?;
        Ok(())
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance, CloudError> {
        if spec.labels.is_empty() {
            return Err(CloudError::Invalid(
                "an instance needs labels to be found again".into(),
            ));
        }
        let body = wire::CreateInstance {
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            template: wire::IdRef {
                id: self.resolve_template(&spec.template).await?,
            },
            instance_type: wire::IdRef {
                id: self.resolve_instance_type(&spec.instance_type).await?,
            },
            disk_size: spec.disk_gb,
            security_groups: self.resolve_security_groups(&spec.security_groups).await?,
            ssh_keys: spec
                .ssh_key
                .iter()
                .map(|n| wire::NameRef { name: n.clone() })
                .collect(),
            user_data: spec.user_data.clone(),
            public_ip_assignment: "inet4",
        };
        let found = || async {
            let existing = self.list_instances(&spec.labels).await?.into_iter().next();
            if let Some(i) = &existing {
                tracing::info!("instance {} ({}) already exists: using it", i.name, i.id);
            }
            Ok(existing)
        };
        let id = match self.create_once("/instance", &body, found).await? {
            Created::Found(existing) => return Ok(existing),
            Created::New(id) => id,
        };
        self.get_instance(&id)
            .await?
            .ok_or_else(|| CloudError::NotFound {
                what: format!("instance {id} right after its creation"),
                hint: "check the zone's instances in the console".into(),
            })
    }

    async fn get_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        match self
            .get::<wire::Instance>(&format!("/instance/{}", uuid("instance", id)?), &[])
            .await
        {
            Ok(i) => Ok(Some(i.into())),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_instances(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, CloudError> {
        // Filtered here rather than by the API's `labels` parameter, whose syntax the
        // spec leaves open.
        let all = self.all_instances(&[]).await?;
        Ok(all
            .into_iter()
            .filter(|i| labels.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
            .collect())
    }

    async fn delete_instance(&self, id: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/instance/{}", uuid("instance", id)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn wait_running(&self, id: &str, timeout: Duration) -> Result<Instance, CloudError> {
        let start = Instant::now();
        let mut wait = self.timing.poll_min;
        loop {
            let instance = self
                .get_instance(id)
                .await?
                .ok_or_else(|| CloudError::NotFound {
                    what: format!("instance {id}"),
                    hint: "it was deleted while baton waited for it to start".into(),
                })?;
            match instance.state.as_str() {
                "running" => return Ok(instance),
                "starting" | "migrating" => {}
                other => {
                    return Err(CloudError::InstanceFailed {
                        id: id.to_string(),
                        state: other.to_string(),
                    });
                }
            }
            if start.elapsed() >= timeout {
                return Err(CloudError::InstanceFailed {
                    id: id.to_string(),
                    state: format!("{} after {timeout:?}", instance.state),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(self.timing.poll_max);
        }
    }

    async fn register_ssh_key(&self, name: &str, public_key: &str) -> Result<(), CloudError> {
        let body = wire::RegisterSshKey {
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
        };
        match self.write(Method::POST, "/ssh-key", Some(&body)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) || is_reason(&e, "conflict") => {
                let existing: wire::SshKey = self
                    .get(&format!("/ssh-key/{}", key_segment(name)?), &[])
                    .await?;
                if existing.fingerprint.is_some()
                    && existing.fingerprint == wire::ssh_key_fingerprint(public_key)
                {
                    Ok(())
                } else {
                    Err(CloudError::Invalid(format!(
                        "SSH key {name:?} already exists with another public key; delete it (baton gc) or pick another name"
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_ssh_key(&self, name: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/ssh-key/{}", key_segment(name)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError> {
        let list: wire::SshKeyList = self.get("/ssh-key", &[]).await?;
        Ok(list
            .ssh_keys
            .into_iter()
            .map(|k| SshKey {
                name: k.name,
                fingerprint: k.fingerprint.unwrap_or_default(),
            })
            .collect())
    }

    async fn list_own_templates(&self) -> Result<Vec<Template>, CloudError> {
        let mut own: Vec<Template> = self
            .templates("private")
            .await?
            .into_iter()
            .map(template_of)
            .collect();
        own.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(own)
    }

    async fn register_template(&self, spec: &TemplateSpec) -> Result<Template, CloudError> {
        let body = wire::RegisterTemplate {
            name: spec.name.clone(),
            url: spec.url.clone(),
            checksum: spec.md5.clone(),
            default_user: spec.default_user.clone(),
            description: spec.description.clone(),
            ssh_key_enabled: true,
            password_enabled: false,
            // baton's images boot through UEFI: a standalone GRUB on an EFI system
            // partition, no boot sector to install.
            boot_mode: "uefi",
            build: spec.build.clone(),
            maintainer: "baton",
        };
        // The zone lists a template only once it has checked the image: one found is whole.
        let found = || async {
            Ok(self
                .templates("private")
                .await?
                .into_iter()
                .find(|t| t.name.as_deref() == Some(spec.name.as_str())))
        };
        let id = match self.create_once("/template", &body, found).await? {
            Created::Found(t) => return Ok(template_of(t)),
            Created::New(id) => id,
        };
        let t: wire::Template = self
            .get(&format!("/template/{}", uuid("template", &id)?), &[])
            .await?;
        Ok(template_of(t))
    }

    async fn delete_template(&self, id: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/template/{}", uuid("template", id)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn find_front(&self, address: IpAddr) -> Result<String, CloudError> {
        Ok(self.find_elastic_ip(address).await?.id)
    }

    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.attach_elastic_ip(front, instance).await
    }

    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.detach_elastic_ip(front, instance).await
    }

    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError> {
        self.instances_with_ip(address).await
    }
}

impl ExoscaleClient {
    /// Instances that answer on `ip`: their own public IP, or an Elastic IP attached to them.
    pub async fn instances_with_ip(&self, ip: IpAddr) -> Result<Vec<Instance>, CloudError> {
        self.all_instances(&[("ip-address".into(), ip.to_string())])
            .await
    }

    /// The Elastic IP with address `address`.
    pub async fn find_elastic_ip(&self, address: IpAddr) -> Result<ElasticIp, CloudError> {
        let all = self.list_elastic_ips().await?;
        all.iter()
            .find(|e| e.ip == address)
            .cloned()
            .ok_or_else(|| CloudError::NotFound {
                what: format!("Elastic IP {address}"),
                hint: format!(
                    "the zone has {}; check cloud.elastic_ip and cloud.zone",
                    super::names(all.iter().map(|e| e.ip.to_string()))
                ),
            })
    }

    pub async fn list_elastic_ips(&self) -> Result<Vec<ElasticIp>, CloudError> {
        let list: wire::ElasticIpList = self.get("/elastic-ip", &[]).await?;
        list.elastic_ips
            .into_iter()
            .map(|e| {
                Ok(ElasticIp {
                    ip: parse_ip(&e.ip, "elastic-ip")?,
                    id: e.id,
                })
            })
            .collect()
    }

    /// Attaches; already attached is success.
    pub async fn attach_elastic_ip(
        &self,
        eip_id: &str,
        instance_id: &str,
    ) -> Result<(), CloudError> {
        let (_, holders) = self.holders(eip_id).await?;
        if holders.iter().any(|i| i.id == instance_id) {
            return Ok(());
        }
        let body = wire::AttachInstance {
            instance: wire::IdRef {
                id: instance_id.to_string(),
            },
        };
        self.write(
            Method::PUT,
            &format!("/elastic-ip/{}:attach", uuid("elastic IP", eip_id)?),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Detaches; not attached (or instance gone) is success.
    pub async fn detach_elastic_ip(
        &self,
        eip_id: &str,
        instance_id: &str,
    ) -> Result<(), CloudError> {
        let (_, holders) = self.holders(eip_id).await?;
        if !holders.iter().any(|i| i.id == instance_id) {
            return Ok(());
        }
        let body = wire::AttachInstance {
            instance: wire::IdRef {
                id: instance_id.to_string(),
            },
        };
        gone_is_ok(
            self.write(
                Method::PUT,
                &format!("/elastic-ip/{}:detach", uuid("elastic IP", eip_id)?),
                Some(&body),
            )
            .await,
        )
    }
}

/// An id as one path segment. Exoscale's ids are UUIDs (the spec's `format: uuid`), and
/// nothing else may go into a path: an "id" of `../ssh-key/NAME` (or `%2e%2e`) would be
/// resolved by the URL into another resource (issue 29). Canonical form, lower case.
fn uuid(kind: &str, id: &str) -> Result<String, CloudError> {
    uuid::Uuid::try_parse(id)
        .ok()
        .filter(|_| id.len() == 36)
        .map(|u| u.hyphenated().to_string())
        .ok_or_else(|| {
            CloudError::Invalid(format!(
                "{kind} id {:?} is not a UUID, as Exoscale's ids are: refused before any request",
                id.chars().take(80).collect::<String>()
            ))
        })
}

/// An SSH key's name as one path segment: letters, digits, `.`, `_`, `-`, and never
/// `.` or `..` alone (baton's own are `baton-SITE-N`).
fn key_segment(name: &str) -> Result<&str, CloudError> {
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
            name.chars().take(80).collect::<String>()
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
