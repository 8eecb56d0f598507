//! `baton bake`: builds the golden image from the recipe (`image/`) and registers it with
//! the cloud as a template named by the site and the recipe's hash, so a swap boots
//! exactly the recipe in the repository.
//!
//! A recipe baked before is found again by that name and not baked twice. A failed bake
//! leaves nothing behind in the cloud or the store: the uploaded image and a template
//! whose registration did not finish are deleted before it exits. The built image stays
//! in the local cache, so running the bake again starts from it, not from the mirror.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::cli::BakeArgs;
use crate::cloud::{Cloud, RegisterByUrl};
use crate::config::Config;
use crate::error::Error;
use crate::image::Recipe;
use crate::image::build::{self, Built, Line};
use crate::image::register::{Bake, Phases, register};
use crate::swap::lock::{DeployLock, Holder};

#[derive(Serialize)]
struct Summary {
    /// baked | already-baked | built | dry-run
    outcome: &'static str,
    recipe: String,
    recipe_hash: String,
    template: String,
    template_id: Option<String>,
    image: Option<ImageReport>,
    packages: Vec<String>,
    images_pulled: Vec<String>,
    images_loaded: Vec<String>,
    steps: Vec<super::progress::StepReport>,
    total_seconds: f64,
}

#[derive(Debug, Serialize)]
struct ImageReport {
    path: String,
    size: u64,
    md5: String,
    /// Built by an earlier bake of the same recipe on this machine.
    cached: bool,
}

pub async fn run(args: &BakeArgs) -> Result<(), Error> {
    let started = Instant::now();
    let config = Config::load(&args.config.path)?;
    let recipe = Recipe::load(&config)?;
    let site = config.site.name.clone();
    let name = recipe.template_name(&site);
    let mut summary = Summary {
        outcome: "dry-run",
        recipe: recipe.dir.display().to_string(),
        recipe_hash: recipe.hash.clone(),
        template: name.clone(),
        template_id: None,
        image: None,
        packages: recipe.settings.packages.clone(),
        images_pulled: recipe.pulled().map(str::to_string).collect(),
        images_loaded: recipe.loaded().map(|(r, _)| r.to_string()).collect(),
        steps: Vec::new(),
        total_seconds: 0.0,
    };
    let progress = Arc::new(super::progress::StepLines::new());
    let mut steps = Steps::new(progress.clone());

    if args.dry_run {
        let cached = build::cached_path(&site, &recipe);
        if cached.is_file() {
            summary.image = Some(ImageReport {
                path: cached.display().to_string(),
                size: std::fs::metadata(&cached).map(|m| m.len()).unwrap_or(0),
                md5: String::new(),
                cached: true,
            });
        }
        // Read-only: whether the cloud has it already, when the cloud can be asked.
        if let Ok((cloud, _)) = super::operator(&config).await {
            let own = cloud.list_own_templates().await?;
            if let Some(t) = own.iter().find(|t| t.name == name) {
                summary.outcome = "already-baked";
                summary.template_id = Some(t.id.clone());
            }
        }
        drop(progress);
        return finish(args, summary, started, &steps);
    }

    if args.build_only {
        let built = steps.build(&site, &recipe).await?;
        summary.outcome = "built";
        summary.image = Some(report_of(&built));
        drop(progress);
        return finish(args, summary, started, &steps);
    }

    let (cloud, store) = super::operator(&config).await?;
    let cloud: Arc<dyn Cloud> = cloud;
    // Before the build: a cloud that cannot register an image this way is known now.
    let registry = registry(cloud.as_ref(), &name)?;
    if let Some(t) = find(cloud.as_ref(), &name).await? {
        progress_note(&progress, &format!("{name} is baked already ({})", t.id));
        summary.outcome = "already-baked";
        summary.template_id = Some(t.id);
        drop(progress);
        return finish(args, summary, started, &steps);
    }
    let built = steps.build(&site, &recipe).await?;
    summary.image = Some(report_of(&built));

    // One bake or swap or gc at a time: two bakes of one recipe would register it twice,
    // and gc deletes images/ objects that no bake holds the lock for.
    let lock = Arc::new(DeployLock::new(
        store.clone(),
        Arc::new(crate::clock::SystemClock),
        crate::swap::run::LEASE,
    ));
    let held = lock.hold(&Holder::this_process(), args.lock_wait).await?;
    let registered = async {
        // Another bake may have registered it while this one built.
        if let Some(t) = find(cloud.as_ref(), &name).await? {
            return Ok::<_, Error>(t.id);
        }
        let bake = Bake {
            site: &site,
            name: &name,
            recipe: &recipe,
            built: &built,
        };
        register(cloud.as_ref(), registry, store.as_ref(), &bake, &mut steps)
            .await
            .map_err(|e| {
                use crate::exit::{Classify, EXIT_ATTENTION, EXIT_BAD_INPUT, EXIT_FAILED};
                let code = match (e.undone(), e.is_bad_input()) {
                    (true, true) => EXIT_BAD_INPUT,
                    (true, false) => EXIT_FAILED,
                    (false, _) => EXIT_ATTENTION,
                };
                Error::Swap {
                    message: e.to_string(),
                    code,
                }
            })
    }
    .await;
    held.release_or_warn().await;
    let id = registered?;
    summary.outcome = "baked";
    summary.template_id = Some(id);
    for old in build::prune_cache(&site, &recipe) {
        progress_note(
            &progress,
            &format!(
                "removed the cached image of an older recipe: {}",
                old.display()
            ),
        );
    }
    drop(progress);
    finish(args, summary, started, &steps)
}

/// The cloud's registration by URL, or what to do on a cloud without one.
fn registry<'a>(cloud: &'a dyn Cloud, name: &str) -> Result<&'a dyn RegisterByUrl, Error> {
    cloud.by_url().ok_or_else(|| {
        Error::bad_input(
            "baton bake registers images on Exoscale only",
            format!(
                "on AWS, build with `baton bake --build-only`, import the qcow2 as an AMI \
                 named {name} (aws ec2 import-image), and keep instance.template = \"baked\""
            ),
        )
    })
}

async fn find(cloud: &dyn Cloud, name: &str) -> Result<Option<crate::cloud::Template>, Error> {
    Ok(cloud
        .list_own_templates()
        .await?
        .into_iter()
        .find(|t| t.name == name))
}

fn report_of(b: &Built) -> ImageReport {
    ImageReport {
        path: b.path.display().to_string(),
        size: b.size,
        md5: b.md5.clone(),
        cached: b.cached,
    }
}

fn progress_note(p: &super::progress::StepLines, line: &str) {
    crate::swap::run::Progress::note(p, line);
}

fn finish(
    args: &BakeArgs,
    mut summary: Summary,
    started: Instant,
    steps: &Steps,
) -> Result<(), Error> {
    summary.steps = steps.reports();
    summary.total_seconds = started.elapsed().as_secs_f64();
    super::print(args.json, &summary, || {
        let head = match summary.outcome {
            "baked" => format!(
                "baked {} ({})",
                summary.template,
                summary.template_id.as_deref().unwrap_or("?")
            ),
            "already-baked" => format!(
                "{} is baked already ({}): nothing to do",
                summary.template,
                summary.template_id.as_deref().unwrap_or("?")
            ),
            "built" => format!(
                "built {} into {}",
                summary.template,
                summary
                    .image
                    .as_ref()
                    .map(|i| i.path.as_str())
                    .unwrap_or("?")
            ),
            _ => format!(
                "would bake {} from {} (recipe {}): {} extra packages, {} images pulled by \
                 digest, {} loaded from archives{}",
                summary.template,
                summary.recipe,
                summary.recipe_hash,
                summary.packages.len(),
                summary.images_pulled.len(),
                summary.images_loaded.len(),
                match &summary.image {
                    Some(i) => format!("; built already: {}", i.path),
                    None => String::new(),
                }
            ),
        };
        let mut out = head;
        if !summary.steps.is_empty() {
            out.push_str(&super::progress::time_lines(
                &steps.times,
                summary.total_seconds,
            ));
        }
        out
    });
    Ok(())
}

/// The bake's steps, timed, with their lines on stderr.
struct Steps {
    progress: Arc<super::progress::StepLines>,
    times: Vec<crate::swap::saga::StepTime>,
    current: &'static str,
    started: Instant,
}

impl Steps {
    fn new(progress: Arc<super::progress::StepLines>) -> Steps {
        Steps {
            progress,
            times: Vec::new(),
            current: "",
            started: Instant::now(),
        }
    }
}

impl Phases for Steps {
    fn begin(&mut self, name: &'static str) {
        self.current = name;
        self.started = Instant::now();
        progress_note(&self.progress, &format!("bake: {name} ..."));
    }

    fn end(&mut self, detail: Option<String>) {
        let took = self.started.elapsed();
        progress_note(
            &self.progress,
            &format!(
                "bake: {} ({:.1}s){}",
                self.current,
                took.as_secs_f64(),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        );
        self.times.push(crate::swap::saga::StepTime {
            step: self.current,
            took,
        });
    }
}

impl Steps {
    async fn build(&mut self, site: &str, recipe: &Recipe) -> Result<Built, Error> {
        self.begin("build");
        let progress = self.progress.clone();
        // The builder's own steps, each with its time once the next one begins.
        let part: std::sync::Mutex<Option<(String, Instant)>> = std::sync::Mutex::new(None);
        let took = |p: &Option<(String, Instant)>| {
            p.as_ref()
                .map(|(name, at)| format!("      {name}: {:.1}s", at.elapsed().as_secs_f64()))
        };
        let on_line = |line: Line<'_>| {
            if line.step {
                let mut p = crate::sync::lock(&part);
                if let Some(done) = took(&p) {
                    progress_note(&progress, &done);
                }
                progress_note(&progress, &format!("      {} ...", line.text));
                *p = Some((line.text.to_string(), Instant::now()));
            } else {
                crate::swap::run::Progress::detail(progress.as_ref(), line.text);
            }
        };
        let built = build::build(site, recipe, &on_line).await;
        if let Some(done) = took(&crate::sync::lock(&part)) {
            progress_note(&self.progress, &done);
        }
        let built = built?;
        self.end(Some(if built.cached {
            format!("the cached image {}", built.path.display())
        } else {
            format!("{} ({} MB)", built.path.display(), built.size / 1_000_000)
        }));
        Ok(built)
    }

    fn reports(&self) -> Vec<super::progress::StepReport> {
        super::progress::step_reports(&self.times)
    }
}
