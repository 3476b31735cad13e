//! What both Lambdas share: one GitLab REST client, one reading of the token secret and of the
//! environment, and one retry policy, so the checkin and trigger Lambdas cannot drift apart.

pub mod aws_http;
pub mod gitlab;
pub mod logging;
pub mod retry;
pub mod secrets;
pub mod token;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata as _;

/// The AWS SDK configuration of a Lambda function, from the variables Lambda sets: region and
/// the execution role's credentials. `AWS_ENDPOINT_URL` points every client at a local emulator
/// in tests.
///
/// Not `aws_config::defaults().load()`: its chain (profiles, SSO, web identity, ECS, IMDS) is
/// never used on Lambda, yet linked into both binaries it was a tenth of their size.
pub fn aws_config() -> aws_config::SdkConfig {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let credentials = aws_config::environment::EnvironmentVariableCredentialsProvider::new();
    let mut config = aws_config::SdkConfig::builder();
    config.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    config
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).map(aws_config::Region::new))
        .credentials_provider(aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(credentials))
        // What `aws_config::defaults` sets for this behaviour version: three attempts with
        // backoff, and a connect timeout of 3.1 s. Clients add tokio's sleep and the clock.
        .retry_config(RetryConfig::standard())
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_millis(3100)).build())
        .http_client(aws_http::sdk_http_client())
        .build()
}

/// The process's one HTTP client (GitLab, CloudFormation's ResponseURL), built on first use:
/// loading the TLS roots at start-up would lengthen every cold start, and building it per call
/// would repeat that work on every invocation.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| client_builder().build().expect("the TLS backend initialises")).clone()
}

/// Why a private CA's bundle cannot be trusted; `source` names where it came from.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("{source_name} is not a PEM bundle of CA certificates: {reason}")]
    NotPem { source_name: String, reason: String },
    #[error("{source_name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty { source_name: String },
    #[error("the certificates of {source_name} cannot be used: {reason}")]
    Unusable { source_name: String, reason: String },
}

/// An HTTP client that trusts the certificates of `ca_bundle` (PEM) besides the system's roots:
/// for a GitLab behind a private CA. `source` names where the bundle came from, for errors.
pub fn http_client_trusting(ca_bundle: &str, source: &str) -> Result<reqwest::Client, CaBundleError> {
    let source_name = source.to_owned();
    let certificates = reqwest::Certificate::from_pem_bundle(ca_bundle.as_bytes())
        .map_err(|err| CaBundleError::NotPem { source_name: source_name.clone(), reason: err.to_string() })?;
    if certificates.is_empty() {
        return Err(CaBundleError::Empty { source_name });
    }
    client_builder()
        .tls_certs_merge(certificates)
        .build()
        .map_err(|err| CaBundleError::Unusable { source_name, reason: err.to_string() })
}

/// What every client shares. Redirects are never followed: a 301/302 turns a POST into a GET,
/// and reqwest would send the `PRIVATE-TOKEN` header on to wherever it points.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("sagemaker-gitlab-project/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// Why the GitLab client could not be made: the token's or the CA bundle's secret, the URL, or
/// the bundle itself.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    GitLab(#[from] gitlab::GitLabError),
    #[error(transparent)]
    CaBundle(#[from] CaBundleError),
}

/// The GitLab client of both Lambdas: the token read from its secret and, when a secret with a
/// private CA's PEM bundle is configured, an HTTP client that trusts that CA too.
pub async fn gitlab_client(
    secrets: &aws_sdk_secretsmanager::Client,
    url: &str,
    token_secret: &str,
    ca_bundle_secret: Option<&str>,
) -> Result<gitlab::GitLab, ClientError> {
    let token = secrets::read_gitlab_token(secrets, token_secret).await?;
    gitlab_client_with(secrets, url, token, ca_bundle_secret).await
}

/// `gitlab_client` with a token its caller has read already.
pub async fn gitlab_client_with(
    secrets: &aws_sdk_secretsmanager::Client,
    url: &str,
    token: token::Token,
    ca_bundle_secret: Option<&str>,
) -> Result<gitlab::GitLab, ClientError> {
    let gitlab = gitlab::GitLab::new(url, token)?;
    let Some(secret) = ca_bundle_secret else { return Ok(gitlab) };
    let pem = secrets::read_string(secrets, secret).await?;
    let http = http_client_trusting(secrecy::ExposeSecret::expose_secret(&pem), &format!("secret {secret}"))?;
    Ok(gitlab.with_http(http))
}

/// Partition, region and account of the running function, from its ARN
/// (`arn:aws:lambda:eu-west-1:123456789012:function:name`, `Context::invoked_function_arn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionArn {
    pub partition: String,
    pub region: String,
    pub account: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the invoked function ARN {0:?} is not a Lambda function ARN")]
pub struct BadFunctionArn(String);

impl FunctionArn {
    pub fn parse(arn: &str) -> Result<FunctionArn, BadFunctionArn> {
        match arn.split(':').collect::<Vec<_>>().as_slice() {
            ["arn", partition, "lambda", region, account, ..] if !region.is_empty() && !account.is_empty() => {
                Ok(FunctionArn { partition: (*partition).into(), region: (*region).into(), account: (*account).into() })
            }
            _ => Err(BadFunctionArn(arn.to_owned())),
        }
    }
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

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing(name.to_owned()))
    }
}

/// Why the function's environment cannot configure it: a setting the project template must set
/// is missing, or one is in a form the function cannot use (the message says which and what to
/// do). Both Lambdas answer it per request rather than failing to start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set: the project template must set it")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
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
