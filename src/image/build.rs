//! Building a recipe's image on this machine: baton's own builder (`build.sh`, embedded)
//! or the recipe's `builder`, run with the recipe as its environment. The result is kept
//! in a local cache by site and recipe hash, so a bake that failed after the build (an
//! upload, a registration) starts again from the image, not from Debian's mirror.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use md5::Md5;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::recipe::BUILDER;
use super::{ImageError, Recipe};

/// Where built images are kept: `BATON_BAKE_CACHE`, else this.
pub const DEFAULT_CACHE: &str = "/var/tmp/baton-bake";

/// A built image on this machine.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub size: u64,
    /// What the cloud checks the download against (Exoscale asks for MD5).
    pub md5: String,
    /// True when an earlier bake had built it.
    pub cached: bool,
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("BATON_BAKE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// The cached image of `recipe` for `site`.
pub fn cached_path(site: &str, recipe: &Recipe) -> PathBuf {
    cache_dir().join(format!("{}.qcow2", recipe.template_name(site)))
}

/// One line the builder printed, for progress: `step` is true for a `step: ...` line.
pub struct Line<'a> {
    pub step: bool,
    pub text: &'a str,
}

/// The image of `recipe`, from the cache or built now. `on_line` sees the builder's
/// output as it comes; the builder's last lines are in the error when it fails.
pub async fn build(
    site: &str,
    recipe: &Recipe,
    on_line: &(dyn Fn(Line<'_>) + Sync),
) -> Result<Built, ImageError> {
    let out = cached_path(site, recipe);
    if out.is_file() {
        let (size, md5) = digest(&out).await?;
        return Ok(Built {
            path: out,
            size,
            md5,
            cached: true,
        });
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)
        .map_err(|e| ImageError::Build(format!("cannot create {}: {e}", cache.display())))?;
    sweep(&cache);
    let work = tempfile::Builder::new()
        .prefix(WORK_PREFIX)
        .tempdir_in(&cache)
        .map_err(|e| ImageError::Build(format!("cannot work in {}: {e}", cache.display())))?;
    std::fs::write(work.path().join(OWNER), std::process::id().to_string())
        .map_err(|e| ImageError::Build(format!("cannot work in {}: {e}", cache.display())))?;
    let partial = work.path().join("image.qcow2");
    let program = match &recipe.settings.builder {
        Some(custom) => recipe.dir.join(custom),
        None => {
            if !is_root() {
                return Err(ImageError::Build(
                    "baton's image builder runs as root (mmdebstrap and a chroot for the \
                     image's own Docker)\n  fix: run `sudo -E baton bake`"
                        .into(),
                ));
            }
            let script = work.path().join("build.sh");
            std::fs::write(&script, BUILDER).map_err(|e| {
                ImageError::Build(format!("cannot write {}: {e}", script.display()))
            })?;
            script
        }
    };
    let build_dir = work.path().join("work");
    std::fs::create_dir_all(&build_dir)
        .map_err(|e| ImageError::Build(format!("cannot create {}: {e}", build_dir.display())))?;
    let files = recipe.dir.join(super::FILES_DIR);
    let s = &recipe.settings;
    let mut child = tokio::process::Command::new("bash")
        .arg(&program)
        .current_dir(&recipe.dir)
        .env("BAKE_OUT", &partial)
        .env("BAKE_WORK", &build_dir)
        .env("BAKE_SUITE", &s.suite)
        .env("BAKE_MIRROR", &s.mirror)
        .env("BAKE_PACKAGES", s.packages.join(" "))
        .env(
            "BAKE_FILES",
            if files.is_dir() {
                files.as_os_str()
            } else {
                "".as_ref()
            },
        )
        .env("BAKE_SIZE_GB", s.size_gb.to_string())
        .env("BAKE_CMDLINE", &s.cmdline)
        .env(
            "BAKE_LOAD",
            recipe
                .loaded()
                .map(|(_, file)| file.display().to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .env("BAKE_PULL", recipe.pulled().collect::<Vec<_>>().join("\n"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| ImageError::Build(format!("cannot run {}: {e}", program.display())))?;
    let group = child.id();
    // Both streams, as lines, in the order they come; the last ones explain a failure.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut stop = std::pin::pin!(interrupted());
    let mut stopped = false;
    loop {
        let line = tokio::select! {
            line = rx.recv() => line,
            _ = &mut stop, if !stopped => {
                // The builder has a process group of its own, which a terminal's ^C does
                // not reach: stop it here, and let it clean up (its EXIT trap).
                stopped = true;
                terminate_group(group);
                continue;
            }
        };
        let Some(line) = line else { break };
        match line.strip_prefix("step: ") {
            Some(step) => on_line(Line {
                step: true,
                text: step,
            }),
            None => on_line(Line {
                step: false,
                text: &line,
            }),
        }
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ImageError::Build(format!("{}: {e}", program.display())))?;
    // Whatever the builder left running (a dockerd) goes with it.
    terminate_group(group);
    if stopped {
        return Err(ImageError::Build(
            "the image build was interrupted; nothing was uploaded or registered\n  fix: run \
             the bake again"
                .into(),
        ));
    }
    if !status.success() || !partial.is_file() {
        let why = if status.success() {
            format!("it wrote no image at {}", partial.display())
        } else {
            format!("it exited with {status}")
        };
        return Err(ImageError::Build(format!(
            "the image build failed: {why}; its last lines:\n    {}\n  fix: see what it says; \
             nothing was uploaded or registered",
            tail.iter().cloned().collect::<Vec<_>>().join("\n    ")
        )));
    }
    std::fs::rename(&partial, &out).map_err(|e| {
        ImageError::Build(format!("cannot keep the image at {}: {e}", out.display()))
    })?;
    let (size, md5) = digest(&out).await?;
    Ok(Built {
        path: out,
        size,
        md5,
        cached: false,
    })
}

/// A build's work directory in the cache, and the file in it naming the process it is for.
const WORK_PREFIX: &str = ".bake.";
const OWNER: &str = "owner.pid";

/// Removes the work directories of bakes whose process is gone (killed, the machine
/// restarted): each holds gigabytes of a half-built root file system.
fn sweep(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(WORK_PREFIX));
        if !ours {
            continue;
        }
        let alive = std::fs::read_to_string(path.join(OWNER))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Resolves at SIGINT or SIGTERM. Once asked, the process no longer dies of them: whoever
/// asks stops what it does and undoes it.
pub async fn interrupted() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGTERM to the builder's process group (its id is the builder's pid).
fn terminate_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    // The effective uid, from /proc: no libc call needed for one number.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Size and MD5 of a file, read once off the async threads.
async fn digest(path: &Path) -> Result<(u64, String), ImageError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        Ok((size, hex::encode(h.finalize())))
    })
    .await
    .map_err(|e| ImageError::Build(format!("hashing {}: {e}", path.display())))?
    .map_err(|e| ImageError::Build(format!("cannot read {}: {e}", path.display())))
}

/// Removes the site's cached images of other recipes: an image is gigabytes.
pub fn prune_cache(site: &str, keep: &Recipe) -> Vec<PathBuf> {
    let keep = cached_path(site, keep);
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache_dir()) else {
        return removed;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ours = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".qcow2"))
            .is_some_and(|n| super::is_bake_of(site, n));
        if ours && p != keep && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}
