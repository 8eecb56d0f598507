//! The starter files `baton init` writes beside `baton.toml`: the compose bundle (`docker/`)
//! a sample site (`site/`) and the golden image's recipe (`image/`), the same files this repository deploys. Embedded so the
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
    "image/recipe.toml",
    "image/files/etc/cloud/cloud.cfg.d/90-baton.cfg",
    "image/files/etc/docker/daemon.json",
];

/// The top-level directories the starter files fill.
pub fn roots() -> std::collections::BTreeSet<&'static str> {
    FILES
        .iter()
        .filter_map(|(p, _)| p.split('/').next())
        .collect()
}
