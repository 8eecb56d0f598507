//! The stack baton deploys (`docker/`) checked by the tools that will run it: the compose
//! v2 the golden image runs it with (Debian trixie's docker-compose), Prometheus's
//! promtool and Caddy's own validator; its promises (pinned images, healthchecks, state
//! under /srv) read from the compose file itself.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{ok, require};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn docker() -> PathBuf {
    repo().join("docker")
}

fn compose() -> serde_norway::Value {
    let text = std::fs::read_to_string(docker().join("docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// Compose v2, where `scripts/install-deps` puts Debian trixie's (the golden image's):
/// bookworm's v1 would check another file format than the servers run.
fn compose_v2() -> PathBuf {
    let plugin = Path::new("/usr/local/libexec/docker/cli-plugins/docker-compose");
    let version = Command::new(plugin).arg("version").output();
    match version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("version 2") => {
            plugin.to_path_buf()
        }
        _ => panic!(
            "{} is not compose v2: run scripts/install-deps (`.ci/run` does)",
            plugin.display()
        ),
    }
}

/// The compose file as compose v2 resolves it for a server (anchors merged, variables set).
fn resolved() -> serde_norway::Value {
    let out = ok(Command::new(compose_v2())
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(docker())
        .env("BATON_DOMAIN", "blog.example.org")
        .env("BATON_GENERATION", "7")
        .output()
        .unwrap());
    serde_norway::from_str(&out).unwrap()
}

#[test]
fn docker_compose_accepts_the_bundle_and_insists_on_the_site_variables() {
    let dc = compose_v2();
    let resolved = resolved();
    assert_eq!(
        resolved["services"]["prometheus"]["environment"]["BATON_GENERATION"].as_str(),
        Some("7")
    );
    assert_eq!(
        resolved["services"]["proxy"]["environment"]["BATON_DOMAIN"].as_str(),
        Some("blog.example.org")
    );

    // Without the variables `baton host up` sets, compose refuses instead of starting a
    // proxy for an empty domain.
    let bare = Command::new(&dc)
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(docker())
        .env_remove("BATON_DOMAIN")
        .env_remove("BATON_GENERATION")
        .output()
        .unwrap();
    assert!(!bare.status.success());
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("baton host up sets BATON_"), "{err}");
}

/// Seconds of a compose duration as compose v2 writes it ("30s", "2m0s").
fn seconds(d: &serde_norway::Value) -> u64 {
    let text = d
        .as_str()
        .unwrap_or_else(|| panic!("not a duration: {d:?}"));
    humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("unexpected duration {text}: {e}"))
        .as_secs()
}

/// Each healthcheck is a process started in its container, ten times dearer on the
/// rehearsal's emulated VMs, where four of them every 10 s starved the one serving (issue
/// 30): seldom, and never of the metrics page, which Prometheus already scrapes.
#[test]
fn healthchecks_are_seldom_and_cheap() {
    let doc = resolved();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let check = &svc["healthcheck"];
        let url = check["test"].as_sequence().unwrap().last().unwrap();
        assert!(
            !url.as_str().unwrap().ends_with("/metrics"),
            "{name} checks its metrics page: {url:?}"
        );
        assert!(seconds(&check["interval"]) >= 30, "{name}: {check:?}");
    }
}

/// Compose starts the services together, and Docker runs each check every interval from
/// its container's start: with one interval for all, the four ran at the same moment for
/// the server's whole life, and on the rehearsal's emulated VM that moment stalled the
/// proxy for about 6 s (every visitor slow at once, one request timed out; e2e14, issue
/// 30). Intervals that differ drift apart.
#[test]
fn no_two_healthchecks_share_an_interval() {
    let doc = resolved();
    let mut intervals: Vec<(u64, String)> = doc["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(name, svc)| {
            (
                seconds(&svc["healthcheck"]["interval"]),
                name.as_str().unwrap().to_string(),
            )
        })
        .collect();
    intervals.sort();
    for pair in intervals.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "{} and {} check together",
            pair[0].1, pair[1].1
        );
    }
}

/// The golden image's systemd enables the cpu controller, so CPU is shared between
/// cgroups (each container, each service) by weight before nice counts: the proxy serving
/// the site must outweigh what watches it, or a busy server's snapshot, scrape or check
/// takes the site's time (on the rehearsal's emulated VMs, requests stalled for seconds
/// and timed out, issue 30). A container without `cpu_shares` keeps cgroup v2's default
/// weight of 100; with them, runc converts Docker's shares to a weight
/// (`ConvertCPUSharesToCgroupV2Value`: 1 + (shares - 2) * 9999 / 262142).
#[test]
fn the_proxy_outweighs_every_other_service() {
    let doc = resolved();
    let weight = |svc: &serde_norway::Value| match svc["cpu_shares"].as_u64() {
        None => 100,
        Some(shares) => 1 + (shares.max(2) - 2) * 9999 / 262_142,
    };
    let proxy = weight(&doc["services"]["proxy"]);
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        if name.as_str() != Some("proxy") {
            assert!(
                weight(svc) * 4 <= proxy,
                "{name:?} has CPU weight {} against the proxy's {proxy}",
                weight(svc)
            );
        }
    }
}

#[test]
fn every_image_is_pinned_every_service_has_a_healthcheck_and_state_stays_under_srv() {
    let doc = compose();
    let services = doc["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["proxy", "prometheus", "grafana", "node-exporter"]);
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let image = svc["image"].as_str().unwrap();
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: {image} is not pinned by digest"
        );
        assert!(
            svc["healthcheck"]["test"].as_sequence().is_some(),
            "{name} has no healthcheck, so `up --wait` could not mean healthy"
        );
        for volume in svc["volumes"].as_sequence().unwrap() {
            let volume = volume.as_str().unwrap();
            let mut parts = volume.split(':');
            let (source, mode) = (parts.next().unwrap(), parts.nth(1).unwrap_or("rw"));
            let read_only = mode.split(',').any(|m| m == "ro");
            let allowed = source.starts_with("./")
                || source.starts_with("/srv/")
                || (read_only && source.starts_with("/etc/baton/"))
                || (read_only && source == "/");
            assert!(allowed, "{name}: {volume} keeps state outside /srv");
            if source.starts_with("./") {
                assert!(read_only, "{name}: the bundle's {source} must be read-only");
            }
        }
    }
    // The admin API (snapshots) listens on the host's loopback only.
    let prom_args: Vec<&str> = doc["services"]["prometheus"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(prom_args.contains(&"--web.enable-admin-api"));
    assert!(prom_args.contains(&"--web.listen-address=127.0.0.1:9090"));
}

#[test]
fn promtool_accepts_prometheus_yml_which_scrapes_the_whole_stack() {
    let promtool = require("promtool", "prometheus");
    let config = docker().join("prometheus/prometheus.yml");
    ok(Command::new(promtool)
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .unwrap());
    let doc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        doc["global"]["external_labels"]["generation"].as_str(),
        Some("${BATON_GENERATION}")
    );
    let targets: Vec<&str> = doc["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|j| j["static_configs"][0]["targets"].as_sequence().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    // Itself, node-exporter, the proxy, baton's agent (its default metrics address).
    let agent = baton::agent_config::Metrics::default().listen.to_string();
    for want in [
        "127.0.0.1:9090",
        "127.0.0.1:9100",
        "127.0.0.1:2019",
        agent.as_str(),
    ] {
        assert!(
            targets.contains(&want),
            "{want} is not scraped: {targets:?}"
        );
    }
}

/// origin.crt and origin.key in `dir`, as cloud-init writes them; returns their CA.
fn origin_certificate(dir: &Path) -> baton::identity::tls::TlsCa {
    let ca = baton::identity::tls::TlsCa::generate("blog").unwrap();
    let leaf = ca
        .issue_leaf(
            "blog.example.org",
            "203.0.113.10".parse().unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
    std::fs::write(dir.join("origin.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("origin.key"), leaf.key_pem.as_bytes()).unwrap();
    ca
}

#[test]
fn caddy_validates_the_caddyfile_with_the_origin_certificate() {
    let caddy = require("caddy", "caddy");
    let tls = tempfile::tempdir().unwrap();
    origin_certificate(tls.path());
    let validate = |tls_dir: &Path| {
        Command::new(&caddy)
            .args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(docker().join("caddy/Caddyfile"))
            .env("BATON_DOMAIN", "blog.example.org")
            .env("BATON_TLS_DIR", tls_dir)
            .env("HOME", tls.path())
            .output()
            .unwrap()
    };
    let out = validate(tls.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The check is real: without the certificate the same file is refused.
    let missing = validate(&tls.path().join("nowhere"));
    assert!(!missing.status.success());

    // The origin name uses the loaded certificate; the public name is left to ACME.
    let adapted = ok(Command::new(&caddy)
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(docker().join("caddy/Caddyfile"))
        .env("BATON_DOMAIN", "blog.example.org")
        .env("BATON_TLS_DIR", tls.path())
        .output()
        .unwrap());
    let json: serde_json::Value = serde_json::from_str(&adapted).unwrap();
    let policies = json["apps"]["http"]["servers"]["srv0"]["tls_connection_policies"].to_string();
    assert!(
        policies.contains("origin.blog.example.org"),
        "the origin name has no certificate policy: {policies}"
    );
    assert!(!policies.contains("\"blog.example.org\""), "{policies}");
}

#[test]
fn the_dashboard_reads_metrics_the_agent_exports() {
    let text = std::fs::read_to_string(docker().join("grafana/dashboards/baton.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Requests",
            "Errors (5xx)",
            "Latency",
            "Last good backup",
            "Backups",
            "Published site: last pull",
            "Published site: releases switched, pulls failed"
        ]
    );
    let exported = baton::backup::agent::Metrics::default().render();
    let mut checked = 0;
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("baton_") {
                assert!(
                    exported.contains(word),
                    "the dashboard reads {word}, which the agent does not export"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "{exprs:?}");
    // The datasource the panels name is the one provisioned.
    let ds =
        std::fs::read_to_string(docker().join("grafana/provisioning/datasources/prometheus.yml"))
            .unwrap();
    assert!(ds.contains("uid: prometheus") && ds.contains("url: http://127.0.0.1:9090"));
}

#[test]
fn init_writes_the_repository_stack_and_site_byte_for_byte() {
    let mut on_disk = Vec::new();
    for root in baton::starter::roots() {
        for (name, path) in baton::fsutil::regular_files(&repo().join(root)).unwrap() {
            on_disk.push((format!("{root}/{name}"), std::fs::read(path).unwrap()));
        }
    }
    on_disk.sort();
    let mut embedded: Vec<(String, Vec<u8>)> = baton::starter::FILES
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    embedded.sort();
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&embedded),
        names(&on_disk),
        "src/starter.rs must list every file"
    );
    assert!(embedded == on_disk);
}

#[test]
fn bundle_of_the_stack_is_reproducible_and_follows_its_content() {
    let project = common::Project::init(&[]);
    let bundle = |out: &str| {
        ok(project.baton(&["bundle", "--out", out]))
            .trim()
            .to_string()
    };
    let first = bundle("a.zip");
    // Same bytes, another modification time: the zip must not change.
    let touched = project.path().join("docker/prometheus/prometheus.yml");
    let text = std::fs::read(&touched).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86400))
        .unwrap();
    assert_eq!(bundle("b.zip"), first);
    assert_eq!(
        std::fs::read(project.path().join("a.zip")).unwrap(),
        std::fs::read(project.path().join("b.zip")).unwrap()
    );
    std::fs::write(&touched, [text.as_slice(), b"# changed\n"].concat()).unwrap();
    assert_ne!(bundle("c.zip"), first);
}

/// The Caddyfile with only what cannot be the same on a test machine changed: its ports
/// and bind address, and the host paths it reads (each replacement must find its text).
fn caddyfile_for_test(dir: &Path, http: u16, https: u16, admin: u16) -> PathBuf {
    let mut text = std::fs::read_to_string(docker().join("caddy/Caddyfile")).unwrap();
    for (from, to) in [
        (
            "\tadmin localhost:2019\n".to_string(),
            format!(
                "\tadmin 127.0.0.1:{admin}\n\thttp_port {http}\n\thttps_port {https}\n\tdefault_bind 127.0.0.1\n\tstorage file_system {}\n",
                dir.join("acme").display()
            ),
        ),
        (
            "/srv/site/current".to_string(),
            dir.join("srv/site/current").display().to_string(),
        ),
        (
            "root * /etc/baton".to_string(),
            format!("root * {}", dir.join("etc").display()),
        ),
    ] {
        assert!(text.contains(&from), "the Caddyfile no longer has {from:?}");
        text = text.replace(&from, &to);
    }
    let path = dir.join("Caddyfile");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn caddy_serves_the_published_site_and_the_generation_under_the_origin_name() {
    let caddy = require("caddy", "caddy");
    let curl = require("curl", "curl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("tls")).unwrap();
    let ca = origin_certificate(&d.join("tls"));
    std::fs::write(d.join("ca.crt"), &ca.cert_pem).unwrap();
    std::fs::create_dir_all(d.join("etc")).unwrap();
    std::fs::write(d.join("etc/generation"), "7\n").unwrap();

    // The site as the agent leaves it: releases behind the `current` link.
    let (rt, store) = common::file_store(&d.join("store"));
    rt.block_on(baton::content::publish(
        store.as_ref(),
        &repo().join("site"),
        false,
    ))
    .unwrap();
    rt.block_on(baton::content::pull(store.as_ref(), &d.join("srv/site")))
        .unwrap();

    let (http, https, admin) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let config = caddyfile_for_test(d, http, https, admin);
    let child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config)
        .env("BATON_DOMAIN", "blog.example.org")
        .env("BATON_TLS_DIR", d.join("tls"))
        .env("HOME", d)
        .env("XDG_DATA_HOME", d.join("data"))
        .env("XDG_CONFIG_HOME", d.join("config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("caddy.log")).unwrap())
        .spawn()
        .unwrap();
    let _caddy = common::Running(child, d.join("caddy.log"));
    let get = |url: &str, extra: &[&str]| {
        let out = Command::new(&curl)
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(d.join("ca.crt"))
            .args([
                "--resolve",
                &format!("origin.blog.example.org:{https}:127.0.0.1"),
                "-w",
                "\n%{http_code}",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        (code.to_string(), body.to_string())
    };
    let origin = format!("https://origin.blog.example.org:{https}");
    {
        common::wait_for("caddy to serve", Duration::from_secs(20), || {
            (get(&format!("{origin}/.well-known/baton"), &[]).0 == "200").then_some(())
        });
        assert_eq!(
            get(&format!("{origin}/.well-known/baton"), &[]).1.trim(),
            "7"
        );
        let index = get(&format!("{origin}/"), &[]);
        assert_eq!(index.0, "200");
        assert_eq!(
            index.1,
            std::fs::read_to_string(repo().join("site/index.html")).unwrap()
        );
        let missing = get(&format!("{origin}/nope"), &[]);
        assert_eq!(missing.0, "404");
        assert!(missing.1.contains("Not found"), "{}", missing.1);
        // Plain HTTP is sent to HTTPS.
        let plain = Command::new(&curl)
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["-H", "Host: blog.example.org"])
            .arg(format!("http://127.0.0.1:{http}/about.html"))
            .output()
            .unwrap();
        let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
        assert!(plain.starts_with("308 https://blog.example.org"), "{plain}");
        // A new release is served at once: the proxy follows the switched link.
        let src = d.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("index.html"), "<h1>changed</h1>\n").unwrap();
        rt.block_on(baton::content::publish(store.as_ref(), &src, false))
            .unwrap();
        rt.block_on(baton::content::pull(store.as_ref(), &d.join("srv/site")))
            .unwrap();
        assert_eq!(get(&format!("{origin}/"), &[]).1, "<h1>changed</h1>\n");
    }
}
