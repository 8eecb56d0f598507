//! Moving the front (the Elastic IP, or the target group): the new VM in, a check through
//! the address, the old VM out.

use std::sync::Arc;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::swap::ctx::Ctx;
use crate::swap::probe::until_generation;
use crate::swap::saga::{Step, StepError};

pub struct AttachAddress(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for AttachAddress {
    fn name(&self) -> &'static str {
        names::ATTACH_ADDRESS
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let id = s
            .instance_id
            .as_deref()
            .ok_or_else(|| StepError("no instance".into()))?;
        self.0
            .cloud
            .front_add(&s.elastic_ip_id, id)
            .await
            .map_err(StepError::new)
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        match s.instance_id.as_deref() {
            Some(id) => crate::cloud::front_back_to(
                self.0.cloud.as_ref(),
                &s.elastic_ip_id,
                s.old.as_ref().map(|o| o.instance.as_str()),
                id,
            )
            .await
            .map_err(StepError::new),
            None => Ok(()),
        }
    }
}

pub struct VerifyAddress(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for VerifyAddress {
    fn name(&self) -> &'static str {
        names::VERIFY_ADDRESS
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let eip = ctx.config.cloud.elastic_ip;
        let start = std::time::Instant::now();
        until_generation(ctx, eip, s.generation, 1, ctx.config.swap.health_timeout)
            .await
            .map_err(|last| {
                StepError(format!(
                    "requests through {eip} did not reach generation {}: {last}",
                    s.generation
                ))
            })?;
        if ctx.cloud.front_moves() {
            let gap = start.elapsed();
            s.front_gap_ms = Some(u64::try_from(gap.as_millis()).unwrap_or(u64::MAX));
            (ctx.say)(format!(
                "{eip} answered as generation {} {:.1}s after it moved (the address serves one \
                 server at a time: requests in between may have failed)",
                s.generation,
                gap.as_secs_f64()
            ));
        }
        Ok(())
    }
}

pub struct DetachOld(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for DetachOld {
    fn name(&self) -> &'static str {
        names::DETACH_OLD
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let Some(old) = &s.old else {
            return Ok(());
        };
        ctx.cloud
            .front_remove(&s.elastic_ip_id, &old.instance)
            .await
            .map_err(StepError::new)?;
        // Now every request must reach the new generation.
        let eip = ctx.config.cloud.elastic_ip;
        until_generation(ctx, eip, s.generation, 5, ctx.config.swap.health_timeout)
            .await
            .map_err(|last| {
                StepError(format!(
                    "after detaching the old server, {eip} still does not answer as generation {} only: {last}",
                    s.generation
                ))
            })
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        match &s.old {
            Some(old) => self
                .0
                .cloud
                .front_add(&s.elastic_ip_id, &old.instance)
                .await
                .map_err(StepError::new),
            None => Ok(()),
        }
    }
}
