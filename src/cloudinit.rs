//! The user-data a new server boots from: a cloud-config document built as typed serde
//! values and serialised to YAML, so no secret is ever spliced into text by hand.
//!
//! What it sets up, in cloud-init's own order: `bootcmd` (first boot) blocks the metadata
//! address for every process, root included, and puts the front's address on `lo` (a front its members hold); `users` and `ssh_keys`
//! give the admin user its keys and sshd the host key and certificate before sshd first
//! starts; `write_files` installs the agent's config, credentials and systemd units;
//! `runcmd` fetches the baton binary (checked by sha256), starts the restore, enables
//! baton-boot (the block and the address on every later boot) and queues baton-scrub,
//! which removes cloud-init's copies of the user-data once cloud-init is done and
//! disables cloud-init: a server is provisioned once.

use std::io::Write;
use std::net::IpAddr;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use ssh_key::PrivateKey;
use ssh_key::certificate::Certificate;
use zeroize::Zeroizing;

use crate::agent_config::{self, AgentConfig};
use crate::config::Config;
use crate::identity::tls::TlsLeaf;
use crate::identity::{IdentityError, ssh};

/// Exoscale's limit on the `user-data` field: base64 characters, after compression.
pub const MAX_ENCODED_LEN: usize = 32768;

const RESTORE_UNIT: &str = include_str!("../cloud-init/baton-restore.service");
const BOOT_UNIT: &str = include_str!("../cloud-init/baton-boot.service");
const SCRUB_UNIT: &str = include_str!("../cloud-init/baton-scrub.service");
/// Where the server keeps the metadata block, for baton-boot.service.
const METADATA_BLOCK_PATH: &str = "/etc/baton/metadata-block.nft";
const AGENT_UNIT: &str = include_str!("../cloud-init/baton-agent.service");
const METADATA_BLOCK: &str = include_str!("../cloud-init/metadata-block.nft");
const INSTALL_AGENT: &str = include_str!("../cloud-init/install-agent.sh");
const INSTALL_AGENT_PATH: &str = "/usr/local/lib/baton/install-agent";

#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    #[error(
        "the encoded user-data is {size} characters, over the cloud's limit of {limit}\n  \
         fix: shorten what goes into it (authorized_keys, backup paths); large files belong \
         in the bundle"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("cannot encode the user-data: {0}")]
    Encode(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl crate::exit::Classify for UserDataError {
    fn is_bad_input(&self) -> bool {
        match self {
            UserDataError::TooLarge { .. } => true,
            UserDataError::Identity(e) => e.is_bad_input(),
            UserDataError::Encode(_) => false,
        }
    }
}

/// Where the new host fetches the baton binary from, and what it must hash to.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub url: String,
    pub sha256: String,
}

/// Object-store credentials for the host's agent (from the operator's environment).
#[derive(Clone)]
pub struct StoreCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Everything that differs between two renders of the same config.
pub struct HostSecrets<'a> {
    pub host_key: &'a PrivateKey,
    pub host_certificate: &'a Certificate,
    pub tls: &'a TlsLeaf,
    pub store_credentials: Option<&'a StoreCredentials>,
    /// baton's own login key, added to the admin user's keys.
    pub deploy_key: &'a ssh_key::PublicKey,
}

/// The rendered user-data: readable YAML, and the encoded form the API takes.
pub struct UserData {
    pub yaml: Zeroizing<String>,
    pub encoded: Zeroizing<String>,
}

#[derive(Serialize)]
struct CloudConfig {
    bootcmd: Vec<String>,
    users: Vec<User>,
    disable_root: bool,
    ssh_pwauth: bool,
    ssh_deletekeys: bool,
    ssh_genkeytypes: Vec<String>,
    ssh_keys: SshKeys,
    package_update: bool,
    package_upgrade: bool,
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct User {
    name: String,
    shell: &'static str,
    lock_passwd: bool,
    sudo: &'static str,
    ssh_authorized_keys: Vec<String>,
}

#[derive(Serialize)]
struct SshKeys {
    ed25519_private: String,
    ed25519_public: String,
    ed25519_certificate: String,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    content: String,
    owner: &'static str,
    permissions: &'static str,
}

impl WriteFile {
    fn new(path: &str, content: impl Into<String>, permissions: &'static str) -> Self {
        WriteFile {
            path: path.to_string(),
            content: content.into(),
            owner: "root:root",
            permissions,
        }
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The front's address as a host address, `203.0.113.10/32`.
fn host_address(address: IpAddr) -> String {
    let prefix = if address.is_ipv4() { 32 } else { 128 };
    format!("{address}/{prefix}")
}

/// The address the VM must hold itself, when its front is one that its members hold
/// (`Front::held_by_server`).
fn held_address(config: &Config) -> Option<IpAddr> {
    let front = config.front();
    front.held_by_server.then_some(front.address)
}

/// Shell commands cloud-init runs at first boot, before anything else, by root (later
/// boots: baton-boot.service, since baton-scrub disables cloud-init). The only value in
/// them is the front's address, which config validation parsed as an address.
fn bootcmd(held: Option<IpAddr>) -> Vec<String> {
    let mut commands = vec![format!("nft -f - <<'NFT'\n{METADATA_BLOCK}NFT\n")];
    if let Some(ip) = held {
        commands.push(format!("ip address replace {} dev lo", host_address(ip)));
    }
    commands
}

/// baton-boot.service, holding the address only where the VM must.
fn boot_unit(held: Option<IpAddr>) -> String {
    match held {
        Some(ip) => BOOT_UNIT.replace("@ELASTIC_IP@", &host_address(ip)),
        None => BOOT_UNIT
            .lines()
            .filter(|l| !l.contains("@ELASTIC_IP@"))
            .map(|l| format!("{l}\n"))
            .collect(),
    }
}

fn sshd_config(port: u16) -> String {
    // sshd keeps the first value it reads, and sshd_config.d/10-* is read before
    // cloud-init's 50-cloud-init.conf and the main file.
    format!(
        "# Written by baton's user-data.\n\
         Port {port}\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PermitRootLogin no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         AuthenticationMethods publickey\n"
    )
}

fn agent_env(creds: &StoreCredentials) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
        creds.access_key_id,
        creds.secret_access_key.as_str()
    ))
}

/// Renders generation `generation`'s user-data.
pub fn render(
    config: &Config,
    generation: u64,
    secrets: &HostSecrets<'_>,
    agent: Option<&AgentBinary>,
) -> Result<UserData, UserDataError> {
    let agent_config = AgentConfig {
        generation,
        domain: config.site.domain.clone(),
        store: config.store.clone(),
        prometheus: Default::default(),
        backup: config.backup.clone(),
        metrics: Default::default(),
        content: crate::agent_config::ContentPull {
            interval_seconds: config.content.pull_interval.as_secs().max(1),
            ..Default::default()
        },
        state_dir: "/var/lib/baton".into(),
        // The CA that signed this server's certificate signs the operator's objects too.
        store_signer: ssh_key::PublicKey::from(secrets.host_certificate.signature_key().clone())
            .to_openssh()
            .ok(),
    };
    let agent_toml =
        toml::to_string(&agent_config).map_err(|e| UserDataError::Encode(e.to_string()))?;

    let mut write_files = vec![
        WriteFile::new(
            "/etc/ssh/sshd_config.d/10-baton.conf",
            sshd_config(config.ssh.port),
            "0644",
        ),
        WriteFile::new(agent_config::PATH, agent_toml, "0644"),
        WriteFile::new("/etc/baton/generation", format!("{generation}\n"), "0644"),
        WriteFile::new(
            "/etc/systemd/system/baton-restore.service",
            RESTORE_UNIT,
            "0644",
        ),
        WriteFile::new(
            "/etc/systemd/system/baton-agent.service",
            AGENT_UNIT,
            "0644",
        ),
        WriteFile::new(INSTALL_AGENT_PATH, INSTALL_AGENT, "0755"),
        WriteFile::new(METADATA_BLOCK_PATH, METADATA_BLOCK, "0644"),
        WriteFile::new(
            "/etc/systemd/system/baton-boot.service",
            boot_unit(held_address(config)),
            "0644",
        ),
        WriteFile::new(
            "/etc/systemd/system/baton-scrub.service",
            SCRUB_UNIT,
            "0644",
        ),
        WriteFile::new("/srv/tls/origin.crt", secrets.tls.cert_pem.clone(), "0644"),
        WriteFile::new("/srv/tls/origin.key", secrets.tls.key_pem.as_str(), "0600"),
    ];
    if let Some(creds) = secrets.store_credentials {
        write_files.push(WriteFile::new(
            agent_config::ENV_PATH,
            agent_env(creds).as_str(),
            "0600",
        ));
    }

    let mut runcmd = Vec::new();
    if let Some(agent) = agent {
        runcmd.push(argv(&[INSTALL_AGENT_PATH, &agent.url, &agent.sha256]));
        runcmd.push(argv(&["systemctl", "daemon-reload"]));
        runcmd.push(argv(&[
            "systemctl",
            "enable",
            "baton-restore.service",
            "baton-agent.service",
        ]));
        // The restore runs to completion here; the swap waits for it before the stack starts.
        runcmd.push(argv(&["systemctl", "start", "baton-restore.service"]));
        runcmd.push(argv(&[
            "systemctl",
            "start",
            "--no-block",
            "baton-agent.service",
        ]));
    } else {
        runcmd.push(argv(&["systemctl", "daemon-reload"]));
    }
    // Every later boot blocks the metadata address before the network; once cloud-init
    // is done (the job waits for cloud-final), its copies of the user-data go.
    runcmd.push(argv(&["systemctl", "enable", "baton-boot.service"]));
    runcmd.push(argv(&[
        "systemctl",
        "start",
        "--no-block",
        "baton-scrub.service",
    ]));

    let mut authorized = config.ssh.authorized_keys.clone();
    authorized.push(
        ssh::public_openssh(secrets.deploy_key)?
            .trim_end()
            .to_string(),
    );
    let doc = CloudConfig {
        bootcmd: bootcmd(held_address(config)),
        users: vec![User {
            name: config.ssh.admin_user.clone(),
            shell: "/bin/bash",
            lock_passwd: true,
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            ssh_authorized_keys: authorized,
        }],
        disable_root: true,
        ssh_pwauth: false,
        ssh_deletekeys: true,
        // Only ed25519, and ours is already there: nothing is generated at boot.
        ssh_genkeytypes: vec!["ed25519".to_string()],
        ssh_keys: SshKeys {
            ed25519_private: ssh::private_openssh(secrets.host_key)?.to_string(),
            ed25519_public: ssh::public_openssh(secrets.host_key.public_key())?
                .trim_end()
                .to_string(),
            ed25519_certificate: ssh::certificate_openssh(secrets.host_certificate)?
                .trim_end()
                .to_string(),
        },
        package_update: false,
        package_upgrade: false,
        write_files,
        runcmd,
    };
    let body = Zeroizing::new(
        serde_norway::to_string(&doc).map_err(|e| UserDataError::Encode(e.to_string()))?,
    );
    let agent_note = match agent {
        Some(a) => format!("# baton binary: sha256 {}\n", a.sha256),
        None => {
            "# no --agent-url given: the baton binary is not fetched, its units stay disabled\n"
                .to_string()
        }
    };
    let yaml = Zeroizing::new(format!(
        "#cloud-config\n# baton {}: site {}, generation {generation}\n{agent_note}{}",
        env!("CARGO_PKG_VERSION"),
        config.site.name,
        body.as_str()
    ));
    let encoded = encode(&yaml)?;
    if encoded.len() > MAX_ENCODED_LEN {
        return Err(UserDataError::TooLarge {
            size: encoded.len(),
            limit: MAX_ENCODED_LEN,
        });
    }
    Ok(UserData { yaml, encoded })
}

/// gzip, then base64: what the compute API's `user-data` field takes. The gzip header
/// carries no timestamp, so the same YAML always encodes the same way.
pub fn encode(yaml: &str) -> Result<Zeroizing<String>, UserDataError> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(yaml.as_bytes())
        .map_err(|e| UserDataError::Encode(e.to_string()))?;
    let bytes = Zeroizing::new(
        gz.finish()
            .map_err(|e| UserDataError::Encode(e.to_string()))?,
    );
    Ok(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(bytes.as_slice()),
    ))
}
