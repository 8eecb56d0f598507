//! The swap's steps (DESIGN.md, "The swap, as a saga"): each an action with its undo,
//! safe to run twice. What a later step or a `--resume` needs goes into [`SwapState`],
//! which the journal stores; secrets never do (the user-data lives in memory only).
//!
//! This file is the table: the state, the names and the order, and what a swap starts
//! from. Each group of steps has a
//! file of its own; what they share (clients, SSH, probes) is in `swap::ctx` and
//! `swap::probe`.

mod address;
mod commit;
mod handover;
mod instance;
mod prepare;
mod stack;
mod watch;

use std::sync::Arc;

use super::ctx::Ctx;
use super::error::StartError;
use super::saga::Step;
pub use super::state::SwapState;
use crate::cloud::Cloud;
use crate::config::Config;
use crate::store::ObjectStore;

pub use address::{AttachAddress, DetachOld, VerifyAddress};
pub use commit::{CleanUp, Commit, Retire, RetireKept};
pub(crate) use commit::{instance_left, leave_for_gc};
pub use handover::HandOver;
pub use instance::{Create, RegisterKey, Wait};
pub use prepare::Prepare;
pub use stack::{Health, Up};
pub use watch::{Watch, WatchFailure};

/// The steps' names, as the journal, the progress output and the tests spell them.
pub mod names {
    pub const PREPARE: &str = "prepare";
    pub const REGISTER_KEY: &str = "register-key";
    pub const RETIRE_KEPT: &str = "retire-kept";
    pub const CREATE: &str = "create";
    pub const WAIT: &str = "wait";
    pub const UP: &str = "up";
    pub const HEALTH: &str = "health";
    pub const HAND_OVER: &str = "hand-over";
    pub const ATTACH_ADDRESS: &str = "attach-address";
    pub const VERIFY_ADDRESS: &str = "verify-address";
    pub const DETACH_OLD: &str = "detach-old";
    pub const COMMIT: &str = "commit";
    pub const CLEAN_UP: &str = "clean-up";
    pub const WATCH: &str = "watch";
    pub const RETIRE: &str = "retire";
}

/// The steps in order.
pub fn all(ctx: &Arc<Ctx>) -> Vec<Box<dyn Step<SwapState>>> {
    vec![
        Box::new(Prepare(ctx.clone())),
        Box::new(RegisterKey(ctx.clone())),
        Box::new(RetireKept(ctx.clone())),
        Box::new(Create(ctx.clone())),
        Box::new(Wait(ctx.clone())),
        Box::new(Up(ctx.clone())),
        Box::new(Health(ctx.clone())),
        Box::new(HandOver(ctx.clone())),
        Box::new(AttachAddress(ctx.clone())),
        Box::new(VerifyAddress(ctx.clone())),
        Box::new(DetachOld(ctx.clone())),
        Box::new(Commit(ctx.clone())),
        Box::new(CleanUp(ctx.clone())),
        Box::new(Watch(ctx.clone())),
        Box::new(Retire(ctx.clone())),
    ]
}

/// Reads what the swap starts from and checks, read-only, that the cloud has what it
/// needs: a wrong name fails here, before anything is created.
pub async fn start(
    config: &Config,
    cloud: &dyn Cloud,
    store: &dyn ObjectStore,
    no_handover: bool,
    template: Option<&str>,
) -> Result<SwapState, StartError> {
    let site = crate::state::read(store).await?.unwrap_or_default();
    let generation = next_generation(site.highest_generation())?;
    let mut state = SwapState {
        site: config.site.name.clone(),
        generation,
        key_name: config.key_name(generation),
        old: site.active,
        displaced: site.previous.map(|p| p.active),
        no_handover,
        ..Default::default()
    };
    // Chosen once and journalled: a resumed swap boots what the swap started with.
    let choice = crate::image::choose(config, cloud, template).await?;
    let spec = crate::cloud::InstanceSpec {
        template: choice.template.clone(),
        ..config.instance_spec(generation)
    };
    cloud.preflight(&spec).await?;
    state.template = Some(choice.template);
    state.front_id = cloud.find_front(config.front().address).await?;
    // Generation N's labels must be free: an instance there is a leftover of an earlier
    // swap (its journal lost), which this swap would otherwise adopt.
    let squatters = cloud.list_instances(&state.labels()).await?;
    if let Some(i) = squatters.first() {
        return Err(StartError::Squatter {
            name: i.name.clone(),
            id: i.id.clone(),
            generation,
        });
    }
    Ok(state)
}

/// The generation a swap (or its plan) creates after `active`: none after the last one a
/// u64 holds, which nothing baton wrote could name.
pub fn next_generation(active: Option<u64>) -> Result<u64, StartError> {
    crate::state::next_generation(active).ok_or(StartError::NoNextGeneration {
        key: crate::store::layout::STATE,
    })
}
