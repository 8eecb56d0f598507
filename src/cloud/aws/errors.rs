//! The SDK's errors as [`CloudError`]s: the request, AWS's error code and message, and for
//! a refusal the key it came from (its last four characters only).

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{ENV_KEY, ENV_SECRET};
use crate::cloud::CloudError;

/// Codes that mean the credentials or their rights are wrong: bad input, exit 2.
const REFUSED: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "RequestExpired",
];

pub(super) struct Sdk<'a> {
    pub key_tail: &'a str,
}

impl Sdk<'_> {
    /// EC2's and ELBv2's clients share the runtime's response type.
    pub fn error<E>(&self, request: &str, e: SdkError<E, HttpResponse>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map_or(0, |r| r.status().as_u16());
        match (e.code(), &e) {
            (Some(code), _) if REFUSED.contains(&code) => CloudError::Forbidden {
                request: request.to_string(),
                key: self.key_tail.to_string(),
                message: format!("{code}: {}", e.message().unwrap_or_default()),
                key_var: ENV_KEY,
                secret_var: ENV_SECRET,
            },
            (Some(code), _) => CloudError::Service {
                request: request.to_string(),
                status,
                code: code.to_string(),
                message: e.message().unwrap_or_default().to_string(),
            },
            // No answer at all (connection, timeout) or one the SDK could not read: the
            // whole chain says why.
            (None, _) => CloudError::NoAnswer {
                request: request.to_string(),
                reason: DisplayErrorContext(&e).to_string(),
            },
        }
    }
}

pub(super) fn is_code(e: &CloudError, wanted: &str) -> bool {
    matches!(e, CloudError::Service { code, .. } if code == wanted)
}
