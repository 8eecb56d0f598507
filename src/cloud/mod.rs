//! The cloud, behind a trait: what the swap needs from a provider, and nothing more.
//!
//! Every method is safe to call twice: creating finds what an earlier attempt made,
//! deleting what is gone succeeds, attaching what is attached succeeds. That is what lets
//! the swap retry and resume without ever making a second VM.

pub mod aws;
pub mod exoscale;
pub mod front;
pub mod guard;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

/// The site's provider and its settings, each kept beside its provider (rustic_core's
/// `BackendOptions` is the model): one [`Provider::open`] gives the client, and what
/// differs between clouds is asked of the provider, not of its name.
#[derive(Debug, Clone)]
pub enum Provider {
    Exoscale(exoscale::Settings),
    Aws(aws::Settings),
}

impl Provider {
    /// The client for these settings, its credentials from the environment.
    pub async fn open(self) -> Result<std::sync::Arc<dyn Cloud>, CloudError> {
        match self {
            Provider::Exoscale(s) => s.open(),
            Provider::Aws(s) => aws::connect(s).await,
        }
    }

    /// The front at `address`, as this provider describes it.
    pub fn front(&self, address: IpAddr) -> front::Front {
        match self {
            Provider::Exoscale(_) => exoscale::front(address),
            Provider::Aws(s) => s.front.describe(address),
        }
    }

    /// The variable that holds the operator's cloud key id: the key no server may hold.
    pub fn key_var(&self) -> &'static str {
        match self {
            Provider::Exoscale(_) => exoscale::ENV_KEY,
            Provider::Aws(_) => aws::ENV_KEY,
        }
    }

    /// Whether the store's `AWS_*` variables are also this cloud's key.
    pub fn shares_store_variables(&self) -> bool {
        matches!(self, Provider::Aws(_))
    }
}

/// Labels baton puts on what it creates, so it can find (and clean up) its own.
pub const LABEL_SITE: &str = "baton.site";
pub const LABEL_GENERATION: &str = "baton.generation";

/// The labels that name generation `generation` of `site`: what a retry looks for.
pub fn generation_labels(site: &str, generation: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SITE.to_string(), site.to_string()),
        (LABEL_GENERATION.to_string(), generation.to_string()),
    ])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub state: String,
    pub public_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub elastic_ips: Vec<String>,
    pub created_at: Option<String>,
    /// The template it was created from: `gc` keeps the baked ones an instance boots.
    pub template_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElasticIp {
    pub id: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshKey {
    pub name: String,
    pub fingerprint: String,
}

/// A template the account registered itself: a baked image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub created_at: Option<String>,
    pub description: Option<String>,
    pub size: Option<u64>,
}

/// An image to register: the cloud downloads it from `url` and checks it against `md5`
/// before the template is listed.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    pub name: String,
    /// A URL the cloud can read, e.g. a pre-signed GET of the object store; never logged.
    pub url: String,
    pub md5: String,
    pub default_user: String,
    /// At most 255 characters (Exoscale's limit).
    pub description: String,
    /// What built it: the recipe's hash.
    pub build: String,
}

/// What to create. `labels` must identify the instance uniquely: a retry looks for them.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub template: String,
    pub instance_type: String,
    pub disk_gb: u32,
    pub security_groups: Vec<String>,
    pub ssh_key: Option<String>,
    /// gzip + base64, as `cloudinit::encode` makes it.
    pub user_data: String,
    /// Which member of its generation it is: the members of a fleet share one user-data,
    /// and a generation today has exactly one, member 0.
    pub member: u32,
}

#[async_trait]
pub trait Cloud: Send + Sync {
    /// Checks, read-only, that the spec's template (unless empty: none chosen yet), type
    /// and security groups exist.
    async fn preflight(&self, spec: &InstanceSpec) -> Result<(), CloudError>;
    /// Creates the instance, or returns the one an earlier attempt created (same labels).
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance, CloudError>;
    async fn get_instance(&self, id: &str) -> Result<Option<Instance>, CloudError>;
    /// Instances carrying every one of `labels`.
    async fn list_instances(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, CloudError>;
    /// Deletes the instance; one that is already gone is success.
    async fn delete_instance(&self, id: &str) -> Result<(), CloudError>;
    /// Waits until the instance is `running`, or fails on `error` or at the deadline.
    async fn wait_running(&self, id: &str, timeout: Duration) -> Result<Instance, CloudError>;

    /// Registers a key; an existing key with the same name and fingerprint is success.
    async fn register_ssh_key(&self, name: &str, public_key: &str) -> Result<(), CloudError>;
    /// Deletes a key; one that is already gone is success.
    async fn delete_ssh_key(&self, name: &str) -> Result<(), CloudError>;
    async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError>;

    /// The templates this account registered (baked images), oldest first.
    async fn list_own_templates(&self) -> Result<Vec<Template>, CloudError>;
    /// The cloud's registration of an image by URL, if it has one (Exoscale's custom
    /// templates; AWS makes an AMI another way).
    fn by_url(&self) -> Option<&dyn RegisterByUrl> {
        None
    }
    /// Deletes one of the account's templates; one that is already gone is success.
    async fn delete_template(&self, id: &str) -> Result<(), CloudError>;

    /// The front that `address` names: what carries the site's public traffic to its
    /// servers (an Elastic IP; on AWS also an ALB target group). Its id is journalled.
    async fn find_front(&self, address: IpAddr) -> Result<String, CloudError>;
    /// Puts `instance` behind the front (one that serves one member at a time stops
    /// serving its previous holder); already there is success. Returns once the cloud says it serves.
    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError>;
    /// Takes `instance` out of the front; not in it (or gone) is success. Returns once
    /// the cloud sends it no more traffic.
    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError>;
    /// The instances the front that `address` names sends traffic to.
    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError>;
}

/// An optional capability: registering an image that the cloud downloads from a URL and
/// checks against an MD5 before it lists the template.
#[async_trait]
pub trait RegisterByUrl: Send + Sync {
    /// Registers an image and waits until the cloud has downloaded and checked it.
    async fn register_template(&self, spec: &TemplateSpec) -> Result<Template, CloudError>;
}

/// Deletes instance `id` only while it carries generation `generation`'s label (gone is
/// success): an id that a journal or state.json names is deleted as that generation or
/// not at all, whatever else the store says.
pub async fn delete_generation(
    cloud: &dyn Cloud,
    id: &str,
    generation: u64,
) -> Result<(), CloudError> {
    let Some(i) = cloud.get_instance(id).await? else {
        return Ok(());
    };
    let label = i.labels.get(LABEL_GENERATION);
    if label != Some(&generation.to_string()) {
        return Err(CloudError::NotOurs {
            what: format!("instance {id} ({})", i.name),
            site: i.labels.get(LABEL_SITE).cloned().unwrap_or_default(),
            why: format!(
                "it was named as generation {generation}, and its {LABEL_GENERATION} label is {label:?}"
            ),
        });
    }
    cloud.delete_instance(id).await
}

pub(crate) fn names(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The last four characters of an API key id, for messages.
pub fn key_tail(key: &str) -> String {
    let n = key.chars().count();
    key.chars().skip(n.saturating_sub(4)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The provider names its own variables, so the message is right for every cloud.
    #[error(
        "{var} is not set\n  fix: export {key_var} and {secret_var} ({rights}), then run again"
    )]
    MissingCredentials {
        var: &'static str,
        key_var: &'static str,
        secret_var: &'static str,
        rights: &'static str,
    },
    #[error(
        "the cloud refused the request {request} (HTTP 403: {message})\n  fix: check the API key \
         in {key_var} (the one ending in {key}), its secret in {secret_var}, the key's rights, \
         and this machine's clock (signatures carry an expiry)"
    )]
    Forbidden {
        request: String,
        /// The key id's last four characters: enough to tell which key, nothing more.
        key: String,
        message: String,
        key_var: &'static str,
        secret_var: &'static str,
    },
    #[error(
        "this baton was built without the {provider} provider (`--no-default-features`, as \
         `just demo` builds it)\n  fix: use a baton built with its default features"
    )]
    LeftOut { provider: &'static str },
    #[error("the cloud answered {request} with HTTP {status}: {message}")]
    Http {
        request: String,
        status: u16,
        message: String,
    },
    /// An AWS-style error: a code beside the message.
    #[error("the cloud answered {request} with HTTP {status}: {code}: {message}")]
    Service {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{request} got no usable answer (after the SDK's retries): {reason}")]
    NoAnswer { request: String, reason: String },
    #[error("{request} failed after {attempts} attempts over {elapsed:?}: {last}")]
    GaveUp {
        request: String,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
    #[error("{what} not found\n  fix: {hint}")]
    NotFound { what: String, hint: String },
    #[error("cloud operation {command} ({id}) failed: {reason}: {message}")]
    OperationFailed {
        id: String,
        command: String,
        reason: String,
        message: String,
    },
    #[error("cloud operation {command} ({id}) still {state} after {after:?}")]
    OperationTimeout {
        id: String,
        command: String,
        state: String,
        after: Duration,
    },
    #[error("instance {id} is in state {state}, not running")]
    InstanceFailed { id: String, state: String },
    #[error("cannot understand the cloud's answer to {request}: {reason}")]
    Decode { request: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// Something read from the store named a resource that is not the site's: refused
    /// before any request that would change it (see `guard`).
    #[error(
        "refused to touch {what}: it is not site {site}'s ({why})\n  fix: what named it came \
         from the store, which every server can write; check `baton status` and the store's \
         journals and state.json, and who holds the store's keys"
    )]
    NotOurs {
        what: String,
        site: String,
        why: String,
    },
}

impl crate::exit::Classify for CloudError {
    /// Credentials, rights or names to fix before anything can be created: exit 2
    /// wherever it surfaces.
    fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CloudError::MissingCredentials { .. }
                | CloudError::NotFound { .. }
                | CloudError::Forbidden { .. }
                | CloudError::NotOurs { .. }
                | CloudError::LeftOut { .. }
        )
    }
}
