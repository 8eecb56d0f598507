//! `baton known-hosts`: the one line the operator's known_hosts ever needs.

use std::path::Path;

use crate::config::Config;
use crate::error::Error;
use crate::identity::ssh;

/// The `@cert-authority` line for the site described by `config`.
pub fn line(config: &Config) -> Result<String, Error> {
    let ca = ssh::load_public(&config.host_ca_pub(), "the SSH host CA public key")?;
    let patterns =
        ssh::known_hosts_patterns(config.front().address, &config.site.domain, config.ssh.port);
    Ok(ssh::known_hosts_line(&patterns, &ca)?)
}

pub fn run(config_path: &Path) -> Result<(), Error> {
    let config = Config::load(config_path)?;
    print!("{}", line(&config)?);
    Ok(())
}
