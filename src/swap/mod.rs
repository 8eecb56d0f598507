//! The swap: blue/green replacement of the server as a saga under the deploy lock.

pub mod lock;
pub mod overview;
pub mod preflight;
pub mod saga;
pub mod steps;
