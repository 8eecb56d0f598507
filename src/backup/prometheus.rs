//! Prometheus's TSDB, behind a trait: a consistent snapshot to back up from, never the
//! live directory (whose files change under a reader).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::BackupError;

#[async_trait]
pub trait Tsdb: Send + Sync {
    /// Takes a snapshot and returns its directory (block directories inside).
    async fn snapshot(&self) -> Result<PathBuf, BackupError>;
}

/// The admin API of a running Prometheus (`--web.enable-admin-api`).
pub struct PrometheusAdmin {
    pub url: String,
    /// Where this Prometheus keeps its data: snapshots land in `DATA_DIR/snapshots/`.
    pub data_dir: PathBuf,
    http: reqwest::Client,
}

impl PrometheusAdmin {
    pub fn new(url: &str, data_dir: &Path) -> PrometheusAdmin {
        PrometheusAdmin {
            url: url.trim_end_matches('/').to_string(),
            data_dir: data_dir.to_path_buf(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .build()
                .unwrap_or_default(),
        }
    }

    fn fail(&self, reason: String, fix: &'static str) -> BackupError {
        BackupError::Prometheus {
            url: self.url.clone(),
            reason,
            fix,
        }
    }
}

#[async_trait]
impl Tsdb for PrometheusAdmin {
    async fn snapshot(&self) -> Result<PathBuf, BackupError> {
        let resp = self
            .http
            .post(format!("{}/api/v1/admin/tsdb/snapshot", self.url))
            .send()
            .await
            .map_err(|e| {
                self.fail(
                    crate::cause::chain(&e),
                    "is Prometheus running, and is [prometheus] url right?",
                )
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| self.fail(e.to_string(), "is [prometheus] url a Prometheus?"))?;
        if !status.is_success() {
            return Err(self.fail(
                format!(
                    "snapshot answered HTTP {status}: {}",
                    body["error"].as_str().unwrap_or("")
                ),
                "start Prometheus with --web.enable-admin-api",
            ));
        }
        let name = body["data"]["name"].as_str().ok_or_else(|| {
            self.fail(
                "snapshot answer names no snapshot".into(),
                "check the Prometheus version",
            )
        })?;
        let dir = self.data_dir.join("snapshots").join(name);
        if !dir.is_dir() {
            return Err(self.fail(
                format!(
                    "snapshot {} is not where [prometheus] data_dir says",
                    dir.display()
                ),
                "set [prometheus] data_dir to the directory Prometheus stores its TSDB in",
            ));
        }
        Ok(dir)
    }
}
