//! `baton swap`: the blue/green replacement, as a resumable saga under the deploy lock
//! (`swap::run`). This file reads the arguments, opens the services and reports.

use serde::Serialize;

use super::progress::{RollbackReport, StepReport, rollback_report, step_reports, time_lines};
use crate::cli::{ConfigArg, ReportArgs, SwapArgs};
use crate::config::Config;
use crate::error::Error;
use crate::swap::run::{Finished, Mode, SagaKind};
use crate::swap::saga::Outcome;

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
    rollback: Option<RollbackReport>,
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
    let finished = super::execute(
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

fn report(args: &SwapArgs, finished: &Finished) -> Result<(), Error> {
    let outcome = &finished.outcome;
    let Some(j) = &finished.swap else {
        return Err(Error::bad_input(
            "the run had no swap to report",
            "run `baton status`",
        ));
    };
    let rollback = finished.rollback.as_ref().map(rollback_report);
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
