//! The watch after the cut-over: the site checked through the address, as a visitor sees
//! it, for `swap.watch`. A release that fails it is rolled back (`swap::rollback`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{SwapState, names};
use crate::swap::ctx::Ctx;
use crate::swap::probe::probe;
use crate::swap::saga::{Step, StepError};

pub use crate::swap::state::WatchFailure;

pub struct Watch(pub Arc<Ctx>);

#[async_trait]
impl Step<SwapState> for Watch {
    fn name(&self) -> &'static str {
        names::WATCH
    }

    /// Never fails on a bad release: it records why in `s.watch_failed` and the swap
    /// goes on to roll back. It fails only when it cannot watch honestly any more.
    async fn run(&self, s: &mut SwapState) -> Result<(), StepError> {
        let ctx = &self.0;
        let config = &ctx.config.swap;
        if s.watch_failed.is_some() {
            return Ok(()); // decided before a crash
        }
        if config.watch.is_zero() {
            (ctx.say)("off (swap.watch = 0s)".into());
            return Ok(());
        }
        if s.old.is_none() {
            (ctx.say)("skipped: the first deploy has nothing to roll back to".into());
            return Ok(());
        }
        let front = ctx.front.address;
        let client = ctx.https(front)?;
        let origin = ctx.origin();
        (ctx.say)(format!(
            "checking https://{origin} through {front} every {} for {} ({} failures in a row roll back)",
            humantime::format_duration(config.watch_interval),
            humantime::format_duration(config.watch),
            config.watch_failures
        ));
        // A resumed watch starts its window again: the time it was down counts for nothing.
        let start = Instant::now();
        let mut failures = 0u32;
        let mut first_failed_ms = 0;
        let mut checks = 0u32;
        // Plain output gets a line a minute, so a quiet watch does not look like a hang.
        let mut said = Instant::now();
        loop {
            if ctx.lock_lost.is_lost() {
                return Err(StepError(
                    "the deploy lock was taken over during the watch: another swap may be \
                     running, so this one neither rolls back nor retires the old server"
                        .into(),
                ));
            }
            let checked = Instant::now();
            checks += 1;
            let answer = match probe(&client, &origin).await {
                Ok(g) if g == s.generation => None,
                Ok(g) => Some(format!("generation {g} answered, not {}", s.generation)),
                Err(e) => Some(e),
            };
            match answer {
                None if failures > 0 => {
                    (ctx.say)(format!("check {checks}: answering again"));
                    failures = 0;
                }
                None if said.elapsed() >= Duration::from_secs(60) => {
                    (ctx.say)(format!(
                        "{checks} checks so far, generation {} answering; {} to go",
                        s.generation,
                        humantime::format_duration(Duration::from_secs(
                            config.watch.saturating_sub(start.elapsed()).as_secs()
                        ))
                    ));
                    said = Instant::now();
                }
                None => {}
                Some(last) => {
                    if failures == 0 {
                        first_failed_ms = chrono::Utc::now().timestamp_millis();
                    }
                    failures += 1;
                    (ctx.say)(format!(
                        "check {checks} failed ({failures} of {}): {last}",
                        config.watch_failures
                    ));
                    if failures >= config.watch_failures {
                        // No SSH here: every second counts until the previous generation
                        // serves again. The rollback's hand-back reads the logs.
                        s.watch_failed = Some(WatchFailure {
                            reason: format!(
                                "{failures} checks in a row through {front} failed, {} after the cut-over",
                                humantime::format_duration(Duration::from_secs(
                                    start.elapsed().as_secs()
                                ))
                            ),
                            last_answer: last,
                            logs: Vec::new(),
                            first_failed_ms,
                        });
                        return Ok(());
                    }
                }
            }
            if start.elapsed() >= config.watch {
                break;
            }
            let next = config.watch_interval.saturating_sub(checked.elapsed());
            tokio::time::sleep(next.min(config.watch.saturating_sub(start.elapsed()))).await;
        }
        (ctx.say)(format!(
            "{checks} checks over {}: generation {} held",
            humantime::format_duration(config.watch),
            s.generation
        ));
        Ok(())
    }
}
