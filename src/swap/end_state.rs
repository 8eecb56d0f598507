//! The end-state check: after a swap or a rollback says done (or undone), the cloud is
//! read back, never the journal, and the site is asked as a visitor would.

use std::time::Duration;

use super::ctx::Ctx;
use super::overview::gather;
use super::probe::until_generation;

/// The name the end-state check goes by in an outcome.
pub const NAME: &str = "end-state";

/// What the progress says when the cloud is as the outcome promises.
pub const AS_PROMISED: &str = "end state checked against the cloud: one instance holds the \
                               address and answers as the active generation, nothing \
                               unaccounted for";

/// How long the check gives the address to answer as the active generation.
const ANSWER: Duration = Duration::from_secs(20);

/// How the cloud differs from a finished saga's end state (`Overview::end_state_problems`),
/// and whether the site, as a visitor sees it, is the generation state.json names.
pub async fn problems(ctx: &Ctx) -> Vec<String> {
    match gather(&ctx.config, ctx.cloud.as_ref(), ctx.store.clone()).await {
        Ok(overview) => {
            let mut problems = overview.end_state_problems();
            if let Some(generation) = overview.active_generation() {
                let front = ctx.front.address;
                if let Err(last) = until_generation(ctx, front, generation, 1, ANSWER).await {
                    problems.push(format!(
                        "{front} does not answer as generation {generation}, which state.json \
                         names: {last}"
                    ));
                }
            }
            problems
        }
        Err(e) => vec![format!("could not read the end state back: {e}")],
    }
}
