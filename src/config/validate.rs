//! Every field checked against what a swap could use, each problem naming its field and
//! the fix, all listed at once.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::{Config, PROVIDERS, Problem};
use crate::redact::described;
use crate::store::Settings as StoreSettings;

impl Config {
    fn validate_aws(&self, v: &mut Validator) {
        let c = self;
        v.check(
            c.cloud.region.as_deref().is_some_and(|r| is_label(r, 30)),
            "cloud.region",
            || match &c.cloud.region {
                Some(r) => format!("{} is not a region name", described(r)),
                None => "is missing: AWS needs the region".into(),
            },
            "write the region as AWS names it, e.g. \"eu-central-1\"",
        );
        v.check(
            c.cloud.zone.is_empty(),
            "cloud.zone",
            || "is an Exoscale setting, and cloud.provider is \"aws\"".into(),
            "remove it; AWS takes cloud.region",
        );
        let f = &c.front_settings;
        let kind = f.kind.as_deref().unwrap_or("elastic-ip");
        v.check(
            matches!(kind, "elastic-ip" | "alb"),
            "front.kind",
            || format!("{} is not a kind of front", described(kind)),
            "set kind = \"elastic-ip\" (an Elastic IP) or \"alb\" (an ALB target group)",
        );
        if kind == "alb" {
            v.check(
                f.target_group
                    .as_deref()
                    .is_some_and(|t| t.starts_with("arn:") && t.contains(":targetgroup/")),
                "front.target_group",
                || match &f.target_group {
                    Some(t) => format!("{} is not a target group ARN", described(t)),
                    None => "is missing: kind = \"alb\" needs the target group".into(),
                },
                "write the ARN, e.g. \"arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/blog/0123456789abcdef\"",
            );
            v.check(
                f.allocation_id.is_none(),
                "front.allocation_id",
                || "names an Elastic IP, and the front is \"alb\"".into(),
                "remove it, or set kind = \"elastic-ip\"",
            );
        } else {
            v.check(
                f.target_group.is_none(),
                "front.target_group",
                || "names a target group, and the front is \"elastic-ip\"".into(),
                "remove it, or set kind = \"alb\"",
            );
            if let Some(id) = &f.allocation_id {
                v.check(
                    id.starts_with("eipalloc-"),
                    "front.allocation_id",
                    || format!("{} is not an allocation id", described(id)),
                    "write it as AWS shows it, e.g. \"eipalloc-0123456789abcdef0\"",
                );
            }
        }
        v.check(
            c.instance
                .subnet
                .as_deref()
                .is_some_and(|s| s.starts_with("subnet-")),
            "instance.subnet",
            || match &c.instance.subnet {
                Some(s) => format!("{} is not a subnet id", described(s)),
                None => "is missing: AWS needs the subnet to start the instance in".into(),
            },
            "write the subnet's id, e.g. \"subnet-0123456789abcdef0\"",
        );
    }

    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut v = Validator::default();
        let c = self;

        v.check(
            is_label(&c.site.name, 30),
            "site.name",
            || {
                format!(
                    "{} cannot name instances and labels",
                    described(&c.site.name)
                )
            },
            "use 1-30 lowercase letters, digits and dashes, starting with a letter, e.g. \"blog\"",
        );
        v.check(
            is_hostname(&c.site.domain),
            "site.domain",
            || format!("{} is not a DNS name", described(&c.site.domain)),
            "write the site's fully qualified name, e.g. \"blog.example.org\"",
        );

        v.check(
            PROVIDERS.contains(&c.cloud.provider.as_str()),
            "cloud.provider",
            || {
                format!(
                    "{} is not a supported provider",
                    described(&c.cloud.provider)
                )
            },
            "set provider = \"exoscale\" or \"aws\"",
        );
        if c.cloud.provider == "aws" {
            c.validate_aws(&mut v);
        } else {
            v.check(
                is_label(&c.cloud.zone, 30),
                "cloud.zone",
                || format!("{} is not a zone name", described(&c.cloud.zone)),
                "write the zone as Exoscale names it, e.g. \"ch-gva-2\"",
            );
            let f = &c.front_settings;
            v.check(
                f.kind.as_deref().is_none_or(|k| k == "elastic-ip"),
                "front.kind",
                || match f.kind.as_deref() {
                    Some("alb") => "is an AWS front, and cloud.provider is \"exoscale\"".into(),
                    Some(k) => format!("{} is not a kind of front", described(k)),
                    None => String::new(),
                },
                "set kind = \"elastic-ip\" (Exoscale's one kind of front), or leave it out",
            );
            for (field, set) in [
                ("cloud.region", c.cloud.region.is_some()),
                ("front.allocation_id", f.allocation_id.is_some()),
                ("front.target_group", f.target_group.is_some()),
                ("instance.subnet", c.instance.subnet.is_some()),
                ("instance.image_owner", c.instance.image_owner.is_some()),
            ] {
                v.check(
                    !set,
                    field,
                    || "is an AWS setting, and cloud.provider is \"exoscale\"".into(),
                    "remove it, or set provider = \"aws\"",
                );
            }
        }
        if let Some(endpoint) = &c.cloud.endpoint {
            v.check_url(endpoint, "cloud.endpoint");
        }
        v.check(
            c.front_settings.address.is_some(),
            "front.address",
            || "is missing: baton needs the address the site answers on".into(),
            "add [front] with address = the Elastic IP (or with kind = \"alb\" an address of \
             the load balancer), e.g. \"203.0.113.10\"",
        );

        v.check(
            c.instance.disk_gb >= 10,
            "instance.disk_gb",
            || {
                format!(
                    "{} GB is below the 10 GB Exoscale's templates need",
                    c.instance.disk_gb
                )
            },
            "set disk_gb = 10 or more",
        );
        v.check(
            c.instance.disk_gb <= 51200,
            "instance.disk_gb",
            || {
                format!(
                    "{} GB is above the 51200 GB an instance may have",
                    c.instance.disk_gb
                )
            },
            "set disk_gb to at most 51200",
        );
        for (field, value) in [
            ("swap.boot_timeout", c.swap.boot_timeout),
            ("swap.health_timeout", c.swap.health_timeout),
            ("swap.handover_timeout", c.swap.handover_timeout),
        ] {
            v.check(
                (Duration::from_secs(5)..=Duration::from_secs(24 * 3600)).contains(&value),
                field,
                || {
                    format!(
                        "{} is outside 5s to 24h: a swap would fail at once or wait a day",
                        humantime::format_duration(value)
                    )
                },
                "use minutes, e.g. \"10m\" (the defaults fit a real cloud)",
            );
        }
        v.check(
            c.swap.watch.is_zero()
                || (Duration::from_secs(5)..=Duration::from_secs(24 * 3600))
                    .contains(&c.swap.watch),
            "swap.watch",
            || {
                format!(
                    "{} is outside 5s to 24h",
                    humantime::format_duration(c.swap.watch)
                )
            },
            "use minutes, e.g. \"5m\", or \"0s\" to turn the watch off",
        );
        v.check(
            (Duration::from_secs(1)..=Duration::from_secs(300)).contains(&c.swap.watch_interval)
                && (c.swap.watch.is_zero() || c.swap.watch_interval <= c.swap.watch),
            "swap.watch_interval",
            || {
                format!(
                    "{} is outside 1s to 5m, or longer than swap.watch",
                    humantime::format_duration(c.swap.watch_interval)
                )
            },
            "use seconds, e.g. \"5s\"",
        );
        v.check(
            (1..=100).contains(&c.swap.watch_failures),
            "swap.watch_failures",
            || format!("{} is outside 1 to 100", c.swap.watch_failures),
            "use a few, e.g. 3: one failed check alone is often a blip",
        );
        v.check(
            c.swap.keep_previous <= Duration::from_secs(7 * 24 * 3600),
            "swap.keep_previous",
            || {
                format!(
                    "{} is longer than 7 days: a second VM would run (and cost) that long",
                    humantime::format_duration(c.swap.keep_previous)
                )
            },
            "use minutes or hours, e.g. \"30m\", or \"0s\" to delete it after the watch",
        );
        v.check(
            !c.instance.instance_type.trim().is_empty(),
            "instance.type",
            || "is empty".to_string(),
            "name an instance type, e.g. \"standard.small\"",
        );
        v.check(
            !c.instance.template.trim().is_empty(),
            "instance.template",
            || "is empty".to_string(),
            "name a template, e.g. \"Linux Debian 12 (Bookworm) 64-bit\"",
        );

        v.check(
            c.ssh.port != 0,
            "ssh.port",
            || "0 is not a port".to_string(),
            "use 22 or another port from 1 to 65535",
        );
        v.check(
            is_unix_user(&c.ssh.admin_user),
            "ssh.admin_user",
            || format!("{} cannot be the admin user", described(&c.ssh.admin_user)),
            "use a lowercase login name other than root, e.g. \"deploy\"",
        );
        v.check(
            !c.ssh.authorized_keys.is_empty(),
            "ssh.authorized_keys",
            || "is empty: nobody could log in to the server".to_string(),
            "add your public key, e.g. the contents of ~/.ssh/id_ed25519.pub",
        );
        for (i, key) in c.ssh.authorized_keys.iter().enumerate() {
            // One entry is one line of authorized_keys: a newline would smuggle in a
            // second key (or options) that the parser below never looked at.
            if key.chars().any(char::is_control) {
                v.problem(
                    "ssh.authorized_keys",
                    format!(
                        "entry {} holds a line break or another control character",
                        i + 1
                    ),
                    "give each key as its own entry, one line each",
                );
            } else if let Err(e) = ssh_key::PublicKey::from_openssh(key) {
                v.problem(
                    "ssh.authorized_keys",
                    format!("entry {} is not an OpenSSH public key ({e})", i + 1),
                    "paste the whole line of a .pub file: \"ssh-ed25519 AAAA... you@host\"",
                );
            }
        }
        v.check(
            c.ssh.cert_lifetime >= Duration::from_secs(3600),
            "ssh.cert_lifetime",
            || {
                format!(
                    "{} is too short to outlive a swap",
                    humantime::format_duration(c.ssh.cert_lifetime)
                )
            },
            "use at least \"1h\"; the default is \"90d\"",
        );
        v.check(
            c.ssh.cert_lifetime <= crate::identity::MAX_CERT_LIFETIME,
            "ssh.cert_lifetime",
            || "is longer than 10 years".to_string(),
            "use at most \"3650d\"; a swap renews the certificate anyway (the default is \"90d\")",
        );
        v.secret_file(&c.host_ca_key(), "ssh.host_ca");
        v.public_file(&c.host_ca_pub(), "ssh.host_ca");
        v.secret_file(&c.tls_ca_key(), "tls.ca_key");
        v.public_file(&c.tls_ca_cert(), "tls.ca_cert");

        v.check_store(&c.store);

        for (i, p) in c.backup.paths.iter().enumerate() {
            v.check(
                crate::fsutil::is_plain_absolute(p),
                "backup.paths",
                || format!("entry {} is not an absolute path without `..`", i + 1),
                "write host paths in full, e.g. \"/srv/acme\"",
            );
            v.check(
                !c.backup.paths[..i].contains(p),
                "backup.paths",
                || format!("entry {} repeats an earlier one", i + 1),
                "list each path once",
            );
        }
        v.check(
            c.backup.keep_last >= 1,
            "backup.keep_last",
            || "is 0: every backup would be deleted right after it was made".to_string(),
            "keep at least 1 (the default is 60)",
        );
        v.problems
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, field: &str, message: String, fix: &str) {
        self.problems.push(Problem {
            field: Some(field.to_string()),
            line: None,
            message,
            fix: fix.to_string(),
        });
    }

    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String, fix: &str) {
        if !ok {
            self.problem(field, message(), fix);
        }
    }

    fn check_url(&mut self, url: &str, field: &str) {
        let Some((scheme, rest)) = url.split_once("://") else {
            return self.problem(
                field,
                format!("{} is not a URL", described(url)),
                "write e.g. \"https://host/path\"",
            );
        };
        let host = rest.split(['/', ':']).next().unwrap_or("");
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match scheme {
            "https" if !host.is_empty() => {}
            // Plain HTTP would carry signed requests in clear: only for local simulators.
            "http" if loopback => {}
            "http" => self.problem(
                field,
                format!("{} uses plain http to a remote host", described(url)),
                "use https (http is allowed only for 127.0.0.1/localhost, e.g. exosim)",
            ),
            _ => self.problem(
                field,
                format!("{} is not an http(s) URL", described(url)),
                "write e.g. \"https://host/path\"",
            ),
        }
    }

    fn check_store(&mut self, store: &StoreSettings) {
        let url = &store.url;
        if let Some(rest) = url.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or("");
            if !is_bucket(bucket) {
                self.problem(
                    "store.url",
                    format!("the bucket, {}, is not a valid bucket name", described(bucket)),
                    "use 3-63 lowercase letters, digits, dots and dashes: \"s3://my-bucket/prefix\"",
                );
            }
            match &store.endpoint {
                Some(e) => self.check_url(e, "store.endpoint"),
                None => self.problem(
                    "store.endpoint",
                    "is missing; an s3:// store needs its endpoint".to_string(),
                    "add e.g. endpoint = \"https://sos-ch-gva-2.exo.io\"",
                ),
            }
        } else if let Some(path) = url.strip_prefix("file://") {
            if !Path::new(path).is_absolute() {
                self.problem(
                    "store.url",
                    format!("{} is not an absolute file URL", described(url)),
                    "write three slashes for an absolute path: \"file:///var/lib/baton/store\"",
                );
            }
        } else {
            self.problem(
                "store.url",
                format!("{} is neither s3:// nor file://", described(url)),
                "write \"s3://bucket/prefix\" or \"file:///absolute/path\"",
            );
        }
    }

    /// A file that must exist and be a regular file (one stat: missing, or something
    /// else, each with its own advice).
    fn public_file(&mut self, path: &Path, field: &str) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => self.problem(
                field,
                format!("{} is not a regular file", path.display()),
                "point the field at the key or certificate file itself (relative paths start \
                 at the config file's directory)",
            ),
            // Named by its length only: what does not exist may be a value pasted into the
            // wrong field, a secret say.
            Err(_) => self.problem(
                field,
                format!(
                    "names a file that does not exist ({})",
                    described(&path.to_string_lossy()).replacen("value", "path", 1)
                ),
                "create the CA with `baton init`, or point the field at your existing file \
                 (relative paths start at the config file's directory)",
            ),
        }
    }

    /// Like [`Self::public_file`], and readable by its owner only. Its mode is judged
    /// only once it is a regular file: chmod would be the wrong advice for a directory
    /// or a device.
    fn secret_file(&mut self, path: &Path, field: &str) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o077 != 0 => self.problem(
                field,
                format!(
                    "private key {} is readable by others (mode {:o})",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ),
                &format!("run `chmod 600 {}`", path.display()),
            ),
            Ok(meta) if meta.is_file() => {}
            _ => self.public_file(path, field),
        }
    }
}

fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_unix_user(s: &str) -> bool {
    s != "root"
        && !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_bucket(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_label("blog", 30) && !is_label("Blog", 30) && !is_label("blog-", 30));
        assert!(is_hostname("blog.example.org") && !is_hostname("blog") && !is_hostname("a..b"));
        assert!(is_unix_user("deploy") && !is_unix_user("root") && !is_unix_user("De"));
        assert!(is_bucket("baton-blog") && !is_bucket("Baton") && !is_bucket("ab"));
    }
}
