//! Exoscale's compute API v2, spoken directly over reqwest with rustls.

pub mod retry;
pub mod signing;
mod transport;
pub mod wire;

use transport::{Created, key_segment, uuid};
pub use transport::{Credentials, ENV_KEY, ENV_SECRET, ExoscaleClient, Timing};

/// What an Exoscale site needs to reach its zone's compute API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API's base URL: `https://api-ZONE.exoscale.com/v2`, or a simulator's.
    pub endpoint: String,
}

impl Settings {
    /// The client, with the key from `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`.
    pub fn open(&self) -> Result<std::sync::Arc<dyn super::Cloud>, super::CloudError> {
        let credentials = Credentials::from_env()?;
        Ok(std::sync::Arc::new(ExoscaleClient::new(
            &self.endpoint,
            credentials,
            Timing::default(),
        )?))
    }
}

/// Exoscale's one kind of front, the Elastic IP at `address`: routed to every instance
/// it is attached to, side by side, each holding the address itself.
pub fn front(address: std::net::IpAddr) -> super::front::Front {
    super::front::Front {
        kind: "elastic-ip",
        noun: "the Elastic IP",
        address,
        one_at_a_time: false,
        held_by_server: true,
        attach: "attach the Elastic IP to the new instance",
        detach: "detach the Elastic IP from the old instance",
    }
}

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;

use super::{
    Cloud, CloudError, ElasticIp, Instance, InstanceSpec, SshKey, Template, TemplateSpec, names,
};

impl ExoscaleClient {
    async fn templates(&self, visibility: &str) -> Result<Vec<wire::Template>, CloudError> {
        let list: wire::TemplateList = self
            .get("/template", &[("visibility".into(), visibility.into())])
            .await?;
        Ok(list.templates)
    }

    /// The newest template named `name`: a public one, else one of the account's own
    /// (a baked image; its name never looks like Exoscale's).
    async fn resolve_template(&self, name: &str) -> Result<String, CloudError> {
        let newest = |list: &[wire::Template]| {
            // Several builds can share a name: take the newest.
            list.iter()
                .filter(|t| t.name.as_deref() == Some(name))
                .max_by(|a, b| a.created_at.cmp(&b.created_at))
                .map(|t| t.id.clone())
        };
        let public = self.templates("public").await?;
        if let Some(id) = newest(&public) {
            return Ok(id);
        }
        let own = self.templates("private").await?;
        match newest(&own) {
            Some(id) => Ok(id),
            None => Err(CloudError::NotFound {
                what: format!("template {name:?}"),
                hint: format!(
                    "set instance.template to one of the zone's templates, e.g. {}",
                    names(
                        own.iter()
                            .chain(&public)
                            .filter_map(|t| t.name.clone())
                            .take(5)
                            .map(|n| format!("{n:?}"))
                    )
                ),
            }),
        }
    }

    async fn resolve_instance_type(&self, name: &str) -> Result<String, CloudError> {
        let list: wire::InstanceTypeList = self.get("/instance-type", &[]).await?;
        let full = |t: &wire::InstanceType| {
            format!(
                "{}.{}",
                t.family.as_deref().unwrap_or(""),
                t.size.as_deref().unwrap_or("")
            )
        };
        list.instance_types
            .iter()
            .find(|t| full(t) == name)
            .map(|t| t.id.clone())
            .ok_or_else(|| CloudError::NotFound {
                what: format!("instance type {name:?}"),
                hint: format!(
                    "set instance.type to FAMILY.SIZE, one of {}",
                    names(list.instance_types.iter().map(full))
                ),
            })
    }

    async fn resolve_security_groups(
        &self,
        wanted: &[String],
    ) -> Result<Vec<wire::IdRef>, CloudError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let list: wire::SecurityGroupList = self.get("/security-group", &[]).await?;
        wanted
            .iter()
            .map(|name| {
                list.security_groups
                    .iter()
                    .find(|g| g.name.as_deref() == Some(name))
                    .map(|g| wire::IdRef { id: g.id.clone() })
                    .ok_or_else(|| CloudError::NotFound {
                        what: format!("security group {name:?}"),
                        hint: format!(
                            "create it in the zone or fix instance.security_groups; the zone has {}",
                            names(list.security_groups.iter().filter_map(|g| g.name.clone()))
                        ),
                    })
            })
            .collect()
    }

    async fn all_instances(&self, query: &[(String, String)]) -> Result<Vec<Instance>, CloudError> {
        let list: wire::InstanceList = self.get("/instance", query).await?;
        Ok(list.instances.into_iter().map(Instance::from).collect())
    }

    async fn holders(&self, eip_id: &str) -> Result<(IpAddr, Vec<Instance>), CloudError> {
        let eip: wire::ElasticIp = self
            .get(&format!("/elastic-ip/{}", uuid("elastic IP", eip_id)?), &[])
            .await?;
        let ip = parse_ip(&eip.ip, "elastic-ip")?;
        Ok((ip, self.instances_with_ip(ip).await?))
    }
}

impl From<wire::Instance> for Instance {
    fn from(w: wire::Instance) -> Self {
        Instance {
            public_ip: w.public_ip.and_then(|ip| ip.parse().ok()),
            name: w.name.unwrap_or_default(),
            state: w.state.unwrap_or_default(),
            labels: w.labels,
            elastic_ips: w.elastic_ips.into_iter().map(|r| r.id).collect(),
            created_at: w.created_at,
            template_id: w.template.map(|t| t.id),
            id: w.id,
        }
    }
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, CloudError> {
    s.parse().map_err(|_| CloudError::Decode {
        request: what.to_string(),
        reason: format!("{s:?} is not an IP address"),
    })
}

fn template_of(t: wire::Template) -> Template {
    Template {
        name: t.name.unwrap_or_default(),
        id: t.id,
        created_at: t.created_at,
        description: t.description,
        size: t.size,
    }
}

/// For deletes and detaches: a target that is already gone is what was wanted.
fn gone_is_ok<T>(result: Result<T, CloudError>) -> Result<(), CloudError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_reason(&e, "not-found") => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_status(e: &CloudError, code: u16) -> bool {
    matches!(e, CloudError::Http { status, .. } if *status == code)
}

fn is_reason(e: &CloudError, wanted: &str) -> bool {
    matches!(e, CloudError::OperationFailed { reason, .. } if reason == wanted)
}

#[async_trait]
impl super::RegisterByUrl for ExoscaleClient {
    async fn register_template(&self, spec: &TemplateSpec) -> Result<Template, CloudError> {
        let body = wire::RegisterTemplate {
            name: spec.name.clone(),
            url: spec.url.clone(),
            checksum: spec.md5.clone(),
            default_user: spec.default_user.clone(),
            description: spec.description.clone(),
            ssh_key_enabled: true,
            password_enabled: false,
            // baton's images boot through UEFI: a standalone GRUB on an EFI system
            // partition, no boot sector to install.
            boot_mode: "uefi",
            build: spec.build.clone(),
            maintainer: "baton",
        };
        // The zone lists a template only once it has checked the image: one found is whole.
        let found = || async {
            Ok(self
                .templates("private")
                .await?
                .into_iter()
                .find(|t| t.name.as_deref() == Some(spec.name.as_str())))
        };
        let id = match self.create_once("/template", &body, found).await? {
            Created::Found(t) => return Ok(template_of(t)),
            Created::New(id) => id,
        };
        let t: wire::Template = self
            .get(&format!("/template/{}", uuid("template", &id)?), &[])
            .await?;
        Ok(template_of(t))
    }
}

#[async_trait]
impl Cloud for ExoscaleClient {
    async fn preflight(&self, spec: &InstanceSpec) -> Result<(), CloudError> {
        if !spec.template.is_empty() {
            self.resolve_template(&spec.template).await?;
        }
        self.resolve_instance_type(&spec.instance_type).await?;
        self.resolve_security_groups(&spec.security_groups).await?;
        Ok(())
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance, CloudError> {
        if spec.labels.is_empty() {
            return Err(CloudError::Invalid(
                "an instance needs labels to be found again".into(),
            ));
        }
        let body = wire::CreateInstance {
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            template: wire::IdRef {
                id: self.resolve_template(&spec.template).await?,
            },
            instance_type: wire::IdRef {
                id: self.resolve_instance_type(&spec.instance_type).await?,
            },
            disk_size: spec.disk_gb,
            security_groups: self.resolve_security_groups(&spec.security_groups).await?,
            ssh_keys: spec
                .ssh_key
                .iter()
                .map(|n| wire::NameRef { name: n.clone() })
                .collect(),
            user_data: spec.user_data.clone(),
            public_ip_assignment: "inet4",
        };
        let found = || async {
            let existing = self.list_instances(&spec.labels).await?.into_iter().next();
            if let Some(i) = &existing {
                tracing::info!("instance {} ({}) already exists: using it", i.name, i.id);
            }
            Ok(existing)
        };
        let id = match self.create_once("/instance", &body, found).await? {
            Created::Found(existing) => return Ok(existing),
            Created::New(id) => id,
        };
        self.get_instance(&id)
            .await?
            .ok_or_else(|| CloudError::NotFound {
                what: format!("instance {id} right after its creation"),
                hint: "check the zone's instances in the console".into(),
            })
    }

    async fn get_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        match self
            .get::<wire::Instance>(&format!("/instance/{}", uuid("instance", id)?), &[])
            .await
        {
            Ok(i) => Ok(Some(i.into())),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_instances(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, CloudError> {
        // Filtered here rather than by the API's `labels` parameter, whose syntax the
        // spec leaves open.
        let all = self.all_instances(&[]).await?;
        Ok(all
            .into_iter()
            .filter(|i| labels.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
            .collect())
    }

    async fn delete_instance(&self, id: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/instance/{}", uuid("instance", id)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn wait_running(&self, id: &str, timeout: Duration) -> Result<Instance, CloudError> {
        let start = Instant::now();
        let mut wait = self.timing.poll_min;
        loop {
            let instance = self
                .get_instance(id)
                .await?
                .ok_or_else(|| CloudError::NotFound {
                    what: format!("instance {id}"),
                    hint: "it was deleted while baton waited for it to start".into(),
                })?;
            match instance.state.as_str() {
                "running" => return Ok(instance),
                "starting" | "migrating" => {}
                other => {
                    return Err(CloudError::InstanceFailed {
                        id: id.to_string(),
                        state: other.to_string(),
                    });
                }
            }
            if start.elapsed() >= timeout {
                return Err(CloudError::InstanceFailed {
                    id: id.to_string(),
                    state: format!("{} after {timeout:?}", instance.state),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(self.timing.poll_max);
        }
    }

    async fn register_ssh_key(&self, name: &str, public_key: &str) -> Result<(), CloudError> {
        let body = wire::RegisterSshKey {
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
        };
        match self.write(Method::POST, "/ssh-key", Some(&body)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) || is_reason(&e, "conflict") => {
                let existing: wire::SshKey = self
                    .get(&format!("/ssh-key/{}", key_segment(name)?), &[])
                    .await?;
                if existing.fingerprint.is_some()
                    && existing.fingerprint == wire::ssh_key_fingerprint(public_key)
                {
                    Ok(())
                } else {
                    Err(CloudError::Invalid(format!(
                        "SSH key {name:?} already exists with another public key; delete it (baton gc) or pick another name"
                    )))
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_ssh_key(&self, name: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/ssh-key/{}", key_segment(name)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError> {
        let list: wire::SshKeyList = self.get("/ssh-key", &[]).await?;
        Ok(list
            .ssh_keys
            .into_iter()
            .map(|k| SshKey {
                name: k.name,
                fingerprint: k.fingerprint.unwrap_or_default(),
            })
            .collect())
    }

    async fn list_own_templates(&self) -> Result<Vec<Template>, CloudError> {
        let mut own: Vec<Template> = self
            .templates("private")
            .await?
            .into_iter()
            .map(template_of)
            .collect();
        own.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(own)
    }

    fn by_url(&self) -> Option<&dyn super::RegisterByUrl> {
        Some(self)
    }

    async fn delete_template(&self, id: &str) -> Result<(), CloudError> {
        gone_is_ok(
            self.write(
                Method::DELETE,
                &format!("/template/{}", uuid("template", id)?),
                None::<&()>,
            )
            .await,
        )
    }

    async fn find_front(&self, address: IpAddr) -> Result<String, CloudError> {
        Ok(self.find_elastic_ip(address).await?.id)
    }

    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.attach_elastic_ip(front, instance).await
    }

    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.detach_elastic_ip(front, instance).await
    }

    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError> {
        self.instances_with_ip(address).await
    }
}

impl ExoscaleClient {
    /// Instances that answer on `ip`: their own public IP, or an Elastic IP attached to them.
    pub async fn instances_with_ip(&self, ip: IpAddr) -> Result<Vec<Instance>, CloudError> {
        self.all_instances(&[("ip-address".into(), ip.to_string())])
            .await
    }

    /// The Elastic IP with address `address`.
    pub async fn find_elastic_ip(&self, address: IpAddr) -> Result<ElasticIp, CloudError> {
        let all = self.list_elastic_ips().await?;
        all.iter()
            .find(|e| e.ip == address)
            .cloned()
            .ok_or_else(|| CloudError::NotFound {
                what: format!("Elastic IP {address}"),
                hint: format!(
                    "the zone has {}; check cloud.elastic_ip and cloud.zone",
                    super::names(all.iter().map(|e| e.ip.to_string()))
                ),
            })
    }

    pub async fn list_elastic_ips(&self) -> Result<Vec<ElasticIp>, CloudError> {
        let list: wire::ElasticIpList = self.get("/elastic-ip", &[]).await?;
        list.elastic_ips
            .into_iter()
            .map(|e| {
                Ok(ElasticIp {
                    ip: parse_ip(&e.ip, "elastic-ip")?,
                    id: e.id,
                })
            })
            .collect()
    }

    /// Attaches; already attached is success.
    pub async fn attach_elastic_ip(
        &self,
        eip_id: &str,
        instance_id: &str,
    ) -> Result<(), CloudError> {
        let (_, holders) = self.holders(eip_id).await?;
        if holders.iter().any(|i| i.id == instance_id) {
            return Ok(());
        }
        let body = wire::AttachInstance {
            instance: wire::IdRef {
                id: instance_id.to_string(),
            },
        };
        self.write(
            Method::PUT,
            &format!("/elastic-ip/{}:attach", uuid("elastic IP", eip_id)?),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Detaches; not attached (or instance gone) is success.
    pub async fn detach_elastic_ip(
        &self,
        eip_id: &str,
        instance_id: &str,
    ) -> Result<(), CloudError> {
        let (_, holders) = self.holders(eip_id).await?;
        if !holders.iter().any(|i| i.id == instance_id) {
            return Ok(());
        }
        let body = wire::AttachInstance {
            instance: wire::IdRef {
                id: instance_id.to_string(),
            },
        };
        gone_is_ok(
            self.write(
                Method::PUT,
                &format!("/elastic-ip/{}:detach", uuid("elastic IP", eip_id)?),
                Some(&body),
            )
            .await,
        )
    }
}
