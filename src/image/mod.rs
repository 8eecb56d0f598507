//! The golden image: the recipe it is baked from (a directory of the site, `image/`), the
//! hash that names one bake of it, the container images it carries, and how a swap picks
//! the template to boot.
//!
//! The hash covers every file of the recipe (names, modes, bytes) and the container images
//! the bundle runs, since those are baked in too: a new digest in `docker-compose.yml`
//! needs a new bake as much as a new package does. The baton binary is not in the image:
//! every swap sends the binary it runs with and the server checks its sha256, so a baton
//! upgrade never needs a new bake and a stale copy can never run.

pub mod build;
mod catalogue;
mod compose;
mod recipe;
pub mod register;

use std::path::PathBuf;

use crate::cloud::CloudError;

pub use catalogue::{Choice, bakes, choose, expired_bakes, newest_bake};
pub use compose::bundle_images;
pub use recipe::{Recipe, Settings, Source, is_bake_of, template_name};

/// `instance.template` when the site boots its own baked image.
pub const BAKED: &str = "baked";

/// The recipe's settings file, inside the recipe directory.
pub const RECIPE_FILE: &str = "recipe.toml";
/// Files copied onto the image's root filesystem, inside the recipe directory.
pub const FILES_DIR: &str = "files";
/// Docker archives (`docker save`) of images no registry serves, inside the recipe directory.
pub const ARCHIVES_DIR: &str = "archives";

/// How many baked templates `baton gc` keeps besides those an instance boots.
pub const KEEP_BAKES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image recipe {path}: {reason}\n  fix: {fix}")]
    Recipe {
        path: PathBuf,
        reason: String,
        fix: String,
    },
    #[error(
        "no baked image matches the recipe ({dir}, hash {hash}){newest}\n  fix: run `baton bake`, \
         or name a template with --template NAME"
    )]
    NotBaked {
        dir: PathBuf,
        hash: String,
        /// ", the newest bake is ... of another recipe", or nothing.
        newest: String,
    },
    #[error("{0}")]
    Build(String),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl crate::exit::Classify for ImageError {
    fn is_bad_input(&self) -> bool {
        match self {
            ImageError::Recipe { .. } | ImageError::NotBaked { .. } => true,
            ImageError::Build(_) => false,
            ImageError::Cloud(e) => e.is_bad_input(),
            ImageError::Store(e) => e.is_bad_input(),
        }
    }
}
