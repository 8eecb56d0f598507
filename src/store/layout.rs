//! Every key baton reads or writes in the store, in one place (rustic_core's `FileType` is
//! the model). A module that needs a key asks here; nothing else spells a prefix, so two
//! owners can never drift apart on where a thing lives, and a new kind of object has to
//! say here that its prefix is disjoint from the others.
//!
//! ```text
//! state.json                                  which generation is active (the swap's commit)
//! lock/<epoch:012>                            the deploy lock, one create-only object per epoch
//! journal/<id>.json                           one swap's (or rollback's) saga journal
//! artifacts/<sha256>                          bundles and agent binaries a swap uploaded
//! backups/manifests/<time>-g<gen>.json        a backup: written last, names what follows
//! backups/blocks/<ulid>/<path>                TSDB block files, immutable, shared by backups
//! backups/blocks/<ulid>/.baton-block.json     written after a block's files: it is complete
//! backups/archives/<sha256>.tar.gz            a backed-up path, by content
//! site/manifest.json                          the published site: path -> sha256
//! site/objects/<sha256>                       one published file, by content
//! images/<recipe-hash>.qcow2                  a baked image, until the cloud has copied it
//! ```

use chrono::{DateTime, Utc};

/// What kind of object a key names, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    State,
    Lock,
    Journal,
    Artifact,
    Manifest,
    Block,
    Archive,
    SiteManifest,
    SiteObject,
    Image,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::State,
        Kind::Lock,
        Kind::Journal,
        Kind::Artifact,
        Kind::Manifest,
        Kind::Block,
        Kind::Archive,
        Kind::SiteManifest,
        Kind::SiteObject,
        Kind::Image,
    ];

    /// The key or prefix the kind lives under.
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::State => STATE,
            Kind::Lock => LOCKS,
            Kind::Journal => JOURNALS,
            Kind::Artifact => ARTIFACTS,
            Kind::Manifest => MANIFESTS,
            Kind::Block => BLOCKS,
            Kind::Archive => ARCHIVES,
            Kind::SiteManifest => SITE_MANIFEST,
            Kind::SiteObject => SITE_OBJECTS,
            Kind::Image => IMAGES,
        }
    }

    /// The kind of a key, or `None` for a key baton never writes.
    pub fn of(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let p = k.prefix();
            if p.ends_with('/') {
                key.len() > p.len() && key.starts_with(p)
            } else {
                key == p
            }
        })
    }
}

pub const STATE: &str = "state.json";
pub const LOCKS: &str = "lock/";
pub const JOURNALS: &str = "journal/";
pub const ARTIFACTS: &str = "artifacts/";
pub const MANIFESTS: &str = "backups/manifests/";
pub const BLOCKS: &str = "backups/blocks/";
pub const ARCHIVES: &str = "backups/archives/";
pub const SITE_MANIFEST: &str = "site/manifest.json";
pub const SITE_OBJECTS: &str = "site/objects/";
pub const IMAGES: &str = "images/";
/// Written after a block's `meta.json`: the block is complete in the store.
pub const BLOCK_INDEX: &str = ".baton-block.json";

/// Lock epochs are zero-padded so that keys sort as numbers do.
pub fn lock(epoch: u64) -> String {
    format!("{LOCKS}{epoch:012}")
}

/// The epoch a lock object's key names; `None` for anything else under the prefix (a
/// stray object must not be taken for the head, nor break the lock).
pub fn lock_epoch(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(LOCKS)?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn journal(id: &str) -> String {
    format!("{JOURNALS}{id}.json")
}

/// The id a journal key names, or `None` for another object under the prefix.
pub fn journal_id(key: &str) -> Option<&str> {
    key.strip_prefix(JOURNALS)?
        .strip_suffix(".json")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Where `baton bake` puts an image for the cloud to download (it deletes it after).
pub fn image(recipe_hash: &str) -> String {
    format!("{IMAGES}{recipe_hash}.qcow2")
}

pub fn artifact(sha256: &str) -> String {
    format!("{ARTIFACTS}{sha256}")
}

/// Is `key` an artifact's, `artifacts/` and a sha256 (64 lowercase hex digits)? Nothing
/// else may be deleted as one.
pub fn is_artifact(key: &str) -> bool {
    key.strip_prefix(ARTIFACTS).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

const MANIFEST_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

/// `backups/manifests/20261122T101500.123Z-g7.json`: names sort by time.
pub fn manifest(created: &DateTime<Utc>, generation: u64) -> String {
    format!(
        "{MANIFESTS}{}-g{generation}.json",
        created.format(MANIFEST_TIME)
    )
}

/// The time a manifest key names, if it is one of ours.
pub fn manifest_time(key: &str) -> Option<DateTime<Utc>> {
    let name = key.strip_prefix(MANIFESTS)?;
    let stamp = name.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, MANIFEST_TIME)
        .ok()
        .map(|t| t.and_utc())
}

/// A file of a block; `path` is relative to the block's directory.
pub fn block_file(ulid: &str, path: &str) -> String {
    format!("{BLOCKS}{ulid}/{path}")
}

pub fn block_index(ulid: &str) -> String {
    block_file(ulid, BLOCK_INDEX)
}

/// The block a key under `backups/blocks/` belongs to.
pub fn block_of(key: &str) -> Option<&str> {
    key.strip_prefix(BLOCKS)?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

pub fn archive(sha256: &str) -> String {
    format!("{ARCHIVES}{sha256}.tar.gz")
}

pub fn site_object(sha256: &str) -> String {
    format!("{SITE_OBJECTS}{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_disjoint() {
        for a in Kind::ALL {
            for b in Kind::ALL {
                if a != b {
                    assert!(
                        !a.prefix().starts_with(b.prefix()),
                        "{a:?} lives inside {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_key_maker_names_its_kind() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:00.123Z")
            .unwrap()
            .to_utc();
        let sha = "ab".repeat(32);
        let ulid = "01JD0000000000000000000000";
        let cases = [
            (STATE.to_string(), Kind::State),
            (lock(7), Kind::Lock),
            (journal("20261122T101500.123Z-ab12"), Kind::Journal),
            (artifact(&sha), Kind::Artifact),
            (manifest(&t, 7), Kind::Manifest),
            (block_file(ulid, "chunks/000001"), Kind::Block),
            (block_index(ulid), Kind::Block),
            (archive(&sha), Kind::Archive),
            (SITE_MANIFEST.to_string(), Kind::SiteManifest),
            (site_object(&sha), Kind::SiteObject),
            (image("0123456789abcdef"), Kind::Image),
        ];
        for (key, kind) in cases {
            crate::store::check_key(&key).unwrap();
            assert_eq!(Kind::of(&key), Some(kind), "{key}");
        }
        assert_eq!(Kind::of("lock/"), None);
        assert_eq!(Kind::of("state.json.bak"), None);
        assert_eq!(Kind::of("other/thing"), None);
    }

    #[test]
    fn keys_parse_back() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:15:00.123Z")
            .unwrap()
            .to_utc();
        let key = manifest(&t, 7);
        assert_eq!(key, "backups/manifests/20261122T101500.123Z-g7.json");
        assert_eq!(manifest_time(&key), Some(t));
        assert_eq!(lock(42), "lock/000000000042");
        assert_eq!(lock_epoch(&lock(42)), Some(42));
        assert_eq!(lock_epoch("lock/junk"), None);
        assert_eq!(journal_id(&journal("x-1")), Some("x-1"));
        assert_eq!(journal_id("journal/a/b.json"), None);
        assert_eq!(
            block_of(&block_index("01JD0000000000000000000000")),
            Some("01JD0000000000000000000000")
        );
    }
}
