//! A hostile backup store: every host holds credentials to write it, so one compromised
//! host could plant manifests and archives for the next to restore as root. Whatever the
//! store holds, restore writes inside its targets (the data directory and `backup.paths`)
//! and nowhere else, and leaves no link there that leads out.
//!
//! The examples are the outside probe's; the property test below generates thousands
//! more. Whether a link leads out is judged by GNU `realpath -m`, not by baton's own
//! resolver.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use baton::agent_config::AgentConfig;
use baton::backup::Host;
use baton::backup::manifest::{Archive, Block, FileEntry, Manifest};
use baton::backup::restore::{RestoreReport, catch_up, restore};
use baton::store::ObjectStore;
use proptest::prelude::*;
use sha2::Digest;

const DATA: &str = "srv/prometheus";
const ACME: &str = "srv/acme";
const STATE: &str = "var/lib/baton";
const ULID: &str = "01HZX3K5V0J9W8Q7E6R5T4Y3M2";
const ULID2: &str = "01HZX3K5V0J9W8Q7E6R5T4Y3M3";

/// One tar entry, written byte by byte so that it can be anything a hostile store sends
/// (the tar crate's own builder refuses `..`).
#[derive(Debug, Clone)]
enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
    HardLink(String, String),
}

fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, link, kind, data): (&str, &str, _, &[u8]) = match e {
            Entry::Dir(p) => (p, "", tar::EntryType::Directory, b""),
            Entry::File(p, d) => (p, "", tar::EntryType::Regular, d),
            Entry::Symlink(p, t) => (p, t, tar::EntryType::Symlink, b""),
            Entry::HardLink(p, t) => (p, t, tar::EntryType::Link, b""),
        };
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A sandbox: the host's root deep inside it (so that even a wrong resolution cannot
/// climb out of the sandbox), a canary tree beside the root, and a file store.
struct Sandbox {
    dir: tempfile::TempDir,
    root: PathBuf,
    rt: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn ObjectStore>,
    config: AgentConfig,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let mut root = dir.path().to_path_buf();
        for _ in 0..48 {
            root.push("u");
            // A canary on every level the root's ancestors hold.
            std::fs::create_dir(&root).unwrap();
            std::fs::write(root.join("canary"), b"untouched").unwrap();
        }
        root.push("root");
        for d in ["etc/cron.d", "srv/other", "var/lib"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0").unwrap();
        std::fs::write(root.join("srv/other/canary"), b"untouched").unwrap();
        let store_dir = dir.path().join("store");
        let (rt, store) = common::file_store(&store_dir);
        let config: AgentConfig = toml::from_str(&format!(
            "generation = 2\n[store]\nurl = \"file://{}\"\n\
             [prometheus]\ndata_dir = \"/{DATA}\"\n[backup]\npaths = [\"/{ACME}\"]\n",
            store_dir.display()
        ))
        .unwrap();
        Sandbox {
            dir,
            root,
            rt,
            store,
            config,
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        self.rt
            .block_on(self.store.put(key, bytes.to_vec()))
            .unwrap();
    }

    /// Puts a manifest at the `n`th second (a larger `n` is newer).
    fn put_manifest(&self, n: u32, m: &Manifest) {
        let t = chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(n), 0).unwrap();
        let key = baton::store::layout::manifest(&t, m.generation);
        self.put(&key, &serde_json::to_vec(m).unwrap());
    }

    /// An archive object at `key`, and its manifest entry for `path`.
    fn archive(&self, path: &str, key: &str, entries: &[Entry]) -> Archive {
        let bytes = tar_gz(entries);
        if baton::store::check_key(key).is_ok() {
            self.put(key, &bytes);
        }
        Archive {
            path: path.to_string(),
            key: key.to_string(),
            size: bytes.len() as u64,
            sha256: sha(&bytes),
        }
    }

    /// A block whose files are stored at the keys their names make (when those are keys).
    fn block(&self, ulid: &str, files: &[&str]) -> Block {
        let files: Vec<FileEntry> = files
            .iter()
            .map(|f| {
                let bytes = format!("{ulid}/{f}").into_bytes();
                let key = baton::store::layout::block_file(ulid, f);
                // A file store cannot hold both `chunks` and `chunks/000001`: the one
                // that fails is simply missing, as it may be in a hostile store.
                if baton::store::check_key(&key).is_ok() {
                    let _ = self.rt.block_on(self.store.put(&key, bytes.clone()));
                }
                FileEntry {
                    path: f.to_string(),
                    size: bytes.len() as u64,
                    sha256: sha(&bytes),
                }
            })
            .collect();
        Block {
            ulid: ulid.to_string(),
            files,
        }
    }

    fn host(&self) -> Host {
        Host::new(Some(&self.root))
    }

    fn restore(&self) -> Result<RestoreReport, baton::backup::BackupError> {
        self.rt.block_on(restore(
            self.store.as_ref(),
            &self.host(),
            &self.config,
            false,
        ))
    }

    fn targets(&self) -> [PathBuf; 3] {
        [DATA, ACME, STATE].map(|t| self.root.join(t))
    }

    /// Everything in the sandbox outside the targets (and outside the store, which
    /// restore only reads): what kind, what bytes, how many links to it.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut seen = BTreeMap::new();
        self.walk(self.dir.path(), &mut seen);
        seen
    }

    fn walk(&self, dir: &Path, seen: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if self.targets().iter().any(|t| path.starts_with(t))
                || path.starts_with(self.dir.path().join("store"))
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            use std::os::unix::fs::MetadataExt;
            let what = if meta.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                self.walk(&path, seen);
                format!("dir {:o}", meta.mode())
            } else {
                format!(
                    "file {:o} nlink {} {:?}",
                    meta.mode(),
                    meta.nlink(),
                    std::fs::read(&path).unwrap()
                )
            };
            seen.insert(path, what);
        }
    }

    /// What a later write through each link in the targets would reach: inside its own
    /// target, or it is a finding. GNU realpath is the judge.
    fn links_leading_out(&self) -> Vec<String> {
        let mut out = Vec::new();
        for target in self.targets() {
            let mut stack = vec![target.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    let meta = std::fs::symlink_metadata(&path).unwrap();
                    if meta.file_type().is_symlink() {
                        let r = Command::new("realpath")
                            .arg("-m")
                            .arg(&path)
                            .output()
                            .unwrap();
                        // A loop resolves nowhere: nothing can be written through it.
                        if r.status.success() {
                            let to = PathBuf::from(String::from_utf8(r.stdout).unwrap().trim());
                            if !to.starts_with(&target) {
                                out.push(format!("{} -> {}", path.display(), to.display()));
                            }
                        }
                    } else if meta.is_dir() {
                        stack.push(path);
                    }
                }
            }
        }
        out
    }

    /// No staging directory is left beside a target, whatever the outcome.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in [self.root.join("srv"), self.root.join("var/lib")] {
            for e in std::fs::read_dir(dir).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".baton-")
                {
                    found.push(p);
                }
            }
        }
        found
    }
}

fn manifest(blocks: Vec<Block>, archives: Vec<Archive>) -> Manifest {
    Manifest {
        version: 1,
        generation: 1,
        created: "2027-01-15T08:00:00Z".into(),
        is_final: false,
        blocks,
        archives,
    }
}

/// A good backup: one block, the ACME archive with one file.
fn good(s: &Sandbox) -> Manifest {
    let acme = s.archive(
        "/srv/acme",
        "backups/archives/good.tar.gz",
        &[Entry::File("cert.pem".into(), b"certificate".to_vec())],
    );
    manifest(
        vec![s.block(ULID, &["meta.json", "chunks/000001"])],
        vec![acme],
    )
}

/// Asserts the sandbox outside the targets is as `before`, no link leads out, no
/// staging directory is left.
fn assert_contained(s: &Sandbox, before: &BTreeMap<PathBuf, String>) {
    let after = s.outside();
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, w)| before.get(*p) != Some(w))
        // The targets' parents may be created, as empty directories.
        .filter(|(p, _)| !s.targets().iter().any(|t| t.starts_with(p)))
        .collect();
    let gone: Vec<_> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    assert!(
        changed.is_empty() && gone.is_empty(),
        "written outside the targets: {changed:?}, removed: {gone:?}"
    );
    let out = s.links_leading_out();
    assert!(out.is_empty(), "links leading out of the targets: {out:?}");
    let left = s.leftovers();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn an_archive_path_outside_backup_paths_is_left_alone() {
    for path in [
        "/etc/cron.d",
        "/../../etc/cron.d",
        "/srv/acme/../other",
        "srv/acme",
    ] {
        let s = Sandbox::new();
        let before = s.outside();
        let evil = s.archive(
            path,
            "backups/archives/evil.tar.gz",
            &[Entry::File("evil".into(), b"* * * * * root sh".to_vec())],
        );
        let mut m = good(&s);
        m.archives.push(evil);
        s.put_manifest(1, &m);
        let report = s.restore().unwrap();
        assert!(
            report.note.contains(path),
            "{path}: the report says what it left alone: {report:?}"
        );
        assert_eq!(report.archives, 1, "{path}");
        assert_eq!(
            std::fs::read(s.root.join("srv/acme/cert.pem")).unwrap(),
            b"certificate"
        );
        assert_contained(&s, &before);
    }
}

#[test]
fn a_symlink_chain_in_an_archive_refuses_it_and_restore_falls_back() {
    let s = Sandbox::new();
    let before = s.outside();
    s.put_manifest(1, &good(&s));
    // The probe's chain: `d/s -> ..` is harmless alone, `esc` looks inside as text.
    let chain = s.archive(
        "/srv/acme",
        "backups/archives/chain.tar.gz",
        &[
            Entry::Dir("d".into()),
            Entry::Symlink("d/s".into(), "..".into()),
            Entry::Symlink("esc".into(), "d/s/d/s/../../..".into()),
            Entry::File("esc/other/pwned".into(), b"pwned".to_vec()),
        ],
    );
    s.put_manifest(2, &manifest(vec![], vec![chain]));
    let report = s.restore().unwrap();
    assert_eq!(report.fell_back.len(), 1, "{report:?}");
    assert!(report.fell_back[0].contains("symbolic link"), "{report:?}");
    assert_eq!(
        std::fs::read(s.root.join("srv/acme/cert.pem")).unwrap(),
        b"certificate"
    );
    assert_contained(&s, &before);

    // The same chain without the write: the link alone is refused too.
    let err = refused_as_the_only_backup(&[
        Entry::Dir("d".into()),
        Entry::Symlink("d/s".into(), "..".into()),
        Entry::Symlink("esc".into(), "d/s/d/s/../../..".into()),
    ]);
    assert!(err.contains("resolves outside"), "{err}");
}

/// Restores a store whose only backup is an ACME archive of `entries`; returns the
/// refusal, after checking that nothing was written outside.
fn refused_as_the_only_backup(entries: &[Entry]) -> String {
    let s = Sandbox::new();
    let before = s.outside();
    let archive = s.archive("/srv/acme", "backups/archives/only.tar.gz", entries);
    s.put_manifest(1, &manifest(vec![], vec![archive]));
    let err = s.restore().unwrap_err().to_string();
    assert_contained(&s, &before);
    err
}

#[test]
fn a_hard_link_through_a_symlink_is_refused() {
    let err = refused_as_the_only_backup(&[
        Entry::Symlink("up".into(), "../..".into()),
        Entry::HardLink("passwd".into(), "up/etc/passwd".into()),
    ]);
    assert!(err.contains("hard link"), "{err}");
}

#[test]
fn bad_block_names_fall_back_before_anything_is_created() {
    for (ulid, file) in [
        ("../../../../etc", "cron.d/evil"),
        (ULID, "../../../etc/evil"),
        (ULID, "/etc/evil"),
        (ULID, "a/./b"),
        ("..", "x"),
    ] {
        let s = Sandbox::new();
        let before = s.outside();
        s.put_manifest(1, &good(&s));
        s.put_manifest(2, &manifest(vec![s.block(ulid, &[file])], vec![]));
        let report = s.restore().unwrap();
        assert_eq!(report.fell_back.len(), 1, "{ulid} {file}: {report:?}");
        assert!(s.root.join(DATA).join(ULID).join("meta.json").is_file());
        assert_contained(&s, &before);
    }
}

#[test]
fn catch_up_refuses_bad_block_names_without_looking_outside() {
    let s = Sandbox::new();
    let before = s.outside();
    std::fs::create_dir_all(s.root.join(DATA)).unwrap();
    s.put_manifest(
        1,
        &manifest(vec![s.block("../../etc", &["passwd"])], vec![]),
    );
    let err =
        s.rt.block_on(catch_up(s.store.as_ref(), &s.host(), &s.config))
            .unwrap_err()
            .to_string();
    assert!(err.contains("ULID"), "{err}");
    assert_contained(&s, &before);
}

// ---------------------------------------------------------------------------------------
// The property: for any manifest and archives built from hostile pieces, nothing outside
// the targets changes and no link in them leads out. PROPTEST_CASES raises the count.

/// One of `choices`, each as often as its weight says.
fn weighted(choices: &[(u32, &'static str)]) -> impl Strategy<Value = String> + use<> {
    proptest::strategy::Union::new_weighted(
        choices
            .iter()
            .map(|(w, s)| (*w, Just(s.to_string())))
            .collect(),
    )
}

fn component() -> impl Strategy<Value = String> {
    weighted(&[
        (4, "d"),
        (2, "s"),
        (2, "e"),
        (3, ".."),
        (1, "."),
        (1, "other"),
        (1, "canary"),
    ])
}

fn rel_path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(|(abs, parts)| {
        let p = parts.join("/");
        if abs { format!("/{p}") } else { p }
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        2 => rel_path().prop_map(Entry::Dir),
        3 => (rel_path(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(p, d)| Entry::File(p, d)),
        4 => (rel_path(), rel_path()).prop_map(|(p, t)| Entry::Symlink(p, t)),
        1 => (rel_path(), rel_path()).prop_map(|(p, t)| Entry::HardLink(p, t)),
    ]
}

fn archive_path() -> impl Strategy<Value = String> {
    weighted(&[
        (4, "/srv/acme"),
        (1, "/srv/acme/."),
        (1, "/srv/acme/../other"),
        (1, "/../../srv/other"),
        (1, "/etc/cron.d"),
        (1, "srv/acme"),
        (1, "/srv/prometheus"),
    ])
}

fn block_name() -> impl Strategy<Value = String> {
    let inside_one = format!("{ULID}/..");
    prop_oneof![
        6 => weighted(&[(3, ULID), (1, ULID2), (1, ".."), (1, "../../etc")]),
        1 => Just(inside_one),
    ]
}

fn block_file() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("meta.json".to_string()),
        2 => Just("chunks/000001".to_string()),
        1 => Just("chunks".to_string()),
        1 => rel_path(),
    ]
}

#[derive(Debug, Clone)]
struct Hostile {
    archives: Vec<(String, Vec<Entry>)>,
    blocks: Vec<(String, Vec<String>)>,
    older_good: bool,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        prop::collection::vec((archive_path(), prop::collection::vec(entry(), 0..7)), 0..3),
        prop::collection::vec(
            (block_name(), prop::collection::vec(block_file(), 1..3)),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(archives, blocks, older_good)| Hostile {
            archives,
            blocks,
            older_good,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        // Shrinking replays a failure against fresh sandboxes: worth it, but bounded.
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn nothing_a_store_holds_writes_outside_the_targets(h in hostile()) {
        let s = Sandbox::new();
        let before = s.outside();
        if h.older_good {
            s.put_manifest(1, &good(&s));
        }
        let archives = h
            .archives
            .iter()
            .enumerate()
            .map(|(i, (path, entries))| {
                s.archive(path, &format!("backups/archives/h{i}.tar.gz"), entries)
            })
            .collect();
        let blocks = h
            .blocks
            .iter()
            .map(|(ulid, files)| {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                s.block(ulid, &files)
            })
            .collect();
        s.put_manifest(2, &manifest(blocks, archives));
        // Refused or restored, both are fine; writing outside never is.
        let _ = s.restore();
        assert_contained(&s, &before);
    }
}

#[test]
fn with_no_backup_at_all_data_in_a_target_is_no_reason_to_refuse() {
    // A first deploy: nothing in the store, the host's Prometheus already wrote data.
    let s = Sandbox::new();
    std::fs::create_dir_all(s.root.join(DATA).join("wal")).unwrap();
    std::fs::write(s.root.join(DATA).join("wal/00000000"), b"samples").unwrap();
    let report = s.restore().unwrap();
    assert!(report.note.contains("nothing to restore"), "{report:?}");
    assert_eq!(
        std::fs::read(s.root.join(DATA).join("wal/00000000")).unwrap(),
        b"samples"
    );
    // Once a backup exists, a restore would replace that data: refused.
    s.put_manifest(1, &good(&s));
    let err = s.restore().unwrap_err().to_string();
    assert!(err.contains("--if-empty"), "{err}");
}
