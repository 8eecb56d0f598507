//! A swap from start to end: the deploy lock held and renewed, the journals checked under
//! it, then the saga started, resumed or aborted. The command only reads its arguments,
//! opens the services and reports; everything a swap decides is here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::Ctx;
use super::end_state;
use super::error::StartError;
use super::journal::{Entry, JournalError};
use super::lock::{DeployLock, Holder, LockError};
use super::rollback::RollbackState;
use super::saga::{Journal, Outcome, Saga, Step, StepTime};
use super::state::SwapState;
use super::steps;
use crate::clock::Clock;
use crate::cloud::{Cloud, CloudError};
use crate::config::Config;
use crate::remote::Connector;
use crate::state::StateError;
use crate::store::{ObjectStore, StoreError};

/// The lease outlives a crashed swap by at most this (a dead holder on this machine is
/// taken over at once); a live swap renews it every third of it.
pub const LEASE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new swap; `no_handover` skips the old server's final backup.
    Start { no_handover: bool },
    /// Finish the unfinished swap from its journal.
    Resume,
    /// Undo the unfinished swap.
    Abort,
}

pub struct Request {
    pub saga: SagaKind,
    pub mode: Mode,
    /// How long to wait for a deploy lock that another swap holds.
    pub lock_wait: Duration,
    pub holder: Holder,
    /// The template a new generation boots instead of `instance.template` (a swap's
    /// `--template`); `None` takes the configured one, or the recipe's bake.
    pub template: Option<String>,
}

/// What a swap talks to: each behind its trait, so tests can bring their own.
pub struct Services {
    pub config: Config,
    pub cloud: Arc<dyn Cloud>,
    pub store: Arc<dyn ObjectStore>,
    pub connector: Arc<dyn Connector>,
    pub clock: Arc<dyn Clock>,
    pub deploy_key: russh::keys::PrivateKey,
}

/// Where a swap says what it is doing while it runs.
pub trait Progress: Send + Sync {
    /// A line about the swap as a whole (what it replaces, what it resumes).
    fn note(&self, line: &str);
    /// A saga starts (the swap, or the rollback after it): a note, and the step count
    /// starts again.
    fn begin(&self, line: &str) {
        self.note(line);
    }
    /// A step starts (`time` is `None`) or ends.
    fn step(&self, name: &'static str, time: Option<&StepTime>, total: usize);
    /// A detail of the running step (remote output, what is being waited for).
    fn detail(&self, line: &str);
}

/// How a run ended, for its report: the swap's journal, the rollback's, or both (a swap
/// whose watch failed, then its rollback). `outcome` is the last saga's.
pub struct Finished {
    pub outcome: Outcome,
    pub swap: Option<Journal<SwapState>>,
    pub rollback: Option<Journal<RollbackState>>,
    /// Every step that ran, in order.
    pub times: Vec<StepTime>,
    pub took: Duration,
}

impl Finished {
    fn record_swap(&mut self, o: Outcome, j: Journal<SwapState>, t: Vec<StepTime>) {
        self.outcome = o;
        self.swap = Some(j);
        self.times.extend(t);
    }

    fn record_rollback(&mut self, o: Outcome, j: Journal<RollbackState>, t: Vec<StepTime>) {
        self.outcome = o;
        self.rollback = Some(j);
        self.times.extend(t);
    }
}

/// Which saga a run starts, resumes or aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaKind {
    Swap,
    /// Back to the kept previous generation (`baton rollback`).
    Rollback,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "an earlier swap or rollback did not finish: {journals}\n  fix: finish it with `baton \
         swap --resume` (a rollback: `baton rollback --resume`), or undo it with `--abort`"
    )]
    Unfinished { journals: String },
    #[error(
        "the unfinished saga is a {command}: {journal}\n  fix: `baton {command} --resume` or \
         `baton {command} --abort`"
    )]
    OtherKind {
        journal: String,
        command: &'static str,
    },
    #[error(
        "there is no unfinished swap\n  fix: run `baton status`; a new swap is plain `baton swap`"
    )]
    NothingUnfinished,
    #[error(
        "the unfinished {journal} does not fit state.json: {why}. It is no journal of a \
         saga that could still be running (an old copy put back?), so baton neither resumes \
         nor undoes it\n  fix: check `baton status`; delete that journal from the store once \
         you know no swap is running"
    )]
    StaleJournal { journal: String, why: String },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl crate::exit::Classify for RunError {
    fn is_bad_input(&self) -> bool {
        match self {
            RunError::Unfinished { .. }
            | RunError::OtherKind { .. }
            | RunError::NothingUnfinished
            | RunError::StaleJournal { .. } => true,
            RunError::Start(e) => e.is_bad_input(),
            RunError::Lock(e) => e.is_bad_input(),
            RunError::Journal(e) => e.is_bad_input(),
            RunError::Store(e) => e.is_bad_input(),
            RunError::Cloud(e) => e.is_bad_input(),
            RunError::State(e) => e.is_bad_input(),
        }
    }
}

/// Runs one swap under the deploy lock. The lock is released however the swap ends,
/// unless it was taken over (then it is not ours, and the commit was refused).
pub async fn run(
    request: Request,
    services: Services,
    progress: Arc<dyn Progress>,
) -> Result<Finished, RunError> {
    let lock = Arc::new(DeployLock::new(
        services.store.clone(),
        services.clock.clone(),
        LEASE,
    ));
    let held = lock.hold(&request.holder, request.lock_wait).await?;
    if let Some(old) = &held.took_over {
        progress.note(&format!(
            "took over the deploy lock from {} on {} (pid {}), whose lease had expired or whose process is gone",
            old.holder, old.host, old.pid
        ));
    }
    let say = {
        let p = progress.clone();
        Arc::new(move |l: String| p.detail(&l)) as Arc<dyn Fn(String) + Send + Sync>
    };
    let ctx = Arc::new(Ctx::new(
        services.config,
        services.cloud,
        services.store,
        services.connector,
        services.deploy_key,
        held.lost(),
        say,
    ));
    let mut result = drive(&request, &ctx, progress.clone()).await;
    if let Ok(finished) = &mut result {
        check_end_state(&ctx, finished, progress.as_ref()).await;
    }
    held.release_or_warn().await;
    result
}

/// Compares the cloud with what the outcome promises, still under the lock: a swap that
/// says done (or undone) while an extra instance runs, or the address is elsewhere, ends
/// with exit 3 and the list instead.
async fn check_end_state(ctx: &Ctx, finished: &mut Finished, progress: &dyn Progress) {
    if !matches!(finished.outcome, Outcome::Done | Outcome::Undone { .. }) {
        return; // already needs attention, with its own list
    }
    let problems = end_state::problems(ctx).await;
    if problems.is_empty() {
        progress.note(end_state::AS_PROMISED);
        return;
    }
    let mut all = match &finished.outcome {
        Outcome::Undone { step, error } => vec![format!("undone after {step}: {error}")],
        _ => Vec::new(),
    };
    all.extend(problems.into_iter().map(|p| format!("end state: {p}")));
    finished.outcome = Outcome::NeedsAttention {
        step: end_state::NAME,
        problems: all,
    };
}

/// The unfinished journals, if `mode` may go ahead with them: a new saga needs none,
/// resume and abort need one. Read under the lock: a saga that held it a moment ago may
/// have left one (or finished one) since this process started.
async fn unfinished_for(mode: Mode, store: &dyn ObjectStore) -> Result<Vec<Entry>, RunError> {
    let unfinished = super::journal::unfinished(store).await?;
    match mode {
        Mode::Start { .. } if !unfinished.is_empty() => Err(RunError::Unfinished {
            journals: unfinished
                .iter()
                .map(Entry::describe)
                .collect::<Vec<_>>()
                .join("; "),
        }),
        Mode::Resume | Mode::Abort if unfinished.is_empty() => Err(RunError::NothingUnfinished),
        _ => Ok(unfinished),
    }
}

/// Whether an unfinished journal is one a saga could have left in this state, before
/// `--resume` or `--abort` acts on what it names. Even signed, a journal can be an old
/// copy put back by whoever can write to the store: undoing a swap whose generation has
/// long been committed would delete the server that serves.
fn fits(entry: &Entry, site: &crate::state::SiteState, config: &Config) -> Result<(), String> {
    match entry {
        Entry::Swap(j) => {
            let s = &j.state;
            if s.site != config.site.name {
                return Err(format!("it is site {:?}'s", s.site));
            }
            if s.key_name != config.key_name(s.generation) {
                return Err(format!(
                    "its deploy key {:?} is not generation {}'s",
                    s.key_name, s.generation
                ));
            }
            if let Some(bad) = s
                .uploaded
                .iter()
                .find(|k| !crate::store::layout::is_artifact(k))
            {
                return Err(format!("it names {bad:?} as an artifact it uploaded"));
            }
            let committed = j.done.iter().any(|d| d == steps::names::COMMIT);
            let active = site.active.as_ref().map(|a| a.generation);
            if committed {
                // Past its commit, state.json names it (or a rollback that followed it).
                if site.highest_generation() < Some(s.generation) {
                    return Err(format!(
                        "it committed generation {}, which state.json has never named",
                        s.generation
                    ));
                }
            } else {
                if site.highest_generation() >= Some(s.generation) {
                    return Err(format!(
                        "generation {} is not above every generation state.json names",
                        s.generation
                    ));
                }
                if active != s.old.as_ref().map(|o| o.generation) {
                    return Err(format!(
                        "it replaces generation {:?}, and state.json names {active:?} active",
                        s.old.as_ref().map(|o| o.generation)
                    ));
                }
            }
            Ok(())
        }
        Entry::Rollback(j) => {
            let s = &j.state;
            if s.site != config.site.name {
                return Err(format!("it is site {:?}'s", s.site));
            }
            let committed = j.done.iter().any(|d| d == super::rollback::names::COMMIT);
            let active = site.active.as_ref();
            let expected = if committed { &s.to } else { &s.from };
            if active.map(|a| (a.generation, &a.instance))
                != Some((expected.generation, &expected.instance))
            {
                return Err(format!(
                    "it expects generation {} ({}) active, and state.json names {:?}",
                    expected.generation,
                    expected.instance,
                    active.map(|a| a.generation)
                ));
            }
            Ok(())
        }
    }
}

/// A saga of either kind with the progress output and the crash failpoint wired in.
fn saga<S>(steps: Vec<Box<dyn Step<S>>>, ctx: &Ctx, progress: &Arc<dyn Progress>) -> Saga<S>
where
    S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + Clone,
{
    let mut saga = Saga::new(steps, ctx.store.clone());
    let total = saga.len();
    let p = progress.clone();
    saga.on_step = Box::new(move |name, time| p.step(name, time, total));
    // A failpoint for the crash tests: die like `kill -9` right after this step is
    // journalled. Nothing else reads it.
    if let Ok(crash_after) = std::env::var("BATON_FAILPOINT_CRASH_AFTER") {
        saga.on_saved = Box::new(move |name| {
            if name == crash_after {
                std::process::abort();
            }
        });
    }
    saga
}

/// Milliseconds and a random tail: two sagas of one generation in the same second (one
/// undone, one retried) must not share a journal. start() refuses to overwrite one anyway.
fn journal_id(prefix: &str, generation: u64) -> String {
    format!(
        "{prefix}{generation}-{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        fastrand::u16(..)
    )
}

async fn drive(
    request: &Request,
    ctx: &Arc<Ctx>,
    progress: Arc<dyn Progress>,
) -> Result<Finished, RunError> {
    let mode = request.mode;
    let unfinished = unfinished_for(mode, ctx.store.as_ref()).await?;
    let mut run = Finished {
        outcome: Outcome::Done,
        swap: None,
        rollback: None,
        times: Vec::new(),
        took: Duration::ZERO,
    };
    let started = Instant::now();
    match (mode, request.saga) {
        (Mode::Resume | Mode::Abort, kind) => {
            let entry = unfinished
                .into_iter()
                .next_back()
                .ok_or(RunError::NothingUnfinished)?;
            let site = crate::state::read(ctx.store.as_ref())
                .await?
                .unwrap_or_default();
            if let Err(why) = fits(&entry, &site, &ctx.config) {
                return Err(RunError::StaleJournal {
                    journal: entry.describe(),
                    why,
                });
            }
            progress.begin(&format!(
                "{} {}",
                if mode == Mode::Resume {
                    "resuming"
                } else {
                    "aborting"
                },
                entry.describe()
            ));
            match (entry, kind) {
                (Entry::Swap(j), SagaKind::Swap) => {
                    let swap = saga(steps::all(ctx), ctx, &progress);
                    let (o, j, t) = if mode == Mode::Resume {
                        swap.resume(j).await?
                    } else {
                        let (o, j) = swap.abort(j).await?;
                        (o, j, Vec::new())
                    };
                    run.record_swap(o, j, t);
                }
                (Entry::Rollback(j), SagaKind::Rollback) => {
                    let rollback = saga(super::rollback::all(ctx), ctx, &progress);
                    let (o, j, t) = if mode == Mode::Resume {
                        rollback.resume(j).await?
                    } else {
                        let (o, j) = rollback.abort(j).await?;
                        (o, j, Vec::new())
                    };
                    run.record_rollback(o, j, t);
                }
                (entry, _) => {
                    return Err(RunError::OtherKind {
                        journal: entry.describe(),
                        command: entry.kind(),
                    });
                }
            }
        }
        (Mode::Start { no_handover }, SagaKind::Swap) => {
            let state = steps::start(
                &ctx.config,
                ctx.cloud.as_ref(),
                ctx.store.as_ref(),
                no_handover,
                request.template.as_deref(),
            )
            .await?;
            progress.begin(&format!(
                "swap: generation {} ({}){}",
                state.generation,
                ctx.config.instance_name(state.generation),
                match &state.old {
                    Some(o) => format!(" replaces generation {} ({})", o.generation, o.instance),
                    None => " is the first deploy".to_string(),
                }
            ));
            let swap = saga(steps::all(ctx), ctx, &progress);
            let (o, j, t) = swap.start(&journal_id("", state.generation), state).await?;
            run.record_swap(o, j, t);
        }
        (Mode::Start { .. }, SagaKind::Rollback) => {
            let state =
                super::rollback::start(ctx, "rolled back by the operator".into(), None).await?;
            start_rollback(ctx, &progress, state, &mut run).await?;
        }
    }
    // A swap whose watch failed rolls back at once, still under the lock.
    if let (Outcome::Done, Some(j)) = (&run.outcome, &run.swap)
        && run.rollback.is_none()
        && let Some(failed) = j.state.watch_failed.clone()
    {
        let reason = format!(
            "the watch after the cut-over to generation {} failed: {}",
            j.state.generation, failed.reason
        );
        progress.note(&reason);
        match super::rollback::start(ctx, reason, Some(failed)).await {
            Ok(state) => start_rollback(ctx, &progress, state, &mut run).await?,
            Err(e) => {
                run.outcome = Outcome::NeedsAttention {
                    step: steps::names::WATCH,
                    problems: vec![format!(
                        "the watch failed, but no rollback could start: {e}"
                    )],
                }
            }
        }
    }
    run.took = started.elapsed();
    Ok(run)
}

async fn start_rollback(
    ctx: &Arc<Ctx>,
    progress: &Arc<dyn Progress>,
    state: RollbackState,
    run: &mut Finished,
) -> Result<(), RunError> {
    progress.begin(&format!(
        "rollback: generation {} ({}) takes the address back from generation {}",
        state.to.generation, state.to.instance, state.from.generation
    ));
    let id = journal_id(super::rollback::ID_PREFIX, state.from.generation);
    let rollback = saga(super::rollback::all(ctx), ctx, progress);
    let (o, j, t) = rollback.start(&id, state).await?;
    run.record_rollback(o, j, t);
    Ok(())
}
