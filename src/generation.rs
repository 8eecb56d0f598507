//! One generation's new host: its SSH host key and certificate, its TLS leaf, and the
//! user-data that carries them. A swap renders it to create the VM; `baton render` writes
//! it to a directory for inspection. Both must produce the same thing, so it lives here,
//! not in either command.

use zeroize::Zeroizing;

use crate::cloudinit::{self, AgentBinary, HostSecrets, StoreCredentials};
use crate::config::Config;
use crate::error::Error;
use crate::identity::ssh::{self, HostCertRequest};
use crate::identity::tls::TlsCa;

/// A new host's identity and user-data, as the swap creates it.
pub struct Rendered {
    pub host_key: ssh_key::PrivateKey,
    pub host_certificate: ssh_key::Certificate,
    pub tls_cert_pem: String,
    pub user_data: cloudinit::UserData,
}

/// The key baton logs in to the servers with (ssh.deploy_key).
pub fn deploy_key(config: &Config) -> Result<ssh_key::PrivateKey, Error> {
    Ok(ssh::load_private(
        &config.deploy_key(),
        "baton's deploy key",
        "projects made before `baton init` wrote keys/deploy: create it with \
         `ssh-keygen -t ed25519 -N '' -f keys/deploy`, or point ssh.deploy_key at an \
         unencrypted OpenSSH private key",
    )?)
}

/// Generates generation `generation`'s host key, certificate and TLS leaf, and renders the
/// user-data that carries them and lets `deploy` (baton's own key) log in.
pub fn render(
    config: &Config,
    generation: u64,
    agent: Option<&AgentBinary>,
    deploy: &ssh_key::PublicKey,
) -> Result<Rendered, Error> {
    let host_ca = ssh::load_private(
        &config.host_ca_key(),
        "the SSH host CA",
        "point ssh.host_ca at an unencrypted OpenSSH private key, or create a CA with `baton init`",
    )?;
    let tls_ca = TlsCa::load(&config.tls_ca_cert(), &config.tls_ca_key())?;
    let name = config.instance_name(generation);

    let host_key = ssh::generate_key(&format!("{name} host key"))?;
    let request = HostCertRequest::starting_now(
        format!(
            "baton site={} generation={generation} instance={name}",
            config.site.name
        ),
        generation,
        vec![
            config.cloud.elastic_ip.to_string(),
            config.site.domain.clone(),
            name,
        ],
        config.ssh.cert_lifetime,
    );
    let host_certificate = ssh::sign_host_certificate(&host_ca, host_key.public_key(), &request)?;
    let tls = tls_ca.issue_leaf(
        &config.site.domain,
        config.cloud.elastic_ip,
        config.ssh.cert_lifetime,
    )?;

    let credentials = store_credentials_from_env();
    let secrets = HostSecrets {
        host_key: &host_key,
        host_certificate: &host_certificate,
        tls: &tls,
        store_credentials: credentials.as_ref(),
        deploy_key: deploy,
    };
    let user_data = cloudinit::render(config, generation, &secrets, agent)?;
    Ok(Rendered {
        tls_cert_pem: tls.cert_pem.clone(),
        host_key,
        host_certificate,
        user_data,
    })
}

/// The host's agent gets the operator's object-store credentials, if they are set.
fn store_credentials_from_env() -> Option<StoreCredentials> {
    let id = std::env::var("AWS_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty())?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|s| !s.is_empty())?;
    Some(StoreCredentials {
        access_key_id: id,
        secret_access_key: Zeroizing::new(secret),
    })
}
