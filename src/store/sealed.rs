//! The objects only the operator writes (`state.json`, the journals, the deploy lock)
//! carry an SSH signature by the site's host CA key, which no server holds (issue 29).
//! Every server holds store credentials, so whatever the store holds may have been put
//! there by a compromised server: an operator object that is not signed by this key is
//! refused, never acted on.
//!
//! A wrapper around any [`ObjectStore`], as rustic_core wraps its backends, so that no
//! caller can forget: puts of those kinds are signed on the way in, gets are checked and
//! the signature taken off on the way out; everything else passes through untouched.
//! Servers get the verifying half only (the CA's public key, which they already know from
//! their host certificate): they can check `state.json`, never write one.
//!
//! The signature is OpenSSH's SSHSIG (`ssh-keygen -Y verify` checks it, namespace
//! [`NAMESPACE`]) over the object's key and its canonical JSON (serde_json's own
//! serialisation of the parsed object without the `signature` member), so a signed
//! journal cannot be replayed as `state.json`, nor one journal as another. It sits in
//! the object as one more member: an older agent that reads `state.json` ignores it.

use std::path::Path;

use async_trait::async_trait;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use super::layout::Kind;
use super::{Created, Downloaded, ObjectMeta, ObjectStore, StoreError};

/// The SSHSIG namespace: a signature made for host certificates or anything else never
/// verifies here.
pub const NAMESPACE: &str = "baton-store@v1";

/// The member that holds the signature (PEM).
const MEMBER: &str = "signature";

/// Are objects of this kind the operator's alone?
pub fn is_sealed(key: &str) -> bool {
    matches!(
        Kind::of(key),
        Some(Kind::State | Kind::Journal | Kind::Lock)
    )
}

/// Signs `json` (an object) as the object at `key`.
pub fn seal(key: &str, json: &[u8], signer: &PrivateKey) -> Result<Vec<u8>, String> {
    let mut object = parse_object(json)?;
    object.remove(MEMBER);
    let canonical = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
    let sig = signer
        .sign(NAMESPACE, HashAlg::Sha512, &message(key, &canonical))
        .map_err(|e| format!("signing: {e}"))?;
    let pem = sig
        .to_pem(LineEnding::LF)
        .map_err(|e| format!("encoding the signature: {e}"))?;
    object.insert(MEMBER.into(), serde_json::Value::String(pem));
    serde_json::to_vec(&object).map_err(|e| e.to_string())
}

/// Checks the object at `key` against `trusted`; returns it without its signature.
pub fn open(key: &str, bytes: &[u8], trusted: &PublicKey) -> Result<Vec<u8>, String> {
    let mut object = parse_object(bytes)?;
    let pem = match object.remove(MEMBER) {
        Some(serde_json::Value::String(pem)) => pem,
        Some(_) => return Err("its signature is not a string".into()),
        None => return Err("it is not signed".into()),
    };
    let sig = SshSig::from_pem(pem.as_bytes()).map_err(|e| format!("a bad signature: {e}"))?;
    let canonical = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
    trusted
        .verify(NAMESPACE, &message(key, &canonical), &sig)
        .map_err(|_| "its signature is not by this site's host CA key".to_string())?;
    Ok(canonical)
}

fn parse_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(_) => Err("it is not a JSON object".into()),
        Err(e) => Err(format!("it is not JSON: {e}")),
    }
}

fn message(key: &str, canonical: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(key.len() + 1 + canonical.len());
    m.extend_from_slice(key.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(canonical);
    m
}

/// An [`ObjectStore`] that signs and checks the operator's objects.
pub struct Sealed {
    inner: std::sync::Arc<dyn ObjectStore>,
    /// `None` on a server: it may read the operator's objects, never write them.
    signer: Option<PrivateKey>,
    trusted: PublicKey,
}

impl Sealed {
    /// The operator's side: signs with the host CA key.
    pub fn signing(inner: std::sync::Arc<dyn ObjectStore>, ca: PrivateKey) -> Sealed {
        let trusted = ca.public_key().clone();
        Sealed {
            inner,
            signer: Some(ca),
            trusted,
        }
    }

    /// A server's side: checks with the CA's public key, writes none of them.
    pub fn verifying(inner: std::sync::Arc<dyn ObjectStore>, ca: PublicKey) -> Sealed {
        Sealed {
            inner,
            signer: None,
            trusted: ca,
        }
    }

    fn sign(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !is_sealed(key) {
            return Ok(bytes);
        }
        let refuse = |reason: String| StoreError::Io {
            op: "put",
            key: key.to_string(),
            store: self.inner.describe(),
            reason,
        };
        match &self.signer {
            Some(ca) => seal(key, &bytes, ca).map_err(refuse),
            None => Err(refuse(
                "only the operator writes it (this side has no signing key)".into(),
            )),
        }
    }
}

#[async_trait]
impl ObjectStore for Sealed {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let bytes = self.sign(key, bytes)?;
        self.inner.put(key, bytes).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        if is_sealed(key) {
            return Err(StoreError::Io {
                op: "put",
                key: key.to_string(),
                store: self.inner.describe(),
                reason: "an operator object is written whole, never from a file".into(),
            });
        }
        self.inner.put_file(key, path).await
    }

    async fn create_new(&self, key: &str, bytes: Vec<u8>) -> Result<Created, StoreError> {
        let bytes = self.sign(key, bytes)?;
        self.inner.create_new(key, bytes).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.inner.get(key).await? else {
            return Ok(None);
        };
        if !is_sealed(key) {
            return Ok(Some(bytes));
        }
        open(key, &bytes, &self.trusted)
            .map(Some)
            .map_err(|why| StoreError::NotSealed {
                key: key.to_string(),
                store: self.inner.describe(),
                why,
            })
    }

    async fn get_to_file(
        &self,
        key: &str,
        path: &Path,
        limit: u64,
    ) -> Result<Option<Downloaded>, StoreError> {
        if is_sealed(key) {
            return Err(StoreError::Io {
                op: "get",
                key: key.to_string(),
                store: self.inner.describe(),
                reason: "an operator object is read whole and checked, never into a file".into(),
            });
        }
        self.inner.get_to_file(key, path, limit).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    async fn download_url(
        &self,
        key: &str,
        valid: std::time::Duration,
    ) -> Result<String, StoreError> {
        self.inner.download_url(key, valid).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PrivateKey {
        use ssh_key::getrandom::SysRng;
        use ssh_key::rand_core::UnwrapErr;
        PrivateKey::random(&mut UnwrapErr(SysRng), ssh_key::Algorithm::Ed25519).unwrap()
    }

    #[test]
    fn a_sealed_object_opens_with_its_key_only_and_at_its_key_only() {
        let ca = key();
        let sealed = seal("state.json", br#"{"version":1,"active":null}"#, &ca).unwrap();
        let opened = open("state.json", &sealed, ca.public_key()).unwrap();
        assert_eq!(opened, br#"{"active":null,"version":1}"#.to_vec());
        // Another CA, another key in the store, a changed member: refused.
        assert!(open("state.json", &sealed, key().public_key()).is_err());
        assert!(open("journal/1.json", &sealed, ca.public_key()).is_err());
        let tampered = String::from_utf8(sealed)
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        assert!(open("state.json", tampered.as_bytes(), ca.public_key()).is_err());
        let unsigned = open("state.json", br#"{"version":1}"#, ca.public_key());
        assert_eq!(unsigned.unwrap_err(), "it is not signed");
    }

    #[test]
    fn only_the_operators_kinds_are_sealed() {
        assert!(is_sealed("state.json"));
        assert!(is_sealed("journal/5-x.json"));
        assert!(is_sealed("lock/000000000001"));
        assert!(!is_sealed("backups/manifests/20261122T101500.123Z-g7.json"));
        assert!(!is_sealed("artifacts/ab"));
    }
}
