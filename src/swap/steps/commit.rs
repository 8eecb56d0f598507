//! The point of no return (state.json names the new generation) and the clean-up after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::state::{self, Active};
use crate::swap::ctx::Ctx;
use crate::swap::saga::{Step, StepError};

pub struct Commit(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Commit {
    fn name(&self) -> &'static str {
        names::COMMIT
    }

    fn commits(&self) -> bool {
        true
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        if ctx.lock_lost.load(Ordering::SeqCst) {
            return Err(StepError(
                "the deploy lock was taken over: another swap may be running, so this one \
                 does not commit"
                    .into(),
            ));
        }
        let mut site = state::read(ctx.store.as_ref())
            .await
            .map_err(StepError::new)?
            .unwrap_or_default();
        let current = site.active.as_ref().map(|a| a.generation);
        if current == Some(s.generation) {
            return Ok(()); // committed before a crash
        }
        if current != s.old.as_ref().map(|a| a.generation) {
            return Err(StepError(format!(
                "state.json changed during the swap (active generation {current:?}, expected \
                 {:?}): not committing",
                s.old.as_ref().map(|a| a.generation)
            )));
        }
        site.version = 1;
        site.active = Some(Active {
            generation: s.generation,
            instance: s.instance_id.clone().unwrap_or_default(),
            address: s.public_ip.map(|i| i.to_string()).unwrap_or_default(),
            since: chrono::Utc::now().to_rfc3339(),
            host_key: s.host_key.clone(),
        });
        state::write(ctx.store.as_ref(), &site)
            .await
            .map_err(StepError::new)
    }
}

pub struct CleanUp(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for CleanUp {
    fn name(&self) -> &'static str {
        names::CLEAN_UP
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let mut failed = Vec::new();
        if let Some(old) = &s.old
            && let Err(e) = ctx.cloud.delete_instance(&old.instance).await
        {
            failed.push(format!(
                "instance {} (generation {}): {e}",
                old.instance, old.generation
            ));
        }
        if let Err(e) = ctx.cloud.delete_ssh_key(&s.key_name).await {
            failed.push(format!("SSH key {}: {e}", s.key_name));
        }
        if failed.is_empty() {
            return Ok(());
        }
        // Past the commit nothing is undone: record what is left for `baton gc`.
        if let Ok(Some(mut site)) = state::read(ctx.store.as_ref()).await {
            site.leftovers
                .extend(failed.iter().map(|f| serde_json::Value::String(f.clone())));
            let _ = state::write(ctx.store.as_ref(), &site).await;
        }
        Err(StepError(format!(
            "left behind (run `baton gc`): {}",
            failed.join("; ")
        )))
    }
}
