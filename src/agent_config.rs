//! `/etc/baton/agent.toml`: what the host side (`baton agent`, `backup`, `restore`) knows.
//!
//! The operator side writes it into the user-data; the host reads it. One type for both
//! ends keeps the two from drifting apart.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Backup;
use crate::store::Settings as Store;

/// Where cloud-init puts the file on the host.
pub const PATH: &str = "/etc/baton/agent.toml";
/// The agent's object-store credentials (mode 0600), as systemd's EnvironmentFile.
pub const ENV_PATH: &str = "/etc/baton/agent.env";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub generation: u64,
    /// The site's domain (the stack's proxy serves it; `baton host up` passes it on).
    #[serde(default)]
    pub domain: String,
    pub store: Store,
    #[serde(default)]
    pub prometheus: Prometheus,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub content: ContentPull,
    /// Where the host keeps its own state (the restore-verified marker, the backup lock).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The host CA's public key (OpenSSH): `state.json` counts only when it signed it
    /// (`store::sealed`). An agent.toml of an older baton has none and checks nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_signer: Option<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/baton")
}

impl AgentConfig {
    /// Reads and validates `path`, with the same messages as `baton.toml`.
    pub fn load(path: &std::path::Path) -> Result<AgentConfig, crate::config::ConfigError> {
        let text =
            crate::fsutil::read_small(path).map_err(|source| crate::config::ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        toml::from_str(&text).map_err(|e| crate::config::ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![crate::config::problem_from_toml(&e, &text)],
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    pub url: String,
    pub data_dir: PathBuf,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            url: "http://127.0.0.1:9090".to_string(),
            data_dir: PathBuf::from("/srv/prometheus"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: SocketAddr::from(([127, 0, 0, 1], 9109)),
        }
    }
}

/// Where the server keeps published content, and how often it looks for more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ContentPull {
    pub dir: PathBuf,
    pub interval_seconds: u64,
}

impl Default for ContentPull {
    fn default() -> Self {
        ContentPull {
            dir: PathBuf::from("/srv/site"),
            interval_seconds: 30,
        }
    }
}
