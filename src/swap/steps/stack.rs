//! The stack on the new VM: `bundle.up`, then the pinned HTTPS health check.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::remote::quote;
use crate::swap::ctx::Ctx;
use crate::swap::probe::until_generation;
use crate::swap::saga::{Step, StepError};

pub struct Up(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Up {
    fn name(&self) -> &'static str {
        names::UP
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let sha = s
            .bundle_sha256
            .clone()
            .ok_or_else(|| StepError("no bundle recorded".into()))?;
        let size = s
            .bundle_size
            .map(|n| format!(" --size {n}"))
            .unwrap_or_default();
        let host = ctx.connect_new(s, Duration::from_secs(60)).await?;
        ctx.baton(
            host.as_ref(),
            &format!(
                "host up --sha256 {sha}{size} --command {}",
                quote(&ctx.config.bundle.up)
            ),
            ctx.config.swap.health_timeout,
        )
        .await
    }
}

pub struct Health(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Health {
    fn name(&self) -> &'static str {
        names::HEALTH
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let ip = s
            .public_ip
            .ok_or_else(|| StepError("no address to check".into()))?;
        let Err(last) =
            until_generation(ctx, ip, s.generation, 1, ctx.config.swap.health_timeout).await
        else {
            return Ok(());
        };
        // Show why: the stack's own view, over SSH.
        let mut why = format!(
            "https://{} on {ip} did not answer as generation {} within {}: {last}",
            ctx.origin(),
            s.generation,
            humantime::format_duration(ctx.config.swap.health_timeout)
        );
        if let Some(lines) = stack_logs(ctx, s).await {
            why.push_str("\n  the stack on the server says:");
            for l in lines {
                why.push_str(&format!("\n    {l}"));
            }
        }
        Err(StepError(why))
    }
}

/// The end of what `bundle.logs` says on the new server, or `None` when it cannot be had.
async fn stack_logs(ctx: &Ctx, s: &SwapState) -> Option<Vec<String>> {
    let host = ctx.connect_new(s, Duration::from_secs(20)).await.ok()?;
    ctx.bundle_logs(host.as_ref()).await
}
