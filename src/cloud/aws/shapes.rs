//! EC2's shapes and baton's: an instance as EC2 describes it, the token that makes a
//! RunInstances safe to retry, AWS's limit on user-data, a key pair's comparable body.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::InstanceStateName;
use base64::Engine;
use sha2::Digest;

use super::USER_DATA_LIMIT;
use crate::cloud::{CloudError, Instance, InstanceSpec};

/// The tag AWS's console shows as the name.
pub(super) const TAG_NAME: &str = "Name";

/// Instances AWS still lists for an hour after they terminate: those are gone here.
pub(super) fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let state = i.state()?.name()?.clone();
    let state = match state {
        InstanceStateName::Terminated | InstanceStateName::ShuttingDown => return None,
        InstanceStateName::Pending => "starting".to_string(),
        other => other.as_str().to_string(),
    };
    let mut labels = BTreeMap::new();
    let mut name = String::new();
    for t in i.tags() {
        match (t.key(), t.value()) {
            (Some(TAG_NAME), Some(v)) => name = v.to_string(),
            (Some(k), Some(v)) => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }
    Some(Instance {
        id: i.instance_id()?.to_string(),
        name,
        state,
        public_ip: i.public_ip_address().and_then(|ip| ip.parse().ok()),
        labels,
        elastic_ips: Vec::new(),
        created_at: i.launch_time().and_then(|t| {
            t.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        template_id: i.image_id().map(str::to_string),
    })
}

/// The request's token: the same member of the same generation of the same site, from
/// the same attempt, always sends the same one, so a retry after a lost answer finds the
/// first instance. The attempt is its user-data (a fresh host key each time a swap
/// starts): a swap of generation N that was undone and started again must get a new
/// instance, not the one the undo deleted. Members of one generation share the
/// user-data, and differ by their index.
pub(super) fn client_token(spec: &InstanceSpec) -> String {
    let label = |k: &str| spec.labels.get(k).map_or("", String::as_str);
    let mut hash = sha2::Sha256::new();
    for part in [
        label(crate::cloud::LABEL_SITE),
        label(crate::cloud::LABEL_GENERATION),
        &spec.member.to_string(),
        &spec.user_data,
    ] {
        // Length-prefixed: no two lists of parts hash alike.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    // At most 64 ASCII characters.
    format!("baton-{}", &hex::encode(digest)[..58])
}

/// AWS takes at most 16 KiB of raw user-data; the API's field is its base64.
pub(super) fn check_user_data(b64: &str) -> Result<(), CloudError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| CloudError::Invalid(format!("the user-data is not base64: {e}")))?;
    if raw.len() > USER_DATA_LIMIT {
        return Err(CloudError::Invalid(format!(
            "the user-data is {} bytes gzipped, above AWS's limit of {USER_DATA_LIMIT} bytes of \
             raw user-data (Exoscale takes 32 KiB of base64)\n  fix: make the bundle's \
             cloud-init files smaller, or move large files into the bundle",
            raw.len()
        )));
    }
    Ok(())
}

/// A key's type and base64 body, without its comment: how two keys are compared.
pub(super) fn key_body(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_above_16_kib_raw_is_refused_naming_both_limits() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(check_user_data(&b64(USER_DATA_LIMIT)).is_ok());
        let err = check_user_data(&b64(USER_DATA_LIMIT + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("16385 bytes"), "{err}");
        assert!(
            err.contains("16384 bytes") && err.contains("32 KiB"),
            "{err}"
        );
    }

    #[test]
    fn a_key_is_compared_without_its_comment() {
        assert_eq!(
            key_body("ssh-ed25519 AAAAC3Nz deploy@laptop"),
            key_body("ssh-ed25519 AAAAC3Nz")
        );
        assert_ne!(key_body("ssh-ed25519 AAAA"), key_body("ssh-ed25519 AAAB"));
    }

    #[test]
    fn the_client_token_is_the_specs_and_fits_awss_limit() {
        let spec = InstanceSpec {
            name: "blog-2".into(),
            labels: BTreeMap::new(),
            template: String::new(),
            instance_type: String::new(),
            disk_gb: 10,
            security_groups: vec![],
            ssh_key: None,
            user_data: "H4sI".into(),
            member: 0,
        };
        let token = client_token(&spec);
        assert_eq!(token.len(), 64);
        assert_eq!(token, client_token(&spec.clone()));
        let other = InstanceSpec {
            user_data: "H4sJ".into(),
            ..spec.clone()
        };
        assert_ne!(token, client_token(&other));
        let second = InstanceSpec {
            member: 1,
            ..spec.clone()
        };
        assert_ne!(
            token,
            client_token(&second),
            "members of a fleet share the user-data"
        );
        let next = InstanceSpec {
            labels: crate::cloud::generation_labels("blog", 3),
            ..spec
        };
        assert_ne!(token, client_token(&next));
    }
}
