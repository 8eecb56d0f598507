//! What the saga commands (swap, rollback) and the bake show while they run and report
//! when they end: step lines on stderr (a spinner on a terminal, plain lines otherwise),
//! the steps' times, and a rollback's report, which a swap whose watch rolled back shows
//! too. One file for the three, so no command leans on another.

use std::io::IsTerminal;
use std::time::Duration;

use serde::Serialize;

use crate::swap::rollback::RollbackState;
use crate::swap::run::Progress;
use crate::swap::saga::{Journal, Outcome, StepTime};

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

/// What a rollback did, for both reports.
#[derive(Debug, Serialize)]
pub(super) struct RollbackReport {
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

pub(super) fn rollback_report(j: &Journal<RollbackState>) -> RollbackReport {
    let s = &j.state;
    let watch = s.watch.as_ref();
    RollbackReport {
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

impl RollbackReport {
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
