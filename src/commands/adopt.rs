//! `baton adopt`: a store written before the operator's objects were signed
//! (`store::sealed`) is read once, checked against the cloud, and signed. Nothing
//! unsigned is trusted blindly: every instance `state.json` names must exist and carry
//! the site's label and the generation it is named for, and a journal that is not
//! finished is refused (the baton that started it finishes it first).

use crate::cli::AdoptArgs;
use crate::cloud::{Cloud, LABEL_GENERATION, LABEL_SITE};
use crate::config::Config;
use crate::error::Error;
use crate::state::{Leftover, LeftoverKind, SiteState};
use crate::store::layout;
use crate::store::{ObjectStore, StoreError};
use crate::swap::journal::Entry;

pub async fn run(args: &AdoptArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let (cloud, sealed) = super::operator(&config).await?;
    let raw = crate::store::open(&config.store).await?;
    let mut said = Vec::new();
    let mut adopt: Vec<(String, Vec<u8>)> = Vec::new();
    let mut state = None;

    if let Some(bytes) = unsigned(sealed.as_ref(), raw.as_ref(), layout::STATE).await? {
        let mut site: SiteState = serde_json::from_slice(&bytes).map_err(|e| {
            Error::bad_input(
                format!("{} is not a state baton wrote: {e}", layout::STATE),
                "restore it from a copy you trust, or delete it if no server was ever deployed",
            )
        })?;
        check(&config, cloud.as_ref(), &mut site, &mut said).await?;
        state = Some(site);
    }
    for o in raw.list(layout::JOURNALS).await? {
        let Some(id) = layout::journal_id(&o.key) else {
            continue;
        };
        let Some(bytes) = unsigned(sealed.as_ref(), raw.as_ref(), &o.key).await? else {
            continue;
        };
        let entry = Entry::parse(id, &bytes).map_err(|e| {
            Error::bad_input(
                format!("journal {} does not parse: {e}", o.key),
                "delete it from the store once you know no swap is running",
            )
        })?;
        if entry.is_unfinished() {
            return Err(Error::bad_input(
                format!("{} is not finished, and not signed", entry.describe()),
                "finish or undo it with the baton that started it (`swap --resume` or \
                 `--abort`), then adopt",
            ));
        }
        said.push(format!("{}: finished, kept as history", o.key));
        adopt.push((o.key.clone(), bytes));
    }

    let count = adopt.len() + usize::from(state.is_some());
    if count == 0 {
        println!("nothing to adopt: every object the operator writes is signed");
        return Ok(());
    }
    for line in &said {
        println!("  {line}");
    }
    if args.dry_run {
        println!("would sign {count} objects (--dry-run: nothing written)");
        return Ok(());
    }
    if let Some(site) = &state {
        crate::state::write(sealed.as_ref(), site)
            .await
            .map_err(crate::swap::overview::OverviewError::from)?;
    }
    for (key, bytes) in adopt {
        sealed.put(&key, bytes).await?;
    }
    println!(
        "signed {count} objects with the host CA key; the store's unsigned objects are refused from now on"
    );
    Ok(())
}

/// The object at `key` if it exists and is not signed yet.
async fn unsigned(
    sealed: &dyn ObjectStore,
    raw: &dyn ObjectStore,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    match sealed.get(key).await {
        Ok(_) => Ok(None),
        Err(StoreError::NotSealed { .. }) => Ok(raw.get(key).await?),
        Err(e) => Err(e.into()),
    }
}

/// Checks what `site` names against the cloud: the active instance must be the site's,
/// or nothing is adopted; a kept one that is not is dropped, said so.
async fn check(
    config: &Config,
    cloud: &dyn Cloud,
    site: &mut SiteState,
    said: &mut Vec<String>,
) -> Result<(), Error> {
    if let Some(a) = &site.active {
        if let Err(why) = is_generation(config, cloud, &a.instance, a.generation).await? {
            return Err(Error::bad_input(
                format!(
                    "{} names instance {} as generation {}, but {why}",
                    layout::STATE,
                    a.instance,
                    a.generation
                ),
                "restore state.json from a copy you trust; nothing was signed",
            ));
        }
        said.push(format!(
            "active: generation {} on {}: checked",
            a.generation, a.instance
        ));
    }
    if let Some(p) = site.previous.clone() {
        match is_generation(config, cloud, &p.active.instance, p.active.generation).await? {
            Ok(()) => said.push(format!(
                "previous: generation {} on {}: checked",
                p.active.generation, p.active.instance
            )),
            Err(why) => {
                said.push(format!(
                    "previous: generation {} on {} dropped: {why}",
                    p.active.generation, p.active.instance
                ));
                site.previous = None;
            }
        }
    }
    if let Some(r) = site.rolled_back.as_mut()
        && r.kept_until.is_some()
        && let Err(why) = is_generation(config, cloud, &r.instance, r.generation).await?
    {
        said.push(format!(
            "rolled back: generation {} on {} no longer kept: {why}",
            r.generation, r.instance
        ));
        r.kept_until = None;
    }
    let prefix = config.key_prefix();
    let mut kept = Vec::new();
    for l in std::mem::take(&mut site.leftovers) {
        let ours = match &l {
            Leftover::Resource {
                kind: LeftoverKind::SshKey,
                name,
                ..
            } => name.starts_with(&prefix),
            Leftover::Resource {
                kind: LeftoverKind::Instance,
                name,
                generation,
                ..
            } => match generation {
                Some(g) => is_generation(config, cloud, name, *g).await?.is_ok(),
                None => false,
            },
            Leftover::Note(_) => true, // text only: nothing acts on it
        };
        if ours {
            kept.push(l);
        } else {
            said.push(format!("leftover dropped, not the site's: {l}"));
        }
    }
    site.leftovers = kept;
    Ok(())
}

/// Ok when `id` exists and carries the site's label and `generation`; Err says why not.
async fn is_generation(
    config: &Config,
    cloud: &dyn Cloud,
    id: &str,
    generation: u64,
) -> Result<Result<(), String>, Error> {
    let Some(i) = cloud.get_instance(id).await? else {
        return Ok(Err("the cloud has no such instance".into()));
    };
    let site = i.labels.get(LABEL_SITE).map(String::as_str);
    let g = i.labels.get(LABEL_GENERATION).map(String::as_str);
    if site != Some(config.site.name.as_str()) || g != Some(generation.to_string().as_str()) {
        return Ok(Err(format!(
            "it carries {LABEL_SITE}={site:?} and {LABEL_GENERATION}={g:?}"
        )));
    }
    Ok(Ok(()))
}
