//! `baton backup`: one backup now (`--final` at a swap's hand-over).

use crate::backup::upload::{Outcome, backup};
use crate::cli::BackupArgs;
use crate::error::Error;

pub async fn run(args: &BackupArgs) -> Result<(), Error> {
    let ctx = super::HostContext::open(&args.host).await?;
    match backup(
        ctx.store.as_ref(),
        &ctx.tsdb(),
        &ctx.host,
        &ctx.config,
        args.is_final,
    )
    .await?
    {
        Outcome::Done(r) => {
            super::print(args.host.json, &r, || {
                format!(
                    "backup {}: {} blocks ({} uploaded), {} archives ({} uploaded), {} bytes sent in {:.2}s",
                    r.manifest,
                    r.blocks,
                    r.blocks_uploaded,
                    r.archives,
                    r.archives_uploaded,
                    r.bytes_uploaded,
                    r.seconds
                )
            });
            Ok(())
        }
        // Not an error of the backup, but the caller asked for one and did not get it.
        Outcome::Refused(why) => Err(crate::backup::BackupError::Refused(why).into()),
    }
}
