//! `baton swap`: the blue/green replacement, as a resumable saga under the deploy lock
//! (`swap::run`). This file reads the arguments, opens the services and reports.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{ConfigArg, ReportArgs, SwapArgs};
use crate::config::Config;
use crate::error::Error;
use crate::swap::lock::Holder;
use crate::swap::run::{Finished, Mode, Progress, Request, SagaKind, Services};
use crate::swap::saga::{Outcome, StepTime};

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
    /// A front that moves (an AWS Elastic IP): how long after the move the address first
    /// answered as the new generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    front_gap_seconds: Option<f64>,
    /// The rollback that followed a failed watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<super::rollback::Report>,
}

#[derive(Serialize)]
pub(super) struct StepReport {
    step: &'static str,
    seconds: f64,
}

pub(super) fn step_reports(times: &[StepTime]) -> Vec<StepReport> {
    times
        .iter()
        .map(|t| StepReport {
            step: t.step,
            seconds: t.took.as_secs_f64(),
        })
        .collect()
}

/// One line per step with its time, then the total.
pub(super) fn time_lines(times: &[StepTime], total: f64) -> String {
    let mut out = String::new();
    for t in times {
        out.push_str(&format!(
            "\n  {:<16} {:>8.1}s",
            t.step,
            t.took.as_secs_f64()
        ));
    }
    out.push_str(&format!("\n  {:<16} {:>8.1}s", "total", total));
    out
}

/// The word a summary gives an outcome.
pub(super) fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Undone { .. } => "undone",
        Outcome::NeedsAttention { .. } => "needs-attention",
    }
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
    let mode = if args.resume {
        Mode::Resume
    } else if args.abort {
        Mode::Abort
    } else {
        Mode::Start {
            no_handover: args.no_handover,
        }
    };
    let config = Config::load(&args.config.path)?;
    // A resumed or aborted swap may be past needing these; a new one must not start
    // without them (nothing uploaded yet, nothing to undo).
    if let Mode::Start { .. } = mode {
        let problems = crate::swap::preflight::local(&config);
        if !problems.is_empty() {
            return Err(Error::bad_input(
                format!("the swap cannot start:\n  - {}", problems.join("\n  - ")),
                "fix the files named above, then run the swap again (`baton plan` checks them too)",
            ));
        }
    }
    // Checked once the deploy key and the store are known good: a new generation whose
    // servers could not reach an S3 store would serve without backups.
    let no_server_key = match mode {
        Mode::Start { .. } => crate::swap::preflight::server_key_missing(&config),
        _ => None,
    };
    let finished = execute(
        config,
        SagaKind::Swap,
        mode,
        args.lock_wait,
        args.template.clone(),
        |store| async move {
            if let Some(missing) = no_server_key {
                let (message, fix) = missing.split_once("\n  fix: ").unwrap_or((&missing, ""));
                return Err(Error::bad_input(message.to_string(), fix.to_string()));
            }
            if let Mode::Start { .. } = mode
                && !crate::content::is_published(store.as_ref()).await?
            {
                return Err(Error::bad_input(
                    format!(
                        "no site is published in {}: the new server would answer 404 and fail its \
                     health check",
                        store.describe()
                    ),
                    "run `baton publish` first",
                ));
            }
            Ok(())
        },
    )
    .await?;
    report(args, &finished)
}

/// Opens the cloud and the store for `config`, lets `check` look at the store first, and
/// runs the saga under the deploy lock with step lines on stderr.
pub(super) async fn execute<F>(
    config: Config,
    saga: SagaKind,
    mode: Mode,
    lock_wait: Duration,
    template: Option<String>,
    check: impl FnOnce(Arc<dyn crate::store::ObjectStore>) -> F,
) -> Result<Finished, Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let deploy_key = crate::generation::deploy_key(&config)?;
    let (cloud, store) = super::operator(&config).await?;
    check(store.clone()).await?;
    let progress = Arc::new(StepLines::new());
    let request = Request {
        saga,
        mode,
        lock_wait,
        holder: Holder::this_process(),
        template,
    };
    let services = Services {
        config,
        cloud,
        store,
        connector: Arc::new(crate::remote::SshConnector),
        clock: Arc::new(crate::clock::SystemClock),
        deploy_key,
    };
    let finished = crate::swap::run::run(request, services, progress.clone()).await?;
    drop(progress);
    Ok(finished)
}

fn report(args: &SwapArgs, finished: &Finished) -> Result<(), Error> {
    let outcome = &finished.outcome;
    let Some(j) = &finished.swap else {
        return Err(Error::bad_input(
            "the run had no swap to report",
            "run `baton status`",
        ));
    };
    let rollback = finished.rollback.as_ref().map(super::rollback::report_of);
    let (word, code, message) = match (outcome, &rollback) {
        (Outcome::Done, None) => ("done", 0, String::new()),
        (Outcome::Done, Some(r)) => (
            "rolled-back",
            1,
            format!(
                "generation {} failed the watch and was rolled back: generation {} serves \
                 again{}",
                r.from_generation,
                r.to_generation,
                r.explain()
            ),
        ),
        (Outcome::Undone { step, error }, Some(r)) => (
            "needs-attention",
            3,
            format!(
                "generation {} failed the watch, and its rollback failed at {step} and was \
                 undone: generation {} still holds the address\n  why: {error}{}\n  fix: \
                 `baton rollback` tries again while generation {} is kept",
                r.from_generation,
                r.from_generation,
                r.explain(),
                r.to_generation
            ),
        ),
        (Outcome::Undone { step, error }, None) => (
            "undone",
            1,
            format!(
                "the swap failed at {step} and was undone; the old server serves as before\n  \
                 why: {error}"
            ),
        ),
        (Outcome::NeedsAttention { step, problems }, _) => (
            "needs-attention",
            3,
            format!(
                "the {} stopped at {step} and needs attention:\n  {}",
                if rollback.is_some() {
                    "rollback after the watch"
                } else {
                    "swap"
                },
                problems.join("\n  ")
            ),
        ),
    };
    let s = &j.state;
    let mut problems = j.problems.clone();
    if let Some(r) = &finished.rollback {
        problems.extend(r.problems.iter().cloned());
    }
    let summary = Summary {
        outcome: word,
        exit_code: code,
        journal: j.id.clone(),
        generation: s.generation,
        instance: s.instance_id.clone(),
        public_ip: s.public_ip.map(|i| i.to_string()),
        replaced: s.old.as_ref().map(|o| o.instance.clone()),
        steps: step_reports(&finished.times),
        total_seconds: finished.took.as_secs_f64(),
        problems,
        front_gap_seconds: s.front_gap_ms.map(|ms| ms as f64 / 1000.0),
        rollback,
    };
    super::print(args.json, &summary, || {
        let head = match word {
            "done" => format!(
                "generation {} is live on instance {} ({})",
                s.generation,
                s.instance_id.as_deref().unwrap_or("?"),
                s.public_ip.map(|i| i.to_string()).unwrap_or_default()
            ),
            _ => format!("generation {}: {word}", s.generation),
        };
        head + &time_lines(&finished.times, summary.total_seconds)
    });
    match outcome {
        Outcome::Done if code == 0 => Ok(()),
        // What --abort was asked to do, done.
        Outcome::Undone { .. } if args.abort => {
            eprintln!("aborted: every step of the swap was undone");
            Ok(())
        }
        _ => Err(Error::Swap { message, code }),
    }
}

/// Step progress on stderr: a spinner on a terminal, plain lines otherwise.
pub(super) struct StepLines {
    bar: Option<indicatif::ProgressBar>,
    index: std::sync::Mutex<usize>,
}

impl StepLines {
    pub(super) fn new() -> StepLines {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        StepLines {
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
}

impl Progress for StepLines {
    fn note(&self, line: &str) {
        self.line(line);
    }

    fn begin(&self, line: &str) {
        *crate::sync::lock(&self.index) = 0;
        self.line(line);
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

impl Drop for StepLines {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
