//! `baton plan`: what a swap would do now, checked read-only against the cloud and store.

use serde::Serialize;

use crate::cli::ReportArgs;
use crate::config::Config;
use crate::error::Error;
use crate::swap::overview::gather;

#[derive(Debug, Serialize)]
struct Plan {
    generation: u64,
    instance_name: String,
    elastic_ip: String,
    elastic_ip_id: String,
    /// The template the new instance would boot; `None` while the recipe is not baked.
    template: Option<String>,
    /// The recipe's hash, when the template is the site's bake (or should be).
    recipe_hash: Option<String>,
    replaces: Option<String>,
    steps: Vec<&'static str>,
    /// Why a swap started now would not go ahead.
    blockers: Vec<String>,
}

pub async fn run(args: &ReportArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let (cloud, store) = super::operator(&config).await?;
    let overview = gather(&config, cloud.as_ref(), store).await?;
    let generation = crate::swap::run::next_generation(
        overview
            .state
            .as_ref()
            .and_then(crate::state::SiteState::highest_generation),
    )?;
    let name = config.instance_name(generation);
    let mut blockers = Vec::new();
    // A recipe changed since its last bake is no bad input for a plan: it says so, as a
    // swap would refuse.
    let (template, recipe_hash) = match crate::image::choose(&config, cloud.as_ref(), None).await {
        Ok(c) => (Some(c.template), c.recipe),
        Err(crate::image::ImageError::NotBaked { hash, newest, .. }) => {
            blockers.push(format!(
                "the image recipe ({}, hash {hash}) is not baked{newest}: run `baton bake`",
                config.image.recipe.display()
            ));
            (None, Some(hash))
        }
        Err(e) => return Err(e.into()),
    };
    let spec = crate::cloud::InstanceSpec {
        template: template.clone().unwrap_or_default(),
        ..config.instance_spec(generation)
    };
    // Names that do not resolve are bad input: nothing would be created.
    cloud.preflight(&spec).await?;
    let front = cloud.find_front(config.cloud.elastic_ip).await?;
    let replaces = overview
        .state
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map(|a| a.instance.clone());
    if let Some(l) = &overview.lock {
        blockers.push(format!(
            "the deploy lock is held by {} on {}",
            l.holder, l.host
        ));
    }
    blockers.extend(crate::swap::preflight::local(&config));
    for u in &overview.unfinished {
        blockers.push(format!("unfinished {u}: resume or abort it first"));
    }
    let mut steps = vec![
        "take the deploy lock",
        "prepare: host key + certificate, TLS origin cert, provisioning key, user-data, bundle, upload artifacts",
        "register the provisioning key",
        "create the instance (found by label if it exists)",
        "wait: running, SSH with the pinned host key, cloud-init, baton restore",
        "upload the bundle and start the stack",
        "health-check the new instance over HTTPS, TLS pinned to the project's CA",
    ];
    if replaces.is_some() {
        steps.push("hand-over: final backup on the old host, catch-up on the new");
    }
    use crate::cloud::aws::Front;
    let (attach, detach) = match config.aws().map(|aws| aws.front) {
        Some(Front::Alb { .. }) => (
            "register the new instance in the target group; wait until the ALB says healthy",
            "deregister the old instance; wait out its draining",
        ),
        Some(Front::ElasticIp { .. }) => (
            "move the Elastic IP to the new instance in one call (requests fail until AWS points it there: the gap is reported)",
            "check that the old instance no longer holds the Elastic IP",
        ),
        None => (
            "attach the Elastic IP to the new instance",
            "detach the Elastic IP from the old instance",
        ),
    };
    steps.push(attach);
    steps.push("verify through the address");
    if replaces.is_some() {
        steps.push(detach);
    }
    steps.push("commit state.json (point of no return)");
    steps.push("delete the provisioning key and the generation kept before the old one");
    if replaces.is_some() {
        steps.push(
            "watch the site through the address for swap.watch: failing checks roll back to the old instance",
        );
        steps.push(
            "delete the old instance, or keep it detached for swap.keep_previous (`baton rollback`)",
        );
    }
    steps.push("release the lock");
    let plan = Plan {
        generation,
        instance_name: name,
        elastic_ip: config.cloud.elastic_ip.to_string(),
        elastic_ip_id: front,
        template,
        recipe_hash,
        replaces,
        steps,
        blockers,
    };
    super::print(args.json, &plan, || {
        let mut s = format!(
            "a swap now would create generation {} ({}) and give it {}",
            plan.generation, plan.instance_name, plan.elastic_ip
        );
        if let Some(old) = &plan.replaces {
            s.push_str(&format!(", replacing instance {old}"));
        }
        if let Some(t) = &plan.template {
            s.push_str(&format!(", booting template {t}"));
        }
        s.push_str(":\n");
        for (i, step) in plan.steps.iter().enumerate() {
            s.push_str(&format!("  {i:>2}. {step}\n"));
        }
        if plan.blockers.is_empty() {
            s.push_str(
                "nothing stands in the way (template, type, security groups, address, \
                 bundle and agent binary checked)",
            );
        } else {
            for b in &plan.blockers {
                s.push_str(&format!("blocked: {b}\n"));
            }
        }
        s.trim_end().to_string()
    });
    Ok(())
}
