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
    let counted = metrics.clone();
    let puller = tokio::spawn(crate::content::keep_pulling(
        ctx.store.clone(),
        ctx.host.path(&ctx.config.content.dir),
        std::time::Duration::from_secs(ctx.config.content.interval_seconds.max(1)),
        rx.clone(),
        move |result| {
            let mut m = crate::sync::lock(&counted);
            match result {
                Ok(pulled) => {
                    m.site_last_pull = Some(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
                    if matches!(pulled, crate::content::Pulled::Switched { .. }) {
                        m.site_switches += 1;
                    }
                }
                Err(_) => m.site_pull_failures += 1,
            }
        },
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
