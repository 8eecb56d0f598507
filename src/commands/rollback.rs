//! `baton rollback`: the kept previous generation back in front (`swap::rollback`), under
//! the deploy lock, resumable and undoable like a swap. This file reads the arguments and
//! reports; the swap's report shows the same [`Report`] when its watch rolled back.

use serde::Serialize;

use crate::cli::RollbackArgs;
use crate::config::Config;
use crate::error::Error;
use crate::swap::rollback::RollbackState;
use crate::swap::run::{Mode, SagaKind};
use crate::swap::saga::{Journal, Outcome};

/// What a rollback did, for both reports.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub journal: String,
    pub outcome: &'static str,
    pub from_generation: u64,
    pub to_generation: u64,
    /// The instance that serves again.
    pub instance: String,
    pub reason: String,
    /// The watch's last failed answer and the failed server's `bundle.logs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_answer: Option<String>,
    pub logs: Vec<String>,
    /// From the watch's first failed check to the address answering as `to_generation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure_to_serving_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hand_back_problem: Option<String>,
    /// The failed generation's instance, when it is kept for inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_instance: Option<String>,
}

pub(super) fn report_of(j: &Journal<RollbackState>) -> Report {
    let s = &j.state;
    let watch = s.watch.as_ref();
    Report {
        journal: j.id.clone(),
        outcome: j.phase.as_str(),
        from_generation: s.from.generation,
        to_generation: s.to.generation,
        instance: s.to.instance.clone(),
        reason: s.reason.clone(),
        last_answer: watch.map(|w| w.last_answer.clone()),
        logs: watch.map(|w| w.logs.clone()).unwrap_or_default(),
        first_failure_to_serving_seconds: watch
            .zip(s.serving_again_ms)
            .map(|(w, at)| (at - w.first_failed_ms) as f64 / 1000.0),
        hand_back_problem: s.hand_back_problem.clone(),
        kept_instance: s.keep_failed.then(|| s.from.instance.clone()),
    }
}

impl Report {
    /// Why, the last answer, the logs and what became of the data and the failed VM, as
    /// indented lines for a message.
    pub fn explain(&self) -> String {
        let mut out = format!("\n  why: {}", self.reason);
        if let Some(a) = &self.last_answer {
            out.push_str(&format!("\n  last failing answer: {a}"));
        }
        if !self.logs.is_empty() {
            out.push_str("\n  the stack on the failed server says:");
            for l in &self.logs {
                out.push_str(&format!("\n    {l}"));
            }
        }
        if let Some(p) = &self.hand_back_problem {
            out.push_str(&format!("\n  {p}"));
        }
        if let Some(i) = &self.kept_instance {
            out.push_str(&format!(
                "\n  instance {i} (generation {}) is kept for inspection; `baton gc` deletes it once its time is up",
                self.from_generation
            ));
        }
        out
    }
}

#[derive(Serialize)]
struct Summary {
    #[serde(flatten)]
    rollback: Report,
    exit_code: i32,
    steps: Vec<super::swap::StepReport>,
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
    let finished = super::swap::execute(
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
        rollback: report_of(j),
        exit_code: outcome.exit_code(),
        steps: super::swap::step_reports(&finished.times),
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
                super::swap::outcome_word(outcome)
            ),
        };
        head + &super::swap::time_lines(&finished.times, summary.total_seconds)
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
