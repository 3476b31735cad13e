//! A small client for the parts of GitLab's REST API (v4) the Lambdas use.
//!
//! Every call retries what is worth retrying (429 honouring `Retry-After`, 5xx, connection
//! failures and timeouts) within the policy and the caller's deadline. Errors name the call and
//! GitLab's message; the token never appears in them or in the log.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header::RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;
use crate::token::Token;

/// Longest single request, so one hung connection cannot eat the whole invocation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `Debug` shows the token redacted (see `Token`).
#[derive(Clone, Debug)]
pub struct GitLab {
    api: String,
    host: String,
    token: Token,
    http: reqwest::Client,
    retry: RetryPolicy,
    deadline: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitLabError {
    #[error(
        "GitLab at {host} rejected the token ({status}) on {operation}: {message}. Store a valid token with the api scope in secret {secret}"
    )]
    Unauthorized { host: String, operation: String, status: u16, message: String, secret: String },
    #[error("GitLab at {host} answered {status} to {operation}: {message}")]
    Api { host: String, operation: String, status: u16, message: String },
    #[error("GitLab at {host} could not be reached for {operation} after {attempts} attempts: {reason}")]
    Unreachable { host: String, operation: String, attempts: u32, reason: String },
    #[error("GitLab at {host} sent an answer to {operation} that is not what its API documents: {reason}")]
    Unexpected { host: String, operation: String, reason: String },
    #[error("GitLab URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
}

impl GitLabError {
    /// GitLab's answer to creating something whose name or key exists already.
    pub fn is_already_taken(&self) -> bool {
        matches!(self, GitLabError::Api { status: 400 | 409, message, .. } if message.contains("has already been taken"))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GitLabError::Unauthorized { status, .. } | GitLabError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub username: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Namespace {
    pub id: u64,
    pub full_path: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub path_with_namespace: String,
    #[serde(default)]
    pub description: Option<String>,
    pub default_branch: Option<String>,
    pub web_url: String,
    pub http_url_to_repo: String,
    pub namespace: Namespace,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewProject<'a> {
    pub name: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<u64>,
    pub description: &'a str,
    pub visibility: &'a str,
    pub default_branch: &'a str,
    /// False: the repository starts empty, so the first commit creates `default_branch`.
    pub initialize_with_readme: bool,
}

/// A CI/CD variable of a project.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub masked: bool,
    pub protected: bool,
    /// Raw: `$` in the value is not expanded.
    pub raw: bool,
}

/// One file of a commit (`POST /projects/:id/repository/commits` actions).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommitAction {
    pub action: &'static str,
    pub file_path: String,
    pub content: String,
    /// `text` or `base64`.
    pub encoding: &'static str,
    pub execute_filemode: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewCommit<'a> {
    pub branch: &'a str,
    pub commit_message: &'a str,
    pub actions: &'a [CommitAction],
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Branch {
    commit: Commit,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Pipeline {
    pub id: u64,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub web_url: String,
}

#[derive(Serialize)]
struct PipelineVariable<'a> {
    key: &'a str,
    value: &'a str,
    variable_type: &'static str,
}

impl GitLab {
    /// A client for the GitLab instance at `base_url` (e.g. `https://gitlab.com`).
    pub fn new(base_url: &str, token: Token) -> Result<GitLab, GitLabError> {
        let url = reqwest::Url::parse(base_url.trim())
            .map_err(|err| GitLabError::BadUrl { url: base_url.into(), reason: err.to_string() })?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(GitLabError::BadUrl { url: base_url.into(), reason: "expected https://host[/path]".into() });
        }
        Ok(GitLab {
            api: format!("{}/api/v4", url.as_str().trim_end_matches('/')),
            host: url.host_str().unwrap_or_default().to_owned(),
            token,
            http: crate::http_client(),
            retry: RetryPolicy::default(),
            deadline: None,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> GitLab {
        self.retry = retry;
        self
    }

    /// A client whose retries stop in time for `deadline` (the invocation's, less a margin).
    pub fn with_deadline(&self, deadline: Instant) -> GitLab {
        GitLab { deadline: Some(deadline), ..self.clone() }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub async fn current_user(&self) -> Result<User, GitLabError> {
        self.call(Method::GET, "/user", None::<&()>, "reading the token's user").await
    }

    /// The group (namespace) with this ID.
    pub async fn group(&self, id: u64) -> Result<Namespace, GitLabError> {
        self.call(Method::GET, &format!("/groups/{id}"), None::<&()>, &format!("reading group {id}")).await
    }

    /// The project with this ID or full path (`group/name`), or `None` when there is none.
    pub async fn project(&self, id_or_path: &str) -> Result<Option<Project>, GitLabError> {
        let path = format!("/projects/{}", encode_path_segment(id_or_path));
        optional(self.call(Method::GET, &path, None::<&()>, &format!("reading project {id_or_path}")).await)
    }

    pub async fn create_project(&self, project: &NewProject<'_>) -> Result<Project, GitLabError> {
        self.call(Method::POST, "/projects", Some(project), &format!("creating project {}", project.path)).await
    }

    /// Creates the variable, or updates it when the project has it already.
    pub async fn upsert_variable(&self, project_id: u64, variable: &Variable) -> Result<(), GitLabError> {
        let operation = format!("setting CI/CD variable {} on project {project_id}", variable.key);
        let created: Result<serde_json::Value, _> =
            self.call(Method::POST, &format!("/projects/{project_id}/variables"), Some(variable), &operation).await;
        match created {
            Err(err) if err.is_already_taken() => {
                let path = format!("/projects/{project_id}/variables/{}", encode_path_segment(&variable.key));
                self.call::<serde_json::Value>(Method::PUT, &path, Some(variable), &operation).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// The commit at the tip of `branch`, or `None` when the branch does not exist.
    pub async fn branch_head(&self, project_id: u64, branch: &str) -> Result<Option<Commit>, GitLabError> {
        let path = format!("/projects/{project_id}/repository/branches/{}", encode_path_segment(branch));
        let operation = format!("reading branch {branch} of project {project_id}");
        Ok(optional::<Branch>(self.call(Method::GET, &path, None::<&()>, &operation).await)?.map(|b| b.commit))
    }

    pub async fn create_commit(&self, project_id: u64, commit: &NewCommit<'_>) -> Result<Commit, GitLabError> {
        let path = format!("/projects/{project_id}/repository/commits");
        let operation = format!("committing {} files to project {project_id}", commit.actions.len());
        self.call(Method::POST, &path, Some(commit), &operation).await
    }

    /// Starts a pipeline on `git_ref` with these variables, as the token's user.
    pub async fn create_pipeline(
        &self,
        project_id: u64,
        git_ref: &str,
        variables: &[(&str, &str)],
    ) -> Result<Pipeline, GitLabError> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "ref")]
            git_ref: &'a str,
            variables: Vec<PipelineVariable<'a>>,
        }
        let variables =
            variables.iter().map(|(key, value)| PipelineVariable { key, value, variable_type: "env_var" }).collect();
        let operation = format!("starting a pipeline on {git_ref} of project {project_id}");
        self.call(
            Method::POST,
            &format!("/projects/{project_id}/pipeline"),
            Some(&Body { git_ref, variables }),
            &operation,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        operation: &str,
    ) -> Result<T, GitLabError> {
        let url = format!("{}{path}", self.api);
        let mut failed_attempts = 0;
        loop {
            let left = self.deadline.map_or(REQUEST_TIMEOUT, |d| d.saturating_duration_since(Instant::now()));
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("PRIVATE-TOKEN", self.token.expose())
                .timeout(left.min(REQUEST_TIMEOUT));
            if let Some(body) = body {
                request = request.json(body);
            }
            let (retry_after, reason) = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let bytes = response.bytes().await.map_err(|err| self.unexpected(operation, err))?;
                    return serde_json::from_slice(&bytes).map_err(|err| self.unexpected(operation, err));
                }
                Ok(response) if is_transient(response.status()) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs);
                    let message = error_message(&response.bytes().await.unwrap_or_default());
                    failed_attempts += 1;
                    match self.retry.next_delay(failed_attempts, retry_after, self.deadline) {
                        Some(delay) => (delay, format!("{status}: {message}")),
                        None => return Err(self.api_error(operation, status, message)),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let message = error_message(&response.bytes().await.unwrap_or_default());
                    return Err(self.api_error(operation, status, message));
                }
                Err(err) => {
                    failed_attempts += 1;
                    let reason = describe_transport_error(&err);
                    match self.retry.next_delay(failed_attempts, None, self.deadline) {
                        Some(delay) => (delay, reason),
                        None => {
                            return Err(GitLabError::Unreachable {
                                host: self.host.clone(),
                                operation: operation.into(),
                                attempts: failed_attempts,
                                reason,
                            });
                        }
                    }
                }
            };
            tracing::warn!(
                operation,
                attempt = failed_attempts,
                wait_ms = retry_after.as_millis() as u64,
                reason,
                "GitLab call failed, retrying"
            );
            tokio::time::sleep(retry_after).await;
        }
    }

    fn api_error(&self, operation: &str, status: StatusCode, message: String) -> GitLabError {
        let (host, operation, status) = (self.host.clone(), operation.to_owned(), status.as_u16());
        match status {
            401 | 403 => {
                GitLabError::Unauthorized { host, operation, status, message, secret: self.token.secret().into() }
            }
            _ => GitLabError::Api { host, operation, status, message },
        }
    }

    fn unexpected(&self, operation: &str, err: impl std::fmt::Display) -> GitLabError {
        GitLabError::Unexpected { host: self.host.clone(), operation: operation.into(), reason: err.to_string() }
    }
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `None` for a 404, so callers can tell "absent" from "failed".
fn optional<T>(result: Result<T, GitLabError>) -> Result<Option<T>, GitLabError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.status() == Some(404) => Ok(None),
        Err(err) => Err(err),
    }
}

/// GitLab's error text: `{"message": "..."}`, `{"message": {"field": ["..."]}}`,
/// `{"error": "...", "error_description": "..."}`, or the body itself.
fn error_message(body: &[u8]) -> String {
    const LIMIT: usize = 300;
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => match json.get("message").or_else(|| json.get("error_description")).or_else(|| json.get("error")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Object(fields)) => fields
                .iter()
                .map(|(field, problems)| match problems {
                    serde_json::Value::Array(list) => {
                        let list: Vec<String> =
                            list.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect();
                        format!("{field} {}", list.join(", "))
                    }
                    other => format!("{field} {other}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => json.to_string(),
        },
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return "(no message)".into();
    }
    text.chars().take(LIMIT).collect()
}

/// The root cause of a transport error; reqwest's Display names the URL, which is fine (no token
/// in it), but not the cause.
fn describe_transport_error(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() { kind.to_owned() } else { format!("{kind}: {cause}") }
}

/// Percent-encodes one path segment (a project path `group/name` becomes `group%2Fname`).
pub fn encode_path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
