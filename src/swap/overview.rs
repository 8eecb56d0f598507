//! What the cloud and the store say about a site right now: for `baton status` and
//! `baton plan`. Read-only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::lock::{DeployLock, Lease};
use crate::cloud::front::Front;
use crate::cloud::{Cloud, CloudError, Instance, LABEL_GENERATION, LABEL_SITE};
use crate::config::Config;
use crate::state::{self, SiteState, StateError};
use crate::store::layout::{MANIFESTS, manifest_time};
use crate::store::{ObjectStore, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub site: String,
    pub state: Option<SiteState>,
    /// Instances labelled for this site.
    pub instances: Vec<Instance>,
    /// The front, as its provider describes it.
    pub front: Front,
    /// Instances the front sends traffic to.
    pub address_holders: Vec<String>,
    pub last_backup: Option<String>,
    pub last_backup_age_seconds: Option<i64>,
    pub lock: Option<Lease>,
    /// Journals of swaps that did not finish.
    pub unfinished: Vec<String>,
    /// The generation whose watch is running: committed, not yet past its watch.
    pub watching: Option<u64>,
    /// baton's instances that state.json does not account for (active, kept previous,
    /// kept after a rollback): `gc` candidates.
    pub orphans: Vec<String>,
    /// Kept instances whose window is over: `gc` deletes them too.
    pub expired: Vec<String>,
    /// The site's deploy keys registered with the cloud. A swap needs its key only to
    /// create its VM and deletes it at the end, so outside a swap these are `gc` candidates.
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
}

impl crate::exit::Classify for OverviewError {
    fn is_bad_input(&self) -> bool {
        match self {
            OverviewError::Cloud(e) => e.is_bad_input(),
            OverviewError::Store(e) => e.is_bad_input(),
            OverviewError::Lock(e) => e.is_bad_input(),
            OverviewError::State(e) => e.is_bad_input(),
        }
    }
}

pub async fn gather(
    config: &Config,
    cloud: &dyn Cloud,
    store: std::sync::Arc<dyn ObjectStore>,
) -> Result<Overview, OverviewError> {
    let labels = BTreeMap::from([(LABEL_SITE.to_string(), config.site.name.clone())]);
    let mut instances = cloud.list_instances(&labels).await?;
    instances.sort_by_key(|i| {
        i.labels
            .get(LABEL_GENERATION)
            .and_then(|g| g.parse::<u64>().ok())
    });
    let front = config.front();
    let address_holders = cloud
        .front_members(front.address)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let prefix = config.key_prefix();
    let ssh_keys = cloud
        .list_ssh_keys()
        .await?
        .into_iter()
        .map(|k| k.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let state = state::read(store.as_ref()).await?;
    let now = chrono::Utc::now();
    let orphans = instances
        .iter()
        .filter(|i| !state.as_ref().is_some_and(|s| s.accounts_for(&i.id)))
        .map(|i| i.id.clone())
        .collect();
    let expired = state
        .as_ref()
        .map(|s| s.expired_kept(now))
        .unwrap_or_default()
        .into_iter()
        .filter(|id| instances.iter().any(|i| &i.id == id))
        .collect();
    let last_backup = store
        .list(MANIFESTS)
        .await?
        .into_iter()
        .map(|o| o.key)
        .max();
    let last_backup_age_seconds = last_backup
        .as_deref()
        .and_then(manifest_time)
        .map(|t| (now - t).num_seconds());
    let lock = DeployLock::new(
        store.clone(),
        std::sync::Arc::new(crate::clock::SystemClock),
        std::time::Duration::ZERO,
    )
    .current()
    .await?
    .filter(|l| !l.released);
    let journals = super::journal::list(store.as_ref()).await?;
    let unfinished = journals
        .iter()
        .filter(|l| l.blocks_others())
        .map(super::journal::Listed::describe)
        .collect();
    let watching = journals.iter().find_map(|l| match &l.journal {
        Ok(super::journal::Entry::Swap(j))
            if j.phase == super::saga::Phase::Running
                && j.done.iter().any(|d| d == super::steps::names::COMMIT)
                && !j.done.iter().any(|d| d == super::steps::names::WATCH) =>
        {
            Some(j.state.generation)
        }
        _ => None,
    });
    Ok(Overview {
        site: config.site.name.clone(),
        state,
        instances,
        front,
        address_holders,
        last_backup,
        last_backup_age_seconds,
        lock,
        unfinished,
        watching,
        orphans,
        expired,
        ssh_keys,
    })
}

impl Overview {
    /// How the cloud differs from what a finished swap (or an undone one) leaves: exactly
    /// the active instance holds the address, and no other instance of the site exists.
    /// Read from the cloud, never from the journal: a journal can say done while the cloud
    /// holds one machine too many, or none.
    pub fn end_state_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.active() {
            Some(a) => {
                if !self.instances.iter().any(|i| i.id == a.instance) {
                    problems.push(format!(
                        "state.json names instance {} (generation {}), which the cloud does not list",
                        a.instance, a.generation
                    ));
                }
                if self.address_holders != [a.instance.clone()] {
                    problems.push(format!(
                        "{} is held by {}, not by the active instance {} alone",
                        self.front.noun,
                        crate::cloud::names(self.address_holders.iter().cloned()),
                        a.instance
                    ));
                }
            }
            None if !self.address_holders.is_empty() => problems.push(format!(
                "no generation is active, yet {} is held by {}",
                self.front.noun,
                self.address_holders.join(", ")
            )),
            None => {}
        }
        if !self.orphans.is_empty() {
            problems.push(format!(
                "instances of the site that no generation accounts for: {} (`baton gc` deletes them)",
                self.orphans.join(", ")
            ));
        }
        if !self.ssh_keys.is_empty() {
            problems.push(format!(
                "deploy keys that no swap needs: {} (`baton gc` deletes them)",
                self.ssh_keys.join(", ")
            ));
        }
        problems
    }

    fn active(&self) -> Option<&crate::state::Active> {
        self.state.as_ref().and_then(|s| s.active.as_ref())
    }

    pub fn active_generation(&self) -> Option<u64> {
        self.active().map(|a| a.generation)
    }

    pub fn render(&self) -> String {
        let mut s = format!("site {}\n", self.site);
        match self.active() {
            Some(a) => s.push_str(&format!(
                "  active: generation {} on instance {} ({}), since {}\n",
                a.generation, a.instance, a.address, a.since
            )),
            None => s.push_str("  active: none yet (no swap has committed)\n"),
        }
        if let (Some(g), Some(_)) = (self.watching, &self.lock) {
            s.push_str(&format!(
                "  watch: generation {g} is being watched; failing checks roll it back\n"
            ));
        }
        if let Some(p) = self.state.as_ref().and_then(|s| s.previous.as_ref()) {
            let open = !crate::state::expired(&p.until, chrono::Utc::now());
            s.push_str(&format!(
                "  previous: generation {} on instance {}, kept until {}{}\n",
                p.active.generation,
                p.active.instance,
                p.until,
                if open {
                    " (`baton rollback` puts it back)"
                } else {
                    " (past: gc deletes it)"
                }
            ));
        }
        if let Some(r) = self.state.as_ref().and_then(|s| s.rolled_back.as_ref()) {
            s.push_str(&format!(
                "  rolled back: generation {} at {}: {}\n",
                r.generation, r.at, r.reason
            ));
            if let Some(until) = &r.kept_until {
                s.push_str(&format!(
                    "    its instance {} is kept for inspection until {until}\n",
                    r.instance
                ));
            }
        }
        s.push_str(&format!(
            "  front: {} {}, serving {}\n",
            self.front.noun,
            self.front.address,
            if self.address_holders.is_empty() {
                "nobody".to_string()
            } else {
                self.address_holders.join(", ")
            }
        ));
        for i in &self.instances {
            let generation = i.labels.get(LABEL_GENERATION).map_or("?", String::as_str);
            s.push_str(&format!(
                "  instance {} {} generation {generation}: {}\n",
                i.name, i.id, i.state
            ));
        }
        match (&self.last_backup, self.last_backup_age_seconds) {
            (Some(m), Some(age)) => s.push_str(&format!(
                "  last backup: {m}, {} ago\n",
                humantime::format_duration(std::time::Duration::from_secs(age.max(0) as u64))
            )),
            _ => s.push_str("  last backup: none\n"),
        }
        if let Some(l) = &self.lock {
            s.push_str(&format!(
                "  deploy lock: held by {} on {} (pid {})\n",
                l.holder, l.host, l.pid
            ));
        }
        for u in &self.unfinished {
            s.push_str(&format!(
                "  unfinished {u} (run `baton {} --resume` or `--abort`)\n",
                u.split(' ').next().unwrap_or("swap")
            ));
        }
        if !self.orphans.is_empty() || !self.expired.is_empty() {
            s.push_str(&format!(
                "  not active, gc would delete: {}\n",
                self.orphans
                    .iter()
                    .chain(&self.expired)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.ssh_keys.is_empty() {
            s.push_str(&format!(
                "  deploy keys, gc would delete: {}\n",
                self.ssh_keys.join(", ")
            ));
        }
        if let Some(st) = &self.state {
            for l in &st.leftovers {
                s.push_str(&format!("  leftover: {l}\n"));
            }
        }
        s.trim_end().to_string()
    }
}
