//! The swap's cut-over at the front (the Elastic IP, or the target group): the new VM in,
//! a check through the address, the old VM out, as `swap::cutover` makes them.

use std::sync::Arc;

use async_trait::async_trait;

use super::{SwapState, names};
use crate::swap::ctx::Ctx;
use crate::swap::cutover::{Cutover, Member};
use crate::swap::saga::{Step, StepError};

/// From the old generation (none on a first deploy) to the new one.
fn cutover<'a>(ctx: &'a Ctx, s: &'a SwapState) -> Cutover<'a> {
    Cutover {
        ctx,
        front_id: &s.front_id,
        to: Member {
            generation: s.generation,
            instance: s.instance_id.as_deref(),
        },
        from: s.old.as_ref().map(|o| Member {
            generation: o.generation,
            instance: Some(&o.instance),
        }),
    }
}

pub struct AttachAddress(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for AttachAddress {
    fn name(&self) -> &'static str {
        names::ATTACH_ADDRESS
    }

    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        cutover(&self.0, s).attach().await
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        cutover(&self.0, s).undo_attach().await
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
        let gap = cutover(ctx, s).verify().await?;
        if ctx.front.one_at_a_time {
            s.front_gap_ms = Some(u64::try_from(gap.as_millis()).unwrap_or(u64::MAX));
            (ctx.say)(format!(
                "{} answered as generation {} {:.1}s after it moved (the address serves one \
                 server at a time: requests in between may have failed)",
                ctx.front,
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
        cutover(&self.0, s).detach().await
    }

    async fn undo(&self, s: &mut SwapState) -> Result<(), StepError> {
        cutover(&self.0, s).undo_detach().await
    }
}
