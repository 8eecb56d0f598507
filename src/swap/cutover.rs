//! The three moves at the front that both sagas make, in mirrored words: the swap takes
//! the traffic from the old generation to the new one, the rollback from the failed one
//! back to the kept one. Attach the generation the traffic goes to, check through the
//! front that it answers, detach the one it leaves; each with its undo. One piece of code,
//! so a fix to one saga's cut-over is a fix to the other's.

use std::time::{Duration, Instant};

use super::ctx::Ctx;
use super::probe::until_generation;
use super::saga::StepError;
use crate::cloud::front;

/// A generation at the front: its number and its instance (none yet: a swap whose
/// instance was never created).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub generation: u64,
    pub instance: Option<&'a str>,
}

/// One cut-over at the front `front_id` names (as journalled).
pub struct Cutover<'a> {
    pub ctx: &'a Ctx,
    pub front_id: &'a str,
    /// The generation the traffic goes to.
    pub to: Member<'a>,
    /// The one it leaves; none on a first deploy.
    pub from: Option<Member<'a>>,
}

impl Cutover<'_> {
    /// Waits for `want` answers in a row through the front from `to`, within the health
    /// timeout; the last failure otherwise.
    async fn answers(&self, want: u32) -> Result<(), String> {
        let ctx = self.ctx;
        until_generation(
            ctx,
            ctx.front.address,
            self.to.generation,
            want,
            ctx.config.swap.health_timeout,
        )
        .await
    }

    fn to_instance(&self) -> Result<&str, StepError> {
        self.to
            .instance
            .ok_or_else(|| StepError("no instance".into()))
    }

    /// `to` behind the front, beside `from` (or in its place, on a front that serves one
    /// member at a time).
    pub async fn attach(&self) -> Result<(), StepError> {
        self.ctx
            .cloud
            .front_add(self.front_id, self.to_instance()?)
            .await
            .map_err(StepError::new)
    }

    /// The front back on `from` alone: `from` first, so a front that serves one member at
    /// a time never points at nobody.
    pub async fn undo_attach(&self) -> Result<(), StepError> {
        let Some(to) = self.to.instance else {
            return Ok(());
        };
        front::back_to(
            self.ctx.cloud.as_ref(),
            self.front_id,
            self.from.and_then(|f| f.instance),
            to,
        )
        .await
        .map_err(StepError::new)
    }

    /// Waits until a request through the front reaches `to`; returns how long that took.
    pub async fn verify(&self) -> Result<Duration, StepError> {
        let start = Instant::now();
        self.answers(1).await.map_err(|last| {
            StepError(format!(
                "requests through {} did not reach generation {}: {last}",
                self.ctx.front, self.to.generation
            ))
        })?;
        Ok(start.elapsed())
    }

    /// `from` out of the front, then five answers in a row through it from `to`.
    pub async fn detach(&self) -> Result<(), StepError> {
        let ctx = self.ctx;
        let Some(from) = self.from else {
            return Ok(());
        };
        if let Some(instance) = from.instance {
            ctx.cloud
                .front_remove(self.front_id, instance)
                .await
                .map_err(StepError::new)?;
        }
        self.answers(5).await.map_err(|last| {
            StepError(format!(
                "after detaching generation {}, {} still does not answer as generation {} \
                 only: {last}",
                from.generation, ctx.front, self.to.generation
            ))
        })
    }

    /// `from` back behind the front.
    pub async fn undo_detach(&self) -> Result<(), StepError> {
        match self.from.and_then(|f| f.instance) {
            Some(instance) => self
                .ctx
                .cloud
                .front_add(self.front_id, instance)
                .await
                .map_err(StepError::new),
            None => Ok(()),
        }
    }
}
