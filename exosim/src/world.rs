//! Everything the simulator holds, and how it looks in the spec's JSON shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Operations finish, and instances start, on the wall clock (so `--state` survives a
/// restart): milliseconds since the epoch.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimInstance {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub created_at: String,
    pub public_ip: String,
    pub template_id: String,
    pub instance_type_id: String,
    pub security_group_ids: Vec<String>,
    pub ssh_keys: Vec<String>,
    pub disk_size: u64,
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimElasticIp {
    pub id: String,
    pub ip: String,
    pub instances: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSshKey {
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
}

/// What happens when an operation finishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Effect {
    None,
    InstanceRunning(String),
    InstanceGone(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimOperation {
    pub id: String,
    pub command: String,
    pub reference: String,
    pub link: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub ready_at: Millis,
    /// A hook is still running: the operation stays pending until it exits.
    pub waiting_for_hook: bool,
    /// When it is ready: fail with this (reason, message) instead of succeeding.
    pub fail_with: Option<(String, String)>,
    pub effect: Effect,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub templates: Vec<Value>,
    pub instance_types: Vec<Value>,
    pub security_groups: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    pub zone: String,
    pub catalog: Catalog,
    pub instances: BTreeMap<String, SimInstance>,
    pub elastic_ips: BTreeMap<String, SimElasticIp>,
    pub ssh_keys: BTreeMap<String, SimSshKey>,
    pub operations: BTreeMap<String, SimOperation>,
    /// Calls per operationId, for `OP:N:…` faults.
    pub calls: BTreeMap<String, u64>,
    /// Requests or answers that did not match the spec: tests assert there are none.
    pub violations: Vec<String>,
    /// Where each registered (private) template's image was downloaded to, by id: the
    /// create hook boots it.
    #[serde(default)]
    pub template_files: BTreeMap<String, std::path::PathBuf>,
    next_public_host: u32,
}

/// The public addresses instances get: TEST-NET-2, never routed anywhere.
const PUBLIC_NET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);

impl World {
    pub fn new(zone: &str, elastic_ips: &[String]) -> World {
        let zones = json!([zone]);
        let template = |id: &str, name: &str, family: &str, user: &str| {
            json!({"id": id, "name": name, "family": family, "default-user": user, "size": 10737418240u64,
                   "ssh-key-enabled": true, "password-enabled": false, "boot-mode": "legacy",
                   "visibility": "public", "maintainer": "Exoscale", "version": "2026-11-01", "build": "2026-11-01-01",
                   "created-at": "2026-11-01T00:00:00Z", "zones": zones})
        };
        let itype = |id: &str, family: &str, size: &str, cpus: u64, memory: u64| json!({"id": id, "family": family, "size": size, "cpus": cpus, "memory": memory, "authorized": true, "zones": zones});
        let catalog = Catalog {
            templates: vec![
                template(
                    "8a0f7a52-3b1e-4f0c-9d41-2b6a1f0d0c01",
                    "Linux Debian 12 (Bookworm) 64-bit",
                    "debian",
                    "debian",
                ),
                template(
                    "8a0f7a52-3b1e-4f0c-9d41-2b6a1f0d0c03",
                    "Linux Debian 13 (Trixie) 64-bit",
                    "debian",
                    "debian",
                ),
                template(
                    "8a0f7a52-3b1e-4f0c-9d41-2b6a1f0d0c02",
                    "Linux Ubuntu 24.04 LTS 64-bit",
                    "ubuntu",
                    "ubuntu",
                ),
            ],
            instance_types: vec![
                itype(
                    "b6e9d1c4-7c5a-4e8e-8f3b-1a2b3c4d5e01",
                    "standard",
                    "micro",
                    1,
                    536870912,
                ),
                itype(
                    "b6e9d1c4-7c5a-4e8e-8f3b-1a2b3c4d5e02",
                    "standard",
                    "tiny",
                    1,
                    1073741824,
                ),
                itype(
                    "b6e9d1c4-7c5a-4e8e-8f3b-1a2b3c4d5e03",
                    "standard",
                    "small",
                    2,
                    2147483648,
                ),
                itype(
                    "b6e9d1c4-7c5a-4e8e-8f3b-1a2b3c4d5e04",
                    "standard",
                    "medium",
                    2,
                    4294967296,
                ),
                itype(
                    "b6e9d1c4-7c5a-4e8e-8f3b-1a2b3c4d5e05",
                    "standard",
                    "large",
                    4,
                    8589934592,
                ),
            ],
            security_groups: vec![
                json!({"id": "c3d2e1f0-0a1b-4c2d-8e3f-405162738401", "name": "default", "description": "Default Security Group"}),
                json!({"id": "c3d2e1f0-0a1b-4c2d-8e3f-405162738402", "name": "web", "description": "HTTP, HTTPS and SSH"}),
            ],
        };
        let elastic_ips = elastic_ips
            .iter()
            .map(|ip| {
                let id = uuid::Uuid::new_v4().to_string();
                (
                    id.clone(),
                    SimElasticIp {
                        id,
                        ip: ip.clone(),
                        instances: BTreeSet::new(),
                    },
                )
            })
            .collect();
        World {
            zone: zone.to_string(),
            catalog,
            instances: BTreeMap::new(),
            elastic_ips,
            ssh_keys: BTreeMap::new(),
            operations: BTreeMap::new(),
            calls: BTreeMap::new(),
            violations: Vec::new(),
            template_files: BTreeMap::new(),
            next_public_host: 10,
        }
    }

    pub fn allocate_public_ip(&mut self) -> String {
        self.next_public_host += 1;
        let host = self.next_public_host % 250 + 2;
        let [a, b, c, _] = PUBLIC_NET.octets();
        Ipv4Addr::new(a, b, c, host as u8).to_string()
    }

    /// Moves every operation whose time has come to its end state.
    pub fn settle(&mut self, now: Millis) {
        let due: Vec<String> = self
            .operations
            .values()
            .filter(|o| o.state == "pending" && !o.waiting_for_hook && o.ready_at <= now)
            .map(|o| o.id.clone())
            .collect();
        for id in due {
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            if let Some((reason, message)) = op.fail_with.take() {
                op.state = "failure".into();
                op.reason = Some(reason);
                op.message = Some(message);
                if let Effect::InstanceRunning(iid) = &op.effect
                    && let Some(i) = self.instances.get_mut(iid)
                {
                    i.state = "error".into();
                }
                continue;
            }
            op.state = "success".into();
            match op.effect.clone() {
                Effect::InstanceRunning(iid) => {
                    if let Some(i) = self.instances.get_mut(&iid) {
                        i.state = "running".into();
                    }
                }
                Effect::InstanceGone(iid) => {
                    self.instances.remove(&iid);
                    for eip in self.elastic_ips.values_mut() {
                        eip.instances.remove(&iid);
                    }
                }
                Effect::None => {}
            }
        }
    }

    pub fn new_operation(
        &mut self,
        command: &str,
        reference: &str,
        link: Option<String>,
        ready_at: Millis,
        effect: Effect,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.operations.insert(
            id.clone(),
            SimOperation {
                id: id.clone(),
                command: command.to_string(),
                reference: reference.to_string(),
                link,
                state: "pending".into(),
                reason: None,
                message: None,
                ready_at,
                waiting_for_hook: false,
                fail_with: None,
                effect,
            },
        );
        id
    }

    pub fn operation_json(&self, id: &str) -> Option<Value> {
        let op = self.operations.get(id)?;
        let mut reference = json!({"id": op.reference, "command": op.command});
        if let Some(link) = &op.link {
            reference["link"] = json!(link);
        }
        let mut v = json!({"id": op.id, "state": op.state, "reference": reference});
        if let Some(r) = &op.reason {
            v["reason"] = json!(r);
        }
        if let Some(m) = &op.message {
            v["message"] = json!(m);
        }
        Some(v)
    }

    fn find<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
        list.iter().find(|v| v["id"] == id)
    }

    pub fn template(&self, id: &str) -> Option<&Value> {
        Self::find(&self.catalog.templates, id)
    }
    pub fn instance_type(&self, id: &str) -> Option<&Value> {
        Self::find(&self.catalog.instance_types, id)
    }
    pub fn security_group(&self, id: &str) -> Option<&Value> {
        Self::find(&self.catalog.security_groups, id)
    }

    /// An instance as `GET /instance/{id}` shows it (`full`), or as the list shows it.
    pub fn instance_json(&self, i: &SimInstance, full: bool) -> Value {
        let eips: Vec<Value> = self
            .elastic_ips
            .values()
            .filter(|e| e.instances.contains(&i.id))
            .map(|e| json!({"id": e.id}))
            .collect();
        let groups: Vec<Value> = i
            .security_group_ids
            .iter()
            .filter_map(|g| self.security_group(g))
            .map(|g| {
                if full {
                    json!({"id": g["id"]})
                } else {
                    g.clone()
                }
            })
            .collect();
        let keys: Vec<Value> = i
            .ssh_keys
            .iter()
            .map(|k| json!({"name": k, "fingerprint": self.ssh_keys.get(k).map(|s| s.fingerprint.clone()).unwrap_or_default()}))
            .collect();
        let mut v = json!({
            "id": i.id, "name": i.name, "state": i.state, "labels": i.labels,
            "created-at": i.created_at, "public-ip": i.public_ip, "public-ip-assignment": "inet4",
            "template": self.template(&i.template_id).cloned().unwrap_or(json!({"id": i.template_id})),
            "instance-type": self.instance_type(&i.instance_type_id).cloned().unwrap_or(json!({"id": i.instance_type_id})),
            "security-groups": groups, "ssh-keys": keys, "mac-address": mac(&i.id),
        });
        if let Some(first) = keys.first() {
            v["ssh-key"] = first.clone();
        }
        if full {
            v["elastic-ips"] = json!(eips);
            v["disk-size"] = json!(i.disk_size);
            if let Some(ud) = &i.user_data {
                v["user-data"] = json!(ud);
            }
        }
        v
    }

    pub fn elastic_ip_json(&self, e: &SimElasticIp) -> Value {
        json!({"id": e.id, "ip": e.ip, "addressfamily": "inet4", "cidr": format!("{}/32", e.ip),
               "description": "", "labels": {}})
    }

    /// Instances that answer on `ip`: by their own address or an attached Elastic IP.
    pub fn instances_with_ip(&self, ip: &str) -> Vec<&SimInstance> {
        let via_eip: BTreeSet<&String> = self
            .elastic_ips
            .values()
            .filter(|e| e.ip == ip)
            .flat_map(|e| &e.instances)
            .collect();
        self.instances
            .values()
            .filter(|i| i.public_ip == ip || via_eip.contains(&i.id))
            .collect()
    }

    /// For `GET /_sim/state`: everything, in one document.
    pub fn dump(&self) -> Value {
        json!({
            "zone": self.zone,
            "instances": self.instances.values().map(|i| {
                let mut v = self.instance_json(i, true);
                v["ssh-key-names"] = json!(i.ssh_keys);
                v
            }).collect::<Vec<_>>(),
            "elastic-ips": self.elastic_ips.values().map(|e| {
                let mut v = self.elastic_ip_json(e);
                v["instances"] = json!(e.instances);
                v
            }).collect::<Vec<_>>(),
            "ssh-keys": self.ssh_keys.values().map(|k| json!({"name": k.name, "fingerprint": k.fingerprint})).collect::<Vec<_>>(),
            "templates": self.catalog.templates.iter().filter(|t| t["visibility"] == "private").collect::<Vec<_>>(),
            "pending-operations": self.operations.values().filter(|o| o.state == "pending").count(),
            "calls": self.calls,
            "violations": self.violations,
        })
    }
}

/// A stable, locally administered MAC address derived from the instance id.
fn mac(id: &str) -> String {
    let b = id.as_bytes();
    format!(
        "06:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}
