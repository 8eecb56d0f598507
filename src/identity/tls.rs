//! The project's TLS CA and the origin certificate each generation serves.
//!
//! The origin certificate is not what browsers see once the proxy has its ACME
//! certificate; it is what lets the swap check a *new* server over HTTPS before any DNS or
//! address points at it, with the CA pinned instead of trusting the web PKI.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::IdentityError;
use super::ssh::CLOCK_SKEW;

/// How long the TLS CA lives. It signs short-lived leaves only, and its key stays on the
/// operator's machine.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A CA certificate with its key, both in PEM.
pub struct TlsCa {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

/// A leaf certificate with its key, both in PEM.
pub struct TlsLeaf {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl TlsCa {
    pub fn generate(site: &str) -> Result<TlsCa, IdentityError> {
        let key =
            KeyPair::generate().map_err(|e| IdentityError::crypto("generate the TLS CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("baton TLS CA for {site}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, SystemTime::now(), CA_LIFETIME);
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::crypto("self-sign the TLS CA", e))?;
        Ok(TlsCa {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsCa, IdentityError> {
        let read = |path: &Path, what| {
            crate::fsutil::read_small(path).map_err(|e| IdentityError::Load {
                what,
                path: path.to_path_buf(),
                reason: e.to_string(),
                fix: "point [tls] at the files `baton init` wrote",
            })
        };
        let ca = TlsCa {
            cert_pem: read(cert_path, "the TLS CA certificate")?,
            key_pem: Zeroizing::new(read(key_path, "the TLS CA key")?),
        };
        // Parse both now, so a broken file is reported by name, not later as "cannot sign".
        ca.issuer().map_err(|e| IdentityError::Load {
            what: "the TLS CA",
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
            fix: "the certificate and key must be the PEM pair `baton init` wrote",
        })?;
        Ok(ca)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, rcgen::Error> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
    }

    /// Issues a server certificate for `domain`, its origin name and `ip`, valid from a
    /// little before now.
    pub fn issue_leaf(
        &self,
        domain: &str,
        ip: IpAddr,
        lifetime: Duration,
    ) -> Result<TlsLeaf, IdentityError> {
        let fail = |e| IdentityError::crypto("issue the TLS origin certificate", e);
        let issuer = self.issuer().map_err(fail)?;
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(domain);
        params.subject_alt_names = vec![
            SanType::DnsName(domain.try_into().map_err(fail)?),
            SanType::DnsName(origin_name(domain).try_into().map_err(fail)?),
            SanType::IpAddress(ip),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SystemTime::now(), lifetime);
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        Ok(TlsLeaf {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// The name a swap's health check asks a new server for. The proxy serves the public
/// domain with the certificate it obtained itself (ACME), which a server that does not yet
/// hold the address may not have; under this name it serves the origin certificate signed
/// by the project's CA, which the check trusts alone.
pub fn origin_name(domain: &str) -> String {
    format!("origin.{domain}")
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    // The config refuses more; clamped here too, so no caller can make `+` overflow.
    let lifetime = lifetime.min(super::MAX_CERT_LIFETIME);
    params.not_before = OffsetDateTime::from(now - CLOCK_SKEW);
    params.not_after = OffsetDateTime::from(now + lifetime);
}
