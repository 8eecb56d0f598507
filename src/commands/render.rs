//! `baton render`: what a swap would send for one generation, written to a directory.

use std::path::Path;

use zeroize::Zeroizing;

use crate::cli::RenderArgs;
use crate::cloudinit::{self, AgentBinary, HostSecrets, MAX_ENCODED_LEN, StoreCredentials};
use crate::config::Config;
use crate::error::Error;
use crate::fsutil::{self, PRIVATE, PUBLIC};
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

fn agent_binary(args: &RenderArgs) -> Result<Option<AgentBinary>, Error> {
    let (Some(url), Some(sha256)) = (&args.agent_url, &args.agent_sha256) else {
        return Ok(None);
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::bad_input(
            format!("--agent-url {url:?} is not an http(s) URL"),
            "pass the pre-signed URL of the uploaded binary",
        ));
    }
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::bad_input(
            format!("--agent-sha256 {sha256:?} is not a sha256 (64 hex digits)"),
            "pass the output of `sha256sum baton`",
        ));
    }
    Ok(Some(AgentBinary {
        url: url.clone(),
        sha256,
    }))
}

pub fn run(args: &RenderArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let agent = agent_binary(args)?;
    let deploy = deploy_key(&config)?;
    let rendered = render(
        &config,
        args.generation,
        agent.as_ref(),
        deploy.public_key(),
    )?;

    let out = &args.out;
    fsutil::create_dir_all(out)?;
    let write = |name: &str, bytes: &[u8], mode| fsutil::write_atomic(&out.join(name), bytes, mode);
    // The user-data holds the host's private keys (and store credentials): owner only.
    write("user-data", rendered.user_data.yaml.as_bytes(), PRIVATE)?;
    write(
        "user-data.b64",
        rendered.user_data.encoded.as_bytes(),
        PRIVATE,
    )?;
    write(
        "ssh_host_ed25519_key.pub",
        ssh::public_openssh(rendered.host_key.public_key())?.as_bytes(),
        PUBLIC,
    )?;
    write(
        "ssh_host_ed25519_key-cert.pub",
        ssh::certificate_openssh(&rendered.host_certificate)?.as_bytes(),
        PUBLIC,
    )?;
    write("tls.crt", rendered.tls_cert_pem.as_bytes(), PUBLIC)?;

    report(out, &config, args.generation, &rendered);
    Ok(())
}

fn report(out: &Path, config: &Config, generation: u64, r: &Rendered) {
    println!(
        "rendered generation {generation} of {} into {}",
        config.site.name,
        out.display()
    );
    println!(
        "  user-data.b64: {} of {MAX_ENCODED_LEN} characters",
        r.user_data.encoded.len()
    );
    println!("  host key: {}", ssh::fingerprint(r.host_key.public_key()));
    println!(
        "  principals: {}",
        r.host_certificate.valid_principals().join(", ")
    );
}
