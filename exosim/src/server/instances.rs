//! Instances: listed (by label, by address), read, created from a template with
//! user-data, deleted; creating and deleting run the configured hook (a VM, a loopback
//! machine) before their operation succeeds.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::{Answer, Call, Hook, Sim, Task, error, not_found, ok, unreachable_op};
use crate::world::{Effect, SimInstance, World};

impl Sim {
    pub(super) fn instances(&self, w: &mut World, call: &Call) -> Answer {
        let Call {
            op: op_id,
            id,
            query: q,
            body,
            fail,
            ..
        } = *call;
        match op_id {
            "list-instances" => {
                let labels: Vec<(String, String)> = q("labels")
                    .map(|l| {
                        l.split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let candidates: Vec<&SimInstance> = match q("ip-address") {
                    Some(ip) => w.instances_with_ip(&ip),
                    None => w.instances.values().collect(),
                };
                // exosim has no instance pools: a filter by manager matches nothing.
                let managed_only = q("manager-id").is_some() || q("manager-type").is_some();
                let list: Vec<Value> = candidates
                    .into_iter()
                    .filter(|_| !managed_only)
                    .filter(|i| labels.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
                    .map(|i| w.instance_json(i, false))
                    .collect();
                ok(json!({"instances": list}))
            }
            "get-instance" => match w.instances.get(id) {
                Some(i) => ok(w.instance_json(i, true)),
                None => not_found(format!("instance {id}")),
            },
            "create-instance" => self.create_instance(w, body, fail),
            "delete-instance" => {
                let Some(instance) = w.instances.get_mut(id) else {
                    return not_found(format!("instance {id}"));
                };
                if !fail {
                    instance.state = "destroying".into();
                }
                let instance = instance.clone();
                let op = self.operation(
                    w,
                    "delete-instance",
                    id,
                    None,
                    Effect::InstanceGone(id.to_string()),
                    fail,
                );
                self.answer_with_hook(w, op, "delete", &self.options.on_delete, instance, fail)
            }
            _ => unreachable_op(op_id),
        }
    }

    /// Answers with operation `op`, which stays pending until `command` (if any) has run
    /// for `instance`.
    fn answer_with_hook(
        &self,
        w: &mut World,
        op: String,
        kind: &'static str,
        command: &Option<String>,
        instance: SimInstance,
        fail: bool,
    ) -> Answer {
        let mut hooks = Vec::new();
        if let (Some(cmd), false) = (command, fail) {
            if let Some(o) = w.operations.get_mut(&op) {
                o.waiting_for_hook = true;
            }
            hooks.push(Task::Hook(Box::new(Hook {
                kind,
                command: cmd.clone(),
                operation: op.clone(),
                template_file: w.template_files.get(&instance.template_id).cloned(),
                instance,
            })));
        }
        (
            StatusCode::OK,
            w.operation_json(&op).unwrap_or_default(),
            hooks,
        )
    }

    fn create_instance(&self, w: &mut World, body: &Value, fail: bool) -> Answer {
        let template = body["template"]["id"].as_str().unwrap_or_default();
        let itype = body["instance-type"]["id"].as_str().unwrap_or_default();
        if w.template(template).is_none() {
            return not_found(format!("template {template}"));
        }
        if w.instance_type(itype).is_none() {
            return not_found(format!("instance type {itype}"));
        }
        let groups: Vec<String> = body["security-groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect();
        if let Some(g) = groups.iter().find(|g| w.security_group(g).is_none()) {
            return not_found(format!("security group {g}"));
        }
        let keys: Vec<String> = body["ssh-keys"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(body.get("ssh-key"))
            .filter_map(|k| k["name"].as_str().map(str::to_string))
            .collect();
        if let Some(k) = keys.iter().find(|k| !w.ssh_keys.contains_key(*k)) {
            return not_found(format!("SSH key {k}"));
        }
        let user_data = body["user-data"].as_str().map(str::to_string);
        if let Some(ud) = &user_data
            && base64::engine::general_purpose::STANDARD
                .decode(ud)
                .is_err()
        {
            return error(StatusCode::BAD_REQUEST, "user-data is not base64".into());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let instance = SimInstance {
            id: id.clone(),
            name: body["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("instance-{}", &id[..8])),
            labels: serde_json::from_value(body["labels"].clone()).unwrap_or_default(),
            state: "starting".into(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            public_ip: w.allocate_public_ip(),
            template_id: template.to_string(),
            instance_type_id: itype.to_string(),
            security_group_ids: groups,
            ssh_keys: keys,
            disk_size: body["disk-size"].as_u64().unwrap_or(10),
            user_data,
        };
        if !fail {
            w.instances.insert(id.clone(), instance.clone());
        }
        let op = self.operation(
            w,
            "create-instance",
            &id,
            Some(format!("/v2/instance/{id}")),
            Effect::InstanceRunning(id.clone()),
            fail,
        );
        self.answer_with_hook(w, op, "create", &self.options.on_create, instance, fail)
    }
}
