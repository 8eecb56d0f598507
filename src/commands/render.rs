//! `baton render`: what a swap would send for one generation, written to a directory.

use std::path::Path;

use crate::cli::RenderArgs;
use crate::cloudinit::{AgentBinary, MAX_ENCODED_LEN};
use crate::config::Config;
use crate::error::Error;
use crate::fsutil::{self, PRIVATE, PUBLIC};
use crate::generation::{Rendered, deploy_key, render};
use crate::identity::ssh;

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
