//! The rollback: the address back to the kept previous generation, as a saga of its own
//! (journalled, resumable, undone before its commit) under the same deploy lock as a swap.
//! The watch starts one when a release fails it; `baton rollback` starts one by hand.
//!
//! The address moves first and the monitoring data follows: the previous server answers
//! within seconds, and its Prometheus catches up from the final backup of the one it
//! replaces before state.json names it again (which lifts the fence on its agent).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use super::cutover::{Cutover, Member};
use super::error::StartError;
use super::probe::until_generation;
use super::saga::{Step, StepError};
use super::steps::{WatchFailure, instance_left, leave_for_gc};
use crate::remote::RemoteHost;
use crate::state::{self, Active, RolledBack, SiteState};

pub mod names {
    pub const CHECK: &str = "check-previous";
    pub const ATTACH: &str = "attach-previous";
    pub const VERIFY: &str = "verify-previous";
    pub const DETACH: &str = "detach-failed";
    pub const HAND_BACK: &str = "hand-back";
    pub const COMMIT: &str = "commit-rollback";
    pub const RETIRE: &str = "retire-failed";
}

/// Journal ids of rollbacks start with this; a swap's start with its generation.
pub const ID_PREFIX: &str = "rollback-";

/// What the journal keeps of a rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RollbackState {
    pub site: String,
    /// The generation the address leaves (active when the rollback started).
    pub from: Active,
    /// The kept previous generation it goes back to.
    pub to: Active,
    /// The front's id, as the cloud names it (a journal of an older baton calls it
    /// `elastic_ip_id`).
    #[serde(alias = "elastic_ip_id")]
    pub front_id: String,
    /// Why, in a line: the watch's verdict or the operator's command.
    pub reason: String,
    /// The watch's findings, when the watch started this rollback.
    pub watch: Option<WatchFailure>,
    /// Keep `from`'s instance for inspection (`swap.on_rollback = "keep"`).
    pub keep_failed: bool,
    /// What the hand-back of monitoring data could not do: it never stops a rollback.
    pub hand_back_problem: Option<String>,
    /// Unix milliseconds when the address first answered as `to` again.
    pub serving_again_ms: Option<i64>,
    /// An earlier rollback's instance still kept for inspection: state.json keeps one,
    /// so this rollback's retire-failed deletes it.
    #[serde(default)]
    pub earlier_kept: Option<RolledBack>,
}

/// The steps in order.
pub fn all(ctx: &Arc<Ctx>) -> Vec<Box<dyn Step<RollbackState>>> {
    vec![
        Box::new(CheckPrevious(ctx.clone())),
        Box::new(AttachPrevious(ctx.clone())),
        Box::new(VerifyPrevious(ctx.clone())),
        Box::new(DetachFailed(ctx.clone())),
        Box::new(HandBack(ctx.clone())),
        Box::new(CommitRollback(ctx.clone())),
        Box::new(RetireFailed(ctx.clone())),
    ]
}

/// From the failed generation back to the kept one.
fn cutover<'a>(ctx: &'a Ctx, s: &'a RollbackState) -> Cutover<'a> {
    Cutover {
        ctx,
        front_id: &s.front_id,
        to: Member {
            generation: s.to.generation,
            instance: Some(&s.to.instance),
        },
        from: Some(Member {
            generation: s.from.generation,
            instance: Some(&s.from.instance),
        }),
    }
}

/// Does state.json say this rollback committed: `to` active again, `from` given up?
fn committed(site: &SiteState, s: &RollbackState) -> bool {
    site.active.as_ref().map(|a| a.generation) == Some(s.to.generation)
        && site.rolled_back.as_ref().map(|r| r.generation) == Some(s.from.generation)
}

struct CheckPrevious(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for CheckPrevious {
    fn name(&self) -> &'static str {
        names::CHECK
    }

    /// Nothing is touched before the previous server is known to exist and to answer as
    /// its generation on its own address.
    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        let ctx = &self.0;
        let site = state::read(ctx.store.as_ref())
            .await
            .map_err(StepError::new)?
            .unwrap_or_default();
        if committed(&site, s) {
            return Ok(()); // a resumed rollback past its commit
        }
        if site.active.as_ref().map(|a| a.generation) != Some(s.from.generation) {
            return Err(StepError(format!(
                "state.json no longer names generation {} as active: not rolling back",
                s.from.generation
            )));
        }
        let instance = ctx
            .cloud
            .get_instance(&s.to.instance)
            .await
            .map_err(StepError::new)?;
        if instance.is_none() {
            return Err(StepError(format!(
                "the previous generation's instance {} is gone: there is nothing to roll \
                 back to\n  fix: `baton swap` deploys anew",
                s.to.instance
            )));
        }
        let ip = ctx.address_of(&s.to).await?;
        until_generation(ctx, ip, s.to.generation, 1, ctx.config.swap.health_timeout)
            .await
            .map_err(|last| {
                StepError(format!(
                    "generation {} on {ip} does not answer as itself: {last}",
                    s.to.generation
                ))
            })
    }
}

struct AttachPrevious(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for AttachPrevious {
    fn name(&self) -> &'static str {
        names::ATTACH
    }

    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        cutover(&self.0, s).attach().await
    }

    async fn undo(&self, s: &mut RollbackState) -> Result<(), StepError> {
        cutover(&self.0, s).undo_attach().await
    }
}

struct VerifyPrevious(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for VerifyPrevious {
    fn name(&self) -> &'static str {
        names::VERIFY
    }

    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        cutover(&self.0, s).verify().await?;
        s.serving_again_ms
            .get_or_insert_with(|| chrono::Utc::now().timestamp_millis());
        Ok(())
    }
}

struct DetachFailed(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for DetachFailed {
    fn name(&self) -> &'static str {
        names::DETACH
    }

    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        cutover(&self.0, s).detach().await
    }

    async fn undo(&self, s: &mut RollbackState) -> Result<(), StepError> {
        cutover(&self.0, s).undo_detach().await
    }
}

struct HandBack(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for HandBack {
    fn name(&self) -> &'static str {
        names::HAND_BACK
    }

    /// The data the failed generation recorded since the cut-over goes back with a final
    /// backup there and a catch-up here. Best effort: a release broken badly enough to
    /// roll back may not answer SSH, and the site must come back all the same.
    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        let ctx = &self.0;
        if let Err(e) = hand_back(ctx, s).await {
            let problem = format!(
                "the monitoring data generation {} recorded since its last backup stays behind: {e}",
                s.from.generation
            );
            (ctx.say)(problem.clone());
            s.hand_back_problem = Some(problem);
        }
        Ok(())
    }
}

async fn connect(ctx: &Ctx, a: &Active) -> Result<Box<dyn RemoteHost>, StepError> {
    let key = a.host_key.as_deref().ok_or_else(|| {
        StepError(format!(
            "state.json has no host key for generation {}",
            a.generation
        ))
    })?;
    let target = ctx.target(ctx.address_of(a).await?, key)?;
    ctx.connector
        .connect(&target, Duration::from_secs(20))
        .await
        .map_err(StepError::new)
}

async fn hand_back(ctx: &Ctx, s: &mut RollbackState) -> Result<(), StepError> {
    let timeout = ctx.config.swap.handover_timeout;
    let from = connect(ctx, &s.from).await?;
    if let Some(watch) = &mut s.watch
        && watch.logs.is_empty()
    {
        watch.logs = ctx.bundle_logs(from.as_ref()).await.unwrap_or_default();
    }
    (ctx.say)(format!("final backup on generation {}", s.from.generation));
    ctx.baton_beside_site(from.as_ref(), "backup --final", timeout)
        .await?;
    (ctx.say)(format!("catch-up on generation {}", s.to.generation));
    let to = connect(ctx, &s.to).await?;
    ctx.baton_beside_site(to.as_ref(), "restore --catch-up", timeout)
        .await
}

struct CommitRollback(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for CommitRollback {
    fn name(&self) -> &'static str {
        names::COMMIT
    }

    fn commits(&self) -> bool {
        true
    }

    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        let ctx = &self.0;
        if ctx.lock_lost.is_lost() {
            return Err(StepError(
                "the deploy lock was taken over: another swap may be running, so this \
                 rollback does not commit"
                    .into(),
            ));
        }
        let mut site = state::read(ctx.store.as_ref())
            .await
            .map_err(StepError::new)?
            .unwrap_or_default();
        if committed(&site, s) {
            return Ok(());
        }
        let current = site.active.as_ref().map(|a| a.generation);
        if current != Some(s.from.generation) {
            return Err(StepError(format!(
                "state.json changed during the rollback (active generation {current:?}, \
                 expected {}): not committing",
                s.from.generation
            )));
        }
        let now = chrono::Utc::now();
        site.active = Some(Active {
            since: now.to_rfc3339(),
            ..s.to.clone()
        });
        site.previous = None;
        site.rolled_back = Some(RolledBack {
            generation: s.from.generation,
            instance: s.from.instance.clone(),
            at: now.to_rfc3339(),
            reason: s.reason.clone(),
            kept_until: s
                .keep_failed
                .then(|| state::later(now, ctx.config.swap.keep_previous)),
        });
        let Err(e) = state::write(ctx.store.as_ref(), &site).await else {
            return Ok(());
        };
        // A write whose answer was lost may have landed: look before anyone unwinds.
        match state::read(ctx.store.as_ref()).await {
            Ok(Some(site)) if committed(&site, s) => Ok(()),
            _ => Err(StepError(format!(
                "writing {}: {e}",
                crate::store::layout::STATE
            ))),
        }
    }

    /// Ok only when state.json surely still names the generation rolled back from.
    async fn undo(&self, s: &mut RollbackState) -> Result<(), StepError> {
        match state::read(self.0.store.as_ref()).await {
            Ok(Some(site)) if !committed(&site, s) => Ok(()),
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(StepError(format!(
                "{} names generation {} again: the rollback committed, so nothing is undone; \
                 run `baton rollback --resume` to finish it",
                crate::store::layout::STATE,
                s.to.generation
            ))),
            Err(e) => Err(StepError(format!(
                "cannot tell whether the rollback committed ({e}), so nothing is undone; run \
                 `baton rollback --resume` once the store answers"
            ))),
        }
    }
}

struct RetireFailed(Arc<Ctx>);

#[async_trait]
impl Step<RollbackState> for RetireFailed {
    fn name(&self) -> &'static str {
        names::RETIRE
    }

    async fn run(&self, s: &mut RollbackState) -> Result<(), StepError> {
        let ctx = &self.0;
        let mut failed = Vec::new();
        if let Some(earlier) = &s.earlier_kept
            && let Err(e) = crate::cloud::delete_generation(
                ctx.cloud.as_ref(),
                &earlier.instance,
                earlier.generation,
            )
            .await
        {
            failed.push(instance_left(
                &Active {
                    generation: earlier.generation,
                    instance: earlier.instance.clone(),
                    ..Default::default()
                },
                e,
            ));
        }
        if s.keep_failed {
            (ctx.say)(format!(
                "instance {} (generation {}) is kept for inspection for {}; `baton gc` deletes it after",
                s.from.instance,
                s.from.generation,
                humantime::format_duration(ctx.config.swap.keep_previous)
            ));
        } else if let Err(e) =
            crate::cloud::delete_generation(ctx.cloud.as_ref(), &s.from.instance, s.from.generation)
                .await
        {
            failed.push(instance_left(&s.from, e));
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(leave_for_gc(ctx, failed, |_| {}).await)
    }
}

/// What a rollback starts from: state.json's active generation and the previous one it
/// keeps, if the window to go back to it is still open.
pub async fn start(
    ctx: &Ctx,
    reason: String,
    watch: Option<WatchFailure>,
) -> Result<RollbackState, StartError> {
    let site = crate::state::read(ctx.store.as_ref())
        .await?
        .unwrap_or_default();
    let nothing = |why: String| Err(StartError::NothingToRollBack { why });
    let Some(from) = site.active.clone() else {
        return nothing("no generation is active yet".into());
    };
    // The watch's own rollback goes back whatever the clock says: its last check can end
    // a few seconds past `until` when keep_previous is 0s, and the VM is still there.
    let target = match &watch {
        Some(_) => site.previous.as_ref(),
        None => site.rollback_target(chrono::Utc::now()),
    };
    let to = match (&site.previous, target) {
        (None, _) => {
            return nothing(format!(
                "state.json keeps no generation before {} (the first deploy, a rollback \
                 already done, or swap.keep_previous = 0s)",
                from.generation
            ));
        }
        (Some(p), None) => {
            return nothing(format!(
                "generation {} was kept until {}, which is past",
                p.active.generation, p.until
            ));
        }
        (_, Some(p)) => p.active.clone(),
    };
    let front_id = ctx.cloud.find_front(ctx.front.address).await?;
    Ok(RollbackState {
        site: ctx.config.site.name.clone(),
        from,
        to,
        front_id,
        reason,
        watch,
        keep_failed: ctx.config.swap.on_rollback == crate::config::OnRollback::Keep,
        hand_back_problem: None,
        serving_again_ms: None,
        earlier_kept: site.rolled_back.filter(|r| r.kept_until.is_some()),
    })
}
