//! Elastic IPs: the world's fixed set, listed and read; an instance attached or detached
//! (attaching one that holds it, or detaching one that does not, is refused as Exoscale
//! refuses it).

use axum::http::StatusCode;
use serde_json::json;

use super::{Answer, Call, Sim, error, not_found, ok, unreachable_op};
use crate::world::{Effect, World};

impl Sim {
    pub(super) fn elastic_ips(&self, w: &mut World, call: &Call) -> Answer {
        let Call {
            op: op_id,
            id,

            body,
            fail,
            ..
        } = *call;
        match op_id {
            "list-elastic-ips" => ok(
                json!({"elastic-ips": w.elastic_ips.values().map(|e| w.elastic_ip_json(e)).collect::<Vec<_>>()}),
            ),
            "get-elastic-ip" => match w.elastic_ips.get(id) {
                Some(e) => ok(w.elastic_ip_json(e)),
                None => not_found(format!("Elastic IP {id}")),
            },
            "attach-instance-to-elastic-ip" | "detach-instance-from-elastic-ip" => {
                let attach = op_id.starts_with("attach");
                let instance_id = body["instance"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !w.elastic_ips.contains_key(id) {
                    return not_found(format!("Elastic IP {id}"));
                }
                let attachable = w
                    .instances
                    .get(&instance_id)
                    .is_some_and(|i| i.state != "destroying");
                if attach && !attachable {
                    return not_found(format!("instance {instance_id}"));
                }
                let Some(eip) = w.elastic_ips.get_mut(id) else {
                    return not_found(format!("Elastic IP {id}"));
                };
                let holds = eip.instances.contains(&instance_id);
                if attach && holds {
                    return error(
                        StatusCode::CONFLICT,
                        format!("instance {instance_id} is already attached to {}", eip.ip),
                    );
                }
                if !attach && !holds {
                    return not_found(format!(
                        "attachment of instance {instance_id} to {}",
                        eip.ip
                    ));
                }
                if !fail {
                    if attach {
                        eip.instances.insert(instance_id);
                    } else {
                        eip.instances.remove(&instance_id);
                    }
                }
                let op = self.operation(
                    w,
                    op_id,
                    id,
                    Some(format!("/v2/elastic-ip/{id}")),
                    Effect::None,
                    fail,
                );
                ok(w.operation_json(&op).unwrap_or_default())
            }
            _ => unreachable_op(op_id),
        }
    }
}
