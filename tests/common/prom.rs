//! Debian's Prometheus, started by the test on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Prometheus {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on `data`, scraping itself every second, admin API on.
    pub fn start(data: &Path, work: &Path) -> Prometheus {
        let port = super::free_port();
        std::fs::create_dir_all(work).unwrap();
        let config = work.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
        )
        .unwrap();
        let log = work.join("prometheus.log");
        let child = Command::new(super::require("prometheus", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-admin-api")
            .arg("--storage.tsdb.retention.time=3650d")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data: data.to_path_buf(),
            log,
        };
        let url = format!("{}/-/ready", p.url);
        super::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            if let Ok(Some(s)) = p.child.try_wait() {
                panic!(
                    "prometheus exited ({s}):\n{}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
            let out = Command::new("curl").args(["-sf", &url]).output().ok()?;
            out.status.success().then_some(())
        });
        p
    }

    /// An instant query; `None` while Prometheus cannot answer it.
    pub fn query(&self, query: &str) -> Option<Value> {
        self.query_at(query, None)
    }

    /// An instant query evaluated at `time` (Unix seconds), or now.
    pub fn query_at(&self, query: &str, time: Option<f64>) -> Option<Value> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sfG",
            &format!("{}/api/v1/query", self.url),
            "--data-urlencode",
            &format!("query={query}"),
        ]);
        if let Some(t) = time {
            cmd.args(["--data-urlencode", &format!("time={t}")]);
        }
        let out = cmd.output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `query_range` with explicit times, `data.result` sorted for comparison.
    pub fn range(&self, query: &str, start: i64, end: i64, step: u32) -> Value {
        let out = Command::new("curl")
            .args(["-sfG", &format!("{}/api/v1/query_range", self.url)])
            .args(["--data-urlencode", &format!("query={query}")])
            .args([
                "--data-urlencode",
                &format!("start={start}"),
                "--data-urlencode",
                &format!("end={end}"),
                "--data-urlencode",
                &format!("step={step}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "query_range {query} failed");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        result.sort_by_key(|r| r["metric"].to_string());
        Value::Array(result)
    }
}

/// Writes `series` gauges with one sample a minute over [start, end] as blocks into
/// `data`, with promtool (what a long-running Prometheus would have on disk).
pub fn synthetic_blocks(data: &Path, work: &Path, series: usize, start: i64, end: i64) {
    use std::fmt::Write;
    let mut om =
        String::from("# HELP baton_test_value A synthetic gauge.\n# TYPE baton_test_value gauge\n");
    for s in 0..series {
        let mut t = start;
        while t <= end {
            writeln!(
                om,
                "baton_test_value{{series=\"{s}\"}} {} {t}",
                (t / 60) as f64 + s as f64 * 0.5
            )
            .unwrap();
            t += 60;
        }
    }
    om.push_str("# EOF\n");
    let input = work.join("input.om");
    std::fs::create_dir_all(work).unwrap();
    std::fs::write(&input, om).unwrap();
    std::fs::create_dir_all(data).unwrap();
    let out = Command::new(super::require("promtool", "prometheus"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
