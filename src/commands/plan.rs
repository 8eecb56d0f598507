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
    /// The address the site answers on, and what kind of front carries it.
    front: String,
    front_kind: &'static str,
    /// Its id, as the cloud names it.
    front_id: String,
    /// The template the new instance would boot; `None` while the recipe is not baked.
    template: Option<String>,
    /// The recipe's hash, when the template is the site's bake (or should be).
    recipe_hash: Option<String>,
    replaces: Option<String>,
    steps: Vec<String>,
    /// Why a swap started now would not go ahead.
    blockers: Vec<String>,
    /// Which key goes where (issue 29): the variable and the key's last four characters.
    keys: Keys,
    /// What a careful operator changes, though the swap would go ahead.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Keys {
    /// The operator's cloud key: this machine only.
    cloud: Option<String>,
    /// The operator's store key: this machine only.
    store: Option<String>,
    /// The servers' store key: written into every server's agent.env.
    servers: Option<String>,
}

/// `VAR (…tail)` for a key set in `var`.
fn named(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| format!("{var} (ending in {})", crate::cloud::key_tail(&v)))
}

/// Which key goes where, and what to change about it.
fn keys(config: &Config) -> (Keys, Vec<String>) {
    let provider = config.provider();
    let cloud_var = provider.key_var();
    // Where the store's variables are the cloud's too (AWS), one key cannot be both.
    let shared = provider.shares_store_variables();
    let server = crate::generation::server_key(config, &|v| std::env::var(v).ok());
    let keys = Keys {
        cloud: named(cloud_var),
        store: named("AWS_ACCESS_KEY_ID"),
        servers: server.credentials.as_ref().map(|c| {
            format!(
                "{} (ending in {})",
                server.from,
                crate::cloud::key_tail(&c.access_key_id)
            )
        }),
    };
    let mut warnings = Vec::new();
    let id = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    if !shared
        && id("AWS_ACCESS_KEY_ID").is_some()
        && id("AWS_ACCESS_KEY_ID") == id("EXOSCALE_API_KEY")
    {
        warnings.push(
            "one Exoscale API key is both the cloud's and the store's: give the store a key \
             of its own (an IAM role limited to the bucket), so that what handles the store \
             never holds the cloud account"
                .to_string(),
        );
    }
    if server.from == "AWS_ACCESS_KEY_ID" && server.credentials.is_some() {
        warnings.push(
            "the servers get the operator's store key (AWS_ACCESS_KEY_ID): set \
             BATON_SERVER_ACCESS_KEY_ID and BATON_SERVER_SECRET_ACCESS_KEY to a key for the \
             bucket alone"
                .to_string(),
        );
    }
    (keys, warnings)
}

pub async fn run(args: &ReportArgs) -> Result<(), Error> {
    let config = Config::load(&args.config.path)?;
    let (cloud, store) = super::operator(&config).await?;
    let overview = gather(&config, cloud.as_ref(), store).await?;
    let generation = crate::swap::steps::next_generation(
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
    let front = config.front();
    let front_id = cloud.find_front(front.address).await?;
    let replaces = overview
        .state
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map(|a| a.instance.clone());
    let mut lock_notes = Vec::new();
    if let Some(l) = &overview.lock {
        let now = crate::clock::unix_seconds(std::time::SystemTime::now());
        if l.stands_in_the_way(now, &crate::swap::lock::Holder::this_process()) {
            blockers.push(format!(
                "the deploy lock is held by {} on {}",
                l.holder, l.host
            ));
        } else {
            // Expired, or its process on this machine is gone: a swap takes it over.
            lock_notes.push(format!(
                "the deploy lock's lease by {} on {} has ended (expired, or its process is \
                 gone): a swap takes it over",
                l.holder, l.host
            ));
        }
    }
    blockers.extend(crate::swap::preflight::local(&config));
    blockers.extend(crate::swap::preflight::server_key_missing(&config));
    for u in &overview.unfinished {
        blockers.push(format!("unfinished {u}: resume or abort it first"));
    }
    let mut steps: Vec<String> = [
        "take the deploy lock",
        "prepare: host key + certificate, TLS origin cert, provisioning key, user-data, bundle, upload artifacts",
        "register the provisioning key",
    ]
    .map(String::from)
    .into();
    if let Some(p) = overview.state.as_ref().and_then(|s| s.previous.as_ref()) {
        steps.push(format!(
            "delete generation {} ({}), kept for a rollback, before the new server boots: two \
             servers at most, and no rollback to it afterwards",
            p.active.generation, p.active.instance
        ));
    }
    let mut push = |step: &str| steps.push(step.to_string());
    push("create the instance (found by label if it exists)");
    push("wait: running, SSH with the pinned host key, cloud-init, baton restore");
    push("upload the bundle and start the stack");
    push("health-check the new instance over HTTPS, TLS pinned to the project's CA");
    if replaces.is_some() {
        push("hand-over: final backup on the old host, catch-up on the new");
    }
    push(front.attach);
    push("verify through the address");
    if replaces.is_some() {
        push(front.detach);
    }
    push("commit state.json (point of no return)");
    push("delete the provisioning key");
    if replaces.is_some() {
        push(
            "watch the site through the address for swap.watch: failing checks roll back to the old instance",
        );
        push(
            "delete the old instance, or keep it detached for swap.keep_previous (`baton rollback`)",
        );
    }
    push("release the lock");
    let (keys, mut warnings) = keys(&config);
    warnings.extend(lock_notes);
    let plan = Plan {
        generation,
        instance_name: name,
        front: front.address.to_string(),
        front_kind: front.kind,
        front_id,
        template,
        recipe_hash,
        replaces,
        steps,
        blockers,
        keys,
        warnings,
    };
    super::print(args.json, &plan, || {
        let mut s = format!(
            "a swap now would create generation {} ({}) and give it {}",
            plan.generation, plan.instance_name, plan.front
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
        let unset = || "not set".to_string();
        s.push_str(&format!(
            "keys: cloud {} (this machine only); store {} (this machine only); servers' \
             store key {} (every server's agent.env)\n",
            plan.keys.cloud.clone().unwrap_or_else(unset),
            plan.keys.store.clone().unwrap_or_else(unset),
            plan.keys.servers.clone().unwrap_or_else(unset),
        ));
        for w in &plan.warnings {
            s.push_str(&format!("warning: {w}\n"));
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
