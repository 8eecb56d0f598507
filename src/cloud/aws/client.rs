//! The AWS client: EC2 and ELBv2 through the AWS SDK. Compiled with the `aws` feature
//! (default), which builds that never reach AWS leave out (Cargo.toml).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, ResourceType, Tag, TagSpecification, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};
use base64::Engine;
use sha2::Digest;

use super::errors::{Sdk, is_code};
use super::{ENV_KEY, ENV_SECRET, Front, Settings, USER_DATA_LIMIT};
use crate::cloud::{Cloud, CloudError, Instance, InstanceSpec, SshKey, Template, TemplateSpec};

/// The tag AWS's console shows as the name.
const TAG_NAME: &str = "Name";

pub struct AwsClient {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    settings: Settings,
    /// The access key id's last four characters, for messages.
    key_tail: String,
    poll: Duration,
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

    fn sdk(&self) -> Sdk<'_> {
        Sdk {
            key_tail: &self.key_tail,
        }
    }

    /// The AMI `template` names: an id as it is, a name as the newest of the owner's
    /// images with that name.
    async fn resolve_image(&self, template: &str) -> Result<(String, Option<String>), CloudError> {
        let mut request = self.ec2.describe_images();
        request = if template.starts_with("ami-") {
            request.image_ids(template)
        } else {
            request
                .owners(&self.settings.image_owner)
                .filters(filter("name", [template]))
        };
        let images = request
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeImages", e))?;
        let newest = images
            .images()
            .iter()
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        match newest.and_then(|i| i.image_id().map(|id| (i, id))) {
            Some((image, id)) => Ok((id.to_string(), image.root_device_name().map(str::to_string))),
            None => Err(CloudError::NotFound {
                what: format!("AMI {template:?} (owner {})", self.settings.image_owner),
                hint: "check instance.template (an ami-... id, or an image name with \
                       instance.image_owner) and cloud.region"
                    .into(),
            }),
        }
    }

    async fn resolve_subnet(&self) -> Result<String, CloudError> {
        let subnet = &self.settings.subnet;
        let found = self
            .ec2
            .describe_subnets()
            .filters(filter("subnet-id", [subnet]))
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeSubnets", e))?;
        found
            .subnets()
            .first()
            .and_then(|s| s.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::NotFound {
                what: format!("subnet {subnet}"),
                hint: "check instance.subnet and cloud.region".into(),
            })
    }

    /// Security groups by id or by name, within the subnet's VPC.
    async fn resolve_security_groups(
        &self,
        vpc: &str,
        wanted: &[String],
    ) -> Result<Vec<String>, CloudError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", [vpc]))
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeSecurityGroups", e))?;
        let all = groups.security_groups();
        wanted
            .iter()
            .map(|w| {
                all.iter()
                    .find(|g| g.group_id() == Some(w) || g.group_name() == Some(w))
                    .and_then(|g| g.group_id())
                    .map(str::to_string)
                    .ok_or_else(|| CloudError::NotFound {
                        what: format!("security group {w:?} in {vpc}"),
                        hint: format!(
                            "the subnet's VPC has {}; check instance.security_groups",
                            crate::cloud::names(
                                all.iter()
                                    .filter_map(|g| g.group_name().map(str::to_string))
                            )
                        ),
                    })
            })
            .collect()
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

    /// The one Elastic IP `filter` matches, or `missing`.
    async fn describe_address(
        &self,
        filter: Filter,
        missing: impl FnOnce() -> CloudError,
    ) -> Result<aws_sdk_ec2::types::Address, CloudError> {
        let found = self
            .ec2
            .describe_addresses()
            .filters(filter)
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeAddresses", e))?;
        found.addresses().first().cloned().ok_or_else(missing)
    }

    /// The Elastic IP by its allocation id (the journalled front).
    async fn address(
        &self,
        allocation_id: &str,
    ) -> Result<aws_sdk_ec2::types::Address, CloudError> {
        self.describe_address(filter("allocation-id", [allocation_id]), || {
            CloudError::NotFound {
                what: format!("Elastic IP {allocation_id}"),
                hint: "check cloud.allocation_id and cloud.region".into(),
            }
        })
        .await
    }

    /// The Elastic IP at `ip`, which must be the pinned allocation id when there is one.
    async fn address_at(
        &self,
        ip: IpAddr,
        pinned: Option<&str>,
    ) -> Result<aws_sdk_ec2::types::Address, CloudError> {
        let found = self
            .describe_address(filter("public-ip", [&ip.to_string()]), || {
                CloudError::NotFound {
                    what: format!("Elastic IP {ip}"),
                    hint: format!(
                        "allocate it in {} or check cloud.elastic_ip and cloud.region",
                        self.settings.region
                    ),
                }
            })
            .await?;
        let id = found.allocation_id().unwrap_or_default();
        match pinned {
            Some(pinned) if pinned != id => Err(CloudError::NotFound {
                what: format!("Elastic IP {ip} as {pinned}"),
                hint: format!(
                    "{ip} is {id}: cloud.allocation_id and cloud.elastic_ip must name the \
                     same address"
                ),
            }),
            _ => Ok(found),
        }
    }

    /// The targets of the group and the load balancer's view of each.
    async fn targets(
        &self,
        group: &str,
    ) -> Result<Vec<(String, TargetHealthStateEnum)>, CloudError> {
        let health = self
            .elb
            .describe_target_health()
            .target_group_arn(group)
            .send()
            .await
            .map_err(|e| self.sdk().error("DescribeTargetHealth", e))?;
        Ok(health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_string();
                let state = d.target_health()?.state()?.clone();
                Some((id, state))
            })
            .collect())
    }

    /// Polls the target group until `done` holds for `instance`'s state (`None`: not
    /// registered), or fails at the front timeout naming the last state.
    async fn until_target(
        &self,
        group: &str,
        instance: &str,
        what: &str,
        done: impl Fn(Option<&TargetHealthStateEnum>) -> bool,
    ) -> Result<(), CloudError> {
        let start = Instant::now();
        loop {
            let targets = self.targets(group).await?;
            let state = targets
                .iter()
                .find(|(id, _)| id == instance)
                .map(|(_, s)| s);
            if done(state) {
                return Ok(());
            }
            if start.elapsed() >= self.settings.front_timeout {
                return Err(CloudError::OperationTimeout {
                    id: instance.to_string(),
                    command: what.to_string(),
                    state: state.map_or("not registered".into(), |s| s.as_str().to_string()),
                    after: self.settings.front_timeout,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// One EC2 filter.
fn filter<const N: usize>(name: &str, values: [&str; N]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// Instances AWS still lists for an hour after they terminate: those are gone here.
fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let state = i.state()?.name()?.clone();
    let state = match state {
        InstanceStateName::Terminated | InstanceStateName::ShuttingDown => return None,
        InstanceStateName::Pending => "starting".to_string(),
        other => other.as_str().to_string(),
    };
    let mut labels = BTreeMap::new();
    let mut name = String::new();
    for t in i.tags() {
        match (t.key(), t.value()) {
            (Some(TAG_NAME), Some(v)) => name = v.to_string(),
            (Some(k), Some(v)) => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }
    Some(Instance {
        id: i.instance_id()?.to_string(),
        name,
        state,
        public_ip: i.public_ip_address().and_then(|ip| ip.parse().ok()),
        labels,
        elastic_ips: Vec::new(),
        created_at: i.launch_time().and_then(|t| {
            t.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                .ok()
        }),
        template_id: i.image_id().map(str::to_string),
    })
}

/// The request's token: the same spec (the same fresh host key in its user-data) always
/// sends the same one, so a retry after a lost answer finds the first instance.
fn client_token(spec: &InstanceSpec) -> String {
    let digest = sha2::Sha256::digest(spec.user_data.as_bytes());
    // At most 64 ASCII characters.
    format!("baton-{}", &hex::encode(digest)[..58])
}

/// AWS takes at most 16 KiB of raw user-data; the API's field is its base64.
fn check_user_data(b64: &str) -> Result<(), CloudError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| CloudError::Invalid(format!("the user-data is not base64: {e}")))?;
    if raw.len() > USER_DATA_LIMIT {
        return Err(CloudError::Invalid(format!(
            "the user-data is {} bytes gzipped, above AWS's limit of {USER_DATA_LIMIT} bytes of \
             raw user-data (Exoscale takes 32 KiB of base64)\n  fix: make the bundle's \
             cloud-init files smaller, or move large files into the bundle",
            raw.len()
        )));
    }
    Ok(())
}

/// A key's type and base64 body, without its comment: how two keys are compared.
fn key_body(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
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

    async fn register_template(&self, spec: &TemplateSpec) -> Result<Template, CloudError> {
        Err(CloudError::Invalid(format!(
            "baton bake registers images on Exoscale only; on AWS, build with `baton bake \
             --build-only`, import the qcow2 as an AMI named {} (aws ec2 import-image), and \
             keep instance.template = \"baked\"",
            spec.name
        )))
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
            Front::ElasticIp { allocation_id } => Ok(self
                .address_at(address, allocation_id.as_deref())
                .await?
                .allocation_id()
                .unwrap_or_default()
                .to_string()),
            Front::Alb { target_group } => {
                self.elb
                    .describe_target_groups()
                    .target_group_arns(target_group)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = self.sdk().error("DescribeTargetGroups", e);
                        if is_code(&e, "TargetGroupNotFound") {
                            CloudError::NotFound {
                                what: format!("target group {target_group}"),
                                hint: "check cloud.target_group and cloud.region".into(),
                            }
                        } else {
                            e
                        }
                    })?;
                Ok(target_group.clone())
            }
        }
    }

    fn front_moves(&self) -> bool {
        matches!(self.settings.front, Front::ElasticIp { .. })
    }

    async fn front_add(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        match &self.settings.front {
            Front::ElasticIp { .. } => {
                if self.address(front).await?.instance_id() == Some(instance) {
                    return Ok(());
                }
                // One call moves it: never detached in between.
                self.ec2
                    .associate_address()
                    .allocation_id(front)
                    .instance_id(instance)
                    .allow_reassociation(true)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| self.sdk().error("AssociateAddress", e))
            }
            Front::Alb { .. } => {
                let registered = self.targets(front).await?;
                let state = registered
                    .iter()
                    .find(|(id, _)| id == instance)
                    .map(|(_, s)| s);
                if state != Some(&TargetHealthStateEnum::Healthy) {
                    if !matches!(
                        state,
                        Some(TargetHealthStateEnum::Initial | TargetHealthStateEnum::Unhealthy)
                    ) {
                        self.elb
                            .register_targets()
                            .target_group_arn(front)
                            .targets(target(instance))
                            .send()
                            .await
                            .map_err(|e| self.sdk().error("RegisterTargets", e))?;
                    }
                    self.until_target(front, instance, "RegisterTargets", |s| {
                        s == Some(&TargetHealthStateEnum::Healthy)
                    })
                    .await?;
                }
                Ok(())
            }
        }
    }

    async fn front_remove(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        match &self.settings.front {
            Front::ElasticIp { .. } => {
                let address = self.address(front).await?;
                let Some(association) = address
                    .association_id()
                    .filter(|_| address.instance_id() == Some(instance))
                else {
                    return Ok(());
                };
                match self
                    .ec2
                    .disassociate_address()
                    .association_id(association)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let e = self.sdk().error("DisassociateAddress", e);
                        if is_code(&e, "InvalidAssociationID.NotFound") {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                }
            }
            Front::Alb { .. } => {
                let registered = self.targets(front).await?;
                let state = registered
                    .iter()
                    .find(|(id, _)| id == instance)
                    .map(|(_, s)| s);
                match state {
                    None => return Ok(()),
                    Some(TargetHealthStateEnum::Draining) => {}
                    Some(_) => {
                        self.elb
                            .deregister_targets()
                            .target_group_arn(front)
                            .targets(target(instance))
                            .send()
                            .await
                            .map_err(|e| self.sdk().error("DeregisterTargets", e))?;
                    }
                }
                // Draining: requests already sent finish; then the group forgets it.
                self.until_target(front, instance, "DeregisterTargets", |s| s.is_none())
                    .await
            }
        }
    }

    async fn front_members(&self, address: IpAddr) -> Result<Vec<Instance>, CloudError> {
        let ids: Vec<String> = match &self.settings.front {
            Front::ElasticIp { allocation_id } => self
                .address_at(address, allocation_id.as_deref())
                .await?
                .instance_id()
                .map(str::to_string)
                .into_iter()
                .collect(),
            Front::Alb { target_group } => self
                .targets(target_group)
                .await?
                .into_iter()
                .filter(|(_, s)| *s != TargetHealthStateEnum::Draining)
                .map(|(id, _)| id)
                .collect(),
        };
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.get_instance(&id).await?);
        }
        Ok(out)
    }
}

fn target(instance: &str) -> TargetDescription {
    TargetDescription::builder().id(instance).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_above_16_kib_raw_is_refused_naming_both_limits() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(check_user_data(&b64(USER_DATA_LIMIT)).is_ok());
        let err = check_user_data(&b64(USER_DATA_LIMIT + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("16385 bytes"), "{err}");
        assert!(
            err.contains("16384 bytes") && err.contains("32 KiB"),
            "{err}"
        );
    }

    #[test]
    fn a_key_is_compared_without_its_comment() {
        assert_eq!(
            key_body("ssh-ed25519 AAAAC3Nz deploy@laptop"),
            key_body("ssh-ed25519 AAAAC3Nz")
        );
        assert_ne!(key_body("ssh-ed25519 AAAA"), key_body("ssh-ed25519 AAAB"));
    }

    #[test]
    fn the_client_token_is_the_specs_and_fits_awss_limit() {
        let spec = InstanceSpec {
            name: "blog-2".into(),
            labels: BTreeMap::new(),
            template: String::new(),
            instance_type: String::new(),
            disk_gb: 10,
            security_groups: vec![],
            ssh_key: None,
            user_data: "H4sI".into(),
        };
        let token = client_token(&spec);
        assert_eq!(token.len(), 64);
        assert_eq!(token, client_token(&spec.clone()));
        let other = InstanceSpec {
            user_data: "H4sJ".into(),
            ..spec
        };
        assert_ne!(token, client_token(&other));
    }
}
