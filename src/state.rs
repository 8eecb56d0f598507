//! `state.json` in the store: which generation is active. The swap's commit writes it;
//! every host reads it before it uploads anything.

use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

use crate::store::layout::STATE as KEY;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteState {
    pub version: u32,
    pub active: Option<Active>,
    /// What a committed swap could not delete, for `baton gc` and `baton status`.
    #[serde(default)]
    pub leftovers: Vec<Leftover>,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
