//! baton keeps one web server alive on a cloud by *replacing* it instead of changing it.
//!
//! The binary is thin: it parses the command line and hands it to [`commands::run`]. The
//! library owns the domain: the operator's config ([`config`]), the servers' identities
//! ([`identity`]), and the user-data they boot from ([`cloudinit`]).

pub mod agent_config;
pub mod backup;
pub mod bundle;
pub mod cause;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod cloudinit;
pub mod commands;
pub mod config;
pub mod content;
pub mod error;
pub mod exit;
pub mod fsutil;
pub mod generation;
pub mod identity;
pub mod image;
pub mod redact;
pub mod remote;
pub mod schedule;
pub mod starter;
pub mod state;
pub mod store;
pub mod swap;
pub mod sync;

pub use error::Error;
