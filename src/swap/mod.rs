//! The swap: blue/green replacement of the server as a saga under the deploy lock.

pub mod ctx;
pub mod cutover;
pub mod end_state;
pub mod error;
pub mod journal;
pub mod lock;
pub mod overview;
pub mod preflight;
pub mod probe;
pub mod rollback;
pub mod run;
pub mod saga;
pub mod state;
pub mod steps;
