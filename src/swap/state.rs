//! What the journal keeps of a swap: what a later step or a `--resume` needs. Its own
//! file, below both the steps and the context they share, which read and fill it; secrets
//! never go in (the user-data lives in memory only).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::state::Active;

/// What the journal keeps of a swap.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SwapState {
    pub site: String,
    pub generation: u64,
    /// The provisioning key's name in the cloud.
    pub key_name: String,
    /// The front's id, as the cloud names it: an Exoscale Elastic IP's id, an AWS
    /// allocation id or target group ARN (a journal of an older baton calls it
    /// `elastic_ip_id`).
    #[serde(alias = "elastic_ip_id")]
    pub front_id: String,
    /// The active generation when the swap started; `None` on the first deploy.
    pub old: Option<Active>,
    /// Skip the hand-over (the old server cannot give one).
    pub no_handover: bool,
    /// The template the new instance boots, chosen when the swap started (a journal of an
    /// older baton has none: the configured one).
    #[serde(default)]
    pub template: Option<String>,
    pub instance_id: Option<String>,
    pub public_ip: Option<IpAddr>,
    /// The new server's host key (OpenSSH public key): the only one accepted.
    pub host_key: Option<String>,
    pub binary_sha256: Option<String>,
    pub bundle_sha256: Option<String>,
    /// Its size, which `host up` downloads no more than (a journal of an older baton has
    /// none: the server's own limit).
    #[serde(default)]
    pub bundle_size: Option<u64>,
    /// Artifacts this swap put into the store (not those already there).
    pub uploaded: Vec<String>,
    /// The previous generation state.json kept when the swap started: two generations
    /// back once it commits, so `retire-kept` deletes it before the new server boots
    /// (and sets this to `None`; a journal of an older baton leaves it to the clean-up).
    #[serde(default)]
    pub displaced: Option<Active>,
    /// On a front that moves (an AWS Elastic IP): how long after the move the address
    /// first answered as the new generation. Requests in between may have failed.
    #[serde(default)]
    pub front_gap_ms: Option<u64>,
    /// Set by the watch when the new generation failed it: a rollback follows.
    #[serde(default)]
    pub watch_failed: Option<WatchFailure>,
}

impl SwapState {
    pub fn labels(&self) -> BTreeMap<String, String> {
        crate::cloud::generation_labels(&self.site, self.generation)
    }
}

/// Why the watch gave up on the new generation, for the rollback and its summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WatchFailure {
    pub reason: String,
    /// What the last failed check got back.
    pub last_answer: String,
    /// The end of `bundle.logs` on the new server, when it could be read (by the
    /// rollback's hand-back, once the previous generation serves again).
    pub logs: Vec<String>,
    /// Unix milliseconds of the first failed check of the run that rolled back: the
    /// rollback's figures count from it.
    pub first_failed_ms: i64,
}
