//! SSH keys: registered by name and public key (fingerprinted as Exoscale does), listed,
//! read, deleted.

use axum::http::StatusCode;
use serde_json::json;

use super::{Answer, Call, Sim, error, not_found, ok, unreachable_op};
use crate::world::{Effect, World};
use baton::cloud::exoscale::wire;

impl Sim {
    pub(super) fn ssh_keys(&self, w: &mut World, call: &Call) -> Answer {
        let Call {
            op: op_id,
            id,

            body,
            fail,
            ..
        } = *call;
        match op_id {
            "list-ssh-keys" => ok(
                json!({"ssh-keys": w.ssh_keys.values().map(|k| json!({"name": k.name, "fingerprint": k.fingerprint})).collect::<Vec<_>>()}),
            ),
            "get-ssh-key" => match w.ssh_keys.get(id) {
                Some(k) => ok(json!({"name": k.name, "fingerprint": k.fingerprint})),
                None => not_found(format!("SSH key {id}")),
            },
            "register-ssh-key" => {
                let name = body["name"].as_str().unwrap_or_default().to_string();
                let public_key = body["public-key"].as_str().unwrap_or_default().to_string();
                if w.ssh_keys.contains_key(&name) {
                    return error(
                        StatusCode::CONFLICT,
                        format!("SSH key {name:?} already exists"),
                    );
                }
                if ssh_key::PublicKey::from_openssh(public_key.trim()).is_err() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "public-key is not an OpenSSH public key".into(),
                    );
                }
                let Some(fingerprint) = wire::ssh_key_fingerprint(&public_key) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "public-key cannot be decoded".into(),
                    );
                };
                if !fail {
                    w.ssh_keys.insert(
                        name.clone(),
                        crate::world::SimSshKey {
                            name: name.clone(),
                            fingerprint,
                            public_key,
                        },
                    );
                }
                let reference = uuid::Uuid::new_v4().to_string();
                let op = self.operation(
                    w,
                    "register-ssh-key",
                    &reference,
                    Some(format!("/v2/ssh-key/{name}")),
                    Effect::None,
                    fail,
                );
                ok(w.operation_json(&op).unwrap_or_default())
            }
            "delete-ssh-key" => {
                if !w.ssh_keys.contains_key(id) {
                    return not_found(format!("SSH key {id}"));
                }
                if !fail {
                    w.ssh_keys.remove(id);
                }
                let reference = uuid::Uuid::new_v4().to_string();
                let op = self.operation(w, "delete-ssh-key", &reference, None, Effect::None, fail);
                ok(w.operation_json(&op).unwrap_or_default())
            }
            _ => unreachable_op(op_id),
        }
    }
}
