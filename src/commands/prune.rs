//! `baton prune`: retention, planned and then carried out (`--dry-run` stops at the plan).

use crate::backup::{may_upload, retention};
use crate::cli::PruneArgs;
use crate::error::Error;

pub async fn run(args: &PruneArgs) -> Result<(), Error> {
    let ctx = super::HostContext::open(&args.host).await?;
    let plan = retention::plan(ctx.store.as_ref(), &ctx.config.backup).await?;
    super::print(args.host.json, &plan, || {
        let mut s = format!(
            "keep {} backups; delete {} backups and {} objects ({} blocks, {} bytes)",
            plan.keep.len(),
            plan.delete_manifests.len(),
            plan.delete_objects.len(),
            plan.delete_blocks,
            plan.delete_bytes
        );
        for m in &plan.delete_manifests {
            s.push_str(&format!("\n  delete {m}"));
        }
        s
    });
    if args.dry_run {
        return Ok(());
    }
    // Deleting is writing: only the active, restored generation does it.
    if let Err(why) = may_upload(ctx.store.as_ref(), &ctx.host, &ctx.config).await? {
        return Err(crate::backup::BackupError::Refused(why).into());
    }
    retention::execute(ctx.store.as_ref(), &plan).await?;
    Ok(())
}
