//! The swap: blue/green replacement of the server as a saga. So far: the deploy lock.

pub mod lock;
pub mod overview;
pub mod saga;
