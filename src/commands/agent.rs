//! `baton agent`: the host's backup service.

use std::sync::{Arc, Mutex};

use crate::backup::agent::{Metrics, run as run_agent, serve_metrics};
use crate::cli::HostArgs;
use crate::error::Error;

pub async fn run(args: &HostArgs) -> Result<(), Error> {
    let ctx = super::HostContext::open(args).await?;
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    serve_metrics(ctx.config.metrics.listen, metrics.clone()).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    eprintln!(
        "baton agent: generation {}, schedule \"{}\", metrics on http://{}/metrics, site \
         pulled every {}s into {}",
        ctx.config.generation,
        ctx.config.backup.schedule,
        ctx.config.metrics.listen,
        ctx.config.content.interval_seconds,
        ctx.config.content.dir.display()
    );
    let puller = tokio::spawn(crate::content::keep_pulling(
        ctx.store.clone(),
        ctx.host.path(&ctx.config.content.dir),
        std::time::Duration::from_secs(ctx.config.content.interval_seconds.max(1)),
        rx.clone(),
    ));
    run_agent(
        ctx.store.as_ref(),
        &ctx.tsdb(),
        &ctx.host,
        &ctx.config,
        metrics,
        rx,
    )
    .await;
    let _ = puller.await;
    Ok(())
}
