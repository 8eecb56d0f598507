//! `baton rollback`: the kept previous generation back in front (`swap::rollback`), under
//! the deploy lock, resumable and undoable like a swap. This file reads the arguments and
//! reports; the swap's report shows the same report (`progress::RollbackReport`) when its watch rolled back.

use serde::Serialize;

use super::progress::{
    RollbackReport, StepReport, outcome_word, rollback_report, step_reports, time_lines,
};
use crate::cli::RollbackArgs;
use crate::config::Config;
use crate::error::Error;
use crate::swap::run::{Mode, SagaKind};
use crate::swap::saga::Outcome;

#[derive(Serialize)]
struct Summary {
    #[serde(flatten)]
    rollback: RollbackReport,
    exit_code: i32,
    steps: Vec<StepReport>,
    total_seconds: f64,
    problems: Vec<String>,
}

pub async fn run(args: &RollbackArgs) -> Result<(), Error> {
    let mode = if args.resume {
        Mode::Resume
    } else if args.abort {
        Mode::Abort
    } else {
        Mode::Start { no_handover: false }
    };
    let config = Config::load(&args.config.path)?;
    let finished = super::execute(
        config,
        SagaKind::Rollback,
        mode,
        args.lock_wait,
        None,
        |_| async { Ok(()) },
    )
    .await?;
    let Some(j) = &finished.rollback else {
        return Err(Error::bad_input(
            "the run had no rollback to report",
            "run `baton status`",
        ));
    };
    let outcome = &finished.outcome;
    let summary = Summary {
        rollback: rollback_report(j),
        exit_code: outcome.exit_code(),
        steps: step_reports(&finished.times),
        total_seconds: finished.took.as_secs_f64(),
        problems: j.problems.clone(),
    };
    let r = &summary.rollback;
    super::print(args.json, &summary, || {
        let head = match outcome {
            Outcome::Done => format!(
                "generation {} is live again on instance {} (generation {} rolled back)",
                r.to_generation, r.instance, r.from_generation
            ),
            _ => format!(
                "rollback to generation {}: {}",
                r.to_generation,
                outcome_word(outcome)
            ),
        };
        head + &time_lines(&finished.times, summary.total_seconds)
    });
    let message = match outcome {
        Outcome::Done => {
            if let Some(p) = &r.hand_back_problem {
                eprintln!("warning: {p}");
            }
            return Ok(());
        }
        Outcome::Undone { .. } if args.abort => {
            eprintln!("aborted: every step of the rollback was undone");
            return Ok(());
        }
        Outcome::Undone { step, error } => format!(
            "the rollback failed at {step} and was undone: generation {} still serves\n  why: {error}",
            r.from_generation
        ),
        Outcome::NeedsAttention { step, problems } => format!(
            "the rollback stopped at {step} and needs attention:\n  {}",
            problems.join("\n  ")
        ),
    };
    Err(Error::Swap {
        message,
        code: outcome.exit_code(),
    })
}
