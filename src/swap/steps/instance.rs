//! The new VM: its provisioning key, the instance itself, and the wait until it has
//! booted, restored its data and runs baton.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{SwapState, names};
use crate::cloud::InstanceSpec;
use crate::swap::ctx::Ctx;
use crate::swap::saga::{Step, StepError};

/// baton reaches a new server with cloud-init's runcmd, well after sshd answers: this waits
/// for it, or for cloud-init to finish without it (then the end of cloud-init's log says
/// why). `BATON_ROOT` is set only on the loopback rehearsal's servers.
const AWAIT_BATON: &str = "sh -c 'until command -v baton >/dev/null; do \
    if [ -e \"${BATON_ROOT:-}/var/lib/cloud/instance/boot-finished\" ]; then \
    echo \"cloud-init finished without installing baton; the end of its log:\"; \
    tail -n 15 /var/log/cloud-init-output.log; exit 1; fi; sleep 1; done'";

fn remaining(start: Instant, total: Duration) -> Duration {
    total.saturating_sub(start.elapsed())
}

pub struct RegisterKey(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for RegisterKey {
    fn name(&self) -> &'static str {
        names::REGISTER_KEY
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let public = crate::identity::ssh::public_openssh(self.0.deploy_key.public_key())
            .map_err(StepError::new)?;
        self.0
            .cloud
            .register_ssh_key(&s.key_name, public.trim_end())
            .await
            .map_err(StepError::new)
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        self.0
            .cloud
            .delete_ssh_key(&s.key_name)
            .await
            .map_err(StepError::new)
    }
}

pub struct Create(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Create {
    fn name(&self) -> &'static str {
        names::CREATE
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        // After a crash the user-data is gone: an instance an earlier attempt created is
        // used as it is (its host key is the journalled one); otherwise render afresh.
        let found = ctx
            .cloud
            .list_instances(&s.labels())
            .await
            .map_err(StepError::new)?;
        if let Some(i) = found.into_iter().next() {
            s.instance_id = Some(i.id);
            return Ok(());
        }
        let user_data = crate::sync::lock(&ctx.user_data).clone();
        let user_data = match user_data {
            Some(u) => u,
            None => {
                ctx.render(s).await?;
                crate::sync::lock(&ctx.user_data)
                    .clone()
                    .ok_or_else(|| StepError("rendering left no user-data".into()))?
            }
        };
        let configured = ctx.config.instance_spec(s.generation);
        let spec = InstanceSpec {
            ssh_key: Some(s.key_name.clone()),
            user_data: user_data.to_string(),
            template: s.template.clone().unwrap_or(configured.template.clone()),
            ..configured
        };
        let instance = ctx
            .cloud
            .create_instance(&spec)
            .await
            .map_err(StepError::new)?;
        (ctx.say)(format!("instance {} ({})", instance.name, instance.id));
        s.instance_id = Some(instance.id);
        Ok(())
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        // By label too: a crash can land between the create and the journal.
        let mut ids: Vec<String> = self
            .0
            .cloud
            .list_instances(&s.labels())
            .await
            .map_err(StepError::new)?
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.extend(s.instance_id.clone());
        ids.sort();
        ids.dedup();
        for id in ids {
            crate::cloud::delete_generation(self.0.cloud.as_ref(), &id, s.generation)
                .await
                .map_err(StepError::new)?;
        }
        Ok(())
    }
}

pub struct Wait(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Wait {
    fn name(&self) -> &'static str {
        names::WAIT
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let start = Instant::now();
        let total = ctx.config.swap.boot_timeout;
        let id = s
            .instance_id
            .clone()
            .ok_or_else(|| StepError("no instance to wait for".into()))?;
        let instance = ctx
            .cloud
            .wait_running(&id, total)
            .await
            .map_err(StepError::new)?;
        let ip = instance
            .public_ip
            .ok_or_else(|| StepError(format!("instance {id} is running without a public IP")))?;
        s.public_ip = Some(ip);
        (ctx.say)(format!(
            "running at {ip}; waiting for SSH with the pinned host key"
        ));
        let host = ctx.connect_new(s, remaining(start, total)).await?;
        (ctx.say)("SSH answered; waiting for cloud-init and baton restore".into());
        let left = remaining(start, total).max(Duration::from_secs(1));
        ctx.root(host.as_ref(), AWAIT_BATON, left).await?;
        let left = remaining(start, total).max(Duration::from_secs(1));
        ctx.baton(
            host.as_ref(),
            &format!("host ready --timeout {}s", left.as_secs().max(1)),
            left + Duration::from_secs(10),
        )
        .await
    }
}
