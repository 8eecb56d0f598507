//! moto's server (PyPI moto[server], installed by scripts/install-deps into its own venv)
//! run by scripts/moto-rehearsal: AWS's EC2, ELBv2 and S3 as moto models them, checked
//! against botocore's service models, with loopback machines behind its instances.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const KEY: &str = "AKIAREHEARSAL0000TEST";
pub const SECRET: &str = "rehearsal-secret-DO-NOT-PRINT-0123456789";
pub const REGION: &str = "eu-central-1";

/// The venv's python; `scripts/install-deps` makes it.
pub fn python() -> PathBuf {
    let venv = std::env::var("BATON_MOTO_VENV").unwrap_or_else(|_| "/var/tmp/baton-moto".into());
    let python = Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-deps (it installs moto[server] there)",
        python.display()
    );
    python
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

pub struct Moto {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// moto alone: no machines, no forwarding (S3 and API tests).
    pub fn plain() -> Moto {
        Self::start(&["--net", "127.0.3"], &[])
    }

    pub fn start(extra: &[&str], env: &[(&str, String)]) -> Moto {
        let mut child = Command::new(python())
            .arg(script("moto-rehearsal"))
            .args(["--listen", "127.0.0.1:0", "--region", REGION])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/moto-rehearsal");
        let url = super::exosim::first_line_address(&mut child, "moto-rehearsal: listening on ");
        Moto {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub fn state(&self) -> Value {
        let get = self.http.get(format!("{}/_rehearsal/state", self.url));
        super::rehearsal::rt().block_on(async { get.send().await.unwrap().json().await.unwrap() })
    }

    /// A fault, e.g. `{"action": "RunInstances"}` (the next call fails), or with
    /// `"after": "AssociateAddress"` (the first call after that one).
    pub fn fault(&self, fault: Value) {
        let post = self
            .http
            .post(format!("{}/_rehearsal/fault", self.url))
            .json(&fault);
        let r = super::rehearsal::rt().block_on(post.send()).unwrap();
        assert!(r.status().is_success());
    }

    /// The EC2 and ELBv2 clients a test sets up the account with, as an operator would.
    pub fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new(KEY, SECRET, None, None, "test"),
            ))
            .build()
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk())
    }

    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk())
    }

    /// The environment a baton process talks to this moto with.
    pub fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            // No instance metadata and no shared files of whoever runs the tests.
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
    }
}

/// What an operator creates once by hand (README, "On AWS"), made in moto: the security
/// group `web` in the default VPC, an Elastic IP, and with `alb` a target group whose
/// deregistration delay is 2 s. Returns (subnet, Elastic IP address, target group ARN).
pub fn account(moto: &Moto, alb: bool) -> (String, String, Option<String>) {
    let rt = super::rehearsal::rt();
    rt.block_on(async {
        let ec2 = moto.ec2();
        let subnets = ec2.describe_subnets().send().await.unwrap();
        let subnet = subnets
            .subnets()
            .iter()
            .find(|s| s.availability_zone() == Some("eu-central-1a"))
            .unwrap();
        let vpc = subnet.vpc_id().unwrap().to_string();
        ec2.create_security_group()
            .group_name("web")
            .description("HTTPS and SSH")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        let eip = ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .send()
            .await
            .unwrap();
        let group = if alb {
            let elb = moto.elb();
            let made = elb
                .create_target_group()
                .name("blog")
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Https)
                .port(443)
                .vpc_id(&vpc)
                .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
                .send()
                .await
                .unwrap();
            let arn = made.target_groups()[0]
                .target_group_arn()
                .unwrap()
                .to_string();
            elb.modify_target_group_attributes()
                .target_group_arn(&arn)
                .attributes(
                    aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute::builder()
                        .key("deregistration_delay.timeout_seconds")
                        .value("2")
                        .build(),
                )
                .send()
                .await
                .unwrap();
            Some(arn)
        } else {
            None
        };
        (
            subnet.subnet_id().unwrap().to_string(),
            eip.public_ip().unwrap().to_string(),
            group,
        )
    })
}

impl Moto {
    /// baton's S3 store on moto's S3: the bucket made first, as an operator would.
    pub async fn s3_store(&self, bucket: &str, prefix: &str) -> baton::store::s3::S3Store {
        let creds = aws_sdk_s3::config::Credentials::new(KEY, SECRET, None, None, "test");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .force_path_style(true)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds.clone())
            .build();
        aws_sdk_s3::Client::from_conf(config)
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        baton::store::s3::S3Store::new(
            &format!("s3://{bucket}/{prefix}"),
            &self.url,
            "us-east-1",
            creds,
        )
        .unwrap()
    }
}
