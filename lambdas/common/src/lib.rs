//! What both Lambdas share: one GitLab REST client, one reading of the token secret and one
//! retry policy, so the checkin and trigger Lambdas cannot drift apart.

pub mod gitlab;
pub mod retry;
pub mod secrets;
pub mod token;

/// The AWS SDK configuration from the standard chain (Lambda's environment, or a profile, or
/// web identity); `AWS_ENDPOINT_URL` points every client at a local emulator in tests.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}
