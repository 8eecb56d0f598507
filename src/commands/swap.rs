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
use crate::swap::run::{Finished, Mode, Progress, Request, Services};
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
    let deploy_key = crate::generation::deploy_key(&config)?;
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
    let (cloud, store) = super::operator(&config).await?;
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
    let progress = Arc::new(StepLines::new());
    let request = Request {
        mode,
        lock_wait: args.lock_wait,
        holder: Holder::this_process(),
    };
    let services = Services {
        config,
        cloud: Arc::new(cloud),
        store,
        connector: Arc::new(crate::remote::SshConnector),
        clock: Arc::new(crate::clock::SystemClock),
        deploy_key,
    };
    let finished = crate::swap::run::run(request, services, progress.clone()).await?;
    drop(progress);
    report(args, &finished)
}

fn report(args: &SwapArgs, finished: &Finished) -> Result<(), Error> {
    let (outcome, j, times) = (&finished.outcome, &finished.journal, &finished.times);
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
        total_seconds: finished.took.as_secs_f64(),
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
struct StepLines {
    bar: Option<indicatif::ProgressBar>,
    index: std::sync::Mutex<usize>,
}

impl StepLines {
    fn new() -> StepLines {
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
