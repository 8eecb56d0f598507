//! What a RunInstances needs resolved from the names the config gives: the AMI (by id, or
//! the newest of an owner's images by name), the subnet's VPC, the security groups by
//! id or name within it. Each missing one is a NotFound naming its field.

use super::client::{AwsClient, filter};
use crate::cloud::CloudError;

impl AwsClient {
    /// The AMI `template` names: an id as it is, a name as the newest of the owner's
    /// images with that name.
    pub(super) async fn resolve_image(
        &self,
        template: &str,
    ) -> Result<(String, Option<String>), CloudError> {
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

    pub(super) async fn resolve_subnet(&self) -> Result<String, CloudError> {
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
    pub(super) async fn resolve_security_groups(
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
}
