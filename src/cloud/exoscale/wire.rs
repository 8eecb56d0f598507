//! JSON shapes of Exoscale API v2, as `exoscale/public-api.json` describes them. Only the
//! fields baton reads or writes; unknown fields are ignored on the way in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRef {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    pub id: String,
    pub state: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub id: Option<String>,
    pub command: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Instance {
    pub id: String,
    pub name: Option<String>,
    pub state: Option<String>,
    pub public_ip: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub elastic_ips: Vec<IdRef>,
    pub created_at: Option<String>,
    pub template: Option<IdRef>,
}

#[derive(Debug, Deserialize)]
pub struct InstanceList {
    #[serde(default)]
    pub instances: Vec<Instance>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateInstance {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub template: IdRef,
    pub instance_type: IdRef,
    pub disk_size: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<IdRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<NameRef>,
    pub user_data: String,
    pub public_ip_assignment: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Template {
    pub id: String,
    pub name: Option<String>,
    pub created_at: Option<String>,
    pub description: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTemplate {
    pub name: String,
    pub url: String,
    pub checksum: String,
    pub default_user: String,
    pub description: String,
    pub ssh_key_enabled: bool,
    pub password_enabled: bool,
    pub boot_mode: &'static str,
    pub build: String,
    pub maintainer: &'static str,
}

#[derive(Debug, Deserialize)]
pub struct TemplateList {
    #[serde(default)]
    pub templates: Vec<Template>,
}

#[derive(Debug, Deserialize)]
pub struct InstanceType {
    pub id: String,
    pub family: Option<String>,
    pub size: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceTypeList {
    #[serde(default)]
    pub instance_types: Vec<InstanceType>,
}

#[derive(Debug, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecurityGroupList {
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
}

#[derive(Debug, Deserialize)]
pub struct ElasticIp {
    pub id: String,
    pub ip: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElasticIpList {
    #[serde(default)]
    pub elastic_ips: Vec<ElasticIp>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SshKey {
    pub name: String,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SshKeyList {
    #[serde(default)]
    pub ssh_keys: Vec<SshKey>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterSshKey {
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Serialize)]
pub struct AttachInstance {
    pub instance: IdRef,
}

/// The body of an error answer.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub message: Option<String>,
}

/// The fingerprint Exoscale shows for an SSH key: MD5 of the key blob, colon-separated hex
/// (the format the API inherited from CloudStack).
pub fn ssh_key_fingerprint(public_key: &str) -> Option<String> {
    use base64::Engine;
    use md5::Digest;
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = md5::Md5::digest(&bytes);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}
