//! AWS behind the [`Cloud`] trait: EC2 for instances, key pairs and Elastic IPs, ELBv2 for
//! the `alb` front, through the AWS SDK (its SigV4, its retries, its credential chain).
//!
//! What differs from Exoscale, and why it reads naturally through the trait:
//! - an Elastic IP serves one instance at a time: `front_add` re-associates it in one
//!   call (never a detach then an attach), so it serves one at a time
//!   ([`Front::describe`]); the swap then measures the gap instead of promising none;
//! - a target group serves many: `front_add` registers and waits until the load balancer
//!   says healthy, `front_remove` deregisters and waits out the draining;
//! - labels are tags; a retried RunInstances carries the same `ClientToken`, so AWS returns
//!   the first instance instead of making a second.

#[cfg(feature = "aws")]
mod client;
#[cfg(feature = "aws")]
mod elastic_ip;
#[cfg(feature = "aws")]
mod errors;
#[cfg(feature = "aws")]
mod names;
#[cfg(feature = "aws")]
mod shapes;
#[cfg(feature = "aws")]
mod target_group;

#[cfg(feature = "aws")]
pub use client::AwsClient;

use std::time::Duration;

use super::{Cloud, CloudError};

pub const ENV_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const ENV_SECRET: &str = "AWS_SECRET_ACCESS_KEY";

/// AWS's limit on user-data: 16 KiB of raw bytes (before the API's base64).
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// Where the site's traffic enters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Front {
    /// An Elastic IP, optionally pinned to its allocation id.
    ElasticIp { allocation_id: Option<String> },
    /// An ALB target group (its ARN).
    Alb { target_group: String },
}

/// What baton.toml says about AWS.
#[derive(Debug, Clone)]
pub struct Settings {
    pub region: String,
    pub endpoint: Option<String>,
    pub subnet: String,
    /// Who owns the AMI when `instance.template` names one by name: "self", "amazon", an
    /// account id.
    pub image_owner: String,
    pub front: Front,
    /// How long a target may take to turn healthy, or to drain.
    pub front_timeout: Duration,
}

/// The client for these settings, as the rest of baton sees a cloud. A build without the
/// `aws` feature (`just demo`'s, whose VMs and simulator never reach AWS) has none: a site
/// on AWS then gets an error that says so.
impl Front {
    /// What the swap depends on, for the front at `address`.
    pub fn describe(&self, address: std::net::IpAddr) -> super::front::Front {
        let (kind, noun, one_at_a_time, attach, detach) = match self {
            Front::ElasticIp { .. } => (
                "elastic-ip",
                "the Elastic IP",
                true,
                "move the Elastic IP to the new instance in one call (requests fail until AWS \
                 points it there: the gap is reported)",
                "check that the old instance no longer holds the Elastic IP",
            ),
            Front::Alb { .. } => (
                "alb",
                "the target group",
                false,
                "register the new instance in the target group; wait until the ALB says healthy",
                "deregister the old instance; wait out its draining",
            ),
        };
        super::front::Front {
            kind,
            noun,
            address,
            one_at_a_time,
            held_by_server: false,
            attach,
            detach,
        }
    }
}

pub async fn connect(settings: Settings) -> Result<std::sync::Arc<dyn Cloud>, CloudError> {
    #[cfg(feature = "aws")]
    return Ok(std::sync::Arc::new(AwsClient::new(settings).await?));
    #[cfg(not(feature = "aws"))]
    {
        let _ = settings;
        Err(CloudError::LeftOut { provider: "aws" })
    }
}
