//! `baton publish` against a real S3 server (s3s-fs, SigV4 checked), and the server-side
//! pull: a new release directory behind a symlink switched in one rename.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use baton::content::{Pulled, pull};
use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use common::{Project, ok, stderr, stdout};

fn publish(project: &Project, extra: &[&str]) -> Output {
    Command::new(common::BATON)
        .arg("publish")
        .args(extra)
        .current_dir(project.path())
        .env("HOME", project.path())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap()
}

fn report(o: Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// Requests since `since` with `method`, on the site prefix.
fn requests(s3: &S3Server, since: usize, method: &str) -> Vec<String> {
    s3.requests.lock().unwrap()[since..]
        .iter()
        .filter(|r| r.method == method && r.path.contains("/site/"))
        .map(|r| r.path.clone())
        .collect()
}

fn mark(s3: &S3Server) -> usize {
    s3.requests.lock().unwrap().len()
}

fn objects_on_server(s3: &S3Server) -> BTreeSet<String> {
    let dir = s3.root.join(BUCKET).join("p/site/objects");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default()
}

fn s3_project(s3: &S3Server) -> Project {
    Project::init(&[
        "--store",
        &format!("s3://{BUCKET}/p"),
        "--store-endpoint",
        &s3.endpoint,
    ])
}

#[test]
fn publish_uploads_only_what_changed_then_deletes_what_was_removed() {
    let s3 = S3Server::start();
    let project = s3_project(&s3);
    let site = project.path().join("site");
    let starter = baton::fsutil::regular_files(&site).unwrap().len();

    // A dry run says what it would do and writes nothing.
    let before = mark(&s3);
    let dry = publish(&project, &["--dry-run"]);
    let text = ok(dry);
    assert!(
        text.contains("+ index.html") && text.contains("would publish"),
        "{text}"
    );
    assert!(requests(&s3, before, "PUT").is_empty());
    assert!(objects_on_server(&s3).is_empty());

    let before = mark(&s3);
    let first = report(publish(&project, &["--json"]));
    assert_eq!(first["added"].as_array().unwrap().len(), starter);
    assert_eq!(first["uploaded_objects"], starter);
    // One PUT per file and the manifest, nothing else.
    assert_eq!(requests(&s3, before, "PUT").len(), starter + 1);
    assert_eq!(objects_on_server(&s3).len(), starter);

    // Nothing changed: nothing sent.
    let before = mark(&s3);
    let again = publish(&project, &[]);
    assert!(ok(again).contains("nothing to publish"));
    assert!(requests(&s3, before, "PUT").is_empty());
    assert!(requests(&s3, before, "DELETE").is_empty());

    // One changed, one added, one removed, and a copy of an existing file (stored once).
    std::fs::write(site.join("style.css"), "body { color: #123; }\n").unwrap();
    std::fs::write(site.join("posts/second.html"), "<h1>Second</h1>\n").unwrap();
    std::fs::remove_file(site.join("about.html")).unwrap();
    std::fs::copy(site.join("index.html"), site.join("home.html")).unwrap();
    let before = mark(&s3);
    let second = report(publish(&project, &["--json"]));
    assert_eq!(
        second["added"],
        serde_json::json!(["home.html", "posts/second.html"])
    );
    assert_eq!(second["changed"], serde_json::json!(["style.css"]));
    assert_eq!(second["removed"], serde_json::json!(["about.html"]));
    assert_eq!(second["uploaded_objects"], 2);
    // The old style.css and about.html are no longer named by anything.
    assert_eq!(second["deleted_objects"], 2);
    assert_eq!(
        requests(&s3, before, "PUT").len(),
        3,
        "2 objects + manifest"
    );
    assert_eq!(requests(&s3, before, "DELETE").len(), 2);
    let local: BTreeSet<String> = baton::fsutil::regular_files(&site)
        .unwrap()
        .iter()
        .map(|(_, p)| baton::backup::sha256_of(p).unwrap().1)
        .collect();
    assert_eq!(objects_on_server(&s3), local);
}

#[test]
fn a_content_dir_that_is_a_link_is_followed_and_said_so() {
    let s3 = S3Server::start();
    let project = s3_project(&s3);
    // How static site generators are wired: site -> _site.
    let site = project.path().join("site");
    std::fs::rename(&site, project.path().join("_site")).unwrap();
    std::os::unix::fs::symlink("_site", &site).unwrap();
    let dry = publish(&project, &["--dry-run"]);
    let text = ok(dry);
    assert!(
        text.contains("content.dir is a link to _site") && text.contains("+ index.html"),
        "{text}"
    );
    let published = report(publish(&project, &["--json"]));
    assert_eq!(published["follows_link"], "_site");
    assert!(
        published["uploaded_objects"].as_u64().unwrap() > 0,
        "{published}"
    );
}

#[test]
fn publish_refuses_an_empty_or_linked_site_and_touches_nothing() {
    let s3 = S3Server::start();
    let project = s3_project(&s3);
    let site = project.path().join("site");
    ok(publish(&project, &[]));
    let stored = objects_on_server(&s3);

    std::os::unix::fs::symlink("/etc/passwd", site.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", site.join("etc")).unwrap();
    let linked = publish(&project, &[]);
    assert_eq!(linked.status.code(), Some(2), "{}", stderr(&linked));
    // Every link inside is named, not only the first.
    for name in ["passwd\" is a symbolic link", "etc\" is a symbolic link"] {
        assert!(stderr(&linked).contains(name), "{}", stderr(&linked));
    }
    assert!(stderr(&linked).contains("fix:"));
    std::fs::remove_file(site.join("etc")).unwrap();

    // A newline in a name would garble the report: refused, and named escaped.
    std::fs::remove_file(site.join("passwd")).unwrap();
    std::fs::write(site.join("two\nlines.html"), "x").unwrap();
    let garbled = publish(&project, &[]);
    assert_eq!(garbled.status.code(), Some(2), "{}", stderr(&garbled));
    assert!(
        stderr(&garbled).contains("two\\nlines.html"),
        "{}",
        stderr(&garbled)
    );
    assert_eq!(objects_on_server(&s3), stored);

    std::fs::remove_dir_all(&site).unwrap();
    std::fs::create_dir(&site).unwrap();
    let empty = publish(&project, &[]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains("holds no files"),
        "{}",
        stderr(&empty)
    );
    assert!(stdout(&empty).is_empty());
    assert_eq!(objects_on_server(&s3), stored);
}

fn write_version(dir: &Path, v: usize) {
    std::fs::create_dir_all(dir.join("posts")).unwrap();
    std::fs::write(dir.join("index.html"), format!("v{v}")).unwrap();
    std::fs::write(dir.join("posts/a.html"), format!("v{v}")).unwrap();
    // Unchanged across versions: linked from the previous release, never fetched again.
    std::fs::write(dir.join("style.css"), "body{}").unwrap();
    // Present in even versions only: a reader must see it exactly when index says even.
    let extra = dir.join("even.html");
    if v.is_multiple_of(2) {
        std::fs::write(&extra, format!("v{v}")).unwrap();
    } else {
        let _ = std::fs::remove_file(&extra);
    }
}

/// Reads one whole tree through `current`, as a proxy would: the version it holds, if
/// every file agrees; otherwise what disagreed.
fn read_tree(root: &Path) -> Result<usize, String> {
    let release: PathBuf =
        root.join(std::fs::read_link(root.join("current")).map_err(|e| e.to_string())?);
    let index = std::fs::read_to_string(release.join("index.html")).map_err(|e| e.to_string())?;
    let v: usize = index
        .trim_start_matches('v')
        .parse()
        .map_err(|_| index.clone())?;
    let post = std::fs::read_to_string(release.join("posts/a.html")).map_err(|e| e.to_string())?;
    let css = std::fs::read_to_string(release.join("style.css")).map_err(|e| e.to_string())?;
    let even = release.join("even.html").exists();
    if post != index || css != "body{}" || even != (v.is_multiple_of(2)) {
        return Err(format!(
            "mixed tree: index {index}, post {post}, even.html {even}"
        ));
    }
    Ok(v)
}

#[test]
fn pull_switches_releases_atomically_under_a_concurrent_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let (rt, store) = common::file_store(&store_dir);
    let src = tmp.path().join("site");
    let root = tmp.path().join("srv/site");

    assert_eq!(
        rt.block_on(pull(store.as_ref(), &root)).unwrap(),
        Pulled::NothingPublished
    );
    write_version(&src, 0);
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    assert!(matches!(
        rt.block_on(pull(store.as_ref(), &root)).unwrap(),
        Pulled::Switched { .. }
    ));
    assert_eq!(read_tree(&root), Ok(0));

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, root) = (stop.clone(), reads.clone(), root.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match read_tree(&root) {
                    Ok(v) => {
                        seen.insert(v);
                    }
                    Err(e) => errors.push(e),
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
            (seen, errors)
        })
    };
    let versions = 12;
    for v in 1..=versions {
        write_version(&src, v);
        rt.block_on(baton::content::publish(store.as_ref(), &src, false))
            .unwrap();
        let pulled = rt.block_on(pull(store.as_ref(), &root)).unwrap();
        let Pulled::Switched {
            downloaded, reused, ..
        } = pulled
        else {
            panic!("version {v}: {pulled:?}");
        };
        // index.html, posts/a.html and even.html hold the same bytes: fetched once, the
        // others linked to it; style.css is linked from the previous release.
        assert_eq!(downloaded, 1, "version {v}");
        assert_eq!(
            reused,
            if v.is_multiple_of(2) { 3 } else { 2 },
            "version {v}"
        );
        // Let the reader finish the read it is in and make a whole one on this release
        // before the next switch prunes the release before this one.
        let at = reads.load(Ordering::SeqCst);
        common::wait_for("two reads by the reader", Duration::from_secs(10), || {
            (reads.load(Ordering::SeqCst) >= at + 2).then_some(())
        });
    }
    stop.store(true, Ordering::SeqCst);
    let (seen, errors) = reader.join().unwrap();
    assert!(errors.is_empty(), "the reader saw: {errors:?}");
    assert!(seen.len() >= 3, "the reader saw only versions {seen:?}");
    assert_eq!(read_tree(&root), Ok(versions));
    // The current release and the one before it; nothing half-made is left.
    let releases: Vec<String> = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert_eq!(releases.len(), 2, "{releases:?}");
    // Pulling again with nothing new changes nothing.
    assert!(matches!(
        rt.block_on(pull(store.as_ref(), &root)).unwrap(),
        Pulled::Unchanged { .. }
    ));
}

#[test]
fn a_corrupt_object_is_refused_and_the_served_release_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let (rt, store) = common::file_store(&store_dir);
    let src = tmp.path().join("site");
    let root = tmp.path().join("srv/site");
    write_version(&src, 0);
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    rt.block_on(pull(store.as_ref(), &root)).unwrap();

    write_version(&src, 1);
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    let sha = baton::backup::sha256_of(&src.join("index.html")).unwrap().1;
    // Other bytes of the same length (a longer object stops at its size, further below).
    let object = store_dir.join("site/objects").join(&sha);
    let len = std::fs::metadata(&object).unwrap().len() as usize;
    std::fs::write(&object, "x".repeat(len)).unwrap();
    let err = rt
        .block_on(pull(store.as_ref(), &root))
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(read_tree(&root), Ok(0));

    // An object a newer publish removed while this pull read the older manifest.
    std::fs::remove_file(store_dir.join("site/objects").join(&sha)).unwrap();
    let err = rt
        .block_on(pull(store.as_ref(), &root))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is gone from the store"), "{err}");
    assert_eq!(read_tree(&root), Ok(0));
    // Nothing half-made is left beside the releases.
    let partial: Vec<_> = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

/// What a manifest says is what a pull may write (issue 29): one object that many paths
/// name is fetched once and linked, and an object larger than its entry says is not
/// downloaded past that.
#[test]
fn a_pull_writes_each_object_once_and_no_more_than_its_manifest_says() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let (rt, store) = common::file_store(&store_dir);
    let src = tmp.path().join("site");
    let root = tmp.path().join("srv/site");
    std::fs::create_dir_all(&src).unwrap();
    let page = vec![b'x'; 64 << 10];
    for i in 0..100 {
        std::fs::write(src.join(format!("copy-{i:03}.html")), &page).unwrap();
    }
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    let pulled = rt.block_on(pull(store.as_ref(), &root)).unwrap();
    let Pulled::Switched {
        files,
        downloaded,
        reused,
        ..
    } = pulled
    else {
        panic!("{pulled:?}")
    };
    assert_eq!((files, downloaded, reused), (100, 1, 99));
    let inodes: BTreeSet<u64> = std::fs::read_dir(root.join("current"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().ino())
        .collect();
    assert_eq!(inodes.len(), 1, "one file on disk for one object");

    // A manifest that says 10 bytes of an object holding 64 KiB.
    std::fs::write(src.join("new.html"), "a new page of its own\n").unwrap();
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    let manifest_path = store_dir.join(baton::store::layout::SITE_MANIFEST);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let sha = baton::backup::sha256_of(&src.join("new.html")).unwrap().1;
    let big = store_dir.join("site/objects").join(&sha);
    std::fs::write(&big, &page).unwrap();
    manifest["files"]["new.html"]["size"] = 10.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let err = rt
        .block_on(pull(store.as_ref(), &root))
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than the 10 bytes"), "{err}");
    assert_eq!(
        std::fs::read_dir(root.join("current")).unwrap().count(),
        100,
        "the served release stays"
    );
}

#[test]
fn the_agent_pulls_a_publish_within_its_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let root = tmp.path().join("root");
    let agent_toml = tmp.path().join("agent.toml");
    let metrics_port = common::free_port();
    std::fs::write(
        &agent_toml,
        format!(
            "generation = 1\ndomain = \"blog.example.org\"\nstate_dir = \"/var/lib/baton\"\n\
             [store]\nurl = \"file://{}\"\n\
             [backup]\nschedule = \"0 0 1 1 *\"\n\
             [metrics]\nlisten = \"127.0.0.1:{}\"\n\
             [content]\ndir = \"/srv/site\"\ninterval_seconds = 1\n",
            store_dir.display(),
            metrics_port
        ),
    )
    .unwrap();
    let (rt, store) = common::file_store(&store_dir);
    let src = tmp.path().join("site");
    write_version(&src, 1);
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();

    let log = tmp.path().join("agent.log");
    let agent = Command::new(common::BATON)
        .args(["agent", "-c"])
        .arg(&agent_toml)
        .arg("--root")
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _agent = common::Running(agent, log);
    let served = root.join("srv/site");
    common::wait_for("the agent's first pull", Duration::from_secs(20), || {
        read_tree(&served).ok().filter(|v| *v == 1)
    });
    write_version(&src, 2);
    rt.block_on(baton::content::publish(store.as_ref(), &src, false))
        .unwrap();
    common::wait_for(
        "the agent to switch to the new release",
        Duration::from_secs(20),
        || read_tree(&served).ok().filter(|v| *v == 2),
    );
    // Its metrics count both switches and no failure.
    let curl = common::require("curl", "curl");
    common::wait_for("the agent's site metrics", Duration::from_secs(10), || {
        let out = Command::new(&curl)
            .args(["-s", &format!("http://127.0.0.1:{metrics_port}/metrics")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("\nbaton_site_switches_total 2\n")
            && text.contains("\nbaton_site_pull_failures_total 0\n")
            && !text.contains("\nbaton_site_last_pull_timestamp_seconds 0\n"))
        .then_some(())
    });
}

/// On AWS an operator may hold a profile rather than exported keys: the store reads it
/// from the shared files, as the cloud client does.
#[test]
fn publish_to_motos_s3_with_a_profile_and_no_exported_keys() {
    let moto = common::moto::Moto::plain();
    common::rehearsal::rt().block_on(moto.s3_store("baton-profile", "p"));
    let project = Project::init(&[
        "--store",
        "s3://baton-profile/p",
        "--store-endpoint",
        &moto.url,
    ]);
    let credentials = project.path().join("aws-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[blog]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            common::moto::KEY,
            common::moto::SECRET
        ),
    )
    .unwrap();
    let run = |profile: Option<&str>| {
        let mut c = Command::new(common::BATON);
        c.args(["publish"])
            .current_dir(project.path())
            .env("HOME", project.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", "/dev/null");
        if let Some(p) = profile {
            c.env("AWS_PROFILE", p);
        }
        c.output().unwrap()
    };
    let without = run(None);
    assert_eq!(without.status.code(), Some(2), "{}", stderr(&without));
    assert!(
        stderr(&without).contains("AWS_PROFILE"),
        "{}",
        stderr(&without)
    );
    let with = run(Some("blog"));
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(stdout(&with).contains("index.html"), "{}", stdout(&with));
}
