//! Which backups to keep, and the deletions that follow: planned first, then carried out,
//! manifests before the blocks and archives only they named.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::BackupError;
use super::manifest::Manifest;
use crate::config::Backup as Retention;
use crate::store::ObjectStore;
use crate::store::layout::{self, ARCHIVES, BLOCK_INDEX, BLOCKS, MANIFESTS};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PrunePlan {
    pub keep: Vec<String>,
    pub delete_manifests: Vec<String>,
    /// Every object of the blocks and archives no kept manifest names, index objects first.
    pub delete_objects: Vec<String>,
    pub delete_blocks: usize,
    pub delete_bytes: u64,
}

/// The manifests to keep among `times` (key, time), newest first: the last `keep_last`,
/// plus the newest of each of the last `keep_hourly` hours and `keep_daily` days that
/// have a backup.
pub fn choose(times: &[(String, DateTime<Utc>)], r: &Retention) -> BTreeSet<String> {
    let mut sorted: Vec<&(String, DateTime<Utc>)> = times.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep: BTreeSet<String> = sorted
        .iter()
        .take(r.keep_last as usize)
        .map(|(k, _)| k.clone())
        .collect();
    for (bucket_len, count) in [("%Y%m%d%H", r.keep_hourly), ("%Y%m%d", r.keep_daily)] {
        let mut seen = BTreeSet::new();
        for (key, t) in &sorted {
            let bucket = t.format(bucket_len).to_string();
            if seen.len() >= count as usize && !seen.contains(&bucket) {
                break;
            }
            if seen.insert(bucket) {
                keep.insert(key.clone());
            }
        }
    }
    keep
}

pub async fn plan(store: &dyn ObjectStore, r: &Retention) -> Result<PrunePlan, BackupError> {
    let listed = store.list(MANIFESTS).await?;
    let times: Vec<(String, DateTime<Utc>)> = listed
        .iter()
        .filter_map(|o| layout::manifest_time(&o.key).map(|t| (o.key.clone(), t)))
        .collect();
    let keep = choose(&times, r);
    let delete_manifests: Vec<String> = times
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !keep.contains(k))
        .collect();

    let mut named_blocks = BTreeSet::new();
    let mut named_archives = BTreeSet::new();
    for key in &keep {
        let Some(bytes) = store.get(key).await? else {
            continue;
        };
        // A manifest that does not parse names nothing we can trust: keep everything.
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| BackupError::UnreadableManifest {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        named_blocks.extend(m.blocks.into_iter().map(|b| b.ulid));
        named_archives.extend(m.archives.into_iter().map(|a| a.key));
    }

    let mut plan = PrunePlan {
        keep: keep.into_iter().collect(),
        delete_manifests,
        ..Default::default()
    };
    let mut dropped_blocks = BTreeSet::new();
    let mut index_first = Vec::new();
    let mut rest = Vec::new();
    for o in store.list(BLOCKS).await? {
        let ulid = layout::block_of(&o.key).unwrap_or("").to_string();
        if named_blocks.contains(&ulid) {
            continue;
        }
        dropped_blocks.insert(ulid);
        plan.delete_bytes += o.size;
        // The index goes first: a half-deleted block is then one we upload again, never
        // one we trust.
        if o.key.ends_with(BLOCK_INDEX) {
            index_first.push(o.key)
        } else {
            rest.push(o.key)
        }
    }
    for o in store.list(ARCHIVES).await? {
        if !named_archives.contains(&o.key) {
            plan.delete_bytes += o.size;
            rest.push(o.key);
        }
    }
    plan.delete_blocks = dropped_blocks.len();
    plan.delete_objects = index_first.into_iter().chain(rest).collect();
    Ok(plan)
}

pub async fn execute(store: &dyn ObjectStore, plan: &PrunePlan) -> Result<(), BackupError> {
    for key in plan.delete_manifests.iter().chain(&plan.delete_objects) {
        store.delete(key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64, m: i64) -> (String, DateTime<Utc>) {
        let t = DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(h)
            + chrono::Duration::minutes(m);
        (layout::manifest(&t, 1), t)
    }

    #[test]
    fn keeps_last_n_plus_hourly_and_daily() {
        // Every 20 minutes for 3 days.
        let times: Vec<_> = (0..72)
            .flat_map(|h| [0, 20, 40].map(|m| at(h, m)))
            .collect();
        let r = Retention {
            keep_last: 4,
            keep_hourly: 6,
            keep_daily: 3,
            ..Default::default()
        };
        let keep = choose(&times, &r);
        let newest = &times[times.len() - 1].0;
        assert!(keep.contains(newest));
        // last 4, plus the newest of 6 hours (the first of which is already among them),
        // plus the newest of 3 days (already among them for today)
        let hourly: Vec<_> = (66..72).map(|h| at(h, 40).0).collect();
        for k in &hourly {
            assert!(keep.contains(k), "{k}");
        }
        assert!(
            keep.contains(&at(47, 40).0) && keep.contains(&at(23, 40).0),
            "newest of each day"
        );
        // (70:40 is among the last four, 71:40 among all three)
        assert_eq!(keep.len(), 4 + 4 + 2, "{keep:?}");
    }
}
