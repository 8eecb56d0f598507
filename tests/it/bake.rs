//! `baton bake`, `plan`, `swap` and `gc` with baked images, through the binary, against
//! exosim (which downloads a registered image through its pre-signed URL and checks its
//! MD5, as Exoscale does) and an S3 server (s3s-fs).
//!
//! The image builder here is the recipe's own `builder`, a small script that writes a
//! file from the environment baton gives it: baton's real builder (mmdebstrap, minutes,
//! root, Debian's mirror) runs in `just e2e`, whose VMs boot what it built.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::exosim::{Exosim, KEY, SECRET};
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::*;
use serde_json::{Value, json};

const BUILDER: &str = r#"#!/bin/sh
# The test's image builder: what baton asked for, as the image's bytes.
set -eu
echo "step: rootfs ($BAKE_SUITE)"
echo "built" >> "$(dirname "$0")/../builds"
if [ -e "$(dirname "$0")/slow-build" ]; then
  echo $$ > "$(dirname "$0")/../builder.pid"
  sleep 300
fi
if [ -e "$(dirname "$0")/fail-build" ]; then
  echo "mmdebstrap: E: cannot reach the mirror" >&2
  exit 1
fi
echo "step: images"
printf 'QFI\373 suite=%s packages=%s size=%s\npull:\n%s\nload:\n%s\n' \
  "$BAKE_SUITE" "$BAKE_PACKAGES" "$BAKE_SIZE_GB" "$BAKE_PULL" "$BAKE_LOAD" > "$BAKE_OUT"
"#;

struct Site {
    project: Project,
    sim: Exosim,
    s3: S3Server,
    cache: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let sim = Exosim::start(&[]);
        let s3 = S3Server::start();
        let project = Project::init(&[
            "--cloud-endpoint",
            &sim.url,
            "--store",
            &s3.url("blog"),
            "--store-endpoint",
            &s3.endpoint,
        ]);
        let recipe = project.path().join("image");
        std::fs::write(recipe.join("build"), BUILDER).unwrap();
        let text = std::fs::read_to_string(recipe.join("recipe.toml")).unwrap();
        std::fs::write(
            recipe.join("recipe.toml"),
            format!("{text}\nbuilder = \"build\"\n"),
        )
        .unwrap();
        let site = Site {
            project,
            sim,
            s3,
            cache: tempfile::tempdir().unwrap(),
        };
        ok(site.baton(&["publish"]));
        site
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BATON);
        c.args(args)
            .current_dir(self.project.path())
            .env("EXOSCALE_API_KEY", KEY)
            .env("EXOSCALE_API_SECRET", SECRET)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("BATON_BAKE_CACHE", self.cache.path());
        c
    }

    fn baton(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&ok(self.baton(&a))).unwrap()
    }

    fn recipe(&self) -> PathBuf {
        self.project.path().join("image")
    }

    fn builds(&self) -> usize {
        std::fs::read_to_string(self.project.path().join("builds"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// A new recipe: another package.
    fn change_recipe(&self, package: &str) {
        let path = self.recipe().join("recipe.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("packages = [", &format!("packages = [\"{package}\", "));
        std::fs::write(path, text).unwrap();
    }

    async fn own_templates(&self) -> Vec<Value> {
        self.sim.state().await["templates"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn store_images(&self) -> Vec<PathBuf> {
        let dir = self.s3.object_path("blog", "images");
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    async fn assert_nothing_left(&self) {
        assert_eq!(self.own_templates().await, Vec::<Value>::new(), "templates");
        assert_eq!(
            self.store_images(),
            Vec::<PathBuf>::new(),
            "images/ in the store"
        );
        let status = self.json(&["status"]);
        assert_eq!(
            status["lock"],
            Value::Null,
            "the deploy lock is released: {status}"
        );
        let violations = &self.sim.state().await["violations"];
        assert_eq!(violations, &json!([]), "exosim saw requests off the spec");
    }
}

fn cached_images(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".qcow2"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bake_registers_the_recipe_once_and_a_swap_boots_only_a_current_bake() {
    let site = Site::new();

    // Nothing baked: plan says so, a swap refuses before touching anything.
    let plan = site.json(&["plan"]);
    let blockers = plan["blockers"].to_string();
    assert!(
        blockers.contains("is not baked") && blockers.contains("run `baton bake`"),
        "{plan}"
    );
    let swap = site.baton(&["swap"]);
    assert_eq!(swap.status.code(), Some(2), "{}", stderr(&swap));
    assert!(
        stderr(&swap).contains("no baked image matches the recipe")
            && stderr(&swap).contains("no baked image yet")
            && stderr(&swap).contains("run `baton bake`"),
        "{}",
        stderr(&swap)
    );

    let dry = site.json(&["bake", "--dry-run"]);
    assert_eq!(dry["outcome"], "dry-run");
    assert_eq!(site.builds(), 0, "a dry run builds nothing");
    // The starter's compose file pins four images by digest: all pulled at bake time.
    assert_eq!(dry["images_pulled"].as_array().unwrap().len(), 4, "{dry}");

    let baked = site.json(&["bake"]);
    assert_eq!(baked["outcome"], "baked", "{baked}");
    let name = baked["template"].as_str().unwrap().to_string();
    assert_eq!(
        name,
        format!("baton-blog-{}", baked["recipe_hash"].as_str().unwrap())
    );
    let steps: Vec<&str> = baked["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["build", "upload", "register", "clean-up"]);
    let own = site.own_templates().await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["name"], name.as_str());
    assert_eq!(own[0]["id"], baked["template_id"]);
    assert_eq!(own[0]["checksum"], baked["image"]["md5"]);
    assert_eq!(own[0]["default-user"], "debian");
    assert_eq!(own[0]["boot-mode"], "uefi");
    assert_eq!(own[0]["build"], baked["recipe_hash"]);
    // What the cloud holds is what was built, with what the recipe and bundle name.
    let image = std::fs::read(baked["image"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(own[0]["size"], image.len());
    let text = String::from_utf8_lossy(&image);
    assert!(
        text.contains("suite=trixie") && text.contains("caddy:2.8.4@sha256:"),
        "{text}"
    );
    assert_eq!(
        site.store_images(),
        Vec::<PathBuf>::new(),
        "images/ cleaned up"
    );

    // Found again by name and hash: no second build, no second template.
    let again = site.json(&["bake"]);
    assert_eq!(again["outcome"], "already-baked");
    assert_eq!(site.builds(), 1);
    assert_eq!(site.own_templates().await.len(), 1);

    let plan = site.json(&["plan"]);
    assert_eq!(plan["template"], name.as_str(), "{plan}");
    assert_eq!(plan["blockers"], json!([]), "{plan}");

    // A new recipe (or a new image digest) is not baked: plan says so, swap refuses.
    site.change_recipe("htop");
    let plan = site.json(&["plan"]);
    assert!(
        plan["blockers"]
            .to_string()
            .contains(&format!("the newest bake, {name}, is of another recipe")),
        "{plan}"
    );
    let swap = site.baton(&["swap"]);
    assert_eq!(swap.status.code(), Some(2), "{}", stderr(&swap));
    assert!(
        stderr(&swap).contains("run `baton bake`"),
        "{}",
        stderr(&swap)
    );
    let compose = site.project.path().join("docker/docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    // Another digest of the same length: one hex digit changed.
    let at = text.find("@sha256:").unwrap() + "@sha256:".len();
    let mut other = text.clone();
    let digit = if &text[at..=at] == "0" { "1" } else { "0" };
    other.replace_range(at..=at, digit);
    std::fs::write(&compose, other).unwrap();
    let hash_now = site.json(&["bake", "--dry-run"])["recipe_hash"].clone();
    assert_ne!(
        hash_now, baked["recipe_hash"],
        "an image digest is part of the recipe"
    );
    std::fs::write(&compose, text).unwrap();

    // --template names another template explicitly: checked like any name, before acting.
    let swap = site.baton(&["swap", "--template", "Linux Debian 99"]);
    assert_eq!(swap.status.code(), Some(2), "{}", stderr(&swap));
    assert!(
        stderr(&swap).contains("template \"Linux Debian 99\" not found"),
        "{}",
        stderr(&swap)
    );
    // Nothing was created or journalled by the refusals.
    let sim = site.sim.state().await;
    assert_eq!(sim["instances"], json!([]), "{sim}");
    assert!(!site.s3.object_path("blog", "journal").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bake_that_fails_at_any_step_leaves_nothing_behind_and_the_next_resumes() {
    let site = Site::new();

    // build: the builder's last lines say why; nothing uploaded or registered.
    std::fs::write(site.recipe().join("fail-build"), "").unwrap();
    let out = site.baton(&["bake"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the image build failed")
            && stderr(&out).contains("cannot reach the mirror"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cached_images(site.cache.path()), Vec::<String>::new());
    site.assert_nothing_left().await;
    std::fs::remove_file(site.recipe().join("fail-build")).unwrap();

    // upload: the store fails the image's PUT.
    *site.s3.fail_puts.lock().unwrap() = Some("/images/".into());
    let out = site.baton(&["bake"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the bake failed and was undone"),
        "{}",
        stderr(&out)
    );
    site.assert_nothing_left().await;
    *site.s3.fail_puts.lock().unwrap() = None;
    // The build is kept: the next bake starts from it.
    assert_eq!(site.builds(), 2);
    assert_eq!(cached_images(site.cache.path()).len(), 1);

    // register: the zone's operation fails (say, its download did).
    site.sim
        .config(json!({"faults": ["register-template:1:fail"]}))
        .await;
    let out = site.baton(&["bake"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("register-template"),
        "{}",
        stderr(&out)
    );
    site.assert_nothing_left().await;
    assert_eq!(site.builds(), 2, "the cached build was used");

    // register, its answer lost after the zone did the work: found, not registered twice.
    site.sim
        .config(json!({"faults": ["register-template:1:drop"]}))
        .await;
    let baked = site.json(&["bake"]);
    assert_eq!(baked["outcome"], "baked", "{baked}");
    assert!(baked["image"]["cached"].as_bool().unwrap());
    assert_eq!(site.builds(), 2);
    let own = site.own_templates().await;
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(site.store_images(), Vec::<PathBuf>::new());

    // A stale recipe's cached image goes once a newer one is baked.
    site.change_recipe("htop");
    ok(site.baton(&["bake"]));
    assert_eq!(cached_images(site.cache.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_keeps_the_newest_bakes_and_removes_leftover_images() {
    let site = Site::new();
    let mut names = Vec::new();
    for package in ["a1", "b2", "c3", "d4", "e5"] {
        site.change_recipe(package);
        names.push(
            site.json(&["bake"])["template"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(site.own_templates().await.len(), 5);
    // A bake cut short (kill -9) after its upload leaves its image in the store.
    let leftover = site.s3.object_path("blog", "images/0123456789abcdef.qcow2");
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::write(&leftover, b"half an image").unwrap();

    let plan = site.json(&["gc", "--dry-run"]);
    let planned: Vec<&str> = plan["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(planned, [names[0].as_str(), names[1].as_str()], "{plan}");
    assert_eq!(plan["images"], json!(["images/0123456789abcdef.qcow2"]));
    assert_eq!(
        site.own_templates().await.len(),
        5,
        "a dry run deletes nothing"
    );

    ok(site.baton(&["gc"]));
    let left: Vec<String> = site
        .own_templates()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, names[2..].to_vec());
    assert!(!leftover.exists());
    // The newest bake is still the recipe's: a swap would boot it.
    assert_eq!(site.json(&["plan"])["template"], names[4].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_bake_stops_its_builder_and_the_next_sweeps_what_a_killed_one_left() {
    let site = Site::new();
    // What a bake killed with -9 leaves: its work directory, owned by a process now gone.
    let stale = site.cache.path().join(".bake.killed");
    std::fs::create_dir_all(stale.join("work/root/usr")).unwrap();
    std::fs::write(stale.join("owner.pid"), "4000000000").unwrap();

    std::fs::write(site.recipe().join("slow-build"), "").unwrap();
    let bake = site
        .command(&["bake"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = site.project.path().join("builder.pid");
    let builder: u32 = wait_for("the builder to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    assert!(!stale.exists(), "a dead bake's work directory is swept");
    // ^C, as a terminal sends it to baton (the builder has a process group of its own).
    let killed = Command::new("kill")
        .args(["-INT", &bake.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = bake.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    wait_for("the builder to be gone", Duration::from_secs(20), || {
        (!Path::new(&format!("/proc/{builder}")).exists()).then_some(())
    });
    let work: Vec<_> = std::fs::read_dir(site.cache.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(work.is_empty(), "{work:?}");
    site.assert_nothing_left().await;
}
