//! The saga runner: every step failing once, every action run twice, a crash after every
//! step resumed and aborted, failures after the commit left for attention.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton::store::ObjectStore;
use baton::store::fs::FsStore;
use baton::swap::saga::{Outcome, Phase, Saga, Step, StepError};
use serde::{Deserialize, Serialize};

/// What the steps do to "the cloud": a set of resources.
type World = Arc<Mutex<BTreeSet<String>>>;

#[derive(Default)]
struct Faults {
    run: Option<&'static str>,
    /// Fails after making its resource, as a step that fails half-way does.
    partial: Option<&'static str>,
    undo: Option<&'static str>,
    /// Undos in the order they ran.
    undone: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct State {
    made: Vec<String>,
}

struct Make {
    name: &'static str,
    commits: bool,
    world: World,
    faults: Arc<Mutex<Faults>>,
    twice: bool,
}

#[async_trait]
impl Step<State> for Make {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn run(&self, s: &mut State) -> Result<(), StepError> {
        if self
            .faults
            .lock()
            .unwrap()
            .run
            .take_if(|n| *n == self.name)
            .is_some()
        {
            return Err(StepError::new(format!("{} failed on purpose", self.name)));
        }
        if self
            .faults
            .lock()
            .unwrap()
            .partial
            .take_if(|n| *n == self.name)
            .is_some()
        {
            self.world.lock().unwrap().insert(self.name.to_string());
            return Err(StepError::new(format!("{} failed half-way", self.name)));
        }
        for _ in 0..if self.twice { 2 } else { 1 } {
            // Idempotent: a second run finds the resource there.
            self.world.lock().unwrap().insert(self.name.to_string());
            if !s.made.iter().any(|m| m == self.name) {
                s.made.push(self.name.to_string());
            }
        }
        Ok(())
    }
    async fn undo(&self, s: &mut State) -> Result<(), StepError> {
        if self
            .faults
            .lock()
            .unwrap()
            .undo
            .take_if(|n| *n == self.name)
            .is_some()
        {
            return Err(StepError::new(format!(
                "undo of {} failed on purpose",
                self.name
            )));
        }
        self.world.lock().unwrap().remove(self.name);
        self.faults.lock().unwrap().undone.push(self.name);
        s.made.retain(|m| m != self.name);
        Ok(())
    }
    fn commits(&self) -> bool {
        self.commits
    }
}

const NAMES: [&str; 5] = ["key", "instance", "attach", "commit", "delete-old"];

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    world: World,
    faults: Arc<Mutex<Faults>>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(FsStore::new(dir.path(), "file:///saga").unwrap());
        Rig {
            _dir: dir,
            store,
            world: Default::default(),
            faults: Default::default(),
        }
    }

    /// The saga with its first `n` steps (all, by default).
    fn saga(&self, n: usize, twice: bool) -> Saga<State> {
        let steps: Vec<Box<dyn Step<State>>> = NAMES[..n]
            .iter()
            .map(|name| {
                Box::new(Make {
                    name,
                    commits: *name == "commit",
                    world: self.world.clone(),
                    faults: self.faults.clone(),
                    twice,
                }) as Box<dyn Step<State>>
            })
            .collect();
        Saga::new(steps, self.store.clone())
    }

    fn world(&self) -> Vec<String> {
        self.world.lock().unwrap().iter().cloned().collect()
    }
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_clean_run_does_every_step_and_says_so_in_the_journal() {
    let rig = Rig::new();
    let saga = rig.saga(NAMES.len(), false);
    let (outcome, journal, times) = saga.start("swap-1", State::default()).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(times.len(), NAMES.len());
    assert_eq!(rig.world(), sorted(&NAMES));
    let stored = saga.load("swap-1").await.unwrap().unwrap();
    assert_eq!(stored, journal);
    assert_eq!(stored.phase, Phase::Done);
}

#[tokio::test]
async fn every_action_is_safe_to_run_twice() {
    let rig = Rig::new();
    let (outcome, journal, _) = rig
        .saga(NAMES.len(), true)
        .start("twice", State::default())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(journal.state.made, NAMES);
    assert_eq!(rig.world(), sorted(&NAMES));
}

#[tokio::test]
async fn a_failure_before_the_commit_undoes_everything_in_reverse() {
    for (i, failing) in NAMES.iter().enumerate().take(4) {
        let rig = Rig::new();
        rig.faults.lock().unwrap().run = Some(failing);
        let (outcome, journal, _) = rig
            .saga(NAMES.len(), false)
            .start("f", State::default())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::Undone {
                step: failing,
                error: format!("{failing} failed on purpose")
            },
            "step {i}"
        );
        assert_eq!(outcome.exit_code(), 1);
        assert!(rig.world().is_empty(), "{failing}: left {:?}", rig.world());
        assert_eq!(journal.phase, Phase::Undone);
        assert!(journal.done.is_empty());
        // The failed step first (it may have done part of its work), then the done ones.
        let expected: Vec<&str> = NAMES[..=i].iter().rev().copied().collect();
        assert_eq!(
            rig.faults.lock().unwrap().undone,
            expected,
            "undo order when {failing} fails"
        );
    }
}

#[tokio::test]
async fn a_step_that_fails_part_way_is_undone_too() {
    // The probe's case: prepare uploaded the binary, then failed on the bundle.
    for failing in &NAMES[..4] {
        let rig = Rig::new();
        rig.faults.lock().unwrap().partial = Some(failing);
        let (outcome, journal, _) = rig
            .saga(NAMES.len(), false)
            .start("p", State::default())
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Undone { .. }), "{outcome:?}");
        assert!(rig.world().is_empty(), "{failing}: left {:?}", rig.world());
        assert_eq!(journal.phase, Phase::Undone);
    }
}

#[tokio::test]
async fn an_abort_undoes_the_step_a_crash_cut_short() {
    let rig = Rig::new();
    // One step journalled; the process died inside the second, after its resource existed
    // but before the journal said so.
    let (_, _, _) = rig
        .saga(1, false)
        .start("cut", State::default())
        .await
        .unwrap();
    rig.world.lock().unwrap().insert("instance".into());
    let journal = rig
        .saga(NAMES.len(), false)
        .load("cut")
        .await
        .unwrap()
        .unwrap();
    let (outcome, _) = rig.saga(NAMES.len(), false).abort(journal).await.unwrap();
    assert!(matches!(outcome, Outcome::Undone { .. }), "{outcome:?}");
    assert!(rig.world().is_empty(), "left {:?}", rig.world());
}

#[tokio::test]
async fn a_failure_after_the_commit_is_left_for_attention_not_undone() {
    let rig = Rig::new();
    rig.faults.lock().unwrap().run = Some("delete-old");
    let (outcome, journal, _) = rig
        .saga(NAMES.len(), false)
        .start("after", State::default())
        .await
        .unwrap();
    assert_eq!(outcome.exit_code(), 3);
    assert!(
        matches!(&outcome, Outcome::NeedsAttention { step: "delete-old", problems } if problems[0].contains("failed on purpose"))
    );
    assert_eq!(
        rig.world(),
        sorted(&NAMES[..4]),
        "committed work must stand"
    );
    assert_eq!(journal.phase, Phase::NeedsAttention);
    // It can be resumed once the cause is gone.
    let (outcome, _, _) = rig.saga(NAMES.len(), false).resume(journal).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(rig.world(), sorted(&NAMES));
}

#[tokio::test]
async fn a_failing_undo_is_listed_and_the_other_undos_still_run() {
    let rig = Rig::new();
    rig.faults.lock().unwrap().run = Some("attach");
    rig.faults.lock().unwrap().undo = Some("key");
    let (outcome, _, _) = rig
        .saga(NAMES.len(), false)
        .start("u", State::default())
        .await
        .unwrap();
    match outcome {
        Outcome::NeedsAttention {
            step: "attach",
            problems,
        } => {
            assert!(
                problems.iter().any(|p| p.contains("undo of key")),
                "{problems:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.world(), ["key"], "the instance was still undone");
}

#[tokio::test]
async fn a_commit_whose_undo_cannot_say_it_did_not_commit_halts_the_unwind() {
    // The commit's write failed (its answer lost, say) and its undo finds that it may have
    // landed: undoing the steps before it would tear down what is now live.
    let rig = Rig::new();
    rig.faults.lock().unwrap().run = Some("commit");
    rig.faults.lock().unwrap().undo = Some("commit");
    let saga = rig.saga(NAMES.len(), false);
    let (outcome, journal, _) = saga.start("doubt", State::default()).await.unwrap();
    match &outcome {
        Outcome::NeedsAttention {
            step: "commit",
            problems,
        } => assert!(
            problems.iter().any(|p| p.contains("undo of commit")),
            "{problems:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        rig.faults.lock().unwrap().undone.is_empty(),
        "nothing before the commit may be undone"
    );
    assert_eq!(rig.world(), sorted(&NAMES[..3]));
    assert_eq!(journal.phase, Phase::NeedsAttention);
    assert!(baton::swap::journal::is_unfinished(&journal));
    // --resume finds out and goes on.
    let (outcome, _, _) = saga.resume(journal).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(rig.world(), sorted(&NAMES));
}

#[tokio::test]
async fn a_crash_after_any_step_can_be_resumed_or_aborted() {
    for crashed_after in 0..=NAMES.len() {
        for abort in [false, true] {
            let rig = Rig::new();
            // The process dies after `crashed_after` steps: the journal has them, no more.
            let (_, partial, _) = rig
                .saga(crashed_after, false)
                .start("crash", State::default())
                .await
                .unwrap();
            let journal = rig
                .saga(NAMES.len(), false)
                .load("crash")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(journal.done.len(), crashed_after);
            assert_eq!(journal.state, partial.state);
            let full = rig.saga(NAMES.len(), false);
            if abort {
                let (outcome, _) = full.abort(journal).await.unwrap();
                if crashed_after >= 4 {
                    assert_eq!(
                        outcome.exit_code(),
                        3,
                        "aborting after the commit must refuse"
                    );
                } else {
                    assert!(matches!(outcome, Outcome::Undone { .. }), "{outcome:?}");
                    assert!(
                        rig.world().is_empty(),
                        "after {crashed_after}: {:?}",
                        rig.world()
                    );
                }
            } else {
                let (outcome, j, _) = full.resume(journal).await.unwrap();
                assert_eq!(outcome, Outcome::Done, "after {crashed_after}");
                assert_eq!(j.state.made, NAMES);
                assert_eq!(rig.world(), sorted(&NAMES));
            }
        }
    }
}

#[tokio::test]
async fn a_journal_is_never_overwritten_by_a_new_saga_with_its_id() {
    let rig = Rig::new();
    rig.faults.lock().unwrap().run = Some("attach");
    let (first, journal, _) = rig
        .saga(NAMES.len(), false)
        .start("same", State::default())
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Undone { .. }));
    let err = rig
        .saga(NAMES.len(), false)
        .start("same", State::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let kept = rig
        .saga(NAMES.len(), false)
        .load("same")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept, journal, "the first swap's record is kept as it was");
}
