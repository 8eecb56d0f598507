//! Puts the agent binary and the bundle into the store (by content hash) and renders
//! the new host's identity.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::store::layout;
use crate::swap::ctx::Ctx;
use crate::swap::saga::{Step, StepError};

async fn sha256_file(path: PathBuf) -> Result<String, StepError> {
    tokio::task::spawn_blocking(move || {
        crate::backup::sha256_of(&path)
            .map(|(_, h)| h)
            .map_err(|e| StepError(format!("cannot read {}: {e}", path.display())))
    })
    .await
    .map_err(StepError::new)?
}

/// Puts an artifact into the store with `put(key)` unless it is there; records it when
/// this swap made it.
async fn ensure_artifact<F>(
    ctx: &Ctx,
    s: &mut SwapState,
    sha: &str,
    put: impl FnOnce(String) -> F,
) -> Result<(), StepError>
where
    F: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let key = layout::artifact(sha);
    let present = ctx
        .store
        .list(&key)
        .await
        .map_err(StepError::new)?
        .iter()
        .any(|o| o.key == key);
    if !present {
        put(key.clone()).await.map_err(StepError::new)?;
        if !s.uploaded.contains(&key) {
            s.uploaded.push(key);
        }
    }
    Ok(())
}

pub struct Prepare(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Prepare {
    fn name(&self) -> &'static str {
        names::PREPARE
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let binary_path = match &ctx.config.swap.agent_binary {
            Some(p) => ctx.config.resolve(p),
            None => std::env::current_exe().map_err(StepError::new)?,
        };
        let binary = sha256_file(binary_path.clone()).await?;
        let store = ctx.store.clone();
        ensure_artifact(ctx, s, &binary, |key| async move {
            store.put_file(&key, &binary_path).await.map(|_| ())
        })
        .await?;
        s.binary_sha256 = Some(binary);

        let dir = ctx.config.resolve(&ctx.config.bundle.dir);
        let bundle = tokio::task::spawn_blocking(move || {
            crate::bundle::zip_dir(&dir, &std::env::temp_dir())
        })
        .await
        .map_err(StepError::new)?
        .map_err(StepError::new)?;
        let store = ctx.store.clone();
        let sha = bundle.sha256.clone();
        let size = bundle.size;
        ensure_artifact(ctx, s, &sha, |key| async move {
            store.put_file(&key, bundle.file.path()).await.map(|_| ())
        })
        .await?;
        s.bundle_sha256 = Some(sha);
        s.bundle_size = Some(size);
        ctx.render(s).await
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        for key in std::mem::take(&mut s.uploaded) {
            // The journal says what to delete, and the store it lives in is writable by
            // every server: only ever an artifact.
            if !crate::store::layout::is_artifact(&key) {
                return Err(StepError(format!(
                    "the journal names {key:?} as an uploaded artifact: not deleted (only \
                     artifacts/<sha256> is)"
                )));
            }
            self.0.store.delete(&key).await.map_err(StepError::new)?;
        }
        Ok(())
    }
}
