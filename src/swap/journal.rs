//! The swap journals in the store: listing them, the one rule that says which are
//! unfinished, the artifacts a journal needs, and how long finished ones are kept.
//!
//! `swap`, `status` and `gc` all ask here, so they can never disagree on whether a swap
//! is waiting to be resumed (they once decided it three ways).

use std::collections::BTreeSet;

use super::rollback::{self, RollbackState};
use super::saga::{Journal, Phase};
use super::state::SwapState;
use super::steps::names;
use crate::store::layout;
use crate::store::{ObjectStore, StoreError};

/// Finished journals `gc` keeps besides the active generation's: enough to read what the
/// last few swaps did, few enough that their artifacts do not pile up.
pub const KEEP_FINISHED: usize = 10;

/// A saga's journal of either kind: swaps and rollbacks share the store's `journal/`, the
/// unfinished rule and the retention, so that each blocks the other.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Swap(Journal<SwapState>),
    Rollback(Journal<RollbackState>),
}

impl Entry {
    /// Parses a journal; its id says which kind it is.
    pub fn parse(id: &str, bytes: &[u8]) -> Result<Entry, String> {
        if id.starts_with(rollback::ID_PREFIX) {
            serde_json::from_slice(bytes).map(Entry::Rollback)
        } else {
            serde_json::from_slice(bytes).map(Entry::Swap)
        }
        .map_err(|e| e.to_string())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Swap(_) => "swap",
            Entry::Rollback(_) => "rollback",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Entry::Swap(j) => &j.id,
            Entry::Rollback(j) => &j.id,
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            Entry::Swap(j) => j.phase,
            Entry::Rollback(j) => j.phase,
        }
    }

    /// The generation it made (a swap) or gave up (a rollback): journals sort by it.
    pub fn generation(&self) -> u64 {
        match self {
            Entry::Swap(j) => j.state.generation,
            Entry::Rollback(j) => j.state.from.generation,
        }
    }

    pub fn is_unfinished(&self) -> bool {
        match self {
            Entry::Swap(j) => is_unfinished(j),
            Entry::Rollback(j) => is_unfinished(j),
        }
    }

    /// `swap ID (phase P, done: A, B)`.
    pub fn describe(&self) -> String {
        match self {
            Entry::Swap(j) => format!("swap {}", describe(j)),
            Entry::Rollback(j) => format!("rollback {}", describe(j)),
        }
    }
}

/// One journal object, read and parsed, or why it could not be.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub journal: Result<Entry, String>,
}

impl Listed {
    /// Unfinished, or unreadable (which nobody may take for finished: it could be a swap
    /// in the middle of its work).
    pub fn blocks_others(&self) -> bool {
        self.journal.as_ref().map_or(true, Entry::is_unfinished)
    }

    /// The journal's kind, id, phase and done steps, for messages.
    pub fn describe(&self) -> String {
        match &self.journal {
            Ok(j) => j.describe(),
            Err(why) => format!("{} (unreadable: {why})", self.key),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the swap journal {key} cannot be read: {why}\n  fix: look at it in the store; delete \
         it only if no swap is running"
    )]
    Unreadable { key: String, why: String },
}

impl crate::exit::Classify for JournalError {
    fn is_bad_input(&self) -> bool {
        match self {
            JournalError::Store(e) => e.is_bad_input(),
            JournalError::Unreadable { .. } => true,
        }
    }
}

/// `ID (phase P, done: A, B)`.
pub fn describe<S>(j: &Journal<S>) -> String {
    format!(
        "{} (phase {}, done: {})",
        j.id,
        j.phase.as_str(),
        if j.done.is_empty() {
            "nothing".to_string()
        } else {
            j.done.join(", ")
        }
    )
}

/// A saga that neither finished nor was undone. One that failed only after its commit is
/// finished (what it left is in state.json for `gc`); one that was interrupted after the
/// commit is not: `--resume` completes it.
pub fn is_unfinished<S>(j: &Journal<S>) -> bool {
    let committed = j
        .done
        .iter()
        .any(|d| d == names::COMMIT || d == rollback::names::COMMIT);
    j.phase == Phase::Running || (j.phase == Phase::NeedsAttention && !committed)
}

/// Every journal in the store, in the order the swaps ran (by generation, then by id,
/// which starts with the time).
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<Listed>, StoreError> {
    let mut out = Vec::new();
    for o in store.list(layout::JOURNALS).await? {
        let Some(id) = layout::journal_id(&o.key).map(str::to_string) else {
            continue;
        };
        let journal = match store.get(&o.key).await {
            Ok(Some(bytes)) => Entry::parse(&id, &bytes),
            Ok(None) => continue, // deleted since the listing
            // Listed as unreadable, so that it blocks swaps until a human looks.
            Err(StoreError::NotSealed { why, .. }) => Err(format!(
                "{why} (`baton adopt` signs a journal an older baton wrote)"
            )),
            Err(e) => return Err(e),
        };
        out.push(Listed {
            key: o.key,
            journal,
        });
    }
    out.sort_by_key(order);
    Ok(out)
}

fn order(l: &Listed) -> (u64, String) {
    match &l.journal {
        // A rollback after the swap of the generation it gives up: digits sort first.
        Ok(j) => (j.generation(), j.id().to_string()),
        // Unreadable ones last: they are listed, never pruned.
        Err(_) => (u64::MAX, l.key.clone()),
    }
}

/// The unfinished journals, oldest first; an unreadable journal is an error, since it
/// may be one.
pub async fn unfinished(store: &dyn ObjectStore) -> Result<Vec<Entry>, JournalError> {
    let mut out = Vec::new();
    for l in list(store).await? {
        match l.journal {
            Ok(j) if j.is_unfinished() => out.push(j),
            Ok(_) => {}
            Err(why) => return Err(JournalError::Unreadable { key: l.key, why }),
        }
    }
    Ok(out)
}

/// The artifact keys a journal's swap uploaded or used (its agent binary and bundle).
pub fn artifacts(j: &Journal<SwapState>) -> impl Iterator<Item = String> + '_ {
    [&j.state.binary_sha256, &j.state.bundle_sha256]
        .into_iter()
        .flatten()
        .map(|sha| layout::artifact(sha))
        .chain(j.state.uploaded.iter().cloned())
}

/// What `gc` may delete of the journals and of the artifacts they name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Finished journals beyond [`KEEP_FINISHED`], not the active generation's.
    pub expired: Vec<String>,
    /// Artifacts that an unfinished journal, the active generation's or one of the kept
    /// `generations` needs: everything else under `artifacts/` is garbage.
    pub needed_artifacts: BTreeSet<String>,
}

/// Decides [`Retention`]. `keep_generations` are the generations whose VMs exist and may
/// boot again or be rolled back to (the active one, a kept previous one).
pub fn retention(listed: &[Listed], keep_generations: &[u64]) -> Retention {
    let mut r = Retention::default();
    let finished: Vec<&Listed> = listed.iter().filter(|l| !l.blocks_others()).collect();
    let recent = finished.len().saturating_sub(KEEP_FINISHED);
    for (i, l) in finished.iter().enumerate() {
        let Ok(entry) = &l.journal else { continue };
        let Entry::Swap(j) = entry else {
            // A rollback names no artifacts: it only expires.
            if i < recent {
                r.expired.push(l.key.clone());
            }
            continue;
        };
        let of_kept_generation =
            keep_generations.contains(&j.state.generation) && j.phase == Phase::Done;
        if i < recent && !of_kept_generation {
            r.expired.push(l.key.clone());
        }
        if of_kept_generation {
            r.needed_artifacts.extend(artifacts(j));
        }
    }
    for l in listed.iter().filter(|l| l.blocks_others()) {
        if let Ok(Entry::Swap(j)) = &l.journal {
            r.needed_artifacts.extend(artifacts(j));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(generation: u64, phase: Phase, done: &[&str], sha: &str) -> Listed {
        let id = format!("{generation}-20261202T000000.000Z-0000");
        Listed {
            key: layout::journal(&id),
            journal: Ok(Entry::Swap(Journal {
                id,
                phase,
                done: done.iter().map(|s| s.to_string()).collect(),
                state: SwapState {
                    generation,
                    binary_sha256: Some(format!("bin{sha}")),
                    bundle_sha256: Some(format!("zip{sha}")),
                    ..Default::default()
                },
                problems: vec![],
            })),
        }
    }

    #[test]
    fn the_unfinished_rule() {
        let j = |phase, done: &[&str]| match journal(1, phase, done, "").journal.unwrap() {
            Entry::Swap(j) => j,
            Entry::Rollback(_) => unreachable!(),
        };
        assert!(is_unfinished(&j(Phase::Running, &[])));
        assert!(is_unfinished(&j(Phase::Running, &[names::COMMIT])));
        assert!(is_unfinished(&j(Phase::NeedsAttention, &[names::CREATE])));
        assert!(!is_unfinished(&j(Phase::NeedsAttention, &[names::COMMIT])));
        assert!(!is_unfinished(&j(Phase::Done, &[])));
        assert!(!is_unfinished(&j(Phase::Undone, &[])));
    }

    #[test]
    fn a_rollback_journal_is_told_by_its_id_and_blocks_like_a_swap() {
        let j = Journal {
            id: "rollback-2-20261204T000000.000Z-0000".to_string(),
            phase: Phase::Running,
            done: vec![rollback::names::COMMIT.to_string()],
            state: RollbackState::default(),
            problems: vec![],
        };
        let bytes = serde_json::to_vec(&j).unwrap();
        let entry = Entry::parse(&j.id, &bytes).unwrap();
        assert_eq!(entry.kind(), "rollback");
        assert!(entry.is_unfinished());
        let finished = Journal {
            phase: Phase::NeedsAttention,
            ..j
        };
        assert!(
            !is_unfinished(&finished),
            "failed after its commit: finished"
        );
        // A swap's journal under a rollback's id does not parse as a rollback.
        let swap = serde_json::to_vec(&Journal {
            id: "rollback-x".to_string(),
            phase: Phase::Done,
            done: vec![],
            state: SwapState::default(),
            problems: vec![],
        })
        .unwrap();
        assert!(Entry::parse("rollback-x", &swap).is_err());
    }

    #[test]
    fn only_the_artifacts_that_are_still_needed_are_kept() {
        let listed = vec![
            journal(1, Phase::Done, &[], "1"),
            journal(2, Phase::Undone, &[], "2"),
            journal(3, Phase::Done, &[], "3"),
        ];
        let r = retention(&listed, &[3]);
        assert!(r.expired.is_empty());
        let kept: Vec<&str> = r.needed_artifacts.iter().map(String::as_str).collect();
        assert_eq!(kept, ["artifacts/bin3", "artifacts/zip3"]);
    }

    #[test]
    fn finished_journals_beyond_the_retention_expire_but_never_the_active_ones() {
        let mut listed: Vec<Listed> = (1..=15)
            .map(|g| journal(g, Phase::Done, &[], &g.to_string()))
            .collect();
        listed.push(journal(16, Phase::Running, &[], "16"));
        listed.push(Listed {
            key: "journal/garbled.json".into(),
            journal: Err("not JSON".into()),
        });
        let r = retention(&listed, &[2]);
        let expired: Vec<u64> = r
            .expired
            .iter()
            .map(|k| k[8..].split('-').next().unwrap().parse().unwrap())
            .collect();
        // 15 finished, 10 kept: 1..=5 expire, but 2 is a kept generation.
        assert_eq!(expired, [1, 3, 4, 5]);
        assert!(
            r.needed_artifacts.contains("artifacts/bin16"),
            "the running swap's"
        );
        assert!(
            r.needed_artifacts.contains("artifacts/zip2"),
            "the kept generation's"
        );
        assert!(!r.needed_artifacts.contains("artifacts/bin15"));
    }
}
