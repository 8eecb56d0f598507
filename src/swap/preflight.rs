//! What a swap needs from the operator's machine, checked before anything is uploaded or
//! created: a swap that would fail half-way on a missing local file fails here instead,
//! and `baton plan` names the same problems.

use crate::config::Config;

/// Every local problem that would stop a swap, each with its fix; empty when none.
pub fn local(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = config.resolve(&config.bundle.dir);
    if let Err(e) = crate::bundle::check_dir(&dir) {
        problems.push(format!("bundle.dir: {e}"));
    }
    if let Some(binary) = &config.swap.agent_binary {
        let path = config.resolve(binary);
        match std::fs::metadata(&path) {
            // Uploaded, then made executable on the server: its mode here does not matter.
            Ok(m) if m.is_file() => {}
            Ok(_) => problems.push(format!(
                "swap.agent_binary: {} is not a regular file\n  fix: point agent_binary at \
                 the baton binary built for the server (Linux x86_64)",
                path.display()
            )),
            Err(e) => problems.push(format!(
                "swap.agent_binary: {}: {e}\n  fix: build it (cargo build --release) or \
                 remove agent_binary to send the running binary",
                path.display()
            )),
        }
    }
    // Checked here, not only when the user-data is rendered: a swap must not get half-way.
    let key = crate::generation::server_key(config, &|v| std::env::var(v).ok());
    if let Some((message, fix)) = key.problem {
        problems.push(format!("{message}\n  fix: {fix}"));
    }
    problems
}

/// Why the servers of a new generation would hold no key for an S3 store, if so: what
/// they back up to and restore from.
pub fn server_key_missing(config: &Config) -> Option<String> {
    let key = crate::generation::server_key(config, &|v| std::env::var(v).ok());
    key.missing
        .map(|(message, fix)| format!("{message}\n  fix: {fix}"))
}
