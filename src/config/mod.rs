//! `baton.toml`: the operator's description of the site, parsed and validated before any
//! command touches anything.
//!
//! Parsing is serde with `deny_unknown_fields`, so a misspelt key is an error rather than a
//! silently ignored setting. Values that need more than a type (addresses, durations,
//! schedules) have their own deserialisers, so their messages say what to write. After
//! parsing, [`Config::validate`] checks what serde cannot (files exist, names are legal)
//! and reports *every* problem at once, each with its field and a fix.
//!
//! Messages never quote a line or a value of the file: someone may have pasted a secret
//! into it, even into the wrong field. They name the field and line and say what fits.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::redact::described;
use crate::schedule::Schedule;
use crate::store::Settings as StoreSettings;

/// The default `-c/--config` of every operator command.
pub const DEFAULT_PATH: &str = "baton.toml";

/// Environment variables that hold secrets. Nothing else does: the file never may.
pub const SECRET_ENV: [&str; 4] = [
    "EXOSCALE_API_KEY",
    "EXOSCALE_API_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub site: Site,
    pub cloud: Cloud,
    #[serde(default, rename = "front")]
    pub front_settings: FrontSettings,
    pub instance: Instance,
    pub ssh: Ssh,
    #[serde(default)]
    pub tls: Tls,
    pub store: StoreSettings,
    #[serde(default)]
    pub bundle: Bundle,
    #[serde(default)]
    pub content: Content,
    #[serde(default)]
    pub swap: Swap,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub image: Image,
    /// The file this was read from; relative paths inside it are relative to its directory.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
    pub domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Exoscale's zone.
    #[serde(default)]
    pub zone: String,
    /// AWS's region.
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Where a file written before `[front]` had a table of its own keeps the front's
    /// settings (`[front]`'s `address`, `kind`, `allocation_id` and `target_group` now);
    /// [`Config::parse`] reads them into `[front]`.
    #[serde(default, deserialize_with = "some_ip_address")]
    elastic_ip: Option<IpAddr>,
    front: Option<String>,
    allocation_id: Option<String>,
    target_group: Option<String>,
}

/// `[front]`: what carries the site's traffic to its servers, and the address it answers
/// on. [`Config::front`] describes it as the swap sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontSettings {
    /// The address the site answers on (and baton checks it through): the Elastic IP, or
    /// with `kind = "alb"` an address of the load balancer. Required.
    #[serde(default, deserialize_with = "some_ip_address")]
    pub address: Option<IpAddr>,
    /// "elastic-ip" (the default) or, on AWS, "alb".
    pub kind: Option<String>,
    /// AWS, `kind = "elastic-ip"`: the address's allocation id, checked against it.
    pub allocation_id: Option<String>,
    /// AWS, `kind = "alb"`: the target group's ARN.
    pub target_group: Option<String>,
}

/// The clouds baton runs on.
pub const PROVIDERS: &[&str] = &["exoscale", "aws"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    #[serde(rename = "type")]
    pub instance_type: String,
    pub template: String,
    #[serde(default = "default_disk_gb")]
    pub disk_gb: u32,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// AWS: the subnet (and so the VPC) the instance goes into.
    pub subnet: Option<String>,
    /// AWS: who owns the AMI `template` names by name ("self", "amazon", an account id).
    pub image_owner: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub admin_user: String,
    pub authorized_keys: Vec<String>,
    #[serde(default = "default_host_ca")]
    pub host_ca: PathBuf,
    #[serde(default = "default_cert_lifetime", deserialize_with = "duration")]
    pub cert_lifetime: Duration,
    /// The key baton itself logs in with (its public half is added to the admin user's
    /// authorized keys on every server).
    #[serde(default = "default_deploy_key")]
    pub deploy_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_cert: PathBuf::from("keys/tls-ca.crt"),
            ca_key: PathBuf::from("keys/tls-ca.key"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bundle {
    pub dir: PathBuf,
    pub up: String,
    /// What a failed health check runs on the server to show why.
    pub logs: String,
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle {
            dir: PathBuf::from("docker"),
            up: "docker compose up -d --wait".to_string(),
            logs: "docker compose ps; docker compose logs --no-color --tail 30".to_string(),
        }
    }
}

/// `[image]`: where the golden image's recipe is (`baton bake`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Image {
    pub recipe: PathBuf,
}

impl Default for Image {
    fn default() -> Self {
        Image {
            recipe: PathBuf::from("image"),
        }
    }
}

/// The site's content: published without a new server (`baton publish`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Content {
    /// The directory `baton publish` sends to the store.
    pub dir: PathBuf,
    /// How often the server looks for newly published content.
    #[serde(deserialize_with = "duration")]
    pub pull_interval: Duration,
}

impl Default for Content {
    fn default() -> Self {
        Content {
            dir: PathBuf::from("site"),
            pull_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Swap {
    #[serde(deserialize_with = "duration")]
    pub boot_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub health_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub handover_timeout: Duration,
    /// How long the site is watched through the address after a cut-over; failing
    /// checks roll it back. Zero turns the watch off.
    #[serde(deserialize_with = "duration")]
    pub watch: Duration,
    #[serde(deserialize_with = "duration")]
    pub watch_interval: Duration,
    /// Consecutive failed checks that roll back.
    pub watch_failures: u32,
    /// How long the previous generation stays, detached, for `baton rollback` after the
    /// watch. Zero deletes it as soon as the watch passed.
    #[serde(deserialize_with = "duration")]
    pub keep_previous: Duration,
    /// What becomes of a generation that was rolled back: kept (for `keep_previous`)
    /// to be looked at, or deleted at once.
    pub on_rollback: OnRollback,
    /// The baton binary the new server runs [default: the one running the swap]. It must
    /// be built for the server (Linux x86_64).
    pub agent_binary: Option<PathBuf>,
}

impl Default for Swap {
    // Fits a real cloud: a VM reaches SSH in 1-2 minutes, a cold `docker compose up` that
    // pulls images takes a few more.
    fn default() -> Self {
        Swap {
            boot_timeout: Duration::from_secs(10 * 60),
            health_timeout: Duration::from_secs(5 * 60),
            handover_timeout: Duration::from_secs(10 * 60),
            // Long enough for a release that fails on its first real traffic, short
            // enough that the swap's terminal is not held for long.
            watch: Duration::from_secs(5 * 60),
            watch_interval: Duration::from_secs(5),
            watch_failures: 3,
            keep_previous: Duration::from_secs(30 * 60),
            on_rollback: OnRollback::Keep,
            agent_binary: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRollback {
    #[default]
    Keep,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    pub schedule: Schedule,
    pub paths: Vec<PathBuf>,
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            // Invariant: a constant that the schedule tests cover.
            schedule: "0 * * * * *".parse().expect("valid default schedule"),
            paths: Vec::new(),
            keep_last: 60,
            keep_hourly: 48,
            keep_daily: 14,
        }
    }
}

fn default_provider() -> String {
    "exoscale".to_string()
}
fn default_disk_gb() -> u32 {
    10
}
fn default_ssh_port() -> u16 {
    22
}
fn default_host_ca() -> PathBuf {
    PathBuf::from("keys/host-ca")
}
fn default_deploy_key() -> PathBuf {
    PathBuf::from("keys/deploy")
}
fn default_cert_lifetime() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{} is not an IP address; write the address as shown in the cloud \
             console, e.g. \"203.0.113.10\"",
            described(&s)
        ))
    })
}

fn some_ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    ip_address(d).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|_| {
        serde::de::Error::custom(format!(
            "{} is not a duration; write e.g. \"90s\", \"10m\", \"12h\" or \"90d\"",
            described(&s)
        ))
    })
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("the schedule {e}")))
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_written())
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `section.key`, or the section alone; `None` when the file as a whole is at fault.
    pub field: Option<String>,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, self.line) {
            (Some(field), Some(line)) => write!(f, "field `{field}` (line {line}): ")?,
            (Some(field), None) => write!(f, "field `{field}`: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        write!(f, "{}\n    fix: {}", self.message, self.fix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}\n  fix: pass the right file with -c/--config, \
         or create one with `baton init`"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid:\n{}", list(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads, parses and validates `path`. Nothing else in baton looks at the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::fsutil::read_small(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (which anchors relative paths and names the
    /// file in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        };
        // A first, untyped pass finds secrets before serde can complain about them as
        // unknown fields (and before anything could echo them).
        let table: toml::Table =
            toml::from_str(text).map_err(|e| invalid(vec![problem_from_toml(&e, text)]))?;
        let secrets = secret_fields(&table, "");
        if !secrets.is_empty() {
            return Err(invalid(secrets));
        }
        let mut config: Config =
            toml::from_str(text).map_err(|e| invalid(vec![problem_from_toml(&e, text)]))?;
        config.path = path.to_path_buf();
        if let Some(p) = config.adopt_older_front() {
            return Err(invalid(vec![p]));
        }
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// The directory relative paths in the file are anchored to.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.dir().join(p)
    }

    pub fn host_ca_key(&self) -> PathBuf {
        self.resolve(&self.ssh.host_ca)
    }

    pub fn host_ca_pub(&self) -> PathBuf {
        let mut p = self.host_ca_key().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    }

    pub fn deploy_key(&self) -> PathBuf {
        self.resolve(&self.ssh.deploy_key)
    }

    pub fn tls_ca_cert(&self) -> PathBuf {
        self.resolve(&self.tls.ca_cert)
    }

    pub fn tls_ca_key(&self) -> PathBuf {
        self.resolve(&self.tls.ca_key)
    }

    /// The front as the swap sees it, described by its provider.
    pub fn front(&self) -> crate::cloud::front::Front {
        // validate() refuses a file without the address, and parse() is the only way to a
        // Config; the unspecified address would answer nothing if it ever were reached.
        let address = self
            .front_settings
            .address
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.provider().front(address)
    }

    /// The site's provider with its settings, as `[cloud]`, `[front]` and `[instance]`
    /// give them (validate() checked which of them each provider takes).
    pub fn provider(&self) -> crate::cloud::Provider {
        use crate::cloud::Provider;
        match self.cloud.provider.as_str() {
            "aws" => Provider::Aws(self.aws_settings()),
            _ => Provider::Exoscale(crate::cloud::exoscale::Settings {
                endpoint: self.cloud_endpoint(),
            }),
        }
    }

    /// The compute API base URL: the configured one, or Exoscale's for the zone.
    fn cloud_endpoint(&self) -> String {
        match &self.cloud.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://api-{}.exoscale.com/v2", self.cloud.zone),
        }
    }

    /// What generation `generation`'s instance is made of, labelled so that a retry finds
    /// it; no key and no user-data yet.
    pub fn instance_spec(&self, generation: u64) -> crate::cloud::InstanceSpec {
        crate::cloud::InstanceSpec {
            name: self.instance_name(generation),
            labels: crate::cloud::generation_labels(&self.site.name, generation),
            template: self.instance.template.clone(),
            instance_type: self.instance.instance_type.clone(),
            disk_gb: self.instance.disk_gb,
            security_groups: self.instance.security_groups.clone(),
            ssh_key: None,
            user_data: String::new(),
            member: 0,
        }
    }

    /// The name of generation `n`'s instance; also one of its certificate's principals.
    pub fn instance_name(&self, generation: u64) -> String {
        format!("{}-{generation}", self.site.name)
    }

    /// The name generation `n`'s deploy key is registered under for its VM's creation.
    pub fn key_name(&self, generation: u64) -> String {
        format!("{}{generation}", self.key_prefix())
    }

    /// What every one of the site's deploy key names starts with.
    pub fn key_prefix(&self) -> String {
        format!("baton-{}-", self.site.name)
    }

    /// The AWS provider's settings, as [`crate::cloud::aws::AwsClient`] takes them.
    fn aws_settings(&self) -> crate::cloud::aws::Settings {
        use crate::cloud::aws::{Front, Settings};
        let f = &self.front_settings;
        let front = match f.kind.as_deref() {
            Some("alb") => Front::Alb {
                target_group: f.target_group.clone().unwrap_or_default(),
            },
            _ => Front::ElasticIp {
                allocation_id: f.allocation_id.clone(),
            },
        };
        Settings {
            region: self.cloud.region.clone().unwrap_or_default(),
            endpoint: self.cloud.endpoint.clone(),
            subnet: self.instance.subnet.clone().unwrap_or_default(),
            image_owner: self
                .instance
                .image_owner
                .clone()
                .unwrap_or_else(|| "self".into()),
            front,
            // A new target's health checks, or an old one's draining, within the health
            // timeout.
            front_timeout: self.swap.health_timeout,
        }
    }
}

mod older;
mod problems;
mod validate;

pub(crate) use problems::problem_from_toml;
use problems::secret_fields;
