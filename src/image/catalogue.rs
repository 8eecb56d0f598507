//! The site's bakes among the cloud's templates: which one a new generation boots, and
//! which `baton gc` may delete.

use super::recipe::{Recipe, is_bake_of};
use super::{BAKED, ImageError, KEEP_BAKES};
use crate::cloud::{Cloud, Template};
use crate::config::Config;

/// What a swap boots, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub template: String,
    /// The recipe hash, when the template is the site's own bake.
    pub recipe: Option<String>,
}

/// The template a new generation boots: `explicit` (a swap's `--template`), else the
/// configured one, else (`baked`) the bake of the recipe as it is now.
pub async fn choose(
    config: &Config,
    cloud: &dyn Cloud,
    explicit: Option<&str>,
) -> Result<Choice, ImageError> {
    let configured = explicit.unwrap_or(&config.instance.template);
    if configured != BAKED {
        return Ok(Choice {
            template: configured.to_string(),
            recipe: None,
        });
    }
    let recipe = Recipe::load(config)?;
    let own = cloud.list_own_templates().await?;
    let wanted = recipe.template_name(&config.site.name);
    if own.iter().any(|t| t.name == wanted) {
        return Ok(Choice {
            template: wanted,
            recipe: Some(recipe.hash),
        });
    }
    Err(ImageError::NotBaked {
        dir: recipe.dir,
        hash: recipe.hash,
        newest: match newest_bake(&own, &config.site.name) {
            Some(t) => format!(
                "; the newest bake, {}, is of another recipe (the recipe or the bundle's images \
                 changed since)",
                t.name
            ),
            None => "; the site has no baked image yet".into(),
        },
    })
}

/// The site's baked templates, oldest first.
pub fn bakes<'a>(own: &'a [Template], site: &str) -> Vec<&'a Template> {
    let mut v: Vec<&Template> = own.iter().filter(|t| is_bake_of(site, &t.name)).collect();
    v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    v
}

pub fn newest_bake<'a>(own: &'a [Template], site: &str) -> Option<&'a Template> {
    bakes(own, site).pop()
}

/// The bakes `gc` may delete: all but the newest `KEEP_BAKES` and those whose id is in
/// `booted` (an instance of the site runs it).
pub fn expired_bakes<'a>(own: &'a [Template], site: &str, booted: &[String]) -> Vec<&'a Template> {
    let all = bakes(own, site);
    let keep_from = all.len().saturating_sub(KEEP_BAKES);
    all.into_iter()
        .enumerate()
        .filter(|(i, t)| *i < keep_from && !booted.contains(&t.id))
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::template_name;

    fn t(name: &str, at: &str) -> Template {
        Template {
            id: name.into(),
            name: name.into(),
            created_at: Some(at.into()),
            description: None,
            size: None,
        }
    }

    #[test]
    fn bake_names_are_the_sites_own() {
        let name = template_name("blog", "0123456789abcdef");
        assert!(is_bake_of("blog", &name));
        assert!(!is_bake_of("blo", &name));
        assert!(!is_bake_of("blog", "baton-blog-0123"));
        assert!(!is_bake_of("blog", "Linux Debian 13 (Trixie) 64-bit"));
    }

    #[test]
    fn gc_keeps_the_newest_three_and_what_an_instance_boots() {
        let own: Vec<Template> = (1..=6)
            .map(|i| {
                t(
                    &template_name("blog", &format!("{i:016x}")),
                    &format!("2026-12-0{i}"),
                )
            })
            .chain([t("Linux Debian 13 (Trixie) 64-bit", "2026-01-01")])
            .collect();
        let booted = vec![template_name("blog", &format!("{:016x}", 1))];
        let expired: Vec<&str> = expired_bakes(&own, "blog", &booted)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            expired,
            vec![
                template_name("blog", &format!("{:016x}", 2)),
                template_name("blog", &format!("{:016x}", 3)),
            ]
        );
    }
}
