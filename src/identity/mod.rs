//! Who a server is: its SSH host key with a certificate from the operator's host CA, and
//! its TLS origin certificate from the project's TLS CA.
//!
//! Both CAs are created once by `baton init`. Every generation gets fresh keys, so
//! nothing on the operator's side changes across swaps: `known_hosts` holds one
//! `@cert-authority` line, and the swap pins the TLS CA.

pub mod ssh;
pub mod tls;

/// The longest a host or origin certificate may live: every swap issues new ones, so a
/// longer one buys nothing, and far larger values overflow the time arithmetic.
pub const MAX_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3650 * 24 * 3600);

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot load {what} from {path}: {reason}\n  fix: {fix}")]
    Load {
        what: &'static str,
        path: PathBuf,
        reason: String,
        fix: &'static str,
    },
    #[error("cannot {action}: {reason}")]
    Crypto {
        action: &'static str,
        reason: String,
    },
}

impl crate::exit::Classify for IdentityError {
    fn is_bad_input(&self) -> bool {
        matches!(self, IdentityError::Load { .. })
    }
}

impl IdentityError {
    pub(crate) fn crypto(action: &'static str, e: impl std::fmt::Display) -> Self {
        IdentityError::Crypto {
            action,
            reason: e.to_string(),
        }
    }
}
