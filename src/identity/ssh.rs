//! The SSH host CA, per-generation host keys and their OpenSSH host certificates.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ssh_key::certificate::{Builder, CertType, Certificate};
use ssh_key::getrandom::SysRng;
use ssh_key::rand_core::UnwrapErr;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::IdentityError;

/// How far back a new certificate's validity starts, so a server whose clock runs a little
/// behind the operator's already accepts it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A fresh ed25519 key from the system's RNG.
pub fn generate_key(comment: &str) -> Result<PrivateKey, IdentityError> {
    let mut key = PrivateKey::random(&mut UnwrapErr(SysRng), Algorithm::Ed25519)
        .map_err(|e| IdentityError::crypto("generate an ed25519 key", e))?;
    key.set_comment(comment);
    Ok(key)
}

/// The private half in OpenSSH's PEM format; zeroed when dropped.
pub fn private_openssh(key: &PrivateKey) -> Result<Zeroizing<String>, IdentityError> {
    key.to_openssh(LineEnding::LF)
        .map_err(|e| IdentityError::crypto("encode a private key", e))
}

/// The public half as one `.pub` line with a trailing newline.
pub fn public_openssh(key: &PublicKey) -> Result<String, IdentityError> {
    key.to_openssh()
        .map(|s| s + "\n")
        .map_err(|e| IdentityError::crypto("encode a public key", e))
}

/// Reads an unencrypted OpenSSH private key; `fix` tells the user how to get one.
pub fn load_private(
    path: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<PrivateKey, IdentityError> {
    let load = |reason: String| IdentityError::Load {
        what,
        path: path.to_path_buf(),
        reason,
        fix,
    };
    let text = Zeroizing::new(crate::fsutil::read_small(path).map_err(|e| load(e.to_string()))?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| load(e.to_string()))?;
    if key.is_encrypted() {
        return Err(IdentityError::Load {
            what,
            path: path.to_path_buf(),
            reason: "the key is encrypted with a passphrase".to_string(),
            fix: "baton uses it unattended: keep the key unencrypted in a private directory (mode 0600)",
        });
    }
    Ok(key)
}

pub fn load_public(path: &Path, what: &'static str) -> Result<PublicKey, IdentityError> {
    let load = |reason: String| IdentityError::Load {
        what,
        path: path.to_path_buf(),
        reason,
        fix: "point the config at an OpenSSH public key (.pub), or create a CA with `baton init`",
    };
    let text = crate::fsutil::read_small(path).map_err(|e| load(e.to_string()))?;
    PublicKey::from_openssh(text.trim()).map_err(|e| load(e.to_string()))
}

/// What a host certificate says about its host.
#[derive(Debug, Clone)]
pub struct HostCertRequest {
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    pub valid_after: SystemTime,
    pub valid_before: SystemTime,
}

impl HostCertRequest {
    /// The usual request: valid from [`CLOCK_SKEW`] before now for `lifetime`.
    pub fn starting_now(
        key_id: String,
        serial: u64,
        principals: Vec<String>,
        lifetime: Duration,
    ) -> Self {
        let now = SystemTime::now();
        // The config refuses more; clamped here too, so no caller can make `+` overflow.
        let lifetime = lifetime.min(super::MAX_CERT_LIFETIME);
        HostCertRequest {
            key_id,
            serial,
            principals,
            valid_after: now - CLOCK_SKEW,
            valid_before: now + lifetime,
        }
    }
}

/// Signs `host_key` as a *host* certificate (never a user certificate: that would let the
/// holder log in wherever the CA is trusted for users).
pub fn sign_host_certificate(
    ca: &PrivateKey,
    host_key: &PublicKey,
    req: &HostCertRequest,
) -> Result<Certificate, IdentityError> {
    let sign = |e| IdentityError::crypto("sign the host certificate", e);
    let mut builder = Builder::new_with_random_nonce(
        &mut UnwrapErr(SysRng),
        host_key.key_data().clone(),
        crate::clock::unix_seconds(req.valid_after),
        crate::clock::unix_seconds(req.valid_before),
    )
    .map_err(sign)?;
    builder.serial(req.serial).map_err(sign)?;
    builder.key_id(req.key_id.clone()).map_err(sign)?;
    builder.cert_type(CertType::Host).map_err(sign)?;
    for p in &req.principals {
        builder.valid_principal(p.clone()).map_err(sign)?;
    }
    builder.comment(req.key_id.clone()).map_err(sign)?;
    builder.sign(ca).map_err(sign)
}

pub fn certificate_openssh(cert: &Certificate) -> Result<String, IdentityError> {
    cert.to_openssh()
        .map(|s| s + "\n")
        .map_err(|e| IdentityError::crypto("encode the host certificate", e))
}

/// The host patterns the operator's `known_hosts` trusts the CA for: the Elastic IP, the
/// domain and its subdomains, with the port when it is not 22 (OpenSSH looks hosts up as
/// `[host]:port` then).
pub fn known_hosts_patterns(address: IpAddr, domain: &str, port: u16) -> Vec<String> {
    [
        address.to_string(),
        domain.to_string(),
        format!("*.{domain}"),
    ]
    .into_iter()
    .map(|host| {
        if port == 22 {
            host
        } else {
            format!("[{host}]:{port}")
        }
    })
    .collect()
}

/// `@cert-authority PATTERNS KEY COMMENT`: one line the operator appends once.
pub fn known_hosts_line(patterns: &[String], ca: &PublicKey) -> Result<String, IdentityError> {
    let key = public_openssh(ca)?;
    Ok(format!("@cert-authority {} {}", patterns.join(","), key))
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_bracket_non_default_ports() {
        let ip: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(
            known_hosts_patterns(ip, "blog.example.org", 22),
            ["203.0.113.10", "blog.example.org", "*.blog.example.org"]
        );
        assert_eq!(
            known_hosts_patterns(ip, "blog.example.org", 2222),
            [
                "[203.0.113.10]:2222",
                "[blog.example.org]:2222",
                "[*.blog.example.org]:2222"
            ]
        );
    }

    #[test]
    fn signed_certificate_is_a_host_cert_that_validates_against_its_ca_only() {
        let ca = generate_key("ca").unwrap();
        let other = generate_key("other").unwrap();
        let host = generate_key("host").unwrap();
        let req = HostCertRequest::starting_now(
            "blog gen 3".into(),
            3,
            vec!["203.0.113.10".into()],
            Duration::from_secs(3600),
        );
        let cert = sign_host_certificate(&ca, host.public_key(), &req).unwrap();
        assert_eq!(cert.cert_type(), CertType::Host);
        assert_eq!(cert.serial(), 3);
        assert_eq!(cert.valid_principals(), ["203.0.113.10"]);
        let ca_fp = ca.public_key().fingerprint(HashAlg::Sha256);
        let other_fp = other.public_key().fingerprint(HashAlg::Sha256);
        cert.validate([&ca_fp]).unwrap();
        assert!(cert.validate([&other_fp]).is_err());
        // round-trips through the text form sshd reads
        let text = certificate_openssh(&cert).unwrap();
        assert_eq!(Certificate::from_openssh(text.trim()).unwrap(), cert);
    }
}
