//! The point of no return (state.json names the new generation) and the clean-up after it.

use std::sync::Arc;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::state::{self, Active, Leftover, LeftoverKind, Previous, SiteState};
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
        let instance = s.instance_id.clone().unwrap_or_default();
        // Where it answers now: on AWS, the Elastic IP it took over.
        let address = ctx
            .address_now(&instance, s.public_ip)
            .await
            .ok()
            .or(s.public_ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let now = chrono::Utc::now();
        site.version = 1;
        site.active = Some(Active {
            generation: s.generation,
            instance,
            address,
            since: now.to_rfc3339(),
            host_key: s.host_key.clone(),
        });
        // The old server stays, detached, through the watch and the rollback window
        // (the one kept before it went in `retire-kept`).
        let keep = ctx.config.swap.watch + ctx.config.swap.keep_previous;
        site.previous = s.old.clone().map(|active| Previous {
            active,
            until: state::later(now, keep),
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
        if let Some(displaced) = &s.displaced
            && let Err(e) = crate::cloud::delete_generation(
                ctx.cloud.as_ref(),
                &displaced.instance,
                displaced.generation,
            )
            .await
        {
            failed.push(instance_left(displaced, e));
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
        Err(leave_for_gc(ctx, failed, |_| {}).await)
    }
}

/// Before the new server is created: deletes the generation state.json keeps for a
/// rollback, which becomes two generations back once this swap commits. So no more
/// servers run at once than the swap needs, the one serving and the one booting (on a
/// cloud, no server is paid for that no rollback could reach; in the rehearsal, a third
/// VM under software emulation starved the serving one, issue 30). The cost: a swap
/// that fails after this step leaves the serving generation serving with nothing older
/// to roll back to. Nothing here is undone, and the serving server is not touched.
pub struct RetireKept(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for RetireKept {
    fn name(&self) -> &'static str {
        names::RETIRE_KEPT
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(kept) = s.displaced.clone() else {
            return Ok(());
        };
        (ctx.say)(format!(
            "generation {} ({}), kept for a rollback, goes before generation {} boots",
            kept.generation, kept.instance, s.generation
        ));
        let generation = kept.generation;
        // state.json first: a rollback must never name a server that is being deleted.
        amend(ctx, forget_previous(generation)).await.map_err(|e| {
            StepError(format!(
                "{} still names generation {generation} as the one kept for a rollback, \
                 so it stays: {e}",
                crate::store::layout::STATE
            ))
        })?;
        if let Err(e) =
            crate::cloud::delete_generation(ctx.cloud.as_ref(), &kept.instance, kept.generation)
                .await
        {
            return Err(leave_for_gc(ctx, vec![instance_left(&kept, e)], |_| {}).await);
        }
        // Done: the clean-up after the commit has nothing left to delete.
        s.displaced = None;
        Ok(())
    }
}

/// After a watch that passed: deletes the old server, unless `swap.keep_previous` keeps
/// it for `baton rollback`.
pub struct Retire(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Retire {
    fn name(&self) -> &'static str {
        names::RETIRE
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(old) = &s.old else {
            return Ok(());
        };
        if s.watch_failed.is_some() {
            (ctx.say)(format!(
                "skipped: the watch failed, so generation {} takes the address back",
                old.generation
            ));
            return Ok(());
        }
        let keep = ctx.config.swap.keep_previous;
        if !keep.is_zero() {
            (ctx.say)(format!(
                "generation {} ({}) stays detached for {}: `baton rollback` puts it back",
                old.generation,
                old.instance,
                humantime::format_duration(keep)
            ));
            return Ok(());
        }
        let deleted =
            crate::cloud::delete_generation(ctx.cloud.as_ref(), &old.instance, old.generation)
                .await;
        let generation = old.generation;
        let forget = forget_previous(generation);
        match deleted {
            Ok(()) => amend(ctx, forget).await.map_err(|e| {
                StepError(format!(
                    "deleted generation {generation}'s instance, but {} still names it as \
                     the previous one: {e}",
                    crate::store::layout::STATE
                ))
            }),
            Err(e) => Err(leave_for_gc(ctx, vec![instance_left(old, e)], forget).await),
        }
    }
}

/// Drops `generation` from state.json as the one kept for a rollback (and nothing else:
/// a newer swap may have put another there).
fn forget_previous(generation: u64) -> impl FnOnce(&mut SiteState) {
    move |site: &mut SiteState| {
        if site
            .previous
            .as_ref()
            .is_some_and(|p| p.active.generation == generation)
        {
            site.previous = None;
        }
    }
}

pub(crate) fn instance_left(a: &Active, e: impl std::fmt::Display) -> Leftover {
    Leftover::Resource {
        kind: LeftoverKind::Instance,
        name: a.instance.clone(),
        generation: Some(a.generation),
        error: e.to_string(),
    }
}

/// Reads state.json, changes it with `f` and writes it back.
async fn amend(ctx: &Ctx, f: impl FnOnce(&mut SiteState)) -> Result<(), String> {
    match state::read(ctx.store.as_ref()).await {
        Ok(Some(mut site)) => {
            f(&mut site);
            state::write(ctx.store.as_ref(), &site)
                .await
                .map_err(|e| e.to_string())
        }
        Ok(None) => Err(format!("{} is missing", crate::store::layout::STATE)),
        Err(e) => Err(e.to_string()),
    }
}

/// Past the commit nothing is undone: what is left is recorded in state.json for `baton
/// gc` (with `f`'s change), and the step fails with the list. When even the record
/// fails, it says so: status would otherwise never show what is left.
pub(crate) async fn leave_for_gc(
    ctx: &Ctx,
    failed: Vec<Leftover>,
    f: impl FnOnce(&mut SiteState),
) -> StepError {
    let listed = failed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let recorded = amend(ctx, |site| {
        f(site);
        site.leftovers.extend(failed);
    })
    .await;
    match recorded {
        Ok(()) => StepError(format!("left behind (run `baton gc`): {listed}")),
        Err(e) => StepError(format!(
            "left behind (run `baton gc`): {listed}; recording them in {} failed too: {e}",
            crate::store::layout::STATE
        )),
    }
}
