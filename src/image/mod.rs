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

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cloud::{Cloud, CloudError, Template};
use crate::config::Config;

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

/// `recipe.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub suite: String,
    #[serde(default = "default_mirror")]
    pub mirror: String,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default = "default_size_gb")]
    pub size_gb: u32,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default = "default_user")]
    pub default_user: String,
    /// A program that builds the image instead of baton's own builder (relative to the
    /// recipe directory), given the same environment (`src/image/build.sh` documents it).
    #[serde(default)]
    pub builder: Option<PathBuf>,
}

fn default_mirror() -> String {
    "http://deb.debian.org/debian".into()
}

fn default_size_gb() -> u32 {
    4
}

fn default_user() -> String {
    "debian".into()
}

/// Where one container image the bundle runs comes from at bake time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Pulled from its registry by the digest the compose file pins.
    Pull(String),
    /// Loaded from a docker archive in the recipe's `archives/`.
    Archive { reference: String, file: PathBuf },
}

/// A recipe as it is on disk now.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub dir: PathBuf,
    pub settings: Settings,
    /// 16 hex characters of the SHA-256 over the recipe and the bundle's images.
    pub hash: String,
    /// Every image the bundle's services run, and where the bake gets it.
    pub images: Vec<Source>,
}

impl Recipe {
    pub fn load(config: &Config) -> Result<Recipe, ImageError> {
        Recipe::at(
            &config.resolve(&config.image.recipe),
            &config.resolve(&config.bundle.dir),
        )
    }

    /// The recipe in `dir`, for a bundle in `bundle_dir`.
    pub fn at(dir: &Path, bundle_dir: &Path) -> Result<Recipe, ImageError> {
        let dir = dir.to_path_buf();
        let settings_path = dir.join(RECIPE_FILE);
        let bad = |path: &Path, reason: String, fix: &str| ImageError::Recipe {
            path: path.to_path_buf(),
            reason,
            fix: fix.to_string(),
        };
        let text = crate::fsutil::read_small(&settings_path).map_err(|e| {
            bad(
                &settings_path,
                e.to_string(),
                "create it (`baton init` writes one), or set image.recipe to the recipe's directory",
            )
        })?;
        let settings: Settings = toml::from_str(&text).map_err(|e| {
            bad(
                &settings_path,
                e.message().to_string(),
                "see the comments of the recipe.toml that `baton init` writes",
            )
        })?;
        validate(&settings, &settings_path)?;
        // Absolute: the builder runs in the recipe directory, with these paths.
        let dir = dir.canonicalize().unwrap_or(dir);
        if let Some(builder) = &settings.builder {
            // Inside the recipe, so its bytes are in the recipe's hash: a builder elsewhere
            // could change while the bake still found its old image by the same name.
            let inside = dir
                .join(builder)
                .canonicalize()
                .is_ok_and(|b| b.starts_with(&dir) && b.is_file());
            if !inside {
                return Err(bad(
                    &settings_path,
                    format!(
                        "builder {:?} is not a file inside the recipe directory {}",
                        clip(&builder.to_string_lossy()),
                        dir.display()
                    ),
                    "put the builder program in the recipe directory and name it relative to \
                     it (its bytes are part of the recipe's hash)",
                ));
            }
        }
        let files = crate::fsutil::regular_files(&dir)
            .map_err(|e| bad(&dir, e.to_string(), "keep only regular files in the recipe"))?;
        let mut h = Sha256::new();
        for (name, path) in &files {
            let meta = std::fs::metadata(path)
                .map_err(|e| bad(path, e.to_string(), "check its permissions"))?;
            let mut file = std::fs::File::open(path)
                .map_err(|e| bad(path, e.to_string(), "check its permissions"))?;
            // Length-prefixed, so no two trees hash alike by moving bytes between files;
            // the mode too, since the image keeps it.
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update(meta.permissions().mode().to_be_bytes());
            h.update(meta.len().to_be_bytes());
            std::io::copy(&mut file, &mut h)
                .map_err(|e| bad(path, e.to_string(), "check its permissions"))?;
        }
        let archives = archive_tags(&dir.join(ARCHIVES_DIR))?;
        let mut images = Vec::new();
        for reference in bundle_images(bundle_dir)? {
            if !is_reference(&reference) {
                return Err(bad(
                    bundle_dir,
                    format!(
                        "the image reference {:?} is not one a registry accepts",
                        clip(&reference)
                    ),
                    "write NAME[:TAG]@sha256:<64 hex digits>, with letters, digits and . _ - / : \
                     only",
                ));
            }
            h.update(b"image\0");
            h.update(reference.as_bytes());
            h.update(b"\0");
            if let Some(file) = archives.get(&reference) {
                images.push(Source::Archive {
                    reference,
                    file: file.clone(),
                });
            } else if is_pinned(&reference) {
                images.push(Source::Pull(reference));
            } else {
                return Err(bad(
                    bundle_dir,
                    format!(
                        "the image {reference:?} is named by a tag only: a tag can move, so the \
                         bake and a later pull could run different bytes"
                    ),
                    "pin it by digest (image: NAME:TAG@sha256:...), or put a docker archive \
                     of it in the recipe's archives/",
                ));
            }
        }
        Ok(Recipe {
            dir,
            settings,
            hash: hex::encode(h.finalize())[..16].to_string(),
            images,
        })
    }

    /// The images the bake pulls from their registries, by digest.
    pub fn pulled(&self) -> impl Iterator<Item = &str> {
        self.images.iter().filter_map(|s| match s {
            Source::Pull(r) => Some(r.as_str()),
            Source::Archive { .. } => None,
        })
    }

    /// The images the bake loads from docker archives: each reference and its file.
    pub fn loaded(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.images.iter().filter_map(|s| match s {
            Source::Archive { reference, file } => Some((reference.as_str(), file.as_path())),
            Source::Pull(_) => None,
        })
    }

    /// The template name a bake of this recipe registers.
    pub fn template_name(&self, site: &str) -> String {
        template_name(site, &self.hash)
    }
}

fn validate(s: &Settings, path: &Path) -> Result<(), ImageError> {
    let bad = |field: &str, fix: &str| ImageError::Recipe {
        path: path.to_path_buf(),
        reason: format!("{field} is not valid"),
        fix: fix.to_string(),
    };
    let debian_name = |n: &str| {
        !n.is_empty()
            && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    };
    if !debian_name(&s.suite) {
        return Err(bad("suite", "name a Debian suite, e.g. \"trixie\""));
    }
    if !(s.mirror.starts_with("http://") || s.mirror.starts_with("https://"))
        || s.mirror.contains(char::is_whitespace)
    {
        return Err(bad("mirror", "give an http(s) URL of a Debian mirror"));
    }
    if let Some(p) = s.packages.iter().find(|p| !debian_name(p)) {
        return Err(ImageError::Recipe {
            path: path.to_path_buf(),
            reason: format!("packages: {p:?} is not a Debian package name"),
            fix: "write package names only (lower case, digits, + - .)".into(),
        });
    }
    if !(2..=1024).contains(&s.size_gb) {
        return Err(bad("size_gb", "give 2 to 1024 (GB)"));
    }
    // grub.cfg is a script: `;`, braces, quotes or `$` there would be GRUB's syntax, not
    // the kernel's. Kernel parameters need none of it.
    if !s
        .cmdline
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" -_.,:=/+@%".contains(&b))
    {
        return Err(bad(
            "cmdline",
            "write kernel parameters only: letters, digits, spaces and - _ . , : = / + @ %",
        ));
    }
    if !debian_name(&s.default_user) {
        return Err(bad("default_user", "give a user name, e.g. \"debian\""));
    }
    Ok(())
}

/// At most 80 characters of a name read from a file, for a message.
fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Whether a registry would take `reference` as it is: a name of letters, digits and
/// `. _ - / :`, then at most one `@sha256:` digest. Nothing else reaches the builder.
fn is_reference(reference: &str) -> bool {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        && (!reference.contains('@') || is_pinned(reference))
}

/// Whether `reference` names its image by a whole SHA-256 digest (64 lower-case hex).
fn is_pinned(reference: &str) -> bool {
    reference
        .split_once("@sha256:")
        .is_some_and(|(name, digest)| {
            !name.is_empty()
                && digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub fn template_name(site: &str, hash: &str) -> String {
    format!("baton-{site}-{hash}")
}

/// Whether `name` is one of `site`'s baked templates.
pub fn is_bake_of(site: &str, name: &str) -> bool {
    name.strip_prefix(&format!("baton-{site}-"))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The compose files `docker compose` reads in the bundle by itself, in its order: the
/// file, then its override.
const COMPOSE_FILES: [[&str; 2]; 2] = [
    ["compose.yaml", "compose.override.yaml"],
    ["docker-compose.yml", "docker-compose.override.yml"],
];

/// The images the bundle's services run, sorted: each service's `image:` as the override
/// file leaves it (a service's image there replaces the main file's).
pub fn bundle_images(bundle_dir: &Path) -> Result<Vec<String>, ImageError> {
    let mut by_service: BTreeMap<String, String> = BTreeMap::new();
    let Some(pair) = COMPOSE_FILES
        .iter()
        .find(|pair| bundle_dir.join(pair[0]).is_file())
    else {
        return Ok(Vec::new());
    };
    for name in pair {
        let path = bundle_dir.join(name);
        if !path.is_file() {
            continue;
        }
        let bad = |reason: String| ImageError::Recipe {
            path: path.clone(),
            reason,
            fix: "fix the compose file (`docker compose config` shows what is wrong)".into(),
        };
        let text = crate::fsutil::read_small(&path).map_err(|e| bad(e.to_string()))?;
        let doc: serde_norway::Value =
            serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
            continue;
        };
        for (service, def) in services {
            let (Some(service), Some(image)) =
                (service.as_str(), def.get("image").and_then(|i| i.as_str()))
            else {
                continue;
            };
            by_service.insert(service.to_string(), image.to_string());
        }
    }
    let mut images: Vec<String> = by_service.into_values().collect();
    images.sort();
    images.dedup();
    Ok(images)
}

/// The references (`RepoTags`) each docker archive in `dir` carries.
fn archive_tags(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    let mut tags = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(tags);
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for file in files {
        let bad = |reason: String| ImageError::Recipe {
            path: file.clone(),
            reason,
            fix: "put `docker save` archives there, and nothing else".into(),
        };
        let f = std::fs::File::open(&file).map_err(|e| bad(e.to_string()))?;
        let mut archive = tar::Archive::new(f);
        let mut manifest = None;
        for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            if entry.path().ok().as_deref() == Some(Path::new("manifest.json")) {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(&mut entry, 1 << 20),
                    &mut text,
                )
                .map_err(|e| bad(e.to_string()))?;
                manifest = Some(text);
                break;
            }
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "RepoTags", default)]
            repo_tags: Vec<String>,
        }
        let entries: Vec<Entry> =
            serde_json::from_str(&manifest.ok_or_else(|| bad("it holds no manifest.json".into()))?)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
        for tag in entries.into_iter().flat_map(|e| e.repo_tags) {
            tags.insert(tag, file.clone());
        }
    }
    Ok(tags)
}

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

    const AA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn recipe_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::create_dir_all(dir.path().join("image/files/etc")).unwrap();
        std::fs::write(dir.path().join("image/recipe.toml"), "suite = \"trixie\"\n").unwrap();
        std::fs::write(dir.path().join("image/files/etc/motd"), "hello\n").unwrap();
        dir
    }

    #[test]
    fn the_hash_follows_the_recipe_and_the_bundles_images() {
        let dir = recipe_dir();
        let compose = dir.path().join("docker/docker-compose.yml");
        std::fs::write(
            &compose,
            format!("services:\n  a:\n    image: caddy:2@sha256:{AA}\n"),
        )
        .unwrap();
        let load = || Recipe::at(&dir.path().join("image"), &dir.path().join("docker"));
        let first = load().unwrap().hash;
        assert_eq!(first.len(), 16);
        assert_eq!(load().unwrap().hash, first, "stable");
        std::fs::write(
            &compose,
            format!("services:\n  a:\n    image: caddy:2@sha256:{BB}\n"),
        )
        .unwrap();
        let second = load().unwrap().hash;
        assert_ne!(second, first, "a new digest is a new recipe");
        std::fs::write(dir.path().join("image/recipe.toml"), "suite = \"forky\"\n").unwrap();
        let third = load().unwrap().hash;
        assert_ne!(third, second);
        let motd = dir.path().join("image/files/etc/motd");
        std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(
            load().unwrap().hash,
            third,
            "a file's mode is in the image too"
        );
        // Only images count: a comment in the compose file needs no bake.
        let before = load().unwrap().hash;
        std::fs::write(
            &compose,
            format!("# a comment\nservices:\n  a:\n    image: caddy:2@sha256:{BB}\n"),
        )
        .unwrap();
        assert_eq!(load().unwrap().hash, before);
    }

    #[test]
    fn the_override_file_replaces_a_services_image_and_tags_need_an_archive() {
        let dir = recipe_dir();
        let docker = dir.path().join("docker");
        std::fs::write(
            docker.join("docker-compose.yml"),
            format!("services:\n  a:\n    image: caddy:2@sha256:{AA}\n  b:\n    image: prom/prometheus:v2@sha256:{BB}\n"),
        )
        .unwrap();
        let load = || Recipe::at(&dir.path().join("image"), &docker);
        assert_eq!(
            load().unwrap().images,
            vec![
                Source::Pull(format!("caddy:2@sha256:{AA}")),
                Source::Pull(format!("prom/prometheus:v2@sha256:{BB}"))
            ]
        );
        std::fs::write(
            docker.join("docker-compose.override.yml"),
            "services:\n  a:\n    image: local/stand-in:latest\n",
        )
        .unwrap();
        let err = load().unwrap_err().to_string();
        assert!(
            err.contains("local/stand-in:latest") && err.contains("digest"),
            "{err}"
        );
        // A docker archive that carries the tag is where the bake gets it.
        let archives = dir.path().join("image/archives");
        std::fs::create_dir_all(&archives).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"c.json","RepoTags":["local/stand-in:latest"],"Layers":[]}]"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "manifest.json", &manifest[..])
            .unwrap();
        std::fs::write(archives.join("stand-in.tar"), tar.into_inner().unwrap()).unwrap();
        assert_eq!(
            load().unwrap().images,
            vec![
                Source::Archive {
                    reference: "local/stand-in:latest".into(),
                    file: archives.join("stand-in.tar")
                },
                Source::Pull(format!("prom/prometheus:v2@sha256:{BB}"))
            ]
        );
    }

    #[test]
    fn a_bad_recipe_names_its_file_and_field() {
        let dir = recipe_dir();
        let load = || Recipe::at(&dir.path().join("image"), &dir.path().join("docker"));
        for (text, field) in [
            ("suite = \"Trixie Linux\"\n", "suite"),
            ("suite = \"trixie\"\nsize_gb = 1\n", "size_gb"),
            (
                "suite = \"trixie\"\npackages = [\"ok\", \"rm -rf\"]\n",
                "rm -rf",
            ),
            (
                "suite = \"trixie\"\ncmdline = \"quiet $(reboot)\"\n",
                "cmdline",
            ),
            // GRUB's own syntax: a second command, a block.
            (
                "suite = \"trixie\"\ncmdline = \"quiet; reboot\"\n",
                "cmdline",
            ),
            ("suite = \"trixie\"\ncmdline = \"quiet }\"\n", "cmdline"),
            // Outside the recipe, so outside its hash.
            ("suite = \"trixie\"\nbuilder = \"../build\"\n", "builder"),
            ("suite = \"trixie\"\nbuilder = \"/bin/true\"\n", "builder"),
            ("suite = \"trixie\"\nsuit = \"x\"\n", "suit"),
        ] {
            std::fs::write(dir.path().join("image/recipe.toml"), text).unwrap();
            let err = load().unwrap_err().to_string();
            assert!(
                err.contains("recipe.toml") && err.contains(field) && err.contains("fix:"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_builder_inside_the_recipe_is_part_of_its_hash() {
        let dir = recipe_dir();
        let image = dir.path().join("image");
        std::fs::write(dir.path().join("build"), "#!/bin/sh\n").unwrap();
        std::fs::write(image.join("build"), "#!/bin/sh\necho one\n").unwrap();
        std::fs::write(
            image.join("recipe.toml"),
            "suite = \"trixie\"\nbuilder = \"build\"\n",
        )
        .unwrap();
        let load = || Recipe::at(&image, &dir.path().join("docker"));
        let first = load().unwrap().hash;
        std::fs::write(image.join("build"), "#!/bin/sh\necho two\n").unwrap();
        assert_ne!(load().unwrap().hash, first, "a new builder is a new recipe");
    }

    #[test]
    fn an_image_reference_is_pinned_by_a_whole_digest_and_nothing_else() {
        let dir = recipe_dir();
        let compose = dir.path().join("docker/docker-compose.yml");
        let load = || Recipe::at(&dir.path().join("image"), &dir.path().join("docker"));
        for (image, why) in [
            ("caddy:2@sha256:aa".to_string(), "a short digest"),
            (
                format!("caddy:2@sha256:{}", AA.to_uppercase()),
                "upper-case hex",
            ),
            (format!("\"caddy:2\\nRUN x@sha256:{AA}\""), "a newline"),
            (format!("\"caddy 2@sha256:{AA}\""), "a space"),
            (format!("caddy:2@sha256:{AA}@sha256:{BB}"), "two digests"),
            (format!("caddy:2@md5:{AA}"), "another algorithm"),
        ] {
            std::fs::write(&compose, format!("services:\n  a:\n    image: {image}\n")).unwrap();
            let err = load().expect_err(why).to_string();
            assert!(
                err.contains("docker") && err.contains("fix:"),
                "{why}: {err}"
            );
            assert!(
                !err.contains("\nRUN"),
                "{why}: the newline is escaped: {err}"
            );
        }
        std::fs::write(
            &compose,
            format!(
                "services:\n  a:\n    image: registry.example:5000/a/caddy:2.8_x-y@sha256:{AA}\n"
            ),
        )
        .unwrap();
        assert!(load().is_ok(), "a registry, a port and a tag");
    }
}
