//! `baton swap`: the blue/green replacement, as a resumable saga under the deploy lock.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{ConfigArg, ReportArgs, SwapArgs};
use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::Error;
use crate::store::ObjectStore;
use crate::swap::ctx::Ctx;
use crate::swap::lock::{DeployLock, Holder, Lease, LockError};
use crate::swap::saga::{Journal, Outcome, Saga, StepTime};
use crate::swap::steps::{self, SwapState};

/// The lease outlives a crashed swap by at most this (a dead holder on this machine is
/// taken over at once); a live swap renews it every third of it.
const LEASE: Duration = Duration::from_secs(120);

#[derive(Serialize)]
struct Summary {
    outcome: &'static str,
    exit_code: i32,
    journal: String,
    generation: u64,
    instance: Option<String>,
    public_ip: Option<String>,
    replaced: Option<String>,
    steps: Vec<StepReport>,
    total_seconds: f64,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct StepReport {
    step: &'static str,
    seconds: f64,
}

pub async fn run(args: &SwapArgs) -> Result<(), Error> {
    if args.dry_run {
        return super::plan::run(&ReportArgs {
            config: ConfigArg {
                path: args.config.path.clone(),
            },
            json: args.json,
        })
        .await;
    }
    let config = Config::load(&args.config.path)?;
    let deploy_key = crate::generation::deploy_key(&config)?;
    // A resumed or aborted swap may be past needing these; a new one must not start
    // without them (nothing uploaded yet, nothing to undo).
    if !args.resume && !args.abort {
        let problems = crate::swap::preflight::local(&config);
        if !problems.is_empty() {
            return Err(Error::bad_input(
                format!("the swap cannot start:\n  - {}", problems.join("\n  - ")),
                "fix the files named above, then run the swap again (`baton plan` checks them too)",
            ));
        }
    }
    let (cloud, store) = super::operator(&config).await?;
    if !args.resume && !args.abort && !crate::content::is_published(store.as_ref()).await? {
        return Err(Error::bad_input(
            format!(
                "no site is published in {}: the new server would answer 404 and fail its \
                 health check",
                store.describe()
            ),
            "run `baton publish` first",
        ));
    }
    let cloud: Arc<dyn Cloud> = Arc::new(cloud);
    let lock = Arc::new(DeployLock::new(
        store.clone(),
        Arc::new(crate::clock::SystemClock),
        LEASE,
    ));
    let taken = lock
        .acquire(&Holder::this_process(), args.lock_wait)
        .await?;
    if let Some(old) = &taken.took_over {
        eprintln!(
            "took over the deploy lock from {} on {} (pid {}), whose lease had expired or whose process is gone",
            old.holder, old.host, old.pid
        );
    }
    let lease = Arc::new(std::sync::Mutex::new(taken.lease));
    let progress = Arc::new(Progress::new());
    let say = {
        let p = progress.clone();
        Arc::new(move |l: String| p.detail(&l)) as Arc<dyn Fn(String) + Send + Sync>
    };
    let ctx = Arc::new(Ctx::new(
        config.clone(),
        cloud.clone(),
        store.clone(),
        Arc::new(crate::remote::SshConnector),
        deploy_key,
        say,
    ));
    let renewer = tokio::spawn(renew(lock.clone(), lease.clone(), ctx.lock_lost.clone()));

    // Journals are read under the lock: a swap that held it a moment ago may have left
    // one (or finished one) since this process started.
    let result = match unfinished_for(args, store.as_ref()).await {
        Ok(unfinished) => {
            drive(
                args,
                &config,
                cloud.as_ref(),
                &store,
                &ctx,
                &progress,
                unfinished,
            )
            .await
        }
        Err(e) => Err(e),
    };

    renewer.abort();
    if !ctx.lock_lost.load(Ordering::SeqCst) {
        let current = crate::sync::lock(&lease).clone();
        super::release_lock(&lock, &current).await;
    }
    let (outcome, journal, times, started) = result?;
    report(args, &outcome, &journal, &times, started)
}

/// The unfinished journals, if `args` may go ahead with them: a plain swap needs none,
/// `--resume` and `--abort` need one.
async fn unfinished_for(
    args: &SwapArgs,
    store: &dyn ObjectStore,
) -> Result<Vec<Journal<SwapState>>, Error> {
    let unfinished = crate::swap::journal::unfinished(store).await?;
    if !args.resume && !args.abort && !unfinished.is_empty() {
        return Err(Error::bad_input(
            format!(
                "an earlier swap did not finish: {}",
                unfinished
                    .iter()
                    .map(crate::swap::journal::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "finish it with `baton swap --resume`, or undo it with `baton swap --abort`",
        ));
    }
    if (args.resume || args.abort) && unfinished.is_empty() {
        return Err(Error::bad_input(
            "there is no unfinished swap",
            "run `baton status`; a new swap is plain `baton swap`",
        ));
    }

    Ok(unfinished)
}

type Driven = (Outcome, Journal<SwapState>, Vec<StepTime>, Instant);

async fn drive(
    args: &SwapArgs,
    config: &Config,
    cloud: &dyn Cloud,
    store: &Arc<dyn ObjectStore>,
    ctx: &Arc<Ctx>,
    progress: &Arc<Progress>,
    unfinished: Vec<Journal<SwapState>>,
) -> Result<Driven, Error> {
    let mut saga = Saga::new(steps::all(ctx), store.clone());
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
    if args.resume || args.abort {
        let j = unfinished
            .into_iter()
            .next_back()
            .ok_or_else(|| Error::bad_input("there is no unfinished swap", "run `baton status`"))?;
        eprintln!(
            "{} swap {} (generation {}), done so far: {}",
            if args.resume { "resuming" } else { "aborting" },
            j.id,
            j.state.generation,
            if j.done.is_empty() {
                "nothing".to_string()
            } else {
                j.done.join(", ")
            }
        );
        if args.resume {
            let (o, j, t) = saga.resume(j).await?;
            return Ok((o, j, t, started));
        }
        let (o, j) = saga.abort(j).await?;
        return Ok((o, j, Vec::new(), started));
    }
    let state = initial_state(config, cloud, store.as_ref(), args.no_handover).await?;
    eprintln!(
        "swap: generation {} ({}){}",
        state.generation,
        config.instance_name(state.generation),
        match &state.old {
            Some(o) => format!(" replaces generation {} ({})", o.generation, o.instance),
            None => " is the first deploy".to_string(),
        }
    );
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
    Ok((o, j, t, started))
}

/// Reads what the swap starts from and checks, read-only, that the cloud has what it
/// needs: a wrong name fails here, before anything is created.
async fn initial_state(
    config: &Config,
    cloud: &dyn Cloud,
    store: &dyn ObjectStore,
    no_handover: bool,
) -> Result<SwapState, Error> {
    let old = crate::state::read(store)
        .await
        .map_err(crate::swap::overview::OverviewError::from)?
        .and_then(|s| s.active);
    let generation = super::next_generation(old.as_ref().map(|a| a.generation))?;
    let mut state = SwapState {
        site: config.site.name.clone(),
        generation,
        key_name: format!("baton-{}-{generation}", config.site.name),
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
        return Err(Error::bad_input(
            format!(
                "instance {} ({}) already carries generation {}'s labels, but no swap is unfinished",
                i.name, i.id, generation
            ),
            "run `baton gc` to delete baton's instances that state.json does not name",
        ));
    }
    Ok(state)
}

async fn renew(
    lock: Arc<DeployLock>,
    lease: Arc<std::sync::Mutex<Lease>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let current = crate::sync::lock(&lease).clone();
        match lock.renew(&current).await {
            Ok(next) => *crate::sync::lock(&lease) = next,
            Err(e @ LockError::Lost { .. }) => {
                eprintln!("error: {e}");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A store hiccup: the lease still has two thirds of its time.
            Err(e) => eprintln!("warning: could not renew the deploy lock: {e}"),
        }
    }
}

fn report(
    args: &SwapArgs,
    outcome: &Outcome,
    j: &Journal<SwapState>,
    times: &[StepTime],
    started: Instant,
) -> Result<(), Error> {
    let (word, message) = match outcome {
        Outcome::Done => ("done", String::new()),
        Outcome::Undone { step, error } => (
            "undone",
            format!(
                "the swap failed at {step} and was undone; the old server serves as before\n  \
                 why: {error}"
            ),
        ),
        Outcome::NeedsAttention { step, problems } => (
            "needs-attention",
            format!(
                "the swap stopped at {step} and needs attention:\n  {}",
                problems.join("\n  ")
            ),
        ),
    };
    let s = &j.state;
    let summary = Summary {
        outcome: word,
        exit_code: outcome.exit_code(),
        journal: j.id.clone(),
        generation: s.generation,
        instance: s.instance_id.clone(),
        public_ip: s.public_ip.map(|i| i.to_string()),
        replaced: s.old.as_ref().map(|o| o.instance.clone()),
        steps: times
            .iter()
            .map(|t| StepReport {
                step: t.step,
                seconds: t.took.as_secs_f64(),
            })
            .collect(),
        total_seconds: started.elapsed().as_secs_f64(),
        problems: j.problems.clone(),
    };
    super::print(args.json, &summary, || {
        let mut out = match outcome {
            Outcome::Done => format!(
                "generation {} is live on instance {} ({})",
                s.generation,
                s.instance_id.as_deref().unwrap_or("?"),
                s.public_ip.map(|i| i.to_string()).unwrap_or_default()
            ),
            _ => format!("generation {}: {word}", s.generation),
        };
        for t in times {
            out.push_str(&format!(
                "\n  {:<16} {:>8.1}s",
                t.step,
                t.took.as_secs_f64()
            ));
        }
        out.push_str(&format!(
            "\n  {:<16} {:>8.1}s",
            "total", summary.total_seconds
        ));
        out
    });
    match outcome {
        Outcome::Done => Ok(()),
        // What --abort was asked to do, done.
        Outcome::Undone { .. } if args.abort => {
            eprintln!("aborted: every step of the swap was undone");
            Ok(())
        }
        _ => Err(Error::Swap {
            message,
            code: outcome.exit_code(),
        }),
    }
}

/// Step progress on stderr: a spinner on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    index: std::sync::Mutex<usize>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress {
            bar,
            index: std::sync::Mutex::new(0),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn step(&self, name: &'static str, time: Option<&StepTime>, total: usize) {
        match time {
            None => {
                let mut i = crate::sync::lock(&self.index);
                *i += 1;
                let text = format!("[{}/{total}] {name}", *i);
                match &self.bar {
                    Some(b) => b.set_message(text),
                    None => eprintln!("{text}"),
                }
            }
            Some(t) => {
                let i = *crate::sync::lock(&self.index);
                self.line(&format!(
                    "[{i}/{total}] {name} ({:.1}s)",
                    t.took.as_secs_f64()
                ));
            }
        }
    }

    fn detail(&self, text: &str) {
        self.line(&format!("      {text}"));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
