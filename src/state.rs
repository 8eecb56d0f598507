//! `state.json` in the store: which generation is active. The swap's commit writes it;
//! every host reads it before it uploads anything.

use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

use crate::store::layout::STATE as KEY;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteState {
    pub version: u32,
    pub active: Option<Active>,
    /// The generation before the active one, kept detached and passive (its agent is
    /// fenced) so that `baton rollback` needs no VM to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The generation a rollback last gave up. Its number is never reused, and its
    /// instance may be kept for inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
    /// What a committed swap could not delete, for `baton gc` and `baton status`.
    #[serde(default)]
    pub leftovers: Vec<Leftover>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Previous {
    #[serde(flatten)]
    pub active: Active,
    /// RFC 3339: until then `baton rollback` may go back to it; after it `baton gc` (or
    /// the next swap) deletes it.
    pub until: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolledBack {
    pub generation: u64,
    pub instance: String,
    pub at: String,
    pub reason: String,
    /// RFC 3339, while its instance is kept for inspection; `baton gc` deletes it after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_until: Option<String>,
}

impl SiteState {
    /// The highest generation any swap committed: the next one is above it, even when a
    /// rollback made a lower one active again.
    pub fn highest_generation(&self) -> Option<u64> {
        let active = self.active.as_ref().map(|a| a.generation);
        let given_up = self.rolled_back.as_ref().map(|r| r.generation);
        active.max(given_up)
    }

    /// The previous generation, if `baton rollback` may still go back to it at `now`.
    pub fn rollback_target(&self, now: chrono::DateTime<chrono::Utc>) -> Option<&Previous> {
        self.previous.as_ref().filter(|p| !expired(&p.until, now))
    }

    /// The instances this state keeps on purpose: the active, the previous and the one
    /// kept for inspection after a rollback.
    pub fn accounts_for(&self, instance: &str) -> bool {
        self.active.as_ref().is_some_and(|a| a.instance == instance)
            || self
                .previous
                .as_ref()
                .is_some_and(|p| p.active.instance == instance)
            || self
                .rolled_back
                .as_ref()
                .is_some_and(|r| r.kept_until.is_some() && r.instance == instance)
    }

    /// Kept instances whose window is over at `now`: `baton gc` deletes them.
    pub fn expired_kept(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        let previous = self
            .previous
            .as_ref()
            .filter(|p| expired(&p.until, now))
            .map(|p| p.active.instance.clone());
        let inspected = self
            .rolled_back
            .as_ref()
            .filter(|r| r.kept_until.as_deref().is_some_and(|u| expired(u, now)))
            .map(|r| r.instance.clone());
        previous.into_iter().chain(inspected).collect()
    }
}

/// Is the RFC 3339 time `until` past at `now`? One that cannot be read is: keeping a VM
/// forever on a garbled date costs money, deleting a kept one only a rollback option.
pub fn expired(until: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(until).map_or(true, |t| t <= now)
}

/// `now + d` in RFC 3339, as state.json's windows spell it.
pub fn later(now: chrono::DateTime<chrono::Utc>, d: std::time::Duration) -> String {
    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(d)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .to_rfc3339()
}

/// A resource that a swap past its commit failed to delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Leftover {
    Resource {
        kind: LeftoverKind,
        /// The instance's id or the SSH key's name.
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        error: String,
    },
    /// Text only: how baton recorded leftovers before they were typed. Still read, so a
    /// store written then stays valid.
    Note(String),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LeftoverKind {
    Instance,
    SshKey,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::Resource {
                kind,
                name,
                generation,
                error,
            } => {
                let kind = match kind {
                    LeftoverKind::Instance => "instance",
                    LeftoverKind::SshKey => "SSH key",
                };
                write!(f, "{kind} {name}")?;
                if let Some(g) = generation {
                    write!(f, " (generation {g})")?;
                }
                write!(f, ": {error}")
            }
            Leftover::Note(text) => f.write_str(text),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Active {
    pub generation: u64,
    pub instance: String,
    /// The instance's own public IP (the Elastic IP is in baton.toml).
    pub address: String,
    pub since: String,
    /// The host key baton generated for it (OpenSSH public key): the only one it accepts
    /// when it connects for the next swap's hand-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// The generation after `active` (1 when there is none), or `None` at the end of the
/// range: a counter that wrapped would name generation 0 and reuse names and labels.
pub fn next_generation(active: Option<u64>) -> Option<u64> {
    match active {
        None => Some(1),
        Some(g) => g.checked_add(1),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{key} in {store} is not valid: {reason}\n  fix: restore it from the store's history, or let `baton swap` rewrite it"
    )]
    Corrupt {
        key: &'static str,
        store: String,
        reason: String,
    },
}

impl crate::exit::Classify for StateError {
    /// Store credentials, or a state.json nobody signed: a human looks first (exit 2).
    fn is_bad_input(&self) -> bool {
        match self {
            StateError::Store(e) => e.is_bad_input(),
            StateError::Corrupt { .. } => false,
        }
    }
}

/// The store's state, or `None` before the first swap committed.
pub async fn read(store: &dyn ObjectStore) -> Result<Option<SiteState>, StateError> {
    match store.get(KEY).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                key: KEY,
                store: store.describe(),
                reason: e.to_string(),
            }),
    }
}

pub async fn write(store: &dyn ObjectStore, state: &SiteState) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
        key: KEY,
        store: store.describe(),
        reason: e.to_string(),
    })?;
    store.put(KEY, bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(generation: u64, instance: &str) -> Active {
        Active {
            generation,
            instance: instance.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rolled_back_generation_is_never_reused() {
        let site = SiteState {
            active: Some(active(1, "a")),
            rolled_back: Some(RolledBack {
                generation: 2,
                instance: "b".into(),
                at: String::new(),
                reason: String::new(),
                kept_until: None,
            }),
            ..Default::default()
        };
        assert_eq!(site.highest_generation(), Some(2));
        assert!(!site.accounts_for("b"), "deleted, so not kept");
        assert_eq!(SiteState::default().highest_generation(), None);
    }

    #[test]
    fn the_previous_generation_is_a_rollback_target_only_inside_its_window() {
        let now = chrono::Utc::now();
        let mut site = SiteState {
            active: Some(active(2, "b")),
            previous: Some(Previous {
                active: active(1, "a"),
                until: later(now, std::time::Duration::from_secs(60)),
            }),
            ..Default::default()
        };
        assert!(site.rollback_target(now).is_some());
        assert!(site.accounts_for("a") && site.accounts_for("b"));
        assert!(site.expired_kept(now).is_empty());
        let an_hour_on = now + chrono::Duration::hours(1);
        assert!(site.rollback_target(an_hour_on).is_none());
        assert_eq!(site.expired_kept(an_hour_on), ["a"]);
        // A date nobody can read keeps nothing.
        site.previous.as_mut().unwrap().until = "soon".into();
        assert!(site.rollback_target(now).is_none());
    }

    #[test]
    fn leftovers_written_as_text_still_read() {
        let old = r#"{"version": 1, "active": null,
            "leftovers": ["instance 1f2e (generation 3): HTTP 500"]}"#;
        let site: SiteState = serde_json::from_str(old).unwrap();
        assert_eq!(
            site.leftovers,
            [Leftover::Note(
                "instance 1f2e (generation 3): HTTP 500".into()
            )]
        );
    }

    #[test]
    fn a_typed_leftover_round_trips_and_reads_like_the_old_text() {
        let l = Leftover::Resource {
            kind: LeftoverKind::SshKey,
            name: "blog-4".into(),
            generation: None,
            error: "HTTP 500".into(),
        };
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["kind"], "ssh-key");
        assert_eq!(serde_json::from_value::<Leftover>(json).unwrap(), l);
        assert_eq!(l.to_string(), "SSH key blog-4: HTTP 500");
    }
}
