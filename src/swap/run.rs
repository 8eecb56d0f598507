//! A swap from start to end: the deploy lock held and renewed, the journals checked under
//! it, then the saga started, resumed or aborted. The command only reads its arguments,
//! opens the services and reports; everything a swap decides is here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctx::Ctx;
use super::journal::JournalError;
use super::lock::{DeployLock, Holder, LockError};
use super::saga::{Journal, Outcome, Saga, StepTime};
use super::steps::{self, SwapState};
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
    pub mode: Mode,
    /// How long to wait for a deploy lock that another swap holds.
    pub lock_wait: Duration,
    pub holder: Holder,
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
    /// A step starts (`time` is `None`) or ends.
    fn step(&self, name: &'static str, time: Option<&StepTime>, total: usize);
    /// A detail of the running step (remote output, what is being waited for).
    fn detail(&self, line: &str);
}

/// How a swap ended, for its report.
pub struct Finished {
    pub outcome: Outcome,
    pub journal: Journal<SwapState>,
    pub times: Vec<StepTime>,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "an earlier swap did not finish: {journals}\n  fix: finish it with `baton swap --resume`, \
         or undo it with `baton swap --abort`"
    )]
    Unfinished { journals: String },
    #[error(
        "there is no unfinished swap\n  fix: run `baton status`; a new swap is plain `baton swap`"
    )]
    NothingUnfinished,
    #[error(
        "instance {name} ({id}) already carries generation {generation}'s labels, but no swap is \
         unfinished\n  fix: run `baton gc` to delete baton's instances that state.json does not name"
    )]
    Squatter {
        name: String,
        id: String,
        generation: u64,
    },
    #[error(
        "{key} names generation {}, after which there is none\n  fix: state.json was not written \
         by baton: restore it from a good copy",
        u64::MAX
    )]
    NoNextGeneration { key: &'static str },
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

impl crate::error::Classify for RunError {
    fn is_bad_input(&self) -> bool {
        match self {
            RunError::Unfinished { .. }
            | RunError::NothingUnfinished
            | RunError::Squatter { .. }
            | RunError::NoNextGeneration { .. } => true,
            RunError::Lock(e) => e.is_bad_input(),
            RunError::Journal(e) => e.is_bad_input(),
            RunError::Store(e) => e.is_bad_input(),
            RunError::Cloud(e) => e.is_bad_input(),
            RunError::State(_) => false,
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
    let mut result = drive(request.mode, &ctx, progress.clone()).await;
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
    let problems =
        match super::overview::gather(&ctx.config, ctx.cloud.as_ref(), ctx.store.clone()).await {
            Ok(overview) => overview.end_state_problems(),
            Err(e) => vec![format!("could not read the end state back: {e}")],
        };
    if problems.is_empty() {
        progress.note("end state checked against the cloud: one instance holds the address, nothing unaccounted for");
        return;
    }
    let mut all = match &finished.outcome {
        Outcome::Undone { step, error } => vec![format!("undone after {step}: {error}")],
        _ => Vec::new(),
    };
    all.extend(problems.into_iter().map(|p| format!("end state: {p}")));
    finished.outcome = Outcome::NeedsAttention {
        step: END_STATE,
        problems: all,
    };
}

/// The name the end-state check goes by in an outcome.
pub const END_STATE: &str = "end-state";

/// The unfinished journals, if `mode` may go ahead with them: a new swap needs none,
/// resume and abort need one. Read under the lock: a swap that held it a moment ago may
/// have left one (or finished one) since this process started.
async fn unfinished_for(
    mode: Mode,
    store: &dyn ObjectStore,
) -> Result<Vec<Journal<SwapState>>, RunError> {
    let unfinished = super::journal::unfinished(store).await?;
    match mode {
        Mode::Start { .. } if !unfinished.is_empty() => Err(RunError::Unfinished {
            journals: unfinished
                .iter()
                .map(super::journal::describe)
                .collect::<Vec<_>>()
                .join("; "),
        }),
        Mode::Resume | Mode::Abort if unfinished.is_empty() => Err(RunError::NothingUnfinished),
        _ => Ok(unfinished),
    }
}

async fn drive(
    mode: Mode,
    ctx: &Arc<Ctx>,
    progress: Arc<dyn Progress>,
) -> Result<Finished, RunError> {
    let unfinished = unfinished_for(mode, ctx.store.as_ref()).await?;
    let mut saga = Saga::new(steps::all(ctx), ctx.store.clone());
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
    let started = Instant::now();
    let finished = |outcome, journal, times| Finished {
        outcome,
        journal,
        times,
        took: started.elapsed(),
    };
    let no_handover = match mode {
        Mode::Start { no_handover } => no_handover,
        Mode::Resume | Mode::Abort => {
            let j = unfinished
                .into_iter()
                .next_back()
                .ok_or(RunError::NothingUnfinished)?;
            progress.note(&format!(
                "{} swap {} (generation {}), done so far: {}",
                if mode == Mode::Resume {
                    "resuming"
                } else {
                    "aborting"
                },
                j.id,
                j.state.generation,
                if j.done.is_empty() {
                    "nothing".to_string()
                } else {
                    j.done.join(", ")
                }
            ));
            if mode == Mode::Resume {
                let (o, j, t) = saga.resume(j).await?;
                return Ok(finished(o, j, t));
            }
            let (o, j) = saga.abort(j).await?;
            return Ok(finished(o, j, Vec::new()));
        }
    };
    let state = initial_state(
        &ctx.config,
        ctx.cloud.as_ref(),
        ctx.store.as_ref(),
        no_handover,
    )
    .await?;
    progress.note(&format!(
        "swap: generation {} ({}){}",
        state.generation,
        ctx.config.instance_name(state.generation),
        match &state.old {
            Some(o) => format!(" replaces generation {} ({})", o.generation, o.instance),
            None => " is the first deploy".to_string(),
        }
    ));
    // Milliseconds and a random tail: two swaps of one generation in the same second
    // (one undone, one retried) must not share a journal. start() refuses to overwrite
    // one anyway.
    let id = format!(
        "{}-{}-{:04x}",
        state.generation,
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        fastrand::u16(..)
    );
    let (o, j, t) = saga.start(&id, state).await?;
    Ok(finished(o, j, t))
}

/// Reads what the swap starts from and checks, read-only, that the cloud has what it
/// needs: a wrong name fails here, before anything is created.
async fn initial_state(
    config: &Config,
    cloud: &dyn Cloud,
    store: &dyn ObjectStore,
    no_handover: bool,
) -> Result<SwapState, RunError> {
    let old = crate::state::read(store).await?.and_then(|s| s.active);
    let generation = next_generation(old.as_ref().map(|a| a.generation))?;
    let mut state = SwapState {
        site: config.site.name.clone(),
        generation,
        key_name: config.key_name(generation),
        old,
        no_handover,
        ..Default::default()
    };
    let spec = config.instance_spec(generation);
    cloud.preflight(&spec).await?;
    state.elastic_ip_id = cloud.find_elastic_ip(config.cloud.elastic_ip).await?.id;
    // Generation N's labels must be free: an instance there is a leftover of an earlier
    // swap (its journal lost), which this swap would otherwise adopt.
    let squatters = cloud.list_instances(&state.labels()).await?;
    if let Some(i) = squatters.first() {
        return Err(RunError::Squatter {
            name: i.name.clone(),
            id: i.id.clone(),
            generation,
        });
    }
    Ok(state)
}

/// The generation a swap (or its plan) creates after `active`: none after the last one a
/// u64 holds, which nothing baton wrote could name.
pub fn next_generation(active: Option<u64>) -> Result<u64, RunError> {
    crate::state::next_generation(active).ok_or(RunError::NoNextGeneration {
        key: crate::store::layout::STATE,
    })
}
