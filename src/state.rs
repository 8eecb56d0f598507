//! `state.json` in the store: which generation is active. The swap's commit writes it;
//! every host reads it before it uploads anything.

use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

use crate::store::layout::STATE as KEY;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteState {
    pub version: u32,
    pub active: Option<Active>,
    #[serde(default)]
    pub leftovers: Vec<serde_json::Value>,
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
