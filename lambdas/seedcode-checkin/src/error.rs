//! Why a custom-resource request failed, typed as the checkin's parts report it; flattened to a
//! `String` only by `custom_resource::answer`, for CloudFormation's `Reason`.

use lambda_common::gitlab::GitLabError;
use lambda_common::secrets::SecretError;
use lambda_common::{BadFunctionArn, ClientError, ConfigError};

use crate::provision::ProvisionError;
use crate::seedcode::ZipError;

#[derive(Debug, thiserror::Error)]
pub enum CheckinError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    FunctionArn(#[from] BadFunctionArn),
    #[error(transparent)]
    SeedCode(#[from] SeedCodeError),
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(
        "secret {secret} is not JSON with two strings: store {{\"AWS_ACCESS_KEY_ID\": \"...\", \"AWS_SECRET_ACCESS_KEY\": \"...\"}}"
    )]
    AccessKeyNotJson { secret: String },
    #[error("secret {secret} has no string {key}")]
    AccessKeyMissing { secret: String, key: &'static str },
    #[error("unknown RequestType {0:?}: expected Create, Update or Delete")]
    UnknownRequestType(String),
}

/// Why a seed code zip could not be read from S3 as publish left it; `location` is its `s3://` URL.
#[derive(Debug, thiserror::Error)]
pub enum SeedCodeError {
    #[error("seed code {location} does not exist: re-run cargo xtask publish")]
    Missing { location: String },
    #[error("reading seed code {location} was denied: the bucket policy must let the Lambda's role read it")]
    Denied { location: String },
    #[error("seed code {location} is {size} bytes, more than a seed repository may hold")]
    TooLarge { location: String, size: u64 },
    #[error("reading seed code {location} failed: {reason}")]
    Failed { location: String, reason: String },
    #[error(
        "seed code {location} has SHA-256 {actual}, but the template was published with {expected}: someone replaced it after publishing; find out who could write the bucket, then publish again"
    )]
    Replaced { location: String, actual: String, expected: String },
}
