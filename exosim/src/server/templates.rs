//! Custom templates, as Exoscale registers them: `POST /template` names an image by URL and
//! its MD5 checksum; the zone downloads it, checks it, and only then lists the template
//! (private to the account). The operation stays pending until then and fails, with
//! nothing listed, when the download or the checksum does not match.

use std::path::PathBuf;
use std::sync::Arc;

use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{Answer, Call, Sim, Task, error, not_found, ok, unreachable_op};
use crate::world::{Effect, World, now_ms};
use axum::http::StatusCode;
use baton::sync::lock;

impl Sim {
    pub(super) fn templates(&self, w: &mut World, call: &Call) -> Answer {
        let Call {
            op: op_id,
            id,

            body,
            fail,
            ..
        } = *call;
        match op_id {
            "get-template" => match w.template(id) {
                Some(t) => ok(t.clone()),
                None => not_found(format!("template {id}")),
            },
            "register-template" => self.register_template(w, body, fail),
            "delete-template" => {
                let Some(t) = w.template(id) else {
                    return not_found(format!("template {id}"));
                };
                if t["visibility"] != "private" {
                    return error(
                        StatusCode::FORBIDDEN,
                        format!("template {id} is a public template: only your own can be deleted"),
                    );
                }
                if !fail {
                    w.catalog.templates.retain(|t| t["id"] != id);
                    if let Some(file) = w.template_files.remove(id) {
                        let _ = std::fs::remove_file(file);
                    }
                }
                let op = self.operation(w, "delete-template", id, None, Effect::None, fail);
                ok(w.operation_json(&op).unwrap_or_default())
            }
            _ => unreachable_op(op_id),
        }
    }

    pub(super) fn register_template(&self, w: &mut World, body: &Value, fail: bool) -> Answer {
        let id = uuid::Uuid::new_v4().to_string();
        let url = body["url"].as_str().unwrap_or_default().to_string();
        let checksum = body["checksum"].as_str().unwrap_or_default().to_lowercase();
        if url::Url::parse(&url).is_err() {
            return error(StatusCode::BAD_REQUEST, format!("url {url:?} is not a URL"));
        }
        let op = self.operation(
            w,
            "register-template",
            &id,
            Some(format!("/v2/template/{id}")),
            Effect::None,
            fail,
        );
        if fail {
            return ok(w.operation_json(&op).unwrap_or_default());
        }
        if let Some(o) = w.operations.get_mut(&op) {
            o.waiting_for_hook = true;
        }
        let mut template = json!({
            "id": id,
            "name": body["name"],
            "url": url,
            "checksum": checksum,
            "ssh-key-enabled": body["ssh-key-enabled"],
            "password-enabled": body["password-enabled"],
            "boot-mode": body.get("boot-mode").cloned().unwrap_or(json!("legacy")),
            "visibility": "private",
            "family": "other",
            "created-at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "zones": [w.zone],
        });
        for field in [
            "description",
            "default-user",
            "version",
            "build",
            "size",
            "maintainer",
        ] {
            if let Some(v) = body.get(field) {
                template[field] = v.clone();
            }
        }
        let answer = w.operation_json(&op).unwrap_or_default();
        (
            StatusCode::OK,
            answer,
            vec![Task::Import(Import {
                operation: op,
                template,
                url,
                checksum,
                file: self.options.work_dir.join("templates").join(&id),
            })],
        )
    }
}

/// A registration's download, run outside the world lock.
pub(super) struct Import {
    operation: String,
    template: Value,
    url: String,
    checksum: String,
    file: PathBuf,
}

impl Import {
    pub(super) async fn run(self, sim: Arc<Sim>) {
        let result = self.download().await;
        let mut w = lock(&sim.world);
        match result {
            Ok(size) => {
                let mut template = self.template.clone();
                if template.get("size").is_none() {
                    template["size"] = json!(size);
                }
                let id = template["id"].as_str().unwrap_or_default().to_string();
                w.catalog.templates.push(template);
                w.template_files.insert(id, self.file.clone());
            }
            Err(why) => {
                let _ = std::fs::remove_file(&self.file);
                if let Some(op) = w.operations.get_mut(&self.operation) {
                    op.fail_with = Some(("incorrect".into(), why));
                }
            }
        }
        if let Some(op) = w.operations.get_mut(&self.operation) {
            op.waiting_for_hook = false;
            // Done now: the download took its own time.
            op.ready_at = op.ready_at.min(now_ms());
        }
        drop(w);
        sim.persist();
    }

    /// Streams the image to its file, hashing as it goes; returns its size.
    async fn download(&self) -> Result<u64, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("template {what}: {e}");
        if let Some(dir) = self.file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| fail("storage", &e))?;
        }
        // Never the URL in a message: a pre-signed URL's query is a credential.
        let mut answer = reqwest::get(&self.url)
            .await
            .map_err(|e| fail("download", &e.without_url()))?;
        if !answer.status().is_success() {
            return Err(format!(
                "template download: {} answered {}",
                self.url.split('?').next().unwrap_or_default(),
                answer.status()
            ));
        }
        let mut out = tokio::fs::File::create(&self.file)
            .await
            .map_err(|e| fail("storage", &e))?;
        let mut md5 = Md5::new();
        let mut size = 0u64;
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| fail("download", &e.without_url()))?
        {
            md5.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| fail("storage", &e))?;
        }
        out.flush().await.map_err(|e| fail("storage", &e))?;
        let got = format!("{:x}", md5.finalize());
        if got != self.checksum {
            return Err(format!(
                "template checksum mismatch: the image's MD5 is {got}, the request said {}",
                self.checksum
            ));
        }
        Ok(size)
    }
}
