//! What both Lambdas share: one GitLab REST client, one reading of the token secret and of the
//! environment, and one retry policy, so the checkin and trigger Lambdas cannot drift apart.

pub mod gitlab;
pub mod retry;
pub mod secrets;
pub mod token;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata as _;

/// The AWS SDK configuration from the standard chain (Lambda's environment, or a profile, or
/// web identity); `AWS_ENDPOINT_URL` points every client at a local emulator in tests.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// The process's one HTTP client (GitLab, CloudFormation's ResponseURL), built on first use:
/// loading the TLS roots at start-up would lengthen every cold start, and building it per call
/// would repeat that work on every invocation.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("sagemaker-gitlab-project/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the TLS backend initialises")
        })
        .clone()
}

/// The invocation deadline (`Context::deadline`, milliseconds since 1970) as an `Instant`.
pub fn deadline_instant(deadline_ms: u64) -> Instant {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    Instant::now() + deadline.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Configuration read from the function's environment (or, in tests, any lookup).
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The trimmed value, `None` when unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<String, String> {
        self.optional(name)
            .ok_or_else(|| format!("environment variable {name} is not set: the project template must set it"))
    }
}

/// An SDK error as one line: the service's code and message, or the transport's cause.
pub fn describe_sdk_error<E, R>(err: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut cause = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                cause = inner.to_string();
                source = inner.source();
            }
            cause
        }
    }
}
