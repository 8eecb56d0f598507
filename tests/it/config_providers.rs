//! Bad input in the provider's and the front's settings (`[cloud]`, `[front]`, AWS's
//! `[instance]` keys, their credentials): each named with its field and the fix, exit
//! code 2, nothing written; and an older file's front read as it was.

use crate::common;

use super::config_errors::{assert_has, refused};
use common::*;

#[test]
fn aws_settings_are_checked_field_by_field() {
    let p = Project::init(&["--cloud", "aws"]);
    // As written, it validates.
    ok(p.baton(&["render", "--generation", "1", "--out", "ok"]));
    std::fs::remove_dir_all(p.path().join("ok")).unwrap();
    let err = refused(&p, |t| {
        t.replace("region = \"eu-central-1\"\n", "zone = \"ch-gva-2\"\n")
            .replace(
                "subnet = \"subnet-0123456789abcdef0\"",
                "subnet = \"vpc-1\"",
            )
            .replace("kind = \"elastic-ip\"", "kind = \"nlb\"")
    });
    assert_has(
        &err,
        &[
            "cloud.region",
            "AWS needs the region",
            "cloud.zone",
            "is an Exoscale setting",
            "front.kind",
            "is not a kind of front",
            "instance.subnet",
            "is not a subnet id",
        ],
    );
}

#[test]
fn an_alb_front_needs_a_target_group_arn_and_no_allocation_id() {
    let arn =
        "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/blog/0123456789abcdef";
    let p = Project::init(&["--cloud", "aws", "--front", "alb", "--target-group", arn]);
    ok(p.baton(&["render", "--generation", "1", "--out", "ok"]));
    std::fs::remove_dir_all(p.path().join("ok")).unwrap();
    let err = refused(&p, |t| {
        t.replace(arn, "blog-targets").replace(
            "\nkind = \"alb\"\n",
            "\nkind = \"alb\"\nallocation_id = \"eipalloc-1\"\n",
        )
    });
    assert_has(
        &err,
        &[
            "front.target_group",
            "is not a target group ARN",
            "front.allocation_id",
            "the front is \"alb\"",
        ],
    );
}

/// A file written before `[front]` had a table of its own keeps the front in `[cloud]`:
/// it is read as it was, and a file with both places is refused, naming the old key.
#[test]
fn an_older_file_keeps_its_front_in_cloud() {
    let arn =
        "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/blog/0123456789abcdef";
    let p = Project::init(&["--cloud", "aws", "--front", "alb", "--target-group", arn]);
    let path = p.path().join("baton.toml");
    let now = std::fs::read_to_string(&path).unwrap();
    let trusted = ok(p.baton(&["known-hosts"]));
    let older = now
        .replace("\n[front]\n", "\n")
        .replace("address = ", "elastic_ip = ")
        .replace("\nkind = \"alb\"\n", "\nfront = \"alb\"\n");
    assert!(
        !older.contains("[front]") && older.contains("elastic_ip = "),
        "{older}"
    );
    std::fs::write(&path, &older).unwrap();
    ok(p.baton(&["render", "--generation", "1", "--out", "ok"]));
    assert_eq!(
        ok(p.baton(&["known-hosts"])),
        trusted,
        "the same address, read from [cloud]"
    );
    // The older file's address and a [front] table beside it: which one is meant?
    let both = format!("{older}\n[front]\naddress = \"203.0.113.99\"\n");
    std::fs::write(&path, both).unwrap();
    let out = p.baton(&["known-hosts"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(
        &stderr(&out),
        &[
            "field `cloud.elastic_ip`",
            "[front] table too",
            "move it to [front] as address",
        ],
    );
}

#[test]
fn aws_settings_on_an_exoscale_site_are_refused() {
    let p = Project::init(&[]);
    let err = refused(&p, |t| {
        t.replace(
            "type = \"standard.small\"",
            "type = \"standard.small\"\nsubnet = \"subnet-1\"",
        )
    });
    assert_has(
        &err,
        &["instance.subnet", "is an AWS setting", "provider = \"aws\""],
    );
}

#[test]
fn missing_aws_credentials_are_exit_2_naming_the_variables() {
    let p = Project::init(&["--cloud", "aws"]);
    let out = std::process::Command::new(BATON)
        .args(["plan"])
        .current_dir(p.path())
        .env("HOME", p.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(
        &stderr(&out),
        &[
            "AWS_ACCESS_KEY_ID is not set",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
        ],
    );
}

#[test]
fn a_target_group_without_the_alb_front_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let arn =
        "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/blog/0123456789abcdef";
    let out = baton(
        dir.path(),
        &[
            "init",
            "--dir",
            ".",
            "--cloud",
            "aws",
            "--target-group",
            arn,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_has(&stderr(&out), &["--target-group", "--front alb"]);
    assert!(!dir.path().join("baton.toml").exists());
}
