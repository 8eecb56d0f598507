//! `baton gc`: deletes what baton made and no longer needs. Planned first; `--dry-run`
//! stops at the plan. Never while a swap runs or waits to be resumed.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::GcArgs;
use crate::config::Config;
use crate::error::Error;
use crate::swap::lock::{DeployLock, Holder};
use crate::swap::overview::gather;

use crate::store::layout::ARTIFACTS;

#[derive(Debug, Default, Serialize)]
struct GcPlan {
    instances: Vec<String>,
    ssh_keys: Vec<String>,
    artifacts: Vec<String>,
    journals: Vec<String>,
    /// Baked templates beyond the newest `image::KEEP_BAKES` that no instance boots.
    templates: Vec<GcTemplate>,
    /// Images a bake uploaded and did not get to delete (`images/`).
    images: Vec<String>,
}

#[derive(Debug, Serialize)]
struct GcTemplate {
    id: String,
    name: String,
}

pub async fn run(args: &GcArgs) -> Result<(), Error> {
    let config = Config::load(&args.report.config.path)?;
    let (cloud, store) = super::operator(&config).await?;
    // Holding the lock keeps a swap from starting while we delete.
    let lock = Arc::new(DeployLock::new(
        store.clone(),
        Arc::new(crate::clock::SystemClock),
        crate::swap::run::LEASE,
    ));
    let held = if args.dry_run {
        None
    } else {
        // Busy is exit 1 here as in `baton swap`: nothing was touched, and nothing in
        // the input is wrong; run again later.
        Some(lock.hold(&Holder::this_process(), Duration::ZERO).await?)
    };
    let result = async {
        let overview = gather(&config, cloud.as_ref(), store.clone()).await?;
        if !overview.unfinished.is_empty() {
            return Err(Error::bad_input(
                format!(
                    "unfinished swap {}: its instances and keys are not garbage yet",
                    overview.unfinished.join(", ")
                ),
                "run `baton swap --resume` or `--abort` first (a rollback: `baton rollback --resume` or `--abort`)",
            ));
        }
        let mut plan = GcPlan {
            instances: overview
                .orphans
                .iter()
                .chain(&overview.expired)
                .cloned()
                .collect(),
            ssh_keys: overview.ssh_keys.clone(),
            ..Default::default()
        };
        // Finished journals beyond the retention go, and with them the artifacts only
        // they named: an artifact is kept while an unfinished swap or a generation whose
        // VM still exists may need it (nothing else reads it again).
        let journals = crate::swap::journal::list(store.as_ref()).await?;
        // The kept previous generation's VM may still be put back: its artifacts stay.
        let kept: Vec<u64> = overview
            .state
            .iter()
            .flat_map(|s| {
                let previous = s.previous.as_ref().map(|p| p.active.generation);
                s.active.as_ref().map(|a| a.generation).into_iter().chain(previous)
            })
            .collect();
        let retention = crate::swap::journal::retention(&journals, &kept);
        plan.journals = retention.expired;
        // Bakes: the newest few stay for a swap back to them, and any an instance of the
        // site boots (the active one, the kept previous one) stays with it.
        let site_label = std::collections::BTreeMap::from([(
            crate::cloud::LABEL_SITE.to_string(),
            config.site.name.clone(),
        )]);
        let booted: Vec<String> = cloud
            .list_instances(&site_label)
            .await?
            .into_iter()
            .filter_map(|i| i.template_id)
            .collect();
        let own = cloud.list_own_templates().await?;
        plan.templates = crate::image::expired_bakes(&own, &config.site.name, &booted)
            .into_iter()
            .map(|t| GcTemplate {
                id: t.id.clone(),
                name: t.name.clone(),
            })
            .collect();
        // No bake is running (it holds the lock while its image is in the store).
        plan.images = store
            .list(crate::store::layout::IMAGES)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        plan.artifacts = store
            .list(ARTIFACTS)
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !retention.needed_artifacts.contains(k))
            .collect();
        super::print(args.report.json, &plan, || {
            let mut s = format!(
                "{} {} instances, {} SSH keys, {} artifacts, {} finished journals, {} baked \
                 templates, {} uploaded images",
                if args.dry_run {
                    "would delete"
                } else {
                    "deleting"
                },
                plan.instances.len(),
                plan.ssh_keys.len(),
                plan.artifacts.len(),
                plan.journals.len(),
                plan.templates.len(),
                plan.images.len()
            );
            for i in &plan.instances {
                s.push_str(&format!("\n  instance {i}"));
            }
            for k in &plan.ssh_keys {
                s.push_str(&format!("\n  SSH key {k}"));
            }
            for key in plan.artifacts.iter().chain(&plan.journals) {
                s.push_str(&format!("\n  {key}"));
            }
            for t in &plan.templates {
                s.push_str(&format!("\n  template {} ({})", t.name, t.id));
            }
            for key in &plan.images {
                s.push_str(&format!("\n  {key}"));
            }
            s
        });
        if args.dry_run {
            return Ok(());
        }
        // A gc that outlived its lease must not delete what a new swap now relies on.
        if let Some(h) = &held {
            h.check()?;
        }
        for i in &plan.instances {
            cloud.delete_instance(i).await?;
        }
        for k in &plan.ssh_keys {
            cloud.delete_ssh_key(k).await?;
        }
        for t in &plan.templates {
            cloud.delete_template(&t.id).await?;
        }
        for key in &plan.images {
            store.delete(key).await?;
        }
        // Artifacts before the journals that name them: a gc cut short then leaves a
        // journal whose artifacts are gone (harmless, it is finished), never the reverse.
        for key in plan.artifacts.iter().chain(&plan.journals) {
            store.delete(key).await?;
        }
        // What swaps left for gc (old instances, keys) and the kept instances whose time
        // is up are deleted above: the record of them goes too, or `baton status` would
        // list them forever.
        let now = chrono::Utc::now();
        if let Some(mut site) = overview.state
            && (!site.leftovers.is_empty() || !site.expired_kept(now).is_empty())
        {
            site.leftovers.clear();
            if site
                .previous
                .as_ref()
                .is_some_and(|p| crate::state::expired(&p.until, now))
            {
                site.previous = None;
            }
            if let Some(r) = &mut site.rolled_back
                && r.kept_until
                    .as_deref()
                    .is_some_and(|u| crate::state::expired(u, now))
            {
                r.kept_until = None;
            }
            crate::state::write(store.as_ref(), &site)
                .await
                .map_err(crate::swap::overview::OverviewError::from)?;
        }
        Ok(())
    }
    .await;
    if let Some(held) = held {
        held.release_or_warn().await;
    }
    result
}
