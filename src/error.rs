//! The one error type commands return, and the exit code each kind of failure maps to.

use crate::backup::BackupError;
use crate::cloud::CloudError;
use crate::cloudinit::UserDataError;
use crate::config::ConfigError;
use crate::fsutil::FileError;
use crate::identity::IdentityError;
use crate::store::StoreError;
use crate::swap::lock::LockError;
use crate::swap::overview::OverviewError;

/// Exit code for bad input: nothing was touched (clap uses 2 for usage errors too).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a failure after which nothing needs attention.
pub const EXIT_FAILED: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    UserData(#[from] UserDataError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Overview(#[from] OverviewError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Content(#[from] crate::content::ContentError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A step on a server failed; the message says which and why.
    #[error("{0}")]
    Failed(String),
    /// A swap ended as its report says; exit with `code` (1 undone, 3 needs attention).
    #[error("{message}")]
    Swap { message: String, code: i32 },
    /// The command line or the files it names cannot be used as they are.
    #[error("{message}\n  fix: {fix}")]
    BadInput { message: String, fix: String },
}

impl Error {
    pub fn bad_input(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::BadInput {
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::BadInput { .. } => EXIT_BAD_INPUT,
            Error::Swap { code, .. } => *code,
            Error::Bundle(
                crate::bundle::BundleError::Unreadable { .. }
                | crate::bundle::BundleError::Unsupported { .. }
                | crate::bundle::BundleError::Empty { .. },
            ) => EXIT_BAD_INPUT,
            Error::Content(crate::content::ContentError::Local { .. }) => EXIT_BAD_INPUT,
            Error::UserData(UserDataError::TooLarge { .. }) => EXIT_BAD_INPUT,
            Error::Identity(IdentityError::Load { .. }) => EXIT_BAD_INPUT,
            Error::Backup(BackupError::TargetNotEmpty { .. }) => EXIT_BAD_INPUT,
            // The same cloud or store error means the same thing from every command,
            // however deep it was wrapped (status and swap once disagreed on a 403).
            Error::Store(e)
            | Error::Overview(OverviewError::Store(e))
            | Error::Lock(LockError::Store(e))
            | Error::Backup(BackupError::Store(e))
                if e.is_bad_input() =>
            {
                EXIT_BAD_INPUT
            }
            Error::Cloud(e) | Error::Overview(OverviewError::Cloud(e)) if e.is_bad_input() => {
                EXIT_BAD_INPUT
            }
            _ => EXIT_FAILED,
        }
    }
}
