//! The `alb` front on AWS: an ALB target group. Adding an instance registers it and waits
//! until the load balancer says healthy; removing one deregisters it and waits out its
//! draining, so requests already sent finish.

use std::time::Instant;

use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};

use super::client::AwsClient;
use super::errors::is_code;
use crate::cloud::CloudError;

impl AwsClient {
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

    /// What the load balancer says of `instance` in the group (`None`: not registered).
    async fn target_state(
        &self,
        group: &str,
        instance: &str,
    ) -> Result<Option<TargetHealthStateEnum>, CloudError> {
        Ok(self
            .targets(group)
            .await?
            .into_iter()
            .find(|(id, _)| id == instance)
            .map(|(_, s)| s))
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
            let state = self.target_state(group, instance).await?;
            let state = state.as_ref();
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

    /// The front's id: the target group's ARN, once ELBv2 says it exists.
    pub(super) async fn find_target_group(&self, target_group: &str) -> Result<String, CloudError> {
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
                        hint: "check front.target_group and cloud.region".into(),
                    }
                } else {
                    e
                }
            })?;
        Ok(target_group.to_string())
    }

    /// The targets the group sends new requests to (draining ones no longer get any).
    pub(super) async fn serving_targets(&self, group: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .targets(group)
            .await?
            .into_iter()
            .filter(|(_, s)| *s != TargetHealthStateEnum::Draining)
            .map(|(id, _)| id)
            .collect())
    }

    pub(super) async fn register(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        let state = self.target_state(front, instance).await?;
        if state != Some(TargetHealthStateEnum::Healthy) {
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

    pub(super) async fn deregister(&self, front: &str, instance: &str) -> Result<(), CloudError> {
        let state = self.target_state(front, instance).await?;
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

fn target(instance: &str) -> TargetDescription {
    TargetDescription::builder().id(instance).build()
}
