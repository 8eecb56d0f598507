//! `baton restore`: at boot, before the stack starts (`--catch-up` at a swap's hand-over).
//! At boot it also pulls the published site, so the stack serves it from its first answer.

use crate::backup::restore::{catch_up, restore};
use crate::cli::RestoreArgs;
use crate::content::Pulled;
use crate::error::Error;

pub async fn run(args: &RestoreArgs) -> Result<(), Error> {
    let ctx = super::HostContext::open(&args.host).await?;
    let failed = ctx
        .host
        .path(&ctx.config.state_dir)
        .join(super::host::RESTORE_FAILED);
    let report = if args.catch_up {
        catch_up(ctx.store.as_ref(), &ctx.host, &ctx.config).await?
    } else {
        let boot = async {
            let report = restore(ctx.store.as_ref(), &ctx.host, &ctx.config, args.if_empty).await?;
            let site = ctx.host.path(&ctx.config.content.dir);
            let pulled = crate::content::pull(ctx.store.as_ref(), &site).await?;
            Ok::<_, Error>((report, pulled))
        };
        match boot.await {
            Ok((report, pulled)) => {
                let _ = std::fs::remove_file(&failed);
                match pulled {
                    Pulled::NothingPublished => {
                        eprintln!("warning: no site is published yet (run `baton publish`)")
                    }
                    Pulled::Unchanged { release } => eprintln!("site: release {release}"),
                    Pulled::Switched { release, files, .. } => {
                        eprintln!("site: release {release} ({files} files)")
                    }
                }
                report
            }
            Err(e) => {
                // The swap's `baton host ready` reports this at once instead of timing out.
                let _ = crate::fsutil::write_atomic(
                    &failed,
                    e.to_string().as_bytes(),
                    crate::fsutil::PUBLIC,
                );
                return Err(e);
            }
        }
    };
    for fallback in &report.fell_back {
        eprintln!("warning: skipped {fallback}");
    }
    super::print(args.host.json, &report, || match &report.manifest {
        Some(m) => format!(
            "restored {m}: {} blocks, {} archives, {} bytes",
            report.blocks, report.archives, report.bytes
        ),
        None => report.note.clone(),
    });
    Ok(())
}
