//! The operator's cloud, fenced to the site (issue 29). Journals and `state.json` name
//! instances, keys and fronts, and the store they live in is writable by every server:
//! even signed, an old object can be put back. So every call that changes something is
//! checked against the cloud itself before it goes through: an instance is touched only
//! while it carries this site's label, a deploy key only under the site's prefix, a
//! front only when it is the one the config names. A wrapper around any [`Cloud`], so
//! the swap, the rollback, `gc` and every undo get the same fence without a check of
//! their own to forget.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{Cloud, CloudError, Instance, InstanceSpec, LABEL_SITE, SshKey, Template};

pub struct SiteOnly {
    inner: Arc<dyn Cloud>,
    site: String,
    key_prefix: String,
    /// The address the config names; its front's id is looked up once.
    address: IpAddr,
    front: OnceCell<String>,
}

impl SiteOnly {
    pub fn new(inner: Arc<dyn Cloud>, site: &str, key_prefix: &str, address: IpAddr) -> SiteOnly {
        SiteOnly {
            inner,
            site: site.to_string(),
            key_prefix: key_prefix.to_string(),
            address,
            front: OnceCell::new(),
        }
    }

    fn refuse(&self, what: String, why: String) -> CloudError {
        CloudError::NotOurs {
            what,
            site: self.site.clone(),
            why,
        }
    }

    /// The instance, if it exists and is this site's.
    async fn ours(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        let Some(i) = self.inner.get_instance(id).await? else {
            return Ok(None);
        };
        match i.labels.get(LABEL_SITE) {
            Some(site) if *site == self.site => Ok(Some(i)),
            other => Err(self.refuse(
                format!("instance {id} ({})", i.name),
                match other {
                    Some(s) => format!("its {LABEL_SITE} label is {s:?}"),
                    None => format!("it has no {LABEL_SITE} label"),
                },
            )),
        }
    }

    fn key_is_ours(&self, name: &str) -> Result<(), CloudError> {
        let generation = name.strip_prefix(&self.key_prefix);
        if generation.is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit())) {
            return Ok(());
        }
        Err(self.refuse(
            format!("SSH key {name:?}"),
            format!("the site's deploy keys are named {}N", self.key_prefix),
        ))
    }

    /// The configured address's front, asked of the cloud once.
    async fn configured_front(&self) -> Result<&String, CloudError> {
        self.front
            .get_or_try_init(|| self.inner.find_front(self.address))
            .await
    }

    async fn front_is_ours(&self, front: &str) -> Result<(), CloudError> {
        let configured = self.configured_front().await?;
        if front == configured {
            return Ok(());
        }
        Err(self.refuse(
            format!("front {front:?}"),
            format!(
                "the config's address {} is front {configured:?}",
                self.address
            ),
        ))
    }
}

#[async_trait]
impl Cloud for SiteOnly {
    async fn preflight(&self, spec: &InstanceSpec) -> Result<(), CloudError> {
        self.inner.preflight(spec).await
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance, CloudError> {
        if spec.labels.get(LABEL_SITE) != Some(&self.site) {
            return Err(self.refuse(
                format!("a new instance {}", spec.name),
                format!("it would not carry {LABEL_SITE}={}", self.site),
            ));
        }
        if let Some(key) = &spec.ssh_key {
            self.key_is_ours(key)?;
        }
        self.inner.create_instance(spec).await
    }

    async fn get_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        self.inner.get_instance(id).await
    }

    async fn list_instances(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, CloudError> {
        self.inner.list_instances(labels).await
    }

    async fn delete_instance(&self, id: &str) -> Result<(), CloudError> {
        match self.ours(id).await? {
            Some(_) => self.inner.delete_instance(id).await,
            None => Ok(()), // gone already
        }
    }

    async fn wait_running(&self, id: &str, timeout: Duration) -> Result<Instance, CloudError> {
        self.inner.wait_running(id, timeout).await
    }

    async fn register_ssh_key(&self, name: &str, public_key: &str) -> Result<(), CloudError> {
        self.key_is_ours(name)?;
        self.inner.register_ssh_key(name, public_key).await
    }

    async fn delete_ssh_key(&self, name: &str) -> Result<(), CloudError> {
        self.key_is_ours(name)?;
        self.inner.delete_ssh_key(name).await
    }

    async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError> {
        self.inner.list_ssh_keys().await
    }

    async fn list_own_templates(&self) -> Result<Vec<Template>, CloudError> {
        self.inner.list_own_templates().await
    }

    fn by_url(&self) -> Option<&dyn super::RegisterByUrl> {
        self.inner.by_url()
    }

    async fn delete_template(&self, id: &str) -> Result<(), CloudError> {
        self.inner.delete_template(id).await
    }

    async fn find_front(&self, address: IpAddr) -> Result<String, CloudError> {
        if address != self.address {
            return Err(self.refuse(
                format!("the front at {address}"),
                format!("the config's address is {}", self.address),
            ));
        }
        self.configured_front().await.cloned()
    }

    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.front_is_ours(front).await?;
        if self.ours(instance).await?.is_none() {
            return Err(self.refuse(
                format!("instance {instance}"),
                "it does not exist, so it cannot join the front".into(),
            ));
        }
        self.inner.front_add(front, instance).await
    }

    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        self.front_is_ours(front).await?;
        // Taking a foreign instance out of the site's front only helps: no label check.
        self.inner.front_remove(front, instance).await
    }

    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError> {
        self.inner.front_members(address).await
    }
}
