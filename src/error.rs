//! The one error type commands return, and the exit code each kind of failure maps to.

use crate::backup::BackupError;
use crate::cloud::CloudError;
use crate::cloudinit::UserDataError;
use crate::config::ConfigError;
use crate::exit::{Classify, EXIT_BAD_INPUT, EXIT_FAILED};
use crate::fsutil::FileError;
use crate::identity::IdentityError;
use crate::store::StoreError;
use crate::swap::journal::JournalError;
use crate::swap::lock::LockError;
use crate::swap::overview::OverviewError;

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
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    SwapRun(#[from] crate::swap::run::RunError),
    #[error(transparent)]
    SwapStart(#[from] crate::swap::error::StartError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Generation(#[from] crate::generation::GenerationError),
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
        let bad_input = match self {
            Error::BadInput { .. } => true,
            Error::Swap { code, .. } => return *code,
            Error::Failed(_) => false,
            Error::Config(e) => e.is_bad_input(),
            Error::Identity(e) => e.is_bad_input(),
            Error::Generation(e) => e.is_bad_input(),
            Error::UserData(e) => e.is_bad_input(),
            Error::File(e) => e.is_bad_input(),
            Error::Backup(e) => e.is_bad_input(),
            Error::Store(e) => e.is_bad_input(),
            Error::Cloud(e) => e.is_bad_input(),
            Error::Overview(e) => e.is_bad_input(),
            Error::Bundle(e) => e.is_bad_input(),
            Error::Content(e) => e.is_bad_input(),
            Error::Lock(e) => e.is_bad_input(),
            Error::Journal(e) => e.is_bad_input(),
            Error::SwapRun(e) => e.is_bad_input(),
            Error::SwapStart(e) => e.is_bad_input(),
            Error::Image(e) => e.is_bad_input(),
        };
        if bad_input {
            EXIT_BAD_INPUT
        } else {
            EXIT_FAILED
        }
    }
}

impl Classify for ConfigError {
    fn is_bad_input(&self) -> bool {
        true
    }
}

impl Classify for FileError {
    fn is_bad_input(&self) -> bool {
        false
    }
}
