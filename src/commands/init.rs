//! `baton init`: a commented config, the SSH host CA and the TLS CA.

use std::path::{Path, PathBuf};

use crate::cli::InitArgs;
use crate::config::Config;
use crate::error::Error;
use crate::fsutil::{self, PRIVATE, PUBLIC};
use crate::identity::ssh;
use crate::identity::tls::TlsCa;

const TEMPLATE: &str = include_str!("baton.example.toml");

/// The `[cloud]`, `[front]` and `[instance]` tables for AWS, in place of Exoscale's.
const AWS_TABLES: &str = include_str!("baton.aws.toml");

/// A TOML string literal: values are quoted by the TOML library, never by hand.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The template with AWS's tables in place of Exoscale's.
fn aws_template(args: &InitArgs) -> String {
    let start = TEMPLATE.find("[cloud]\n").unwrap_or(0);
    // Invariant: the embedded template has both tables in this order.
    let end = TEMPLATE.find("[image]\n").unwrap_or(TEMPLATE.len());
    let front = match &args.target_group {
        Some(arn) => format!("kind = \"alb\"\ntarget_group = {}", quoted(arn)),
        _ => "kind = \"elastic-ip\"\n# allocation_id = \"eipalloc-0123456789abcdef0\"   (checked against the address)".to_string(),
    };
    let tables = AWS_TABLES
        .replace("@REGION@", &quoted(&args.region))
        .replace("@SUBNET@", &quoted(&args.subnet))
        .replace("@FRONT_LINES@", &front);
    format!("{}{tables}{}", &TEMPLATE[..start], &TEMPLATE[end..])
}

pub fn run(args: &InitArgs) -> Result<(), Error> {
    // Checked before anything is written: a target group beside another front would be
    // dropped without a word.
    if args.target_group.is_some() && (args.cloud != "aws" || args.front != "alb") {
        return Err(Error::bad_input(
            "--target-group names an ALB target group, and the front is not one",
            "add --cloud aws --front alb, or leave --target-group out",
        ));
    }
    let dir = &args.dir;
    let keys = dir.join("keys");
    let config_path = dir.join("baton.toml");

    let authorized = authorized_keys(args, &keys)?;
    let host_ca = ssh::generate_key(&format!("baton host CA for {}", args.site))?;
    let tls_ca = TlsCa::generate(&args.site)?;
    let deploy = ssh::generate_key(&format!("baton deploy key for {}", args.site))?;

    let store = args
        .store
        .clone()
        .unwrap_or_else(|| format!("s3://baton-{}/prod", args.site));
    let store_endpoint = if store.starts_with("s3://") {
        format!("endpoint = {}", quoted(&args.store_endpoint))
    } else {
        "# endpoint = \"https://sos-ch-gva-2.exo.io\"   (for s3:// stores)".to_string()
    };
    let cloud_endpoint = match (&args.cloud_endpoint, args.cloud.as_str()) {
        (Some(e), _) => format!("endpoint = {}", quoted(e)),
        (None, "aws") => {
            "# endpoint = \"http://127.0.0.1:5000\"   (an AWS emulator, for tests)".to_string()
        }
        (None, _) => "# endpoint = \"https://api-ch-gva-2.exoscale.com/v2\"".to_string(),
    };
    let authorized_toml = toml::Value::Array(
        authorized
            .keys
            .iter()
            .map(|k| toml::Value::String(k.clone()))
            .collect(),
    )
    .to_string();
    let template = if args.cloud == "aws" {
        aws_template(args)
    } else {
        TEMPLATE.to_string()
    };
    let text = template
        .replace("@SITE@", &quoted(&args.site))
        .replace("@DOMAIN@", &quoted(&args.domain))
        .replace("@ADDRESS@", &quoted(&args.address.to_string()))
        .replace("@CLOUD_ENDPOINT_LINE@", &cloud_endpoint)
        .replace("@SSH_PORT@", &args.ssh_port.to_string())
        .replace("@AUTHORIZED_KEYS@", &authorized_toml)
        .replace("@STORE_URL@", &quoted(&store))
        .replace("@STORE_ENDPOINT_LINE@", &store_endpoint);
    let text = apply_sets(&text, &args.set)?;

    let mut files: Vec<(PathBuf, Vec<u8>, u32)> = vec![
        (config_path.clone(), text.into_bytes(), PUBLIC),
        (
            keys.join("host-ca"),
            ssh::private_openssh(&host_ca)?.as_bytes().to_vec(),
            PRIVATE,
        ),
        (
            keys.join("host-ca.pub"),
            ssh::public_openssh(host_ca.public_key())?.into_bytes(),
            PUBLIC,
        ),
        (
            keys.join("deploy"),
            ssh::private_openssh(&deploy)?.as_bytes().to_vec(),
            PRIVATE,
        ),
        (
            keys.join("deploy.pub"),
            ssh::public_openssh(deploy.public_key())?.into_bytes(),
            PUBLIC,
        ),
        (
            keys.join("tls-ca.key"),
            tls_ca.key_pem.as_bytes().to_vec(),
            PRIVATE,
        ),
        (
            keys.join("tls-ca.crt"),
            tls_ca.cert_pem.clone().into_bytes(),
            PUBLIC,
        ),
    ];
    files.extend(authorized.new_files);
    let keys_and_config = files.len();

    // The starter bundle and site, unless the directory already has its own.
    let mut kept = Vec::new();
    for root in crate::starter::roots() {
        if dir.join(root).exists() {
            kept.push(root);
            continue;
        }
        files.extend(
            crate::starter::FILES
                .iter()
                .filter(|(p, _)| p.split('/').next() == Some(root))
                .map(|(p, bytes)| (dir.join(p), bytes.to_vec(), PUBLIC)),
        );
    }

    // Refuse before writing anything: a CA key that is overwritten is a CA lost, and every
    // known_hosts line and certificate that trusts it with it.
    let existing: Vec<&Path> = files
        .iter()
        .map(|(p, _, _)| p.as_path())
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() {
        return Err(Error::bad_input(
            format!(
                "refusing to overwrite {}",
                existing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "keep the existing CA (it is what known_hosts trusts), or pick another --dir",
        ));
    }
    // Validate the config as it will be before writing anything: a bad --site, --domain
    // or --store must leave no file behind for the retry to trip over.
    check_before_writing(dir, &config_path, &files[..keys_and_config])?;
    fsutil::create_dir_all(&keys)?;
    for (path, _, _) in &files {
        if let Some(parent) = path.parent() {
            fsutil::create_dir_all(parent)?;
        }
    }
    fsutil::create_all_new(&files)?;

    // The example must validate as written; if it does not, that is a bug worth a loud error.
    let config = Config::load(&config_path)?;
    let line = super::known_hosts::line(&config)?;
    eprintln!("created {}", config_path.display());
    for (path, _, mode) in &files[1..keys_and_config] {
        let note = if *mode == PRIVATE {
            " (private, mode 0600)"
        } else {
            ""
        };
        eprintln!("created {}{note}", path.display());
    }
    for root in crate::starter::roots() {
        if kept.contains(&root) {
            eprintln!("kept the existing {}", dir.join(root).display());
        } else {
            eprintln!(
                "created {}/ (starter files: edit them)",
                dir.join(root).display()
            );
        }
    }
    if let Some(note) = authorized.note {
        eprintln!("{note}");
    }
    eprintln!("\nAppend this line to ~/.ssh/known_hosts once; it stays valid across every swap:");
    print!("{line}");
    Ok(())
}

/// Applies `--set TABLE.KEY=VALUE` to the config's text, keeping its comments and layout.
/// Whether the key exists and the value fits is then checked by the config's own
/// validation, like any hand edit.
fn apply_sets(text: &str, sets: &[String]) -> Result<String, Error> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        // The template is ours and the substitutions are quoted by the TOML library.
        Error::bad_input(
            format!("the generated baton.toml does not parse: {e}"),
            "report this as a bug in baton init",
        )
    })?;
    // Named from the template itself, so the hint cannot drift from it.
    let known = doc
        .iter()
        .filter(|(_, item)| item.is_table())
        .map(|(name, _)| name)
        .collect::<Vec<_>>()
        .join(", ");
    // Messages name a --set by its place and show only key-like names: a misspelt
    // table or a value in the wrong place may be a secret (crate::redact).
    for (i, set) in sets.iter().enumerate() {
        let which = format!("--set #{} ({} characters)", i + 1, set.chars().count());
        let usage = "write --set TABLE.KEY=VALUE, e.g. --set swap.boot_timeout=2m";
        let Some((path, raw)) = set.split_once('=') else {
            return Err(Error::bad_input(format!("{which} has no '='"), usage));
        };
        let keys: Vec<&str> = path.trim().split('.').map(str::trim).collect();
        let Some((key, tables)) = keys
            .split_last()
            .filter(|(k, t)| !k.is_empty() && !t.is_empty())
        else {
            return Err(Error::bad_input(
                format!("{which}: what comes before '=' does not name a table and a key"),
                usage,
            ));
        };
        let mut table = doc.as_table_mut();
        for (i, name) in tables.iter().enumerate() {
            table = table
                .get_mut(name)
                .and_then(toml_edit::Item::as_table_mut)
                .ok_or_else(|| {
                    Error::bad_input(
                        format!(
                            "{which}: baton.toml has no table {}",
                            crate::redact::shown(&tables[..=i].join("."))
                        ),
                        format!("baton init writes the tables {known}"),
                    )
                })?;
        }
        let raw = raw.trim();
        let value = raw
            .parse::<toml_edit::Value>()
            .unwrap_or_else(|_| toml_edit::Value::from(raw));
        table[*key] = toml_edit::Item::Value(value);
    }
    Ok(doc.to_string())
}

/// Loads the config from a scratch copy of the project: the real text, and empty stand-ins
/// with the real modes for the key files (validation looks at their presence and mode,
/// never their contents, so no secret is written anywhere else). Problems name the real
/// path.
fn check_before_writing(
    dir: &Path,
    config_path: &Path,
    files: &[(PathBuf, Vec<u8>, u32)],
) -> Result<(), Error> {
    let scratch = tempfile::tempdir().map_err(|e| {
        crate::fsutil::FileError::new(
            "cannot create a scratch directory in",
            &std::env::temp_dir(),
            e,
        )
    })?;
    let mut stand_ins = Vec::new();
    for (path, bytes, mode) in files {
        let rel = path.strip_prefix(dir).unwrap_or(path);
        let at = scratch.path().join(rel);
        if let Some(parent) = at.parent() {
            fsutil::create_dir_all(parent)?;
        }
        let bytes = if path == config_path {
            bytes.clone()
        } else {
            Vec::new()
        };
        stand_ins.push((at, bytes, *mode));
    }
    fsutil::create_all_new(&stand_ins)?;
    match Config::load(&scratch.path().join("baton.toml")) {
        Ok(_) => Ok(()),
        Err(crate::config::ConfigError::Invalid { problems, .. }) => {
            Err(crate::config::ConfigError::Invalid {
                path: config_path.to_path_buf(),
                problems,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

struct Authorized {
    keys: Vec<String>,
    new_files: Vec<(PathBuf, Vec<u8>, u32)>,
    note: Option<String>,
}

/// The admin user's keys: the files given, else the operator's own ~/.ssh/id_*.pub, else a
/// new key pair in keys/admin, so the example validates and a rehearsal can log in.
fn authorized_keys(args: &InitArgs, keys_dir: &Path) -> Result<Authorized, Error> {
    let mut files = args.authorized_keys.clone();
    if files.is_empty()
        && let Some(home) = std::env::var_os("HOME")
    {
        let ssh_dir = Path::new(&home).join(".ssh");
        files = ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|f| ssh_dir.join(f))
            .filter(|p| p.is_file())
            .collect();
    }
    if files.is_empty() {
        let admin = ssh::generate_key("baton admin")?;
        let public = ssh::public_openssh(admin.public_key())?;
        let path = keys_dir.join("admin");
        return Ok(Authorized {
            keys: vec![public.trim_end().to_string()],
            note: Some(format!(
                "no ~/.ssh/id_*.pub found: created the admin key {} (log in with `ssh -i {} deploy@...`)",
                path.display(),
                path.display()
            )),
            new_files: vec![
                (
                    path.clone(),
                    ssh::private_openssh(&admin)?.as_bytes().to_vec(),
                    PRIVATE,
                ),
                (path.with_extension("pub"), public.into_bytes(), PUBLIC),
            ],
        });
    }
    let mut keys = Vec::new();
    for file in &files {
        let key = ssh::load_public(file, "an authorized key")?;
        keys.push(ssh::public_openssh(&key)?.trim_end().to_string());
    }
    Ok(Authorized {
        keys,
        new_files: Vec::new(),
        note: None,
    })
}
