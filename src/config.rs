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
use std::os::unix::fs::PermissionsExt;
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
    /// The address the site answers on (and baton checks it through): the Elastic IP, or
    /// on AWS with `front = "alb"` an address of the load balancer.
    #[serde(deserialize_with = "ip_address")]
    pub elastic_ip: IpAddr,
    /// AWS: "elastic-ip" (the default) or "alb".
    pub front: Option<String>,
    /// AWS, `front = "elastic-ip"`: the address's allocation id, checked against it.
    pub allocation_id: Option<String>,
    /// AWS, `front = "alb"`: the target group's ARN.
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
            "{} is not an IP address; write the Elastic IP as shown in the cloud \
             console, e.g. \"203.0.113.10\"",
            described(&s)
        ))
    })
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

    /// The compute API base URL: the configured one, or Exoscale's for the zone.
    pub fn cloud_endpoint(&self) -> String {
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

    /// The AWS provider's settings, as [`crate::cloud::aws::AwsClient`] takes them; `None`
    /// on another provider.
    pub fn aws(&self) -> Option<crate::cloud::aws::Settings> {
        use crate::cloud::aws::{Front, Settings};
        if self.cloud.provider != "aws" {
            return None;
        }
        let front = match self.cloud.front.as_deref() {
            Some("alb") => Front::Alb {
                target_group: self.cloud.target_group.clone().unwrap_or_default(),
            },
            _ => Front::ElasticIp {
                allocation_id: self.cloud.allocation_id.clone(),
            },
        };
        Some(Settings {
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
        })
    }

    fn validate_aws(&self, v: &mut Validator) {
        let c = self;
        v.check(
            c.cloud.region.as_deref().is_some_and(|r| is_label(r, 30)),
            "cloud.region",
            || match &c.cloud.region {
                Some(r) => format!("{} is not a region name", described(r)),
                None => "is missing: AWS needs the region".into(),
            },
            "write the region as AWS names it, e.g. \"eu-central-1\"",
        );
        v.check(
            c.cloud.zone.is_empty(),
            "cloud.zone",
            || "is an Exoscale setting, and cloud.provider is \"aws\"".into(),
            "remove it; AWS takes cloud.region",
        );
        let front = c.cloud.front.as_deref().unwrap_or("elastic-ip");
        v.check(
            matches!(front, "elastic-ip" | "alb"),
            "cloud.front",
            || format!("{} is not a front", described(front)),
            "set front = \"elastic-ip\" (an Elastic IP) or \"alb\" (an ALB target group)",
        );
        if front == "alb" {
            v.check(
                c.cloud
                    .target_group
                    .as_deref()
                    .is_some_and(|t| t.starts_with("arn:") && t.contains(":targetgroup/")),
                "cloud.target_group",
                || match &c.cloud.target_group {
                    Some(t) => format!("{} is not a target group ARN", described(t)),
                    None => "is missing: front = \"alb\" needs the target group".into(),
                },
                "write the ARN, e.g. \"arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/blog/0123456789abcdef\"",
            );
            v.check(
                c.cloud.allocation_id.is_none(),
                "cloud.allocation_id",
                || "names an Elastic IP, and the front is \"alb\"".into(),
                "remove it, or set front = \"elastic-ip\"",
            );
        } else {
            v.check(
                c.cloud.target_group.is_none(),
                "cloud.target_group",
                || "names a target group, and the front is \"elastic-ip\"".into(),
                "remove it, or set front = \"alb\"",
            );
            if let Some(id) = &c.cloud.allocation_id {
                v.check(
                    id.starts_with("eipalloc-"),
                    "cloud.allocation_id",
                    || format!("{} is not an allocation id", described(id)),
                    "write it as AWS shows it, e.g. \"eipalloc-0123456789abcdef0\"",
                );
            }
        }
        v.check(
            c.instance
                .subnet
                .as_deref()
                .is_some_and(|s| s.starts_with("subnet-")),
            "instance.subnet",
            || match &c.instance.subnet {
                Some(s) => format!("{} is not a subnet id", described(s)),
                None => "is missing: AWS needs the subnet to start the instance in".into(),
            },
            "write the subnet's id, e.g. \"subnet-0123456789abcdef0\"",
        );
    }

    fn validate(&self) -> Vec<Problem> {
        let mut v = Validator::default();
        let c = self;

        v.check(
            is_label(&c.site.name, 30),
            "site.name",
            || {
                format!(
                    "{} cannot name instances and labels",
                    described(&c.site.name)
                )
            },
            "use 1-30 lowercase letters, digits and dashes, starting with a letter, e.g. \"blog\"",
        );
        v.check(
            is_hostname(&c.site.domain),
            "site.domain",
            || format!("{} is not a DNS name", described(&c.site.domain)),
            "write the site's fully qualified name, e.g. \"blog.example.org\"",
        );

        v.check(
            PROVIDERS.contains(&c.cloud.provider.as_str()),
            "cloud.provider",
            || {
                format!(
                    "{} is not a supported provider",
                    described(&c.cloud.provider)
                )
            },
            "set provider = \"exoscale\" or \"aws\"",
        );
        if c.cloud.provider == "aws" {
            c.validate_aws(&mut v);
        } else {
            v.check(
                is_label(&c.cloud.zone, 30),
                "cloud.zone",
                || format!("{} is not a zone name", described(&c.cloud.zone)),
                "write the zone as Exoscale names it, e.g. \"ch-gva-2\"",
            );
            for (field, set) in [
                ("cloud.region", c.cloud.region.is_some()),
                ("cloud.front", c.cloud.front.is_some()),
                ("cloud.allocation_id", c.cloud.allocation_id.is_some()),
                ("cloud.target_group", c.cloud.target_group.is_some()),
                ("instance.subnet", c.instance.subnet.is_some()),
                ("instance.image_owner", c.instance.image_owner.is_some()),
            ] {
                v.check(
                    !set,
                    field,
                    || "is an AWS setting, and cloud.provider is \"exoscale\"".into(),
                    "remove it, or set provider = \"aws\"",
                );
            }
        }
        if let Some(endpoint) = &c.cloud.endpoint {
            v.check_url(endpoint, "cloud.endpoint");
        }

        v.check(
            c.instance.disk_gb >= 10,
            "instance.disk_gb",
            || {
                format!(
                    "{} GB is below the 10 GB Exoscale's templates need",
                    c.instance.disk_gb
                )
            },
            "set disk_gb = 10 or more",
        );
        v.check(
            c.instance.disk_gb <= 51200,
            "instance.disk_gb",
            || {
                format!(
                    "{} GB is above the 51200 GB an instance may have",
                    c.instance.disk_gb
                )
            },
            "set disk_gb to at most 51200",
        );
        for (field, value) in [
            ("swap.boot_timeout", c.swap.boot_timeout),
            ("swap.health_timeout", c.swap.health_timeout),
            ("swap.handover_timeout", c.swap.handover_timeout),
        ] {
            v.check(
                (Duration::from_secs(5)..=Duration::from_secs(24 * 3600)).contains(&value),
                field,
                || {
                    format!(
                        "{} is outside 5s to 24h: a swap would fail at once or wait a day",
                        humantime::format_duration(value)
                    )
                },
                "use minutes, e.g. \"10m\" (the defaults fit a real cloud)",
            );
        }
        v.check(
            c.swap.watch.is_zero()
                || (Duration::from_secs(5)..=Duration::from_secs(24 * 3600))
                    .contains(&c.swap.watch),
            "swap.watch",
            || {
                format!(
                    "{} is outside 5s to 24h",
                    humantime::format_duration(c.swap.watch)
                )
            },
            "use minutes, e.g. \"5m\", or \"0s\" to turn the watch off",
        );
        v.check(
            (Duration::from_secs(1)..=Duration::from_secs(300)).contains(&c.swap.watch_interval)
                && (c.swap.watch.is_zero() || c.swap.watch_interval <= c.swap.watch),
            "swap.watch_interval",
            || {
                format!(
                    "{} is outside 1s to 5m, or longer than swap.watch",
                    humantime::format_duration(c.swap.watch_interval)
                )
            },
            "use seconds, e.g. \"5s\"",
        );
        v.check(
            (1..=100).contains(&c.swap.watch_failures),
            "swap.watch_failures",
            || format!("{} is outside 1 to 100", c.swap.watch_failures),
            "use a few, e.g. 3: one failed check alone is often a blip",
        );
        v.check(
            c.swap.keep_previous <= Duration::from_secs(7 * 24 * 3600),
            "swap.keep_previous",
            || {
                format!(
                    "{} is longer than 7 days: a second VM would run (and cost) that long",
                    humantime::format_duration(c.swap.keep_previous)
                )
            },
            "use minutes or hours, e.g. \"30m\", or \"0s\" to delete it after the watch",
        );
        v.check(
            !c.instance.instance_type.trim().is_empty(),
            "instance.type",
            || "is empty".to_string(),
            "name an instance type, e.g. \"standard.small\"",
        );
        v.check(
            !c.instance.template.trim().is_empty(),
            "instance.template",
            || "is empty".to_string(),
            "name a template, e.g. \"Linux Debian 12 (Bookworm) 64-bit\"",
        );

        v.check(
            c.ssh.port != 0,
            "ssh.port",
            || "0 is not a port".to_string(),
            "use 22 or another port from 1 to 65535",
        );
        v.check(
            is_unix_user(&c.ssh.admin_user),
            "ssh.admin_user",
            || format!("{} cannot be the admin user", described(&c.ssh.admin_user)),
            "use a lowercase login name other than root, e.g. \"deploy\"",
        );
        v.check(
            !c.ssh.authorized_keys.is_empty(),
            "ssh.authorized_keys",
            || "is empty: nobody could log in to the server".to_string(),
            "add your public key, e.g. the contents of ~/.ssh/id_ed25519.pub",
        );
        for (i, key) in c.ssh.authorized_keys.iter().enumerate() {
            // One entry is one line of authorized_keys: a newline would smuggle in a
            // second key (or options) that the parser below never looked at.
            if key.chars().any(char::is_control) {
                v.problem(
                    "ssh.authorized_keys",
                    format!(
                        "entry {} holds a line break or another control character",
                        i + 1
                    ),
                    "give each key as its own entry, one line each",
                );
            } else if let Err(e) = ssh_key::PublicKey::from_openssh(key) {
                v.problem(
                    "ssh.authorized_keys",
                    format!("entry {} is not an OpenSSH public key ({e})", i + 1),
                    "paste the whole line of a .pub file: \"ssh-ed25519 AAAA... you@host\"",
                );
            }
        }
        v.check(
            c.ssh.cert_lifetime >= Duration::from_secs(3600),
            "ssh.cert_lifetime",
            || {
                format!(
                    "{} is too short to outlive a swap",
                    humantime::format_duration(c.ssh.cert_lifetime)
                )
            },
            "use at least \"1h\"; the default is \"90d\"",
        );
        v.check(
            c.ssh.cert_lifetime <= crate::identity::MAX_CERT_LIFETIME,
            "ssh.cert_lifetime",
            || "is longer than 10 years".to_string(),
            "use at most \"3650d\"; a swap renews the certificate anyway (the default is \"90d\")",
        );
        v.secret_file(&c.host_ca_key(), "ssh.host_ca");
        v.public_file(&c.host_ca_pub(), "ssh.host_ca");
        v.secret_file(&c.tls_ca_key(), "tls.ca_key");
        v.public_file(&c.tls_ca_cert(), "tls.ca_cert");

        v.check_store(&c.store);

        for (i, p) in c.backup.paths.iter().enumerate() {
            v.check(
                crate::fsutil::is_plain_absolute(p),
                "backup.paths",
                || format!("entry {} is not an absolute path without `..`", i + 1),
                "write host paths in full, e.g. \"/srv/acme\"",
            );
            v.check(
                !c.backup.paths[..i].contains(p),
                "backup.paths",
                || format!("entry {} repeats an earlier one", i + 1),
                "list each path once",
            );
        }
        v.check(
            c.backup.keep_last >= 1,
            "backup.keep_last",
            || "is 0: every backup would be deleted right after it was made".to_string(),
            "keep at least 1 (the default is 60)",
        );
        v.problems
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, field: &str, message: String, fix: &str) {
        self.problems.push(Problem {
            field: Some(field.to_string()),
            line: None,
            message,
            fix: fix.to_string(),
        });
    }

    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String, fix: &str) {
        if !ok {
            self.problem(field, message(), fix);
        }
    }

    fn check_url(&mut self, url: &str, field: &str) {
        let Some((scheme, rest)) = url.split_once("://") else {
            return self.problem(
                field,
                format!("{} is not a URL", described(url)),
                "write e.g. \"https://host/path\"",
            );
        };
        let host = rest.split(['/', ':']).next().unwrap_or("");
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match scheme {
            "https" if !host.is_empty() => {}
            // Plain HTTP would carry signed requests in clear: only for local simulators.
            "http" if loopback => {}
            "http" => self.problem(
                field,
                format!("{} uses plain http to a remote host", described(url)),
                "use https (http is allowed only for 127.0.0.1/localhost, e.g. exosim)",
            ),
            _ => self.problem(
                field,
                format!("{} is not an http(s) URL", described(url)),
                "write e.g. \"https://host/path\"",
            ),
        }
    }

    fn check_store(&mut self, store: &StoreSettings) {
        let url = &store.url;
        if let Some(rest) = url.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or("");
            if !is_bucket(bucket) {
                self.problem(
                    "store.url",
                    format!("the bucket, {}, is not a valid bucket name", described(bucket)),
                    "use 3-63 lowercase letters, digits, dots and dashes: \"s3://my-bucket/prefix\"",
                );
            }
            match &store.endpoint {
                Some(e) => self.check_url(e, "store.endpoint"),
                None => self.problem(
                    "store.endpoint",
                    "is missing; an s3:// store needs its endpoint".to_string(),
                    "add e.g. endpoint = \"https://sos-ch-gva-2.exo.io\"",
                ),
            }
        } else if let Some(path) = url.strip_prefix("file://") {
            if !Path::new(path).is_absolute() {
                self.problem(
                    "store.url",
                    format!("{} is not an absolute file URL", described(url)),
                    "write three slashes for an absolute path: \"file:///var/lib/baton/store\"",
                );
            }
        } else {
            self.problem(
                "store.url",
                format!("{} is neither s3:// nor file://", described(url)),
                "write \"s3://bucket/prefix\" or \"file:///absolute/path\"",
            );
        }
    }

    /// A file that must exist and be a regular file (one stat: missing, or something
    /// else, each with its own advice).
    fn public_file(&mut self, path: &Path, field: &str) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => self.problem(
                field,
                format!("{} is not a regular file", path.display()),
                "point the field at the key or certificate file itself (relative paths start \
                 at the config file's directory)",
            ),
            // Named by its length only: what does not exist may be a value pasted into the
            // wrong field, a secret say.
            Err(_) => self.problem(
                field,
                format!(
                    "names a file that does not exist ({})",
                    described(&path.to_string_lossy()).replacen("value", "path", 1)
                ),
                "create the CA with `baton init`, or point the field at your existing file \
                 (relative paths start at the config file's directory)",
            ),
        }
    }

    /// Like [`Self::public_file`], and readable by its owner only. Its mode is judged
    /// only once it is a regular file: chmod would be the wrong advice for a directory
    /// or a device.
    fn secret_file(&mut self, path: &Path, field: &str) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o077 != 0 => self.problem(
                field,
                format!(
                    "private key {} is readable by others (mode {:o})",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ),
                &format!("run `chmod 600 {}`", path.display()),
            ),
            Ok(meta) if meta.is_file() => {}
            _ => self.public_file(path, field),
        }
    }
}

/// A toml or serde message with every quoted value in it hidden: `invalid type: string
/// "x", expected u32` quotes the file.
fn without_values(message: &str) -> String {
    let mut unquoted = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        unquoted.push_str(first);
    }
    // Odd pieces are inside quotes; an unbalanced last quote hides the rest too.
    for (i, piece) in parts.enumerate() {
        if i % 2 == 0 {
            unquoted.push_str(&described(piece));
        } else {
            unquoted.push_str(piece);
        }
    }
    // serde quotes in backticks what it did not know (`unknown field \`X\``, `unknown
    // variant \`X\``): the file's text, shown only when it reads like a key. What follows
    // "expected" is baton's own names.
    let (theirs, ours) = match unquoted.find("expected") {
        Some(at) => unquoted.split_at(at),
        None => (unquoted.as_str(), ""),
    };
    let mut out = String::with_capacity(unquoted.len());
    for (i, piece) in theirs.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&crate::redact::shown(piece));
        } else {
            out.push_str(piece);
        }
    }
    out.push_str(ours);
    out
}

/// Finds keys that look like secrets anywhere in the file. Only their names are reported.
fn secret_fields(table: &toml::Table, prefix: &str) -> Vec<Problem> {
    const WORDS: [&str; 5] = ["secret", "password", "token", "api_key", "access_key"];
    let mut found = Vec::new();
    for (key, value) in table {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let toml::Value::Table(inner) = value {
            found.extend(secret_fields(inner, &field));
        } else if WORDS.iter().any(|w| key.to_ascii_lowercase().contains(w)) {
            // The key itself may be the pasted secret: named only when it reads like one.
            let named = if crate::redact::is_key_like(key) {
                field
            } else {
                format!("{prefix}.<a key of {} characters>", key.chars().count())
            };
            found.push(Problem {
                field: Some(named),
                line: None,
                message: "looks like a secret; baton never reads secrets from files".to_string(),
                fix: format!(
                    "delete it from the file and export it instead: {}",
                    SECRET_ENV.join(", ")
                ),
            });
        }
    }
    found
}

/// Turns a toml error into a problem naming the field, without quoting the file.
pub(crate) fn problem_from_toml(e: &toml::de::Error, text: &str) -> Problem {
    let (field, line) = match e.span() {
        Some(span) if !(span.start == 0 && span.end >= text.len()) => {
            let (field, line) = field_at(text, span.start);
            (field, Some(line))
        }
        _ => (None, None),
    };
    Problem {
        field,
        line,
        message: without_values(e.message().trim()),
        fix: "compare with the commented example that `baton init --dir /tmp/example` writes"
            .to_string(),
    }
}

/// The `section.key` whose line holds byte `offset`, and the 1-based line number. Only
/// names that read like keys ([`crate::redact::is_key_like`]): the line may hold a pasted
/// secret, a table header too.
fn field_at(text: &str, offset: usize) -> (Option<String>, usize) {
    let before = &text[..offset.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(header_name);
    if line.starts_with('[') {
        return (header_name(line), line_no);
    }
    // Only a line of the form `key = ...` names a key: anything else may be a value (a
    // pasted secret, say) and is never repeated.
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| crate::redact::is_key_like(k));
    let field = match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k.to_string()),
        (s, None) => s,
    };
    (field, line_no)
}

/// The table a `[name]` or `[[name]]` line opens, if its name reads like a key; nothing
/// after the closing bracket.
fn header_name(line: &str) -> Option<String> {
    let inner = line.trim_start_matches('[');
    let name = inner.split(']').next()?.trim();
    crate::redact::is_key_like(name).then(|| name.to_string())
}

fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_unix_user(s: &str) -> bool {
    s != "root"
        && !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_bucket(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_at_names_section_and_key() {
        let text = "[site]\nname = 1\n\n[cloud]\n  zone = \"x\"\n";
        assert_eq!(
            field_at(text, text.find("1").unwrap()),
            (Some("site.name".into()), 2)
        );
        assert_eq!(
            field_at(text, text.find("zone").unwrap()),
            (Some("cloud.zone".into()), 5)
        );
        assert_eq!(
            field_at(text, text.find("[cloud]").unwrap()),
            (Some("cloud".into()), 4)
        );
    }

    #[test]
    fn a_line_that_is_no_assignment_names_no_field() {
        let text = "[cloud]\nEXOSCALE_API_SECRET abcdef\n";
        let (field, line) = field_at(text, text.find("abc").unwrap());
        assert_eq!((field.as_deref(), line), (Some("cloud"), 2));
        assert_eq!(
            without_values("invalid type: string \"hunter2\", expected u32"),
            "invalid type: string the value (7 characters), expected u32"
        );
    }

    #[test]
    fn names() {
        assert!(is_label("blog", 30) && !is_label("Blog", 30) && !is_label("blog-", 30));
        assert!(is_hostname("blog.example.org") && !is_hostname("blog") && !is_hostname("a..b"));
        assert!(is_unix_user("deploy") && !is_unix_user("root") && !is_unix_user("De"));
        assert!(is_bucket("baton-blog") && !is_bucket("Baton") && !is_bucket("ab"));
    }
}
