//! `baton publish`: the site's content into the store, where the servers pull it from.

use crate::cli::PublishArgs;
use crate::config::Config;
use crate::content::{PublishReport, publish};
use crate::error::Error;

pub async fn run(args: &PublishArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let store = crate::store::open(&config.store).await?;
    let dir = config.resolve(&config.content.dir);
    let report = publish(store.as_ref(), &dir, args.dry_run).await?;
    super::print(args.json, &report, || {
        human(&report, &store.describe(), config.content.pull_interval)
    });
    Ok(())
}

fn human(r: &PublishReport, store: &str, interval: std::time::Duration) -> String {
    let mut out = String::new();
    if let Some(target) = &r.follows_link {
        out.push_str(&format!(
            "content.dir is a link to {target}: publishing what it points to\n"
        ));
    }
    for (sign, paths) in [("+", &r.added), ("~", &r.changed), ("-", &r.removed)] {
        for p in paths {
            out.push_str(&format!("{sign} {p}\n"));
        }
    }
    let verb = if r.dry_run {
        "would publish"
    } else {
        "published"
    };
    if r.is_noop() && r.uploaded_objects == 0 && r.deleted_objects == 0 {
        out.push_str(&format!(
            "nothing to publish: {store} already holds release {} ({} files)",
            r.release, r.unchanged
        ));
    } else {
        out.push_str(&format!(
            "{verb} release {} to {store}: {} added, {} changed, {} removed, {} unchanged; \
             {} objects uploaded ({} bytes), {} deleted",
            r.release,
            r.added.len(),
            r.changed.len(),
            r.removed.len(),
            r.unchanged,
            r.uploaded_objects,
            r.uploaded_bytes,
            r.deleted_objects
        ));
        if !r.dry_run {
            out.push_str(&format!(
                "\nservers switch to it within {}s",
                interval.as_secs()
            ));
        }
    }
    out
}
