//! Reading one S3 object: a GET signed with SigV4 by `aws-sigv4`, sent with the Lambdas' reqwest.
//!
//! Not `aws-sdk-s3`: the checkin reads two small zips, and the S3 client links `crc-fast` with
//! every CRC table it knows (0.68 MB, a quarter of the zipped Lambda) to check response
//! checksums, where the checkin checks each zip's SHA-256 itself.

use std::time::{Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use lambda_common::gitlab::{describe_transport_error, encode_path_segment};
use lambda_common::retry::RetryPolicy;

/// Why an object could not be read; the checkin words each for the person who can fix it.
#[derive(Debug, thiserror::Error)]
pub enum GetObjectError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Denied(String),
    #[error("the object is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Failed(String),
}

/// GETs objects with the function's credentials, in the function's region; path-style at
/// `AWS_ENDPOINT_URL` when set (S3 emulators serve buckets by path).
#[derive(Clone)]
pub struct ObjectReader {
    http: reqwest::Client,
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
    endpoint: Option<String>,
    pub retry: RetryPolicy,
}

impl ObjectReader {
    pub fn new(sdk: &aws_config::SdkConfig) -> ObjectReader {
        ObjectReader {
            http: lambda_common::http_client(),
            credentials: sdk.credentials_provider(),
            region: sdk.region().map(|r| r.to_string()),
            endpoint: sdk.endpoint_url().map(|url| url.trim_end_matches('/').to_owned()),
            retry: RetryPolicy::default(),
        }
    }

    fn url(&self, region: &str, bucket: &str, key: &str) -> String {
        // Each segment encoded once (RFC 3986 unreserved characters stay), as S3's SigV4 wants.
        let key = key.split('/').map(encode_path_segment).collect::<Vec<_>>().join("/");
        let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{bucket}/{key}"),
            // A dotted bucket name would not match the wildcard certificate as a host name.
            None if bucket.contains('.') => format!("https://s3.{region}.{suffix}/{bucket}/{key}"),
            None => format!("https://{bucket}.s3.{region}.{suffix}/{key}"),
        }
    }

    /// The object's bytes, refusing one larger than `limit` before reading it. Throttling, server
    /// errors and broken connections are retried within `deadline`.
    pub async fn get(&self, bucket: &str, key: &str, limit: u64, deadline: Instant) -> Result<Vec<u8>, GetObjectError> {
        let mut failed_attempts = 0;
        loop {
            let err = match self.attempt(bucket, key, limit).await {
                Ok(bytes) => return Ok(bytes),
                Err(Attempt::Final(err)) => return Err(err),
                Err(Attempt::Transient(err)) => err,
            };
            failed_attempts += 1;
            let Some(delay) = self.retry.next_delay(failed_attempts, None, Some(deadline)) else { return Err(err) };
            tracing::warn!(bucket, key, error = %err, "reading the object failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, bucket: &str, key: &str, limit: u64) -> Result<Vec<u8>, Attempt> {
        let request = self.signed_request(bucket, key).await.map_err(Attempt::Final)?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|err| Attempt::Transient(GetObjectError::Failed(describe_transport_error(&err))))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let code = xml_element(&body, "Code").unwrap_or_else(|| status.as_u16().to_string());
            let message = xml_element(&body, "Message").unwrap_or_default();
            let described = format!("{code}: {message}").trim_end_matches([':', ' ']).to_owned();
            return Err(match code.as_str() {
                "NoSuchKey" | "NoSuchBucket" => Attempt::Final(GetObjectError::Missing(described)),
                "AccessDenied" => Attempt::Final(GetObjectError::Denied(described)),
                "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" => {
                    Attempt::Transient(GetObjectError::Failed(described))
                }
                _ if status.is_server_error() => Attempt::Transient(GetObjectError::Failed(described)),
                _ => Attempt::Final(GetObjectError::Failed(described)),
            });
        }
        if let Some(size) = response.content_length().filter(|size| *size > limit) {
            return Err(Attempt::Final(GetObjectError::TooLarge { size, limit }));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| Attempt::Transient(GetObjectError::Failed(format!("the download broke off: {err}"))))?;
        Ok(bytes.to_vec())
    }

    async fn signed_request(&self, bucket: &str, key: &str) -> Result<reqwest::Request, GetObjectError> {
        let failed = |why: String| GetObjectError::Failed(why);
        let region = self.region.as_deref().ok_or_else(|| failed("no AWS region is configured (AWS_REGION)".into()))?;
        let provider = self.credentials.as_ref().ok_or_else(|| failed("no AWS credentials are configured".into()))?;
        let credentials =
            provider.provide_credentials().await.map_err(|err| failed(format!("no AWS credentials: {err}")))?;
        let request = signed_get(&self.url(region, bucket, key), region, credentials, SystemTime::now())
            .map_err(|err| failed(format!("signing the request failed: {err}")))?;
        reqwest::Request::try_from(request).map_err(|err| failed(err.to_string()))
    }
}

/// A GET of the S3 object at `url`, signed with SigV4 as at `time`. S3 signs the path as sent
/// (no normalisation, no second encoding) and wants the payload's hash in x-amz-content-sha256.
pub fn signed_get(
    url: &str,
    region: &str,
    credentials: Credentials,
    time: SystemTime,
) -> Result<http::Request<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()?;
    let signable = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))?;
    let (instructions, _) = sign(signable, &params.into())?.into_parts();
    let mut request = http::Request::get(url).body(Vec::new())?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

enum Attempt {
    Transient(GetObjectError),
    Final(GetObjectError),
}

/// The text of the first `<name>` element of S3's XML error body.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(endpoint: Option<&str>) -> ObjectReader {
        ObjectReader {
            http: reqwest::Client::new(),
            credentials: None,
            region: None,
            endpoint: endpoint.map(str::to_owned),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn urls_are_virtual_hosted_but_for_dotted_buckets_china_and_emulators() {
        let aws = reader(None);
        assert_eq!(
            aws.url("eu-west-1", "bucket", "seed/a b+c.zip"),
            "https://bucket.s3.eu-west-1.amazonaws.com/seed/a%20b%2Bc.zip"
        );
        assert_eq!(aws.url("eu-west-1", "my.bucket", "k.zip"), "https://s3.eu-west-1.amazonaws.com/my.bucket/k.zip");
        assert_eq!(aws.url("cn-north-1", "bucket", "k.zip"), "https://bucket.s3.cn-north-1.amazonaws.com.cn/k.zip");
        assert_eq!(
            reader(Some("http://127.0.0.1:5000")).url("us-east-1", "b", "x/y.zip"),
            "http://127.0.0.1:5000/b/x/y.zip"
        );
    }

    #[test]
    fn s3_error_bodies_give_their_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(xml_element(body, "Message").as_deref(), Some("The specified key does not exist."));
        assert_eq!(xml_element("not xml", "Code"), None);
    }
}
