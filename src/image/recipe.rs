//! A recipe as it is on disk: `recipe.toml` checked field by field, the hash over every
//! file of it and the container images the bundle runs, and the template name a bake of
//! that hash registers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::compose::{archive_tags, bundle_images};
use super::{ARCHIVES_DIR, ImageError, RECIPE_FILE};
use crate::config::Config;

/// baton's builder: Debian packages, no loop device, no mount of the image. Part of the
/// hash of every recipe that does not name a builder of its own: it makes the image as
/// much as the recipe does.
pub const BUILDER: &str = include_str!("build.sh");

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
        Recipe::built_by(dir, bundle_dir, BUILDER)
    }

    /// The recipe as `own_builder` (baton's builder, unless the recipe names one) builds it.
    fn built_by(dir: &Path, bundle_dir: &Path, own_builder: &str) -> Result<Recipe, ImageError> {
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
                        crate::redact::clipped(&builder.to_string_lossy()),
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
        if settings.builder.is_none() {
            // A baton whose builder changed builds another image from the same recipe:
            // it bakes anew instead of finding the old image under the same name.
            h.update(b"builder\0");
            h.update((own_builder.len() as u64).to_be_bytes());
            h.update(own_builder.as_bytes());
        }
        let archives = archive_tags(&dir.join(ARCHIVES_DIR))?;
        let mut images = Vec::new();
        for reference in bundle_images(bundle_dir)? {
            if !is_reference(&reference) {
                return Err(bad(
                    bundle_dir,
                    format!(
                        "the image reference {:?} is not one a registry accepts",
                        crate::redact::clipped(&reference)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn batons_own_builder_is_part_of_the_hash_of_a_recipe_without_one() {
        let dir = recipe_dir();
        let (image, docker) = (dir.path().join("image"), dir.path().join("docker"));
        let one = Recipe::built_by(&image, &docker, "#!/bin/sh\necho one\n").unwrap();
        let two = Recipe::built_by(&image, &docker, "#!/bin/sh\necho two\n").unwrap();
        assert_ne!(one.hash, two.hash, "a new builder in baton is a new image");
        assert_eq!(
            Recipe::at(&image, &docker).unwrap().hash,
            Recipe::built_by(&image, &docker, BUILDER).unwrap().hash
        );
        // A recipe with a builder of its own does not depend on baton's.
        std::fs::write(image.join("build"), "#!/bin/sh\n").unwrap();
        std::fs::write(
            image.join("recipe.toml"),
            "suite = \"trixie\"\nbuilder = \"build\"\n",
        )
        .unwrap();
        let one = Recipe::built_by(&image, &docker, "#!/bin/sh\necho one\n").unwrap();
        let two = Recipe::built_by(&image, &docker, "#!/bin/sh\necho two\n").unwrap();
        assert_eq!(one.hash, two.hash);
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
