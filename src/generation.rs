//! One generation's new host: its SSH host key and certificate, its TLS leaf, and the
//! user-data that carries them. A swap renders it to create the VM; `baton render` writes
//! it to a directory for inspection. Both must produce the same thing, so it lives here,
//! not in either command.

use zeroize::Zeroizing;

use crate::cloudinit::UserDataError;
use crate::cloudinit::{self, AgentBinary, HostSecrets, StoreCredentials};
use crate::config::Config;
use crate::identity::IdentityError;
use crate::identity::ssh::{self, HostCertRequest};
use crate::identity::tls::TlsCa;

/// What stops a generation from being rendered.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    UserData(#[from] UserDataError),
    /// The servers' store key cannot go into a user-data ([`ServerKey::problem`]).
    #[error("{message}\n  fix: {fix}")]
    ServerKey { message: String, fix: &'static str },
}

impl crate::exit::Classify for GenerationError {
    fn is_bad_input(&self) -> bool {
        match self {
            GenerationError::Identity(e) => e.is_bad_input(),
            GenerationError::UserData(e) => e.is_bad_input(),
            GenerationError::ServerKey { .. } => true,
        }
    }
}

/// A new host's identity and user-data, as the swap creates it.
pub struct Rendered {
    pub host_key: ssh_key::PrivateKey,
    pub host_certificate: ssh_key::Certificate,
    pub tls_cert_pem: String,
    pub user_data: cloudinit::UserData,
}

/// The key baton logs in to the servers with (ssh.deploy_key).
pub fn deploy_key(config: &Config) -> Result<ssh_key::PrivateKey, GenerationError> {
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
) -> Result<Rendered, GenerationError> {
    let host_ca = ssh::load_private(
        &config.host_ca_key(),
        "the SSH host CA",
        "point ssh.host_ca at an unencrypted OpenSSH private key, or create a CA with `baton init`",
    )?;
    let tls_ca = TlsCa::load(&config.tls_ca_cert(), &config.tls_ca_key())?;
    let name = config.instance_name(generation);
    let address = config.front().address;

    let host_key = ssh::generate_key(&format!("{name} host key"))?;
    let request = HostCertRequest::starting_now(
        format!(
            "baton site={} generation={generation} instance={name}",
            config.site.name
        ),
        generation,
        vec![address.to_string(), config.site.domain.clone(), name],
        config.ssh.cert_lifetime,
    );
    let host_certificate = ssh::sign_host_certificate(&host_ca, host_key.public_key(), &request)?;
    let tls = tls_ca.issue_leaf(&config.site.domain, address, config.ssh.cert_lifetime)?;

    let credentials = store_credentials_from_env(config)?;
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

/// The variables that hold the servers' own store key: what `agent.env` on every server
/// gets. Every server can be broken into, so it is a key for the bucket alone, never the
/// operator's cloud key (issue 29; README, "Which key goes where").
pub const SERVER_KEY_ID: &str = "BATON_SERVER_ACCESS_KEY_ID";
pub const SERVER_SECRET: &str = "BATON_SERVER_SECRET_ACCESS_KEY";

/// Where the servers' store key comes from, and the problem with it, if any.
pub struct ServerKey {
    pub credentials: Option<StoreCredentials>,
    /// The variable it came from, for messages.
    pub from: &'static str,
    /// Why no user-data may carry it (it is the cloud's key, or half of it is missing).
    pub problem: Option<(String, &'static str)>,
    /// Why a swap must not go ahead without one: the store is S3 and the servers would
    /// hold no key for it (`render` still shows what they would get).
    pub missing: Option<(String, &'static str)>,
}

/// The servers' store key: `BATON_SERVER_ACCESS_KEY_ID`/`_SECRET_ACCESS_KEY`; without
/// them, on Exoscale (where `AWS_*` is only ever the store's key) the operator's store
/// key. Never the cloud's own key: the same key id as `EXOSCALE_API_KEY`, or on AWS as
/// `AWS_ACCESS_KEY_ID`, is refused.
pub fn server_key(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> ServerKey {
    let var = |v: &str| env(v).filter(|s| !s.is_empty());
    let provider = config.provider();
    let cloud_var = provider.key_var();
    let shared = provider.shares_store_variables();
    let problem = |message: String, fix: &'static str| ServerKey {
        credentials: None,
        from: SERVER_KEY_ID,
        problem: Some((message, fix)),
        missing: None,
    };
    let none = |message: String| ServerKey {
        credentials: None,
        from: SERVER_KEY_ID,
        problem: None,
        missing: config.store.url.starts_with("s3://").then_some((
            message,
            "create a key for the bucket alone (README, \"Which key goes where\") and export \
             it as BATON_SERVER_ACCESS_KEY_ID and BATON_SERVER_SECRET_ACCESS_KEY",
        )),
    };
    let (id, secret, from) = match (var(SERVER_KEY_ID), var(SERVER_SECRET)) {
        (Some(id), Some(secret)) => (id, secret, SERVER_KEY_ID),
        (Some(_), None) | (None, Some(_)) => {
            return problem(
                format!("only one of {SERVER_KEY_ID} and {SERVER_SECRET} is set"),
                "set both (the servers' store key and its secret), or neither",
            );
        }
        (None, None) if shared => {
            return none(format!(
                "the servers need a store key of their own ({SERVER_KEY_ID} and \
                 {SERVER_SECRET}): on AWS, AWS_ACCESS_KEY_ID is the operator's cloud key, and \
                 baton never writes it onto a server"
            ));
        }
        (None, None) if var("AWS_SESSION_TOKEN").is_some() => {
            return none(format!(
                "the operator's store key is temporary (AWS_SESSION_TOKEN is set): it expires, \
                 so the servers cannot use it; set {SERVER_KEY_ID} and {SERVER_SECRET}"
            ));
        }
        (None, None) => match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => (id, secret, "AWS_ACCESS_KEY_ID"),
            _ => {
                return none(format!(
                    "the servers would hold no key for the store: neither {SERVER_KEY_ID} \
                     nor AWS_ACCESS_KEY_ID (static keys; AWS_PROFILE and temporary keys do \
                     not reach a server) is set"
                ));
            }
        },
    };
    if var(cloud_var).as_deref() == Some(id.as_str()) {
        return problem(
            format!(
                "the servers' store key ({from}, the key ending in {}) is the operator's cloud \
                 key ({cloud_var}): every server would hold it, and one broken server would \
                 hold the cloud account",
                crate::cloud::key_tail(&id)
            ),
            "give the servers a key for the bucket alone in BATON_SERVER_ACCESS_KEY_ID and \
             BATON_SERVER_SECRET_ACCESS_KEY (on Exoscale an IAM role limited to the bucket, \
             on AWS an IAM policy for the bucket's prefixes; README, \"Which key goes where\")",
        );
    }
    ServerKey {
        credentials: Some(StoreCredentials {
            access_key_id: id,
            secret_access_key: Zeroizing::new(secret),
        }),
        from,
        problem: None,
        missing: None,
    }
}

/// The servers' store key from the process environment, or the reason there is none.
fn store_credentials_from_env(
    config: &Config,
) -> Result<Option<StoreCredentials>, GenerationError> {
    let key = server_key(config, &|v| std::env::var(v).ok());
    match key.problem {
        Some((message, fix)) => Err(GenerationError::ServerKey { message, fix }),
        None => Ok(key.credentials),
    }
}
