//! `exosim`: a local Exoscale compute API v2 that tests and rehearsals run against.
//!
//! It follows `exoscale/public-api.json`: the same paths, JSON shapes and asynchronous
//! operations, request signatures checked, request bodies validated against the spec's
//! schemas (and its own answers too: any mismatch is recorded under `violations` in
//! `GET /_sim/state`). Faults, latency and hooks make it useful for proving what baton
//! does when the cloud misbehaves, and for backing instances with real VMs.

pub mod faults;
pub mod forward;
pub mod openapi;
mod server;
pub mod world;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

pub use self::faults::{Action, Fault, Latency};
use self::world::World;

#[derive(Clone)]
pub struct Options {
    pub zone: String,
    pub key: String,
    pub secret: Zeroizing<String>,
    pub elastic_ips: Vec<String>,
    /// How long writes stay `pending`.
    pub operation_delay: Duration,
    pub faults: Vec<Fault>,
    pub latency: Vec<Latency>,
    pub state_file: Option<PathBuf>,
    /// Run as `sh -c 'CMD "$@"' exosim ID NAME USER_DATA_FILE` after a create; the
    /// operation succeeds when it exits 0. A `public-ip=ADDR` line on its stdout sets the
    /// instance's address.
    pub on_create: Option<String>,
    /// Run the same way before a delete completes.
    pub on_delete: Option<String>,
    /// Where decoded user-data files go for the hooks.
    pub work_dir: PathBuf,
}

impl Options {
    pub fn new(key: &str, secret: &str, work_dir: PathBuf) -> Options {
        Options {
            zone: "ch-gva-2".to_string(),
            key: key.to_string(),
            secret: Zeroizing::new(secret.to_string()),
            elastic_ips: vec!["203.0.113.10".to_string()],
            operation_delay: Duration::from_millis(100),
            faults: Vec::new(),
            latency: Vec::new(),
            state_file: None,
            on_create: None,
            on_delete: None,
            work_dir,
        }
    }
}

/// The simulator's shared state.
pub struct Sim {
    options: Options,
    world: Mutex<World>,
    faults: Mutex<Vec<Fault>>,
    latency: Mutex<Vec<Latency>>,
    operation_delay: Mutex<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot read exosim state {path}: {reason}\n  fix: delete the file to start from a fresh world"
    )]
    State { path: PathBuf, reason: String },
    #[error("exosim cannot serve: {0}")]
    Serve(#[from] std::io::Error),
}

impl Sim {
    pub fn new(options: Options) -> Result<Arc<Sim>, SimError> {
        let world = match &options.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| SimError::State {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                serde_json::from_str(&text).map_err(|e| SimError::State {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            _ => World::new(&options.zone, &options.elastic_ips),
        };
        Ok(Arc::new(Sim {
            faults: Mutex::new(options.faults.clone()),
            latency: Mutex::new(options.latency.clone()),
            operation_delay: Mutex::new(options.operation_delay),
            world: Mutex::new(world),
            options,
        }))
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Sim>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let app = server::router(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}
