//! The old server's final backup and the new one's catch-up restore.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::swap::ctx::Ctx;
use crate::swap::saga::{Step, StepError};

pub struct HandOver(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for HandOver {
    fn name(&self) -> &'static str {
        names::HAND_OVER
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(old) = s.old.clone() else {
            return Ok(());
        };
        if s.no_handover {
            (ctx.say)("skipped (--no-handover)".into());
            return Ok(());
        }
        let timeout = ctx.config.swap.handover_timeout;
        let ip = ctx.address_of(&old).await?;
        let key = old.host_key.as_deref().ok_or_else(|| {
            StepError(format!(
                "state.json has no host key for generation {}: baton cannot reach it safely\n  \
                 fix: `baton swap --no-handover` (the data since its last backup stays behind)",
                old.generation
            ))
        })?;
        let target = ctx.target(ip, key)?;
        let host = ctx
            .connector
            .connect(&target, Duration::from_secs(60))
            .await
            .map_err(|e| {
                StepError(format!(
                    "the old server (generation {}) cannot hand over: {e}\n  fix: if it is \
                     broken, `baton swap --no-handover` replaces it from the last backup",
                    old.generation
                ))
            })?;
        (ctx.say)(format!("final backup on generation {}", old.generation));
        ctx.baton_beside_site(host.as_ref(), "backup --final", timeout)
            .await?;
        (ctx.say)(format!("catch-up on generation {}", s.generation));
        let new = ctx.connect_new(s, Duration::from_secs(60)).await?;
        ctx.baton_beside_site(new.as_ref(), "restore --catch-up", timeout)
            .await
    }
}
