//! The hooks that stand behind an instance's creation and deletion (a qemu VM, a loopback
//! machine): run once the world lock is released, their operation pending until they end.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;

use super::Sim;
use crate::world::SimInstance;
use baton::sync::lock;

/// A hook to run once the world lock is released.
pub(super) struct Hook {
    pub(super) kind: &'static str,
    pub(super) command: String,
    pub(super) operation: String,
    pub(super) instance: SimInstance,
    /// The image of the instance's template, when it is one that was registered here.
    pub(super) template_file: Option<PathBuf>,
}

impl Hook {
    pub(super) async fn run(self, sim: Arc<Sim>) {
        let result = self.execute(&sim).await;
        let mut w = lock(&sim.world);
        if let Some(op) = w.operations.get_mut(&self.operation) {
            op.waiting_for_hook = false;
            if let Err(why) = &result {
                op.fail_with = Some(("fault".into(), why.clone()));
            }
        }
        if let Ok(Some(ip)) = result
            && let Some(i) = w.instances.get_mut(&self.instance.id)
        {
            i.public_ip = ip;
        }
        drop(w);
        sim.persist();
    }

    /// Runs the command; returns the public IP it announced, if any.
    async fn execute(&self, sim: &Sim) -> Result<Option<String>, String> {
        let user_data_file = sim
            .options
            .work_dir
            .join(format!("{}.user-data", self.instance.id));
        let decoded = decode_user_data(self.instance.user_data.as_deref().unwrap_or(""));
        baton::fsutil::write_atomic(&user_data_file, &decoded, baton::fsutil::PRIVATE)
            .map_err(|e| e.to_string())?;
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} \"$@\"", self.command))
            .arg("exosim-hook")
            .arg(&self.instance.id)
            .arg(&self.instance.name)
            .arg(&user_data_file)
            .env("EXOSIM_PUBLIC_IP", &self.instance.public_ip)
            .env("EXOSIM_TEMPLATE_ID", &self.instance.template_id)
            .env(
                "EXOSIM_TEMPLATE_FILE",
                self.template_file.as_deref().unwrap_or(Path::new("")),
            )
            .env("EXOSIM_ZONE", &sim.options.zone)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("on-{} hook could not start: {e}", self.kind))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(format!(
                "on-{} hook exited with {}: {}",
                self.kind,
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("public-ip=").map(|s| s.trim().to_string())))
    }
}

/// The user-data as cloud-init would see it: base64 decoded, gunzipped if gzipped.
fn decode_user_data(b64: &str) -> Vec<u8> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap_or_default();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .is_ok()
        {
            return out;
        }
    }
    raw
}
