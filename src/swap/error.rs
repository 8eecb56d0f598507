//! How a saga's start fails: what it starts from is not there or does not fit. Its own
//! file, below the run and each saga's start (`steps::start`, `rollback::start`), which
//! return it.

use crate::cloud::CloudError;
use crate::state::StateError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "there is nothing to roll back to: {why}\n  fix: `baton status` shows what is kept; \
         `baton swap` deploys anew"
    )]
    NothingToRollBack { why: String },
    #[error(
        "instance {name} ({id}) already carries generation {generation}'s labels, but no swap is \
         unfinished\n  fix: run `baton gc` to delete baton's instances that state.json does not name"
    )]
    Squatter {
        name: String,
        id: String,
        generation: u64,
    },
    #[error(
        "{key} names generation {}, after which there is none\n  fix: state.json was not written \
         by baton: restore it from a good copy",
        u64::MAX
    )]
    NoNextGeneration { key: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

impl crate::exit::Classify for StartError {
    fn is_bad_input(&self) -> bool {
        match self {
            StartError::NothingToRollBack { .. }
            | StartError::Squatter { .. }
            | StartError::NoNextGeneration { .. } => true,
            StartError::Store(e) => e.is_bad_input(),
            StartError::Cloud(e) => e.is_bad_input(),
            StartError::State(e) => e.is_bad_input(),
            StartError::Image(e) => e.is_bad_input(),
        }
    }
}
