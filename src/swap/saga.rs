//! A small typed saga runner: each step pairs an action with its undo, the journal of done
//! steps goes to the object store after every step, and a failure before the point of no
//! return undoes everything in reverse order.
//!
//! Actions and undos must be safe to run twice (a crash can land between doing and
//! recording), and an undo that finds its target gone succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{Created, ObjectStore, StoreError};

/// What a step failing says: a message the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl StepError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        StepError(e.to_string())
    }
}

#[async_trait]
pub trait Step<S>: Send + Sync {
    fn name(&self) -> &'static str;
    /// Does the step; safe to run again after a crash.
    async fn run(&self, state: &mut S) -> Result<(), StepError>;
    /// Reverses it; a target already gone is success. Also runs after the step itself
    /// failed part-way, or was cut short by a crash, so it must be safe on work that was
    /// only partly done, or not at all. A committing step's undo says whether the commit
    /// surely did not happen (Ok) or may have (Err): an Err stops the unwind there.
    async fn undo(&self, _state: &mut S) -> Result<(), StepError> {
        Ok(())
    }
    /// Once this step is done, the saga only goes forward: later failures are recorded
    /// for attention, never undone.
    fn commits(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Running,
    Done,
    Undone,
    NeedsAttention,
}

impl Phase {
    /// As the journal spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Done => "done",
            Phase::Undone => "undone",
            Phase::NeedsAttention => "needs-attention",
        }
    }
}

/// The journal: which steps are done, and the state they built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Journal<S> {
    pub id: String,
    pub phase: Phase,
    pub done: Vec<String>,
    pub state: S,
    /// Why the saga stopped, and what is left for a human.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTime {
    pub step: &'static str,
    pub took: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed, and every done step was undone.
    Undone {
        step: &'static str,
        error: String,
    },
    /// Failed after the point of no return, or an undo failed: `problems` lists what.
    NeedsAttention {
        step: &'static str,
        problems: Vec<String>,
    },
}

impl Outcome {
    /// 0 done, 1 failed and fully undone, 3 failed and something needs attention.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Done => 0,
            Outcome::Undone { .. } => 1,
            Outcome::NeedsAttention { .. } => 3,
        }
    }
}

/// Told the step's name as it starts (`None`) and ends (its time).
pub type ProgressFn = dyn Fn(&'static str, Option<&StepTime>) + Send + Sync;

pub struct Saga<S> {
    steps: Vec<Box<dyn Step<S>>>,
    store: Arc<dyn ObjectStore>,
    /// Called as each step starts and ends (progress output).
    pub on_step: Box<ProgressFn>,
    /// Called after each step's journal entry is saved (crash tests stop the process here).
    pub on_saved: Box<dyn Fn(&'static str) + Send + Sync>,
}

impl<S: Serialize + DeserializeOwned + Send + Sync + Clone> Saga<S> {
    pub fn new(steps: Vec<Box<dyn Step<S>>>, store: Arc<dyn ObjectStore>) -> Self {
        Saga {
            steps,
            store,
            on_step: Box::new(|_, _| {}),
            on_saved: Box::new(|_| {}),
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn journal_key(id: &str) -> String {
        crate::store::layout::journal(id)
    }

    fn encode(&self, j: &Journal<S>) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec_pretty(j).map_err(|e| StoreError::Io {
            op: "encode",
            key: Self::journal_key(&j.id),
            store: self.store.describe(),
            reason: e.to_string(),
        })
    }

    async fn save(&self, j: &Journal<S>) -> Result<(), StoreError> {
        self.store
            .put(&Self::journal_key(&j.id), self.encode(j)?)
            .await
    }

    pub async fn load(&self, id: &str) -> Result<Option<Journal<S>>, StoreError> {
        let key = Self::journal_key(id);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Io {
                    op: "decode",
                    key,
                    store: self.store.describe(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Runs a new saga from the first step.
    pub async fn start(
        &self,
        id: &str,
        state: S,
    ) -> Result<(Outcome, Journal<S>, Vec<StepTime>), StoreError> {
        let mut j = Journal {
            id: id.to_string(),
            phase: Phase::Running,
            done: Vec::new(),
            state,
            problems: Vec::new(),
        };
        // Create-only: an existing journal is another saga's record, never ours to replace.
        let key = Self::journal_key(id);
        if self.store.create_new(&key, self.encode(&j)?).await? == Created::AlreadyExists {
            return Err(StoreError::Io {
                op: "create",
                key,
                store: self.store.describe(),
                reason: "a journal with this id already exists: refusing to overwrite it".into(),
            });
        }
        let (outcome, times) = self.forward(&mut j).await?;
        Ok((outcome, j, times))
    }

    /// Continues a journal from its first step not done (`--resume`).
    pub async fn resume(
        &self,
        mut j: Journal<S>,
    ) -> Result<(Outcome, Journal<S>, Vec<StepTime>), StoreError> {
        let (outcome, times) = self.forward(&mut j).await?;
        Ok((outcome, j, times))
    }

    /// Undoes a journal's done steps in reverse (`--abort`); refuses past the point of no
    /// return, where only going forward is safe.
    pub async fn abort(&self, mut j: Journal<S>) -> Result<(Outcome, Journal<S>), StoreError> {
        if let Some(step) = self.committed(&j) {
            let problems = vec![format!(
                "step {step} committed the swap: it can only be resumed, not aborted"
            )];
            return Ok((Outcome::NeedsAttention { step, problems }, j));
        }
        // The first step not done may have been cut short by a crash: undone as well.
        let interrupted = self
            .steps
            .iter()
            .map(|s| s.name())
            .find(|n| !j.done.iter().any(|d| d == n));
        let outcome = self
            .unwind(
                &mut j,
                "abort",
                "aborted by the operator".into(),
                interrupted,
            )
            .await?;
        Ok((outcome, j))
    }

    fn committed(&self, j: &Journal<S>) -> Option<&'static str> {
        self.steps
            .iter()
            .find(|s| s.commits() && j.done.iter().any(|d| d == s.name()))
            .map(|s| s.name())
    }

    async fn forward(&self, j: &mut Journal<S>) -> Result<(Outcome, Vec<StepTime>), StoreError> {
        let mut times = Vec::new();
        for step in &self.steps {
            if j.done.iter().any(|d| d == step.name()) {
                continue;
            }
            (self.on_step)(step.name(), None);
            let started = Instant::now();
            let result = step.run(&mut j.state).await;
            let time = StepTime {
                step: step.name(),
                took: started.elapsed(),
            };
            (self.on_step)(step.name(), Some(&time));
            times.push(time);
            match result {
                Ok(()) => {
                    j.done.push(step.name().to_string());
                    self.save(j).await?;
                    (self.on_saved)(step.name());
                }
                Err(e) => {
                    if self.committed(j).is_some() {
                        j.phase = Phase::NeedsAttention;
                        j.problems.push(format!("{}: {e}", step.name()));
                        self.save(j).await?;
                        return Ok((
                            Outcome::NeedsAttention {
                                step: step.name(),
                                problems: j.problems.clone(),
                            },
                            times,
                        ));
                    }
                    let failed = step.name();
                    return Ok((self.unwind(j, failed, e.0, Some(failed)).await?, times));
                }
            }
        }
        j.phase = Phase::Done;
        self.save(j).await?;
        Ok((Outcome::Done, times))
    }

    /// Undoes every done step, newest first, and before them `partial`, the step that
    /// failed or was interrupted part-way (it may have left something: an upload, an
    /// instance). An undo that fails is recorded and the others still run: each leftover
    /// is listed for attention.
    async fn unwind(
        &self,
        j: &mut Journal<S>,
        failed: &'static str,
        error: String,
        partial: Option<&'static str>,
    ) -> Result<Outcome, StoreError> {
        j.problems.push(format!("{failed}: {error}"));
        let mut undo_failures = Vec::new();
        for step in self.steps.iter().rev() {
            if !j.done.iter().any(|d| d == step.name()) && partial != Some(step.name()) {
                continue;
            }
            match step.undo(&mut j.state).await {
                Ok(()) => j.done.retain(|d| d != step.name()),
                Err(e) => {
                    undo_failures.push(format!("undo of {}: {e}", step.name()));
                    if step.commits() {
                        // The commit may have landed (its answer lost, say): what came
                        // before it may be live now, so nothing more is undone. `--resume`
                        // re-runs the commit, which finds out.
                        self.save(j).await?;
                        break;
                    }
                }
            }
            self.save(j).await?;
        }
        if undo_failures.is_empty() {
            j.phase = Phase::Undone;
            self.save(j).await?;
            Ok(Outcome::Undone {
                step: failed,
                error,
            })
        } else {
            j.problems.extend(undo_failures);
            j.phase = Phase::NeedsAttention;
            self.save(j).await?;
            Ok(Outcome::NeedsAttention {
                step: failed,
                problems: j.problems.clone(),
            })
        }
    }
}
