//! The origin certificate against rustls: a full handshake with the leaf and key the
//! user-data carries, verified against the project's TLS CA for the domain and the IP.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The leaf's key as the server would find it: in the user-data's write_files.
fn server_config(out: &Path) -> Arc<ServerConfig> {
    let doc = user_data(out);
    let files = doc["write_files"].as_sequence().unwrap();
    let find = |path: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str() == Some(path))
            .unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let chain = certs(&find("/srv/tls/origin.crt"));
    assert_eq!(
        chain,
        certs(&std::fs::read_to_string(out.join("tls.crt")).unwrap())
    );
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut find("/srv/tls/origin.key").as_bytes())
            .unwrap()
            .unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// Handshakes with a client that trusts only `ca_pem` and asks for `name`.
fn handshake(server: Arc<ServerConfig>, ca_pem: &str, name: &str) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem) {
        roots.add(c).unwrap();
    }
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (a, b) = UnixStream::pair().unwrap();
    let server_side = std::thread::spawn(move || {
        let mut tls = StreamOwned::new(ServerConnection::new(server).unwrap(), a);
        // Fails when the client rejects the certificate: that is expected in some cases.
        let _ = tls
            .write_all(b"hello from the origin")
            .and_then(|()| tls.flush());
    });
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(client, name).unwrap(), b);
    let mut got = vec![0u8; 21];
    let result = tls
        .read_exact(&mut got)
        .map(|()| String::from_utf8(got).unwrap())
        .map_err(|e| e.to_string());
    drop(tls);
    server_side.join().unwrap();
    result
}

#[test]
fn origin_certificate_verifies_for_domain_and_ip_against_the_ca_only() {
    let p = Project::init(&[]);
    let out = p.render(1);
    let server = server_config(&out);
    let ca = std::fs::read_to_string(p.path().join("keys/tls-ca.crt")).unwrap();

    assert_eq!(
        handshake(server.clone(), &ca, "blog.example.org").unwrap(),
        "hello from the origin"
    );
    assert_eq!(
        handshake(server.clone(), &ca, "203.0.113.10").unwrap(),
        "hello from the origin"
    );

    let wrong_name = handshake(server.clone(), &ca, "other.example.org").unwrap_err();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    let wrong_ip = handshake(server.clone(), &ca, "203.0.113.11").unwrap_err();
    assert!(wrong_ip.contains("not valid for name"), "{wrong_ip}");

    let other = Project::init(&[]);
    let other_ca = std::fs::read_to_string(other.path().join("keys/tls-ca.crt")).unwrap();
    let wrong_ca = handshake(server, &other_ca, "blog.example.org").unwrap_err();
    // Same CA name, other key: webpki finds the issuer by name and the signature fails.
    assert!(wrong_ca.contains("invalid peer certificate"), "{wrong_ca}");
}
