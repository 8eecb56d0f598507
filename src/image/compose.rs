//! The container images a bundle's services run, as `docker compose` reads its files, and
//! the references each docker archive of the recipe carries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;

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
pub(super) fn archive_tags(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImageError> {
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
