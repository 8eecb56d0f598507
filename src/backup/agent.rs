//! `baton agent`: backups on a cron schedule, one at a time, one more on SIGTERM, and
//! Prometheus-format metrics about all of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::routing::get;

use super::prometheus::Tsdb;
use super::upload::{self, Outcome};
use super::{BackupError, Host, retention};
use crate::agent_config::AgentConfig;
use crate::store::ObjectStore;

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub last_success: Option<f64>,
    pub last_duration: f64,
    pub bytes_uploaded: u64,
    pub backups: u64,
    pub failures: u64,
    pub refusals: u64,
    pub blocks_stored: u64,
    pub running: bool,
    /// The published site's pulls (the agent's other duty).
    pub site_last_pull: Option<f64>,
    pub site_switches: u64,
    pub site_pull_failures: u64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "baton_backup_last_success_timestamp_seconds",
            "gauge",
            "When the last backup finished, Unix time (0: never).",
            format!("{}", self.last_success.unwrap_or(0.0)),
        );
        metric(
            "baton_backup_last_duration_seconds",
            "gauge",
            "How long the last successful backup took.",
            format!("{}", self.last_duration),
        );
        metric(
            "baton_backup_uploaded_bytes_total",
            "counter",
            "Bytes uploaded to the store.",
            self.bytes_uploaded.to_string(),
        );
        metric(
            "baton_backups_total",
            "counter",
            "Backups completed.",
            self.backups.to_string(),
        );
        metric(
            "baton_backup_failures_total",
            "counter",
            "Backups that failed.",
            self.failures.to_string(),
        );
        metric(
            "baton_backup_refusals_total",
            "counter",
            "Backups not attempted: this host may not write (not active, or not restored).",
            self.refusals.to_string(),
        );
        metric(
            "baton_backup_blocks_stored",
            "gauge",
            "TSDB blocks named by the last backup.",
            self.blocks_stored.to_string(),
        );
        metric(
            "baton_backup_running",
            "gauge",
            "1 while a backup runs.",
            u8::from(self.running).to_string(),
        );
        metric(
            "baton_site_last_pull_timestamp_seconds",
            "gauge",
            "When the agent last pulled the published site without error, Unix time (0: never).",
            format!("{}", self.site_last_pull.unwrap_or(0.0)),
        );
        metric(
            "baton_site_switches_total",
            "counter",
            "Times the served site switched to a newly published release.",
            self.site_switches.to_string(),
        );
        metric(
            "baton_site_pull_failures_total",
            "counter",
            "Pulls of the published site that failed (the served release stayed).",
            self.site_pull_failures.to_string(),
        );
        s
    }
}

/// Runs one backup and a prune, recording the outcome; errors are logged, not fatal.
pub async fn backup_once(
    store: &dyn ObjectStore,
    tsdb: &dyn Tsdb,
    host: &Host,
    config: &AgentConfig,
    metrics: &Mutex<Metrics>,
    is_final: bool,
) -> Result<Outcome, BackupError> {
    set(metrics, |m| m.running = true);
    let started = Instant::now();
    // Held through the prune as well: a hand-over's final backup waiting for it would
    // otherwise upload its new block while the prune, which finds that block named by
    // no manifest yet, deletes the files it has listed (a CI run's catch-up found the
    // final backup's block without its chunks, and the swap was undone).
    let (result, _lock) = match upload::lock(host, config, is_final).await {
        Ok(lock) => (
            upload::backup_holding_lock(store, tsdb, host, config, is_final).await,
            Some(lock),
        ),
        Err(e) => (Err(e), None),
    };
    set(metrics, |m| {
        m.running = false;
        match &result {
            Ok(Outcome::Done(r)) => {
                m.backups += 1;
                m.bytes_uploaded += r.bytes_uploaded;
                m.blocks_stored = r.blocks as u64;
                m.last_duration = started.elapsed().as_secs_f64();
                m.last_success = Some(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
            }
            Ok(Outcome::Refused(_)) => m.refusals += 1,
            Err(_) => m.failures += 1,
        }
    });
    if let Ok(Outcome::Done(_)) = &result {
        // Only the writer prunes, right after it wrote, still holding the lock: nothing
        // else on this host can be mid-upload.
        match retention::plan(store, &config.backup).await {
            Ok(plan) => {
                if let Err(e) = retention::execute(store, &plan).await {
                    tracing::warn!("pruning failed (the next run tries again): {e}");
                }
            }
            Err(e) => tracing::warn!("cannot plan pruning: {e}"),
        }
    }
    result
}

fn set(metrics: &Mutex<Metrics>, f: impl FnOnce(&mut Metrics)) {
    f(&mut crate::sync::lock(metrics));
}

fn log_outcome(result: &Result<Outcome, BackupError>) {
    match result {
        Ok(Outcome::Done(r)) => tracing::info!(
            "backup {}: {} blocks ({} new), {} bytes sent in {:.1}s",
            r.manifest,
            r.blocks,
            r.blocks_uploaded,
            r.bytes_uploaded,
            r.seconds
        ),
        Ok(Outcome::Refused(why)) => tracing::info!("{why}"),
        Err(e) => tracing::error!("backup failed: {e}"),
    }
}

/// Serves `/metrics` on `listen`.
pub async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
) -> Result<tokio::task::JoinHandle<()>, BackupError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| BackupError::Io {
            action: "listen for metrics on",
            path: listen.to_string().into(),
            source: e,
        })?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { crate::sync::lock(&m).render() }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    }))
}

/// The agent's loop: sleeps until the schedule's next time or until `stop` fires; on
/// `stop`, backs up once more and returns.
pub async fn run(
    store: &dyn ObjectStore,
    tsdb: &dyn Tsdb,
    host: &Host,
    config: &AgentConfig,
    metrics: Arc<Mutex<Metrics>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let schedule = config.backup.schedule.to_cron();
    loop {
        let Some(next) = schedule.upcoming(chrono::Utc).next() else {
            tracing::error!("the schedule {} never fires again", config.backup.schedule);
            break;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                log_outcome(&backup_once(store, tsdb, host, config, &metrics, false).await);
            }
            _ = stop.changed() => break,
        }
    }
    tracing::info!("stopping: one last backup");
    log_outcome(&backup_once(store, tsdb, host, config, &metrics, false).await);
}
