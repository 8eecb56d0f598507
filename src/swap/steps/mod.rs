//! The swap's steps (DESIGN.md, "The swap, as a saga"): each an action with its undo,
//! safe to run twice. What a later step or a `--resume` needs goes into [`SwapState`],
//! which the journal stores; secrets never do (the user-data lives in memory only).
//!
//! This file is the table: the state, the names and the order. Each group of steps has a
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
use super::saga::Step;
pub use super::state::SwapState;

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
