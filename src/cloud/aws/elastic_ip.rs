//! The `elastic-ip` front on AWS: an Elastic IP translated to one instance at a time.
//! Adding an instance re-associates it in one call (never a detach then an attach), so
//! the address moves; removing one disassociates it only from that instance.

use std::net::IpAddr;

use aws_sdk_ec2::types::Filter;

use super::client::{AwsClient, filter};
use super::errors::is_code;
use crate::cloud::CloudError;

impl AwsClient {
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
                hint: "check front.allocation_id and cloud.region".into(),
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
                        "allocate it in {} or check front.address and cloud.region",
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
                    "{ip} is {id}: front.allocation_id and front.address must name the \
                     same address"
                ),
            }),
            _ => Ok(found),
        }
    }

    /// The front's id: the allocation id of the Elastic IP at `address`.
    pub(super) async fn find_elastic_ip(
        &self,
        address: IpAddr,
        pinned: Option<&str>,
    ) -> Result<String, CloudError> {
        Ok(self
            .address_at(address, pinned)
            .await?
            .allocation_id()
            .unwrap_or_default()
            .to_string())
    }

    /// The instance the Elastic IP at `address` is associated with, if any.
    pub(super) async fn elastic_ip_holder(
        &self,
        address: IpAddr,
        pinned: Option<&str>,
    ) -> Result<Vec<String>, CloudError> {
        Ok(self
            .address_at(address, pinned)
            .await?
            .instance_id()
            .map(str::to_string)
            .into_iter()
            .collect())
    }

    pub(super) async fn associate(&self, front: &str, instance: &str) -> Result<(), CloudError> {
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

    pub(super) async fn disassociate(&self, front: &str, instance: &str) -> Result<(), CloudError> {
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
}
