//! The starter files `baton init` writes beside `baton.toml`: the compose bundle (`docker/`)
//! and a sample site (`site/`), the same files this repository deploys. Embedded so the
//! binary alone can start a project.

macro_rules! starter {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../", $path)))),*]
    };
}

/// Each file's path relative to the project directory, and its bytes.
pub const FILES: &[(&str, &[u8])] = starter![
    "docker/docker-compose.yml",
    "docker/caddy/Caddyfile",
    "docker/prometheus/prometheus.yml",
    "docker/grafana/provisioning/datasources/prometheus.yml",
    "docker/grafana/provisioning/dashboards/baton.yml",
    "docker/grafana/dashboards/baton.json",
    "site/index.html",
    "site/about.html",
    "site/posts/hello.html",
    "site/404.html",
    "site/style.css",
];

/// The top-level directories the starter files fill.
pub fn roots() -> std::collections::BTreeSet<&'static str> {
    FILES
        .iter()
        .filter_map(|(p, _)| p.split('/').next())
        .collect()
}
