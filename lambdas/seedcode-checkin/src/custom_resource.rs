//! The CloudFormation custom resource protocol: the request, and the one response that must
//! reach the pre-signed `ResponseURL` whatever happens, or the stack waits for up to an hour.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields of a request every answer needs. Read leniently from the raw payload so that even
/// a request this Lambda cannot otherwise understand gets its FAILED answer. `Debug` leaves the
/// ResponseURL out: a pre-signed URL is a credential until it expires.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: String,
    pub request_id: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub logical_resource_id: String,
    /// Which of the template's custom resources this is (`Custom::...`).
    #[serde(default)]
    pub resource_type: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

/// Why a request cannot be answered as CloudFormation asks; it fails the invocation instead.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the event is not a CloudFormation custom resource request: {0}")]
    NotARequest(String),
    #[error("the ResponseURL is not a pre-signed S3 URL of partition {partition} ({why}): no answer sent")]
    NotAResponseUrl { partition: String, why: &'static str },
    #[error("the response URL answered {0}")]
    AnswerRefused(reqwest::StatusCode),
    /// Without the URL: a pre-signed URL is a credential until it expires.
    #[error("the response URL could not be reached: {0}")]
    ResponseUrlUnreachable(String),
}

impl Request {
    pub fn from_payload(payload: &Value) -> Result<Request, ProtocolError> {
        serde_json::from_value(payload.clone()).map_err(|err| ProtocolError::NotARequest(err.to_string()))
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("request_type", &self.request_type)
            .field("request_id", &self.request_id)
            .field("response_url", &"<redacted>")
            .field("stack_id", &self.stack_id)
            .field("logical_resource_id", &self.logical_resource_id)
            .field("resource_type", &self.resource_type)
            .field("physical_resource_id", &self.physical_resource_id)
            .finish()
    }
}

/// Whether `url` can be CloudFormation's ResponseURL: a pre-signed `https://` URL of S3 in the
/// function's `partition`, or, when `allow_loopback` (tests only), plain http on loopback. Anyone
/// allowed to invoke the function can send a request; without this, its answer (project IDs,
/// clone URLs, reasons) would go wherever the request says. The error never shows the URL.
pub fn check_response_url(url: &str, partition: &str, allow_loopback: bool) -> Result<(), ProtocolError> {
    let refuse = |why: &'static str| Err(ProtocolError::NotAResponseUrl { partition: partition.to_owned(), why });
    let Ok(parsed) = reqwest::Url::parse(url) else { return refuse("not a URL") };
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if allow_loopback && parsed.scheme() == "http" && (host == "127.0.0.1" || host == "localhost") {
        return Ok(());
    }
    if parsed.scheme() != "https" {
        return refuse("not https");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("it carries user information");
    }
    let suffix = if partition == "aws-cn" { ".amazonaws.com.cn" } else { ".amazonaws.com" };
    let labels: Vec<&str> = host.strip_suffix(suffix).map(|rest| rest.split('.').collect()).unwrap_or_default();
    if !labels.iter().any(|label| *label == "s3" || label.starts_with("s3-")) {
        return refuse("not an S3 host of the partition");
    }
    let signed = parsed.query_pairs().any(|(key, _)| key == "X-Amz-Signature" || key == "Signature");
    if !signed {
        return refuse("no signature");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    pub data: BTreeMap<String, String>,
}

/// CloudFormation refuses response bodies over 4096 bytes.
pub const MAX_BODY_BYTES: usize = 4096;

impl Response {
    pub fn new(
        request: &Request,
        status: Status,
        physical_resource_id: String,
        reason: String,
        data: BTreeMap<String, String>,
    ) -> Response {
        let mut response = Response {
            status,
            reason: String::new(),
            physical_resource_id,
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            no_echo: false,
            data,
        };
        // The reason gets whatever room the rest leaves; JSON escaping can grow it, so measure.
        let room = MAX_BODY_BYTES.saturating_sub(response.body().len());
        let reason = fit_json_string(reason, room);
        response.reason = reason;
        response
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a response serialises")
    }
}

/// What the work reports when it succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    pub reason: String,
    pub data: BTreeMap<String, String>,
}

/// Time kept back from the Lambda deadline to send the answer.
const RESPONSE_RESERVE: Duration = Duration::from_secs(5);

/// When the work must stop so the answer still goes out before `deadline`.
pub fn work_deadline(deadline: Instant) -> Instant {
    deadline.checked_sub(RESPONSE_RESERVE).unwrap_or_else(Instant::now)
}

/// Runs `work` and answers CloudFormation exactly once, whatever it does: SUCCESS with its
/// data, FAILED with its reason, FAILED when it panics, and FAILED when it is still running at
/// `work_deadline(deadline)` (then it is stopped). Errs only when the answer could not be sent.
pub async fn answer(
    request: &Request,
    physical_id: String,
    deadline: Instant,
    work: impl Future<Output = Result<Done, impl std::fmt::Display + Send + 'static>> + Send + 'static,
) -> Result<(), ProtocolError> {
    let mut task = tokio::spawn(work);
    let outcome = match tokio::time::timeout_at(work_deadline(deadline).into(), &mut task).await {
        // Where the error becomes CloudFormation's Reason.
        Ok(Ok(result)) => result.map_err(|err| err.to_string()),
        Ok(Err(join_error)) => Err(format!("internal error: {}", panic_message(join_error))),
        Err(_) => {
            task.abort();
            Err("the work did not finish before the Lambda timeout; what it did is kept and a retry adopts it: raise the function's timeout, or check how fast GitLab answers".into())
        }
    };
    let response = match outcome {
        Ok(done) => Response::new(request, Status::Success, physical_id, done.reason, done.data),
        Err(reason) => Response::new(request, Status::Failed, physical_id, reason, BTreeMap::new()),
    };
    tracing::info!(status = ?response.status, reason = response.reason, physical_id = response.physical_resource_id, "answering CloudFormation");
    send(&request.response_url, &response, deadline)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "CloudFormation was not answered"))
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into()),
        Err(error) => error.to_string(),
    }
}

/// `text`, or its longest prefix (on a character boundary) that still fits in `room` bytes as a
/// JSON string once an ellipsis marks the cut.
fn fit_json_string(text: String, room: usize) -> String {
    let json_len = |s: &str| serde_json::to_string(s).map_or(usize::MAX, |j| j.len());
    if json_len(&text) <= room {
        return text;
    }
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let fits = |&end: &usize| json_len(&format!("{}…", &text[..end])) <= room;
    let keep = boundaries.partition_point(fits);
    let end = if keep == 0 { 0 } else { boundaries[keep - 1] };
    format!("{}…", &text[..end])
}

/// PUTs the response to the pre-signed URL with the empty content type S3 signed for, retrying
/// while `deadline` allows: a response that never arrives leaves the stack hanging, and one
/// still being sent when the Lambda is stopped never arrives. Every attempt and pause fits in
/// the `RESPONSE_RESERVE` the work left.
pub async fn send(url: &str, response: &Response, deadline: Instant) -> Result<(), ProtocolError> {
    const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
    let http = lambda_common::http_client();
    let body = response.body();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "")
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body.clone())
            .timeout(left.min(ATTEMPT_TIMEOUT))
            .send()
            .await;
        let error = match result {
            Ok(answer) if answer.status().is_success() => return Ok(()),
            Ok(answer) => ProtocolError::AnswerRefused(answer.status()),
            Err(err) => ProtocolError::ResponseUrlUnreachable(err.without_url().to_string()),
        };
        tracing::warn!(attempt, error = %error, "sending the CloudFormation response failed");
        let pause = Duration::from_millis(300 * u64::from(attempt));
        if attempt >= 3 || Instant::now() + pause + Duration::from_millis(500) >= deadline {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request::from_payload(&serde_json::json!({
            "RequestType": "Create",
            "RequestId": "r-1",
            "ResponseURL": "https://example.invalid/r",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
            "LogicalResourceId": "SeedCodeCheckin",
            "ResourceType": "Custom::SeedCodeCheckin",
            "ResourceProperties": {}
        }))
        .unwrap()
    }

    #[test]
    fn body_has_the_documented_fields() {
        let response = Response::new(
            &request(),
            Status::Success,
            "pid".into(),
            "done".into(),
            BTreeMap::from([("A".into(), "1".into())]),
        );
        let body: Value = serde_json::from_str(&response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "Status": "SUCCESS", "Reason": "done", "PhysicalResourceId": "pid",
                "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
                "RequestId": "r-1", "LogicalResourceId": "SeedCodeCheckin", "NoEcho": false, "Data": { "A": "1" }
            })
        );
    }

    #[test]
    fn long_reasons_are_cut_to_fit_cloudformations_limit() {
        for reason in ["x".repeat(10_000), "\"\n".repeat(5_000), "é".repeat(6_000)] {
            let response = Response::new(&request(), Status::Failed, "pid".into(), reason, BTreeMap::new());
            assert!(response.body().len() <= MAX_BODY_BYTES, "{}", response.body().len());
            assert!(response.reason.ends_with('…') && response.reason.len() > 1000);
        }
    }

    #[test]
    fn only_a_presigned_s3_url_of_the_partition_is_answered() {
        let signed = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261127T000000Z&X-Amz-Signature=abc";
        let path = "/arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/s/1%7CSeedCodeCheckin%7Cr-1";
        for (url, partition) in [
            (format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com{path}{signed}"), "aws"),
            (
                format!(
                    "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com{path}{signed}"
                ),
                "aws",
            ),
            (
                format!(
                    "https://cloudformation-custom-resource-response-uswest2.s3-us-west-2.amazonaws.com{path}?AWSAccessKeyId=A&Expires=1&Signature=x"
                ),
                "aws",
            ),
            (
                format!(
                    "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn{path}{signed}"
                ),
                "aws-cn",
            ),
        ] {
            assert_eq!(check_response_url(&url, partition, false), Ok(()), "{url}");
        }
        for (url, partition) in [
            (format!("https://attacker.example{path}{signed}"), "aws"),
            (format!("https://bucket.s3.amazonaws.com.attacker.example{path}{signed}"), "aws"),
            (format!("https://abc.execute-api.us-east-1.amazonaws.com{path}{signed}"), "aws"),
            (format!("http://bucket.s3.amazonaws.com{path}{signed}"), "aws"),
            (format!("https://user:pw@bucket.s3.amazonaws.com{path}{signed}"), "aws"),
            (format!("https://bucket.s3.amazonaws.com{path}"), "aws"),
            (format!("https://bucket.s3.cn-north-1.amazonaws.com.cn{path}{signed}"), "aws"),
            (format!("https://bucket.s3.amazonaws.com{path}{signed}"), "aws-cn"),
            ("http://127.0.0.1:8080/response".to_owned(), "aws"),
            ("not a url".to_owned(), "aws"),
        ] {
            let err = check_response_url(&url, partition, false).unwrap_err().to_string();
            assert!(err.contains("no answer sent") && !err.contains(&url), "{url}: {err}");
        }
        assert_eq!(check_response_url("http://127.0.0.1:8080/response", "aws", true), Ok(()));
        assert!(check_response_url("http://10.0.0.8:8080/response", "aws", true).is_err());
    }

    #[test]
    fn debug_leaves_the_response_url_out() {
        let shown = format!("{:?}", request());
        assert!(!shown.contains("example.invalid") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn requests_without_the_protocol_fields_are_refused() {
        let err = Request::from_payload(&serde_json::json!({ "RequestType": "Create" })).unwrap_err().to_string();
        assert!(err.contains("not a CloudFormation custom resource request"), "{err}");
    }
}
