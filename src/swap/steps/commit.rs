//! The point of no return (state.json names the new generation) and the clean-up after it.

use std::sync::Arc;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::state::{self, Active, Leftover, LeftoverKind};
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
        if ctx.lock_lost.is_lost() {
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
        let Err(e) = state::write(ctx.store.as_ref(), &site).await else {
            return Ok(());
        };
        // A write whose answer was lost may have landed: look before anyone unwinds.
        match committed(ctx, s.generation).await {
            Ok(true) => Ok(()),
            _ => Err(StepError(format!(
                "writing {}: {e}",
                crate::store::layout::STATE
            ))),
        }
    }

    /// Runs when the commit failed or was cut short: Ok only when state.json surely does
    /// not name this generation, so that undoing the steps before it is safe.
    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        match committed(&self.0, s.generation).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(StepError(format!(
                "{} names generation {} (this swap's): it committed, so nothing is undone; \
                 run `baton swap --resume` to finish it",
                crate::store::layout::STATE,
                s.generation
            ))),
            Err(e) => Err(StepError(format!(
                "cannot tell whether the swap committed ({e}), so nothing is undone; run \
                 `baton swap --resume` once the store answers"
            ))),
        }
    }
}

/// Does state.json name `generation` as the active one?
async fn committed(ctx: &Ctx, generation: u64) -> Result<bool, state::StateError> {
    let site = state::read(ctx.store.as_ref()).await?;
    Ok(site.and_then(|s| s.active).map(|a| a.generation) == Some(generation))
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
            failed.push(Leftover::Resource {
                kind: LeftoverKind::Instance,
                name: old.instance.clone(),
                generation: Some(old.generation),
                error: e.to_string(),
            });
        }
        if let Err(e) = ctx.cloud.delete_ssh_key(&s.key_name).await {
            failed.push(Leftover::Resource {
                kind: LeftoverKind::SshKey,
                name: s.key_name.clone(),
                generation: None,
                error: e.to_string(),
            });
        }
        if failed.is_empty() {
            return Ok(());
        }
        let listed = failed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        // Past the commit nothing is undone: record what is left for `baton gc`. When even
        // that fails, say so: status would otherwise never show what is left.
        let recorded = match state::read(ctx.store.as_ref()).await {
            Ok(Some(mut site)) => {
                site.leftovers.extend(failed);
                state::write(ctx.store.as_ref(), &site)
                    .await
                    .map_err(|e| e.to_string())
            }
            Ok(None) => Err(format!("{} is missing", crate::store::layout::STATE)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = recorded {
            return Err(StepError(format!(
                "left behind (run `baton gc`): {listed}; recording them in {} failed too: {e}",
                crate::store::layout::STATE
            )));
        }
        Err(StepError(format!("left behind (run `baton gc`): {listed}")))
    }
}
