//! A bake's registration with a cloud that fetches images by URL (Exoscale): the built
//! image uploaded to the store, registered through a pre-signed URL, the upload deleted.
//! On any failure, ^C or SIGTERM, everything it did is undone: the upload and a template
//! whose registration did not finish, so a swap never boots an image nobody checked.
//! `baton bake` holds the deploy lock around it and only translates the outcome.

use std::path::PathBuf;
use std::time::Duration;

use super::Recipe;
use super::build::{self, Built};
use crate::cloud::{Cloud, CloudError, RegisterByUrl, TemplateSpec};
use crate::exit::Classify;
use crate::store::{ObjectStore, StoreError, layout};

/// How long the cloud may take to fetch the image through its pre-signed URL.
const DOWNLOAD_VALID: Duration = Duration::from_secs(2 * 3600);

/// Where a registration says which phase it is in: "upload", "register", "clean-up".
pub trait Phases {
    fn begin(&mut self, phase: &'static str);
    fn end(&mut self, detail: Option<String>);
}

/// What to register: the built image of `recipe`, under `name`, for `site`.
pub struct Bake<'a> {
    pub site: &'a str,
    pub name: &'a str,
    pub recipe: &'a Recipe,
    pub built: &'a Built,
}

/// Why the registration itself failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("interrupted")]
    Interrupted,
}

impl Classify for Failure {
    fn is_bad_input(&self) -> bool {
        match self {
            Failure::Store(e) => e.is_bad_input(),
            Failure::Cloud(e) => e.is_bad_input(),
            Failure::Interrupted => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "the bake failed and was undone (nothing left in the store or the cloud; the built \
         image stays in {}): {failure}",
        cache.display()
    )]
    Undone { failure: Failure, cache: PathBuf },
    #[error(
        "the bake failed: {failure}\n  and its undo did not finish: {problems}\n  fix: `baton \
         gc` deletes images/ objects and templates of recipes no longer in use; run the bake \
         again"
    )]
    UndoUnfinished { failure: Failure, problems: String },
    #[error(
        "baked {name} ({id}), but could not clean up: {problems}\n  fix: `baton gc` deletes \
         what is left under images/"
    )]
    Leftovers {
        name: String,
        id: String,
        problems: String,
    },
}

impl RegisterError {
    /// Whether the cloud or the store is left as it was: a failure that was undone.
    pub fn undone(&self) -> bool {
        matches!(self, RegisterError::Undone { .. })
    }
}

impl Classify for RegisterError {
    fn is_bad_input(&self) -> bool {
        match self {
            RegisterError::Undone { failure, .. } => failure.is_bad_input(),
            _ => false,
        }
    }
}

/// Uploads, registers and cleans up; returns the template's id.
pub async fn register(
    cloud: &dyn Cloud,
    registry: &dyn RegisterByUrl,
    store: &dyn ObjectStore,
    bake: &Bake<'_>,
    phases: &mut dyn Phases,
) -> Result<String, RegisterError> {
    let key = layout::image(&bake.recipe.hash);
    let result = tokio::select! {
        r = upload_and_register(registry, store, bake, &key, phases) => r,
        _ = build::interrupted() => Err(Failure::Interrupted),
    };
    phases.begin("clean-up");
    let mut problems = Vec::new();
    // The cloud has its own copy once registered; the store's is never needed again.
    if let Err(e) = store.delete(&key).await {
        problems.push(format!("{key}: {e}"));
    }
    if result.is_err() {
        // A registration that failed part-way may have left a template behind (its
        // answer lost, its download failed late): none of this name may stay, or a swap
        // would boot an image nobody checked.
        match cloud.list_own_templates().await {
            Ok(own) => {
                for t in own.iter().filter(|t| t.name == bake.name) {
                    if let Err(e) = cloud.delete_template(&t.id).await {
                        problems.push(format!("template {} ({}): {e}", t.name, t.id));
                    }
                }
            }
            Err(e) => problems.push(format!("listing templates named {}: {e}", bake.name)),
        }
    }
    phases.end(None);
    match (result, problems.is_empty()) {
        (Ok(id), true) => Ok(id),
        (Ok(id), false) => Err(RegisterError::Leftovers {
            name: bake.name.to_string(),
            id,
            problems: problems.join("; "),
        }),
        (Err(failure), true) => Err(RegisterError::Undone {
            failure,
            cache: build::cache_dir(),
        }),
        (Err(failure), false) => Err(RegisterError::UndoUnfinished {
            failure,
            problems: problems.join("; "),
        }),
    }
}

async fn upload_and_register(
    registry: &dyn RegisterByUrl,
    store: &dyn ObjectStore,
    bake: &Bake<'_>,
    key: &str,
    phases: &mut dyn Phases,
) -> Result<String, Failure> {
    let (recipe, built) = (bake.recipe, bake.built);
    phases.begin("upload");
    store.put_file(key, &built.path).await?;
    phases.end(Some(format!("{} MB to {key}", built.size / 1_000_000)));
    let url = store.download_url(key, DOWNLOAD_VALID).await?;
    phases.begin("register");
    let spec = TemplateSpec {
        name: bake.name.to_string(),
        url,
        md5: built.md5.clone(),
        default_user: recipe.settings.default_user.clone(),
        description: format!(
            "baton bake for site {}: Debian {}, recipe {}",
            bake.site, recipe.settings.suite, recipe.hash
        ),
        build: recipe.hash.clone(),
    };
    let template = registry.register_template(&spec).await?;
    phases.end(Some(format!(
        "template {} ({})",
        template.name, template.id
    )));
    Ok(template.id)
}
