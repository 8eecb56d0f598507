//! The AWS client: EC2 and ELBv2 through the AWS SDK. Compiled with the `aws` feature
//! (default), which builds that never reach AWS leave out (Cargo.toml).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceType,
    ResourceType, Tag, TagSpecification, VolumeType,
};

use super::errors::{Sdk, is_code};
use super::shapes::{TAG_NAME, check_user_data, client_token, instance_of, key_body};
use super::{ENV_KEY, ENV_SECRET, Front, Settings};
use crate::cloud::{Cloud, CloudError, Instance, InstanceSpec, SshKey, Template};

/// Its fronts' moves are in `elastic_ip.rs` and `target_group.rs`, one file per kind.
pub struct AwsClient {
    pub(super) ec2: aws_sdk_ec2::Client,
    pub(super) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(super) settings: Settings,
    /// The access key id's last four characters, for messages.
    key_tail: String,
    pub(super) poll: Duration,
}

impl AwsClient {
    /// Loads credentials from the standard chain (environment, then `AWS_PROFILE`'s shared
    /// files, then an EC2 instance profile) and checks that there are some: a missing key
    /// is exit 2 before any request.
    pub async fn new(settings: Settings) -> Result<AwsClient, CloudError> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
            .load()
            .await;
        Self::from_sdk(settings, &sdk).await
    }

    /// With the given credentials (tests, and callers that hold their own).
    pub async fn with_credentials(
        settings: Settings,
        key: &str,
        secret: &str,
    ) -> Result<AwsClient, CloudError> {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new(key, secret, None, None, "baton"),
            ))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
            .build();
        Self::from_sdk(settings, &sdk).await
    }

    async fn from_sdk(
        settings: Settings,
        sdk: &aws_config::SdkConfig,
    ) -> Result<AwsClient, CloudError> {
        let missing = || CloudError::MissingCredentials {
            var: ENV_KEY,
            key_var: ENV_KEY,
            secret_var: ENV_SECRET,
            rights: "or AWS_PROFILE naming a profile with them; the rights are the README's IAM \
                     policy",
        };
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(missing)?
            .provide_credentials()
            .await
            .map_err(|_| missing())?;
        let key_tail = crate::cloud::key_tail(credentials.access_key_id());
        let mut ec2 = aws_sdk_ec2::config::Builder::from(sdk);
        let mut elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk);
        if let Some(endpoint) = &settings.endpoint {
            ec2 = ec2.endpoint_url(endpoint);
            elb = elb.endpoint_url(endpoint);
        }
        Ok(AwsClient {
            ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb.build()),
            settings,
            key_tail,
            poll: Duration::from_millis(250),
        })
    }

    pub(super) fn sdk(&self) -> Sdk<'_> {
        Sdk {
            key_tail: &self.key_tail,
        }
    }

    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, CloudError> {
        let mut out = Vec::new();
        let mut pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.sdk().error("DescribeInstances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().filter_map(instance_of));
            }
        }
        Ok(out)
    }
}

/// One EC2 filter.
pub(super) fn filter<const N: usize>(name: &str, values: [&str; N]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

#[async_trait]
impl Cloud for AwsClient {
    async fn preflight(&self, spec: &InstanceSpec) -> Result<(), CloudError> {
        if !spec.template.is_empty() {
            self.resolve_image(&spec.template).await?;
        }
        let vpc = self.resolve_subnet().await?;
        self.resolve_security_groups(&vpc, &spec.security_groups)
            .await?;
        let offered = self
            .ec2
            .describe_instance_type_offerings()
            .filters(filter("instance-type", [&spec.instance_type]))
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeInstanceTypeOfferings", e))?;
        if offered.instance_type_offerings().is_empty() {
            return Err(CloudError::NotFound {
                what: format!("instance type {:?}", spec.instance_type),
                hint: format!(
                    "check instance.type: {} offers e.g. t3.small",
                    self.settings.region
                ),
            });
        }
        Ok(())
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance, CloudError> {
        if spec.labels.is_empty() {
            return Err(CloudError::Invalid(
                "an instance needs labels to be found again".into(),
            ));
        }
        if let Some(existing) = self.list_instances(&spec.labels).await?.into_iter().next() {
            tracing::info!(
                "instance {} ({}) already exists: using it",
                existing.name,
                existing.id
            );
            return Ok(existing);
        }
        check_user_data(&spec.user_data)?;
        let (image, root_device) = self.resolve_image(&spec.template).await?;
        let vpc = self.resolve_subnet().await?;
        let groups = self
            .resolve_security_groups(&vpc, &spec.security_groups)
            .await?;
        let mut tags: Vec<Tag> = spec
            .labels
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        tags.push(Tag::builder().key(TAG_NAME).value(&spec.name).build());
        let mut request = self
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(client_token(spec))
            .user_data(&spec.user_data)
            .set_key_name(spec.ssh_key.clone())
            // The host key is in the user-data: IMDSv2 with one hop keeps it from the
            // containers, whose requests take a second hop.
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            // Its own public address: baton reaches it before the front does.
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&self.settings.subnet)
                    .associate_public_ip_address(true)
                    .delete_on_termination(true)
                    .set_groups((!groups.is_empty()).then_some(groups))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        if let Some(device) = root_device {
            request = request.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(i32::try_from(spec.disk_gb).unwrap_or(i32::MAX))
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        let made = request
            .send()
            .await
            .map_err(|e| self.sdk().error("RunInstances", e))?;
        made.instances()
            .first()
            .and_then(instance_of)
            .ok_or_else(|| CloudError::Decode {
                request: "RunInstances".into(),
                reason: "the answer names no instance".into(),
            })
    }

    async fn get_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        match self.describe(vec![filter("instance-id", [id])]).await {
            Ok(found) => Ok(found.into_iter().next()),
            Err(e) if is_code(&e, "InvalidInstanceID.NotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_instances(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Instance>, CloudError> {
        let filters = labels
            .iter()
            .map(|(k, v)| filter(&format!("tag:{k}"), [v]))
            .collect();
        self.describe(filters).await
    }

    async fn delete_instance(&self, id: &str) -> Result<(), CloudError> {
        match self.ec2.terminate_instances().instance_ids(id).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.sdk().error("TerminateInstances", e);
                if is_code(&e, "InvalidInstanceID.NotFound") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn wait_running(&self, id: &str, timeout: Duration) -> Result<Instance, CloudError> {
        let start = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            // Right after RunInstances, DescribeInstances may not know the id yet.
            let found = self.get_instance(id).await?;
            match found {
                Some(i) if i.state == "running" && i.public_ip.is_some() => return Ok(i),
                Some(ref i) if !matches!(i.state.as_str(), "starting" | "running") => {
                    return Err(CloudError::InstanceFailed {
                        id: id.to_string(),
                        state: i.state.clone(),
                    });
                }
                _ => {}
            }
            if start.elapsed() >= timeout {
                return Err(CloudError::InstanceFailed {
                    id: id.to_string(),
                    state: format!(
                        "{} after {timeout:?}",
                        found.map_or("unknown".to_string(), |i| i.state)
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(Duration::from_secs(3));
        }
    }

    async fn register_ssh_key(&self, name: &str, public_key: &str) -> Result<(), CloudError> {
        let imported = self
            .ec2
            .import_key_pair()
            .key_name(name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                public_key.trim().as_bytes(),
            ))
            .send()
            .await;
        let e = match imported {
            Ok(_) => return Ok(()),
            Err(e) => self.sdk().error("ImportKeyPair", e),
        };
        if !is_code(&e, "InvalidKeyPair.Duplicate") {
            return Err(e);
        }
        let existing = self
            .ec2
            .describe_key_pairs()
            .key_names(name)
            .include_public_key(true)
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeKeyPairs", e))?;
        let same = existing
            .key_pairs()
            .first()
            .and_then(|k| k.public_key())
            .is_some_and(|k| key_body(k) == key_body(public_key));
        if same {
            Ok(())
        } else {
            Err(CloudError::Invalid(format!(
                "key pair {name:?} already exists with another public key; delete it (baton gc) \
                 or pick another site name"
            )))
        }
    }

    async fn delete_ssh_key(&self, name: &str) -> Result<(), CloudError> {
        // DeleteKeyPair succeeds for a name that does not exist.
        self.ec2
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk().error("DeleteKeyPair", e))
    }

    async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, CloudError> {
        let keys = self
            .ec2
            .describe_key_pairs()
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeKeyPairs", e))?;
        Ok(keys
            .key_pairs()
            .iter()
            .filter_map(|k| {
                Some(SshKey {
                    name: k.key_name()?.to_string(),
                    fingerprint: k.key_fingerprint().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    /// The account's own AMIs: a bake imported under its `baton-SITE-HASH` name is found
    /// by `instance.template = "baked"` as on Exoscale.
    async fn list_own_templates(&self) -> Result<Vec<Template>, CloudError> {
        let images = self
            .ec2
            .describe_images()
            .owners("self")
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeImages", e))?;
        let mut own: Vec<Template> = images
            .images()
            .iter()
            .filter_map(|i| {
                Some(Template {
                    id: i.image_id()?.to_string(),
                    name: i.name()?.to_string(),
                    created_at: i.creation_date().map(str::to_string),
                    description: i.description().map(str::to_string),
                    size: None,
                })
            })
            .collect();
        own.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(own)
    }

    async fn delete_template(&self, id: &str) -> Result<(), CloudError> {
        match self.ec2.deregister_image().image_id(id).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.sdk().error("DeregisterImage", e);
                if is_code(&e, "InvalidAMIID.NotFound") || is_code(&e, "InvalidAMIID.Unavailable") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn find_front(&self, address: IpAddr) -> Result<String, CloudError> {
        match &self.settings.front {
            Front::ElasticIp { allocation_id } => {
                self.find_elastic_ip(address, allocation_id.as_deref())
                    .await
            }
            Front::Alb { target_group } => self.find_target_group(target_group).await,
        }
    }

    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        match &self.settings.front {
            Front::ElasticIp { .. } => self.associate(front, instance).await,
            Front::Alb { .. } => self.register(front, instance).await,
        }
    }

    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        match &self.settings.front {
            Front::ElasticIp { .. } => self.disassociate(front, instance).await,
            Front::Alb { .. } => self.deregister(front, instance).await,
        }
    }

    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError> {
        let ids = match &self.settings.front {
            Front::ElasticIp { allocation_id } => {
                self.elastic_ip_holder(address, allocation_id.as_deref())
                    .await?
            }
            Front::Alb { target_group } => self.serving_targets(target_group).await?,
        };
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.get_instance(&id).await?);
        }
        Ok(out)
    }
}
