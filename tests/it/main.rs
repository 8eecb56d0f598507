//! baton's integration tests as one crate: each file of this folder is a module, so the
//! library and its AWS SDK are linked into one test binary instead of one per file (issue
//! 30: seventeen links of the same dependencies were minutes of every cold build).
//! `cargo test --test it MODULE::` runs one file's tests, e.g. `--test it swap_aws::`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod backup;
mod backup_agent;
mod bake;
mod cloud_init;
mod config_errors;
mod config_providers;
mod hostile_journal;
mod lock;
mod operator;
mod publish;
mod remote;
mod restore_hostile;
mod rollback;
mod saga;
mod ssh_identity;
mod stack;
mod store;
mod swap;
#[cfg(feature = "aws")]
mod swap_aws;
mod tls_origin;
