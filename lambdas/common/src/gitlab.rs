//! A small client for the parts of GitLab's REST API (v4) the Lambdas use.
//!
//! Every call retries what is worth retrying within the policy and the caller's deadline: 429
//! (honouring `Retry-After`) and refused connections always, since GitLab did nothing; 5xx and
//! timeouts only for calls that are safe to repeat. A POST that may have landed is never sent
//! blindly again: its caller gets `GitLabError::Uncertain` and looks at GitLab's state first.
//! Redirects are errors, certificate failures are not retried. Errors name the call and GitLab's
//! message, never the token. It stays one file: every request goes through `call` and its errors.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use reqwest::header::{LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;
use crate::token::Token;

/// Longest single request, so one hung connection cannot eat the whole invocation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read: a list of 50 pipelines is some 50 KB; anything far larger is not GitLab.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// The largest error body read: only a message is wanted from it.
const MAX_ERROR_BYTES: usize = 64 << 10;

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
        "GitLab at {host} did not accept the token on {operation}: {message}. Store a valid, unexpired token with the api scope in secret {secret}"
    )]
    Unauthorized { host: String, operation: String, message: String, secret: String },
    #[error("GitLab at {host} refused {operation} (403: {message}): {}", cause.remedy(secret))]
    Forbidden { host: String, operation: String, cause: Forbidden, message: String, secret: String },
    #[error("GitLab at {host} answered {status} to {operation}: {message}")]
    Api { host: String, operation: String, status: u16, message: String },
    #[error("GitLab at {host} may or may not have done {operation}: {reason}")]
    Uncertain { host: String, operation: String, reason: String },
    #[error(
        "GitLab at {host} answered {operation} with a redirect ({status}) to {location}: redirects are not followed (they turn a POST into a GET and carry the token elsewhere); set the GitLab server URL to the https:// address GitLab itself uses"
    )]
    Redirected { host: String, operation: String, status: u16, location: String },
    #[error(
        "GitLab at {host} presented a certificate that is not trusted on {operation} ({reason}): if a private CA signed it, store that CA's PEM bundle in a secret and publish with --gitlab-ca-bundle-secret-name (docs/gitlab.md#gitlab-behind-a-private-ca)"
    )]
    Certificate { host: String, operation: String, reason: String },
    #[error("GitLab at {host} could not be reached for {operation} after {attempts} attempts: {reason}")]
    Unreachable { host: String, operation: String, attempts: u32, reason: String },
    #[error("GitLab at {host} sent an answer to {operation} that is not what its API documents: {reason}")]
    Unexpected { host: String, operation: String, reason: String },
    #[error("GitLab URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("secret {secret} holds characters no HTTP header can carry: store the GitLab token alone")]
    BadToken { secret: String },
    #[error(transparent)]
    TokenRejected(#[from] TokenRejected),
}

/// Why GitLab answered 403, told from its body (see the GitLab double's `answers.rs` for the
/// bodies and the GitLab source they come from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// `{"error": "insufficient_scope"}`: the token was made without the `api` scope.
    TokenScope,
    /// `limit_reached`: the user's personal project limit.
    ProjectLimit,
    /// `403 Forbidden`: the user's role in the project or group is too low, or the project is
    /// archived (read-only), or an IP allow list keeps the caller out. GitLab's body is the same.
    RoleOrArchived,
}

impl Forbidden {
    fn from_body(body: &serde_json::Value, message: &str) -> Forbidden {
        if body.get("error").and_then(|e| e.as_str()) == Some("insufficient_scope") {
            Forbidden::TokenScope
        } else if message.contains("project limit") || message.contains("Personal project creation is not allowed") {
            Forbidden::ProjectLimit
        } else {
            Forbidden::RoleOrArchived
        }
    }

    fn remedy(&self, secret: &str) -> String {
        match self {
            Forbidden::TokenScope => {
                format!("the token lacks the api scope: create one with the api scope and store it in secret {secret}")
            }
            Forbidden::ProjectLimit => "the token's user may create no more projects in their personal namespace: raise the user's project limit, or give a GitLab group ID so the projects go to a group".into(),
            Forbidden::RoleOrArchived => "the token's user lacks the role for it (Maintainer for CI/CD variables and settings, Developer to commit and start pipelines), or the project is archived, or an IP allow list of the group keeps AWS out".into(),
        }
    }
}

impl GitLabError {
    /// GitLab's answer to creating something whose name or key exists already.
    pub fn is_already_taken(&self) -> bool {
        matches!(self, GitLabError::Api { status: 400 | 409, message, .. } if message.contains("has already been taken"))
    }

    /// GitLab's 400 when the project's `ci_pipeline_variables_minimum_override_role` does not let
    /// the token's user pass pipeline variables.
    pub fn is_pipeline_variables_not_allowed(&self) -> bool {
        matches!(self, GitLabError::Api { status: 400, message, .. } if message.contains("Insufficient permissions to set pipeline variables"))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GitLabError::Unauthorized { .. } => Some(401),
            GitLabError::Forbidden { .. } => Some(403),
            GitLabError::Api { status, .. } => Some(*status),
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
    /// Archived projects are read-only.
    #[serde(default)]
    pub archived: bool,
    /// Who may pass variables to a pipeline; absent before GitLab 17.1, which has no such setting.
    #[serde(default)]
    pub ci_pipeline_variables_minimum_override_role: Option<String>,
    /// Whether a fork's merge request pipelines may run in this project.
    #[serde(default)]
    pub ci_allow_fork_pipelines_to_run_in_parent_project: Option<bool>,
    /// Merged results pipelines and merge trains (Premium; absent on other tiers).
    #[serde(default)]
    pub merge_pipelines_enabled: Option<bool>,
    #[serde(default)]
    pub merge_trains_enabled: Option<bool>,
    /// What the `sub` of the project's CI ID tokens is made of; absent before GitLab 17.3.
    #[serde(default)]
    pub ci_id_token_sub_claim_components: Option<Vec<String>>,
}

/// The token `rotate_token` answers; its value is wiped from memory when dropped.
#[derive(Deserialize)]
pub struct RotatedToken {
    pub token: secrecy::SecretString,
    pub expires_at: Option<String>,
}

/// `Gitlab::Access::MAINTAINER`.
pub const MAINTAINER_ACCESS: u64 = 40;

/// A protected branch as GitLab lists it (`ProtectedBranch` entity).
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedBranch {
    pub push_access_levels: Vec<AccessLevel>,
    pub merge_access_levels: Vec<AccessLevel>,
    #[serde(default)]
    pub allow_force_push: bool,
}

/// One entry of a protected branch's push or merge list: a role (`access_level`), or on
/// Premium a user, group or deploy key.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessLevel {
    pub access_level: Option<u64>,
    #[serde(default)]
    pub access_level_description: Option<String>,
}

impl ProtectedBranch {
    /// The entries that let a role below Maintainer push or merge (`No access`, 0, lets
    /// nobody), and whether force pushes are allowed: what makes the rule weaker than
    /// Maintainers only. Entries naming a user, group or deploy key are an administrator's
    /// deliberate choice and are not counted.
    pub fn weaker_than_maintainers(&self) -> Vec<String> {
        let mut weaker: Vec<String> = [("push", &self.push_access_levels), ("merge", &self.merge_access_levels)]
            .into_iter()
            .flat_map(|(what, levels)| {
                levels.iter().filter(|l| l.access_level.is_some_and(|a| a > 0 && a < MAINTAINER_ACCESS)).map(move |l| {
                    format!("{what}: {}", l.access_level_description.as_deref().unwrap_or("below Maintainer"))
                })
            })
            .collect();
        if self.allow_force_push {
            weaker.push("force push allowed".to_owned());
        }
        weaker
    }
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

/// A CI/CD variable of a project, in the `*` environment scope. Its value may be an AWS key:
/// `Debug` redacts it and its memory is wiped when dropped.
#[derive(Debug, Clone, Serialize)]
pub struct Variable {
    pub key: String,
    #[serde(serialize_with = "serialize_secret")]
    pub value: SecretString,
    pub masked: bool,
    /// Masked and never shown again (GitLab 17.4+; set on creation only, and an older GitLab
    /// ignores it and keeps the variable masked).
    #[serde(skip)]
    pub hidden: bool,
    /// Reaches only pipelines of protected branches and tags.
    pub protected: bool,
    /// Raw: `$` in the value is not expanded.
    pub raw: bool,
}

fn serialize_secret<S: serde::Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
}

/// The one environment scope the Lambdas write: every environment.
const ALL_ENVIRONMENTS: &str = "*";

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipelineVariable {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub variable_type: String,
}

/// The token's own record (`GET /personal_access_tokens/self`; group and project access tokens
/// have one too).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub scopes: Vec<String>,
    pub active: bool,
    #[serde(default)]
    pub revoked: bool,
    /// `YYYY-MM-DD`; `None` for a token that never expires (GitLab before 16.0 allowed them).
    pub expires_at: Option<String>,
}

/// How long before its expiry a token is reported, in the log and in answers.
pub const TOKEN_WARNING_DAYS: i64 = 30;

impl TokenRecord {
    /// Whether the token can do this template's work on `today`: an error when it cannot (no
    /// `api` scope, revoked or inactive, expired), a warning when it expires within
    /// `TOKEN_WARNING_DAYS`. `secret` is where a new token goes.
    pub fn assess(&self, today: time::Date, secret: &str) -> Result<Option<String>, TokenRejected> {
        let (name, secret) = (self.name.clone(), secret.to_owned());
        if !self.scopes.iter().any(|s| s == "api") {
            return Err(TokenRejected::NoApiScope { name, scopes: self.scopes.join(", "), secret });
        }
        if self.revoked || !self.active {
            return Err(TokenRejected::Revoked { name, secret });
        }
        let Some(expires) = self.expires_at.clone() else { return Ok(None) };
        let Some(date) = parse_date(&expires) else { return Err(TokenRejected::BadExpiry { expires }) };
        let days = (date - today).whole_days();
        if days <= 0 {
            return Err(TokenRejected::Expired { name, expires, secret });
        }
        Ok((days <= TOKEN_WARNING_DAYS).then(|| {
            format!("the GitLab token {name:?} expires on {expires}, in {days} days: {}", replace_token(&secret))
        }))
    }
}

/// What to do about a token that cannot work, or soon will not.
fn replace_token(secret: &str) -> String {
    format!("create a new token with the api scope and store it in secret {secret}; nothing else changes")
}

/// Why the token's own record says it cannot do this template's work; `secret` is where a new
/// token goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error(
        "the GitLab token {name:?} has the scopes [{scopes}] but not api, which creating projects and starting pipelines needs: {}",
        replace_token(secret)
    )]
    NoApiScope { name: String, scopes: String, secret: String },
    #[error("the GitLab token {name:?} is revoked or inactive: {}", replace_token(secret))]
    Revoked { name: String, secret: String },
    #[error("the GitLab token's expiry {expires:?} is not a date")]
    BadExpiry { expires: String },
    #[error("the GitLab token {name:?} expired on {expires}: {}", replace_token(secret))]
    Expired { name: String, expires: String, secret: String },
}

/// `YYYY-MM-DD`, as GitLab writes token expiry dates.
fn parse_date(text: &str) -> Option<time::Date> {
    let mut parts = text.splitn(3, '-').map(str::parse::<u16>);
    let (year, month, day) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    time::Date::from_calendar_date(i32::from(year), month, u8::try_from(day).ok()?).ok()
}

/// Whether GitLab may have acted on a request that failed without a clear answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads, PUTs, and POSTs whose repetition GitLab refuses as "already taken".
    Safe,
    /// POSTs that would act twice: sent again only when GitLab certainly did nothing.
    OnlyIfNotReceived,
}

impl GitLab {
    /// A client for the GitLab instance at `base_url` (e.g. `https://gitlab.com`). Plain
    /// `http://` is refused except on a loopback address (local test servers): the token would
    /// travel in clear, and SageMaker code repositories accept only `https://` clone URLs.
    pub fn new(base_url: &str, token: Token) -> Result<GitLab, GitLabError> {
        let url = server_url(base_url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        Ok(GitLab {
            api: format!("{}/api/v4", url.as_str().trim_end_matches('/')),
            host,
            token,
            http: crate::http_client(),
            retry: RetryPolicy::default(),
            deadline: None,
        })
    }

    /// The same client over another HTTP client (one that trusts a private CA, say).
    pub fn with_http(mut self, http: reqwest::Client) -> GitLab {
        self.http = http;
        self
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
        self.get("/user", "reading the token's user").await
    }

    /// The token's own record, or `None` from a GitLab that has no such endpoint (before 15.5).
    pub async fn token_record(&self) -> Result<Option<TokenRecord>, GitLabError> {
        optional(self.get("/personal_access_tokens/self", "reading the token's record").await)
    }

    /// Reads the token's record and judges it (`TokenRecord::assess`): `Err` when the token
    /// cannot work, `Ok(Some(warning))` when it expires soon. A GitLab without the endpoint
    /// passes; its calls will say what is wrong.
    pub async fn check_token(&self) -> Result<Option<String>, GitLabError> {
        let Some(record) = self.token_record().await? else { return Ok(None) };
        let warning = record.assess(time::OffsetDateTime::now_utc().date(), self.token.secret())?;
        if let Some(warning) = &warning {
            tracing::warn!(warning, "the GitLab token expires soon");
        }
        Ok(warning)
    }

    /// Rotates the token this client uses (`POST /personal_access_tokens/self/rotate`, GitLab
    /// 16.10+): GitLab revokes it, then answers a new one with its scopes, expiring on
    /// `expires_at`. Never sent twice: a second try would carry the revoked token, and a lost
    /// answer leaves no token at all, which the error says.
    pub async fn rotate_token(&self, expires_at: time::Date) -> Result<RotatedToken, GitLabError> {
        let body = serde_json::json!({ "expires_at": expires_at.to_string() });
        let operation = "rotating the token";
        self.call(
            Method::POST,
            "/personal_access_tokens/self/rotate",
            Some(&body),
            operation,
            Repeat::OnlyIfNotReceived,
        )
        .await
    }

    /// The group (namespace) with this ID, without the projects GitLab embeds by default.
    pub async fn group(&self, id: u64) -> Result<Namespace, GitLabError> {
        self.get(&format!("/groups/{id}?with_projects=false"), &format!("reading group {id}")).await
    }

    /// The project with this ID or full path (`group/name`), or `None` when there is none.
    pub async fn project(&self, id_or_path: &str) -> Result<Option<Project>, GitLabError> {
        let path = format!("/projects/{}", encode_path_segment(id_or_path));
        optional(self.get(&path, &format!("reading project {id_or_path}")).await)
    }

    /// Creates a project. Safe to repeat: a second POST answers "has already been taken".
    pub async fn create_project(&self, project: &NewProject<'_>) -> Result<Project, GitLabError> {
        let operation = format!("creating project {}", project.path);
        self.call(Method::POST, "/projects", Some(project), &operation, Repeat::Safe).await
    }

    /// Sets who may pass variables to the project's pipelines (`developer`, `maintainer`,
    /// `owner` or `no_one_allowed`); GitLab 17.1 and later.
    pub async fn set_pipeline_variables_role(&self, project_id: u64, role: &str) -> Result<Project, GitLabError> {
        let operation = format!("setting the minimum role for pipeline variables of project {project_id} to {role}");
        let body = serde_json::json!({ "ci_pipeline_variables_minimum_override_role": role });
        self.edit_project(project_id, &body, &operation).await
    }

    /// `PUT /projects/:id` with `attributes`; GitLab answers with the project as it now is.
    pub async fn edit_project(
        &self,
        project_id: u64,
        attributes: &serde_json::Value,
        operation: &str,
    ) -> Result<Project, GitLabError> {
        self.call(Method::PUT, &format!("/projects/{project_id}"), Some(attributes), operation, Repeat::Safe).await
    }

    /// Creates the variable in the `*` environment scope, or updates that one when it exists: a
    /// key may also exist under other scopes, which an update without the filter would refuse.
    pub async fn upsert_variable(&self, project_id: u64, variable: &Variable) -> Result<(), GitLabError> {
        #[derive(Serialize)]
        struct Scoped<'a> {
            #[serde(flatten)]
            variable: &'a Variable,
            environment_scope: &'static str,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            masked_and_hidden: bool,
        }
        let body = Scoped { variable, environment_scope: ALL_ENVIRONMENTS, masked_and_hidden: variable.hidden };
        let operation = format!("setting CI/CD variable {} on project {project_id}", variable.key);
        let path = format!("/projects/{project_id}/variables");
        let created: Result<serde_json::Value, _> =
            self.call(Method::POST, &path, Some(&body), &operation, Repeat::Safe).await;
        match created {
            Err(err) if err.is_already_taken() => {
                let path = format!(
                    "/projects/{project_id}/variables/{}?{}={}",
                    encode_path_segment(&variable.key),
                    encode_path_segment("filter[environment_scope]"),
                    encode_path_segment(ALL_ENVIRONMENTS)
                );
                // `masked_and_hidden` is for creation only.
                let body = Scoped { masked_and_hidden: false, ..body };
                self.call::<serde_json::Value>(Method::PUT, &path, Some(&body), &operation, Repeat::Safe)
                    .await
                    .map(drop)
            }
            other => other.map(drop),
        }
    }

    /// Protects `branch`: Maintainers push and merge, nobody force-pushes. A branch protected
    /// already (GitLab answers 409) keeps its rule: `Ok(false)`.
    pub async fn protect_branch(&self, project_id: u64, branch: &str) -> Result<bool, GitLabError> {
        let operation = format!("protecting branch {branch} of project {project_id}");
        let body = serde_json::json!({
            "name": branch,
            "push_access_level": MAINTAINER_ACCESS,
            "merge_access_level": MAINTAINER_ACCESS,
            "allow_force_push": false,
        });
        let path = format!("/projects/{project_id}/protected_branches");
        match self.call::<serde_json::Value>(Method::POST, &path, Some(&body), &operation, Repeat::Safe).await {
            Err(GitLabError::Api { status: 409, .. }) => Ok(false),
            other => other.map(|_| true),
        }
    }

    /// The rule protecting `branch`, or `None` when the project has none for it.
    pub async fn protected_branch(
        &self,
        project_id: u64,
        branch: &str,
    ) -> Result<Option<ProtectedBranch>, GitLabError> {
        let path = format!("/projects/{project_id}/protected_branches/{}", encode_path_segment(branch));
        let operation = format!("reading the protection of branch {branch} of project {project_id}");
        optional(self.get(&path, &operation).await)
    }

    /// Removes the rule protecting `branch`; one already gone is no failure.
    pub async fn unprotect_branch(&self, project_id: u64, branch: &str) -> Result<(), GitLabError> {
        let path = format!("/projects/{project_id}/protected_branches/{}", encode_path_segment(branch));
        let operation = format!("unprotecting branch {branch} of project {project_id}");
        optional(self.call::<()>(Method::DELETE, &path, None::<&()>, &operation, Repeat::Safe).await).map(drop)
    }

    /// The commit at the tip of `branch`, or `None` when the branch does not exist.
    pub async fn branch_head(&self, project_id: u64, branch: &str) -> Result<Option<Commit>, GitLabError> {
        let path = format!("/projects/{project_id}/repository/branches/{}", encode_path_segment(branch));
        let operation = format!("reading branch {branch} of project {project_id}");
        Ok(optional::<Branch>(self.get(&path, &operation).await)?.map(|b| b.commit))
    }

    /// Commits to `commit.branch`. A commit POST that may have landed (a 5xx or a timeout after
    /// GitLab took it) is not sent again blindly, which GitLab would refuse with "A file with this
    /// name already exists": the branch's head is read first, and a head with this commit's
    /// message is this commit.
    pub async fn create_commit(&self, project_id: u64, commit: &NewCommit<'_>) -> Result<Commit, GitLabError> {
        let path = format!("/projects/{project_id}/repository/commits");
        let operation = format!("committing {} files to project {project_id}", commit.actions.len());
        let mut uncertain_attempts = 0;
        loop {
            let err = match self.call(Method::POST, &path, Some(commit), &operation, Repeat::OnlyIfNotReceived).await {
                Err(err @ GitLabError::Uncertain { .. }) => err,
                other => return other,
            };
            if let Some(head) = self.branch_head(project_id, commit.branch).await?
                && head.message.trim_end() == commit.commit_message.trim_end()
            {
                tracing::info!(operation, commit = head.id, "the commit had landed although its answer failed");
                return Ok(head);
            }
            uncertain_attempts += 1;
            let Some(delay) = self.retry.next_delay(uncertain_attempts, None, self.deadline) else { return Err(err) };
            tracing::warn!(operation, reason = %err, "the commit did not land, committing again");
            tokio::time::sleep(delay).await;
        }
    }

    /// The API-started pipelines on `git_ref` updated since `since`, newest first (at most 50).
    pub async fn api_pipelines_since(
        &self,
        project_id: u64,
        git_ref: &str,
        since: &str,
    ) -> Result<Vec<Pipeline>, GitLabError> {
        let path = format!(
            "/projects/{project_id}/pipelines?source=api&ref={}&updated_after={}&per_page=50",
            encode_path_segment(git_ref),
            encode_path_segment(since)
        );
        self.get(&path, &format!("listing recent pipelines of project {project_id}")).await
    }

    pub async fn pipeline_variables(
        &self,
        project_id: u64,
        pipeline_id: u64,
    ) -> Result<Vec<PipelineVariable>, GitLabError> {
        let path = format!("/projects/{project_id}/pipelines/{pipeline_id}/variables");
        self.get(&path, &format!("reading the variables of pipeline {pipeline_id}")).await
    }

    /// Starts a pipeline on `git_ref` with these variables, as the token's user. Never sent
    /// twice unless GitLab certainly did not receive it: on `GitLabError::Uncertain` the caller
    /// decides, from GitLab's list of pipelines, whether it started.
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
            variables: Vec<PipelineVariable>,
        }
        let variables = variables
            .iter()
            .map(|(key, value)| PipelineVariable {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
                variable_type: "env_var".into(),
            })
            .collect();
        let operation = format!("starting a pipeline on {git_ref} of project {project_id}");
        let path = format!("/projects/{project_id}/pipeline");
        self.call(Method::POST, &path, Some(&Body { git_ref, variables }), &operation, Repeat::OnlyIfNotReceived).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, operation: &str) -> Result<T, GitLabError> {
        self.call(Method::GET, path, None::<&()>, operation, Repeat::Safe).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        operation: &str,
        repeat: Repeat,
    ) -> Result<T, GitLabError> {
        let url = format!("{}{path}", self.api);
        let mut failed_attempts = 0;
        loop {
            let left = self.deadline.map_or(REQUEST_TIMEOUT, |d| d.saturating_duration_since(Instant::now()));
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("PRIVATE-TOKEN", self.token_header()?)
                .timeout(left.min(REQUEST_TIMEOUT));
            if let Some(body) = body {
                request = request.json(body);
            }
            let (retry_after, reason) = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let bytes = read_bounded(response, MAX_ANSWER_BYTES)
                        .await
                        .map_err(|err| self.unexpected(operation, err))?;
                    // A 204 (a DELETE's) has no body: it reads as JSON null.
                    let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
                    return serde_json::from_slice(json).map_err(|err| self.unexpected(operation, err));
                }
                Ok(response) if response.status().is_redirection() => {
                    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere");
                    return Err(GitLabError::Redirected {
                        host: self.host.clone(),
                        operation: operation.into(),
                        status: response.status().as_u16(),
                        location: location.to_owned(),
                    });
                }
                // GitLab's rate limiter answers before the request does anything: always safe.
                Ok(response)
                    if response.status() == StatusCode::TOO_MANY_REQUESTS || response.status().is_server_error() =>
                {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs);
                    let message = error_message(&read_bounded(response, MAX_ERROR_BYTES).await.unwrap_or_default());
                    if status.is_server_error() && repeat == Repeat::OnlyIfNotReceived {
                        return Err(self.uncertain(operation, format!("{status}: {message}")));
                    }
                    failed_attempts += 1;
                    match self.retry.next_delay(failed_attempts, retry_after, self.deadline) {
                        Some(delay) => (delay, format!("{status}: {message}")),
                        None => return Err(self.api_error(operation, status, &[], message)),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let bytes = read_bounded(response, MAX_ERROR_BYTES).await.unwrap_or_default();
                    let message = error_message(&bytes);
                    return Err(self.api_error(operation, status, &bytes, message));
                }
                Err(err) => {
                    if let Some(reason) = certificate_problem(&err) {
                        return Err(GitLabError::Certificate {
                            host: self.host.clone(),
                            operation: operation.into(),
                            reason,
                        });
                    }
                    let reason = describe_transport_error(&err);
                    // A refused connection sent nothing; a timeout or a broken answer may have.
                    if !err.is_connect() && repeat == Repeat::OnlyIfNotReceived {
                        return Err(self.uncertain(operation, reason));
                    }
                    failed_attempts += 1;
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

    fn api_error(&self, operation: &str, status: StatusCode, body: &[u8], message: String) -> GitLabError {
        let (host, operation, secret) = (self.host.clone(), operation.to_owned(), self.token.secret().to_owned());
        match status.as_u16() {
            401 => GitLabError::Unauthorized { host, operation, message, secret },
            403 => {
                let json = serde_json::from_slice(body).unwrap_or_default();
                GitLabError::Forbidden {
                    host,
                    operation,
                    cause: Forbidden::from_body(&json, &message),
                    message,
                    secret,
                }
            }
            status => GitLabError::Api { host, operation, status, message },
        }
    }

    /// The token as a header value marked sensitive, so no HTTP layer logs or shows it.
    fn token_header(&self) -> Result<HeaderValue, GitLabError> {
        let mut value = HeaderValue::from_str(self.token.expose())
            .map_err(|_| GitLabError::BadToken { secret: self.token.secret().to_owned() })?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn uncertain(&self, operation: &str, reason: String) -> GitLabError {
        GitLabError::Uncertain { host: self.host.clone(), operation: operation.into(), reason }
    }

    fn unexpected(&self, operation: &str, err: impl std::fmt::Display) -> GitLabError {
        GitLabError::Unexpected { host: self.host.clone(), operation: operation.into(), reason: err.to_string() }
    }
}

/// A GitLab instance URL as the Lambdas accept it: `https://host[:port][/path]`, plain `http`
/// only on a loopback address (local test servers), and nothing a URL can hide a host or a
/// request in (user information, a query, a fragment).
pub fn server_url(text: &str) -> Result<reqwest::Url, GitLabError> {
    let bad = |reason: &str| GitLabError::BadUrl { url: text.into(), reason: reason.into() };
    let url = reqwest::Url::parse(text.trim()).map_err(|err| bad(&err.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("expected https://host[/path]"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => return Err(bad("GitLab must be reached over https:// (plain http only for a loopback test server)")),
        _ => return Err(bad("expected https://host[/path]")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user information before the host hides the real host: give https://host[/path]"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a GitLab URL has no query or fragment: give https://host[/path]"));
    }
    Ok(url)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `None` for a 404, so callers can tell "absent" from "failed".
fn optional<T>(result: Result<T, GitLabError>) -> Result<Option<T>, GitLabError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.status() == Some(404) => Ok(None),
        Err(err) => Err(err),
    }
}

/// GitLab's error text: `{"message": "..."}`, `{"message": {"field": ["..."]}}`, `{"message": ["..."]}`,
/// `{"error": "...", "error_description": "..."}`, or the body itself.
fn error_message(body: &[u8]) -> String {
    const LIMIT: usize = 300;
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => match json.get("message").or_else(|| json.get("error_description")).or_else(|| json.get("error")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => strings(list),
            Some(serde_json::Value::Object(fields)) => fields
                .iter()
                .map(|(field, problems)| match problems {
                    serde_json::Value::Array(list) => format!("{field} {}", strings(list)),
                    other => format!("{field} {other}"),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => json.to_string(),
        },
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() { "(no message)".into() } else { text.chars().take(LIMIT).collect() }
}

/// The body, or an error once it grows past `limit` bytes: a misbehaving server cannot make the
/// Lambda hold more than that.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.without_url().to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn strings(list: &[serde_json::Value]) -> String {
    let list: Vec<String> = list.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect();
    list.join(", ")
}

/// The reason when TLS failed because the server's certificate is not trusted (unknown issuer,
/// expired, wrong name): trying again cannot help. rustls' error sits inside `io::Error`s (two,
/// through tokio-rustls and hyper), whose `source()` skips what they wrap, so each is opened.
fn certificate_problem(err: &reqwest::Error) -> Option<String> {
    fn find(err: &(dyn std::error::Error + 'static)) -> Option<String> {
        if let Some(rustls::Error::InvalidCertificate(problem)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{problem:?}"));
        }
        let wrapped = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        wrapped.and_then(|inner| find(inner)).or_else(|| err.source().and_then(find))
    }
    std::error::Error::source(err).and_then(find)
}

/// The root cause of a transport error; reqwest's Display names the URL, which is fine (no token
/// in it), but not the cause.
pub fn describe_transport_error(err: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protection_is_weaker_than_maintainers_when_a_lower_role_writes_or_force_pushes() {
        let rule = |push: u64, merge: u64, force: bool| -> ProtectedBranch {
            serde_json::from_value(serde_json::json!({
                "push_access_levels": [{ "access_level": push, "access_level_description": format!("level {push}") }],
                "merge_access_levels": [{ "access_level": merge }, { "access_level": null, "user_id": 7 }],
                "allow_force_push": force,
            }))
            .unwrap()
        };
        assert!(rule(40, 40, false).weaker_than_maintainers().is_empty());
        assert!(rule(0, 40, false).weaker_than_maintainers().is_empty(), "No access lets nobody push");
        assert_eq!(rule(30, 40, false).weaker_than_maintainers(), ["push: level 30"]);
        assert_eq!(rule(40, 30, true).weaker_than_maintainers(), ["merge: below Maintainer", "force push allowed"]);
    }

    fn record(scopes: &[&str], expires_at: Option<&str>) -> TokenRecord {
        TokenRecord {
            name: "sagemaker".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            active: true,
            revoked: false,
            expires_at: expires_at.map(str::to_owned),
        }
    }

    #[test]
    fn a_token_is_judged_by_scope_state_and_expiry() {
        let today = time::Date::from_calendar_date(2026, time::Month::November, 27).unwrap();
        assert_eq!(record(&["api"], None).assess(today, "s"), Ok(None));
        assert_eq!(record(&["api", "read_user"], Some("2027-06-01")).assess(today, "s"), Ok(None));
        let warning = record(&["api"], Some("2026-12-20")).assess(today, "s").unwrap().unwrap();
        assert!(warning.contains("in 23 days") && warning.contains("secret s"), "{warning}");
        let expired = record(&["api"], Some("2026-11-27")).assess(today, "s").unwrap_err().to_string();
        assert!(expired.contains("expired on 2026-11-27"), "{expired}");
        let scope = record(&["read_api"], Some("2027-01-01")).assess(today, "s").unwrap_err().to_string();
        assert!(scope.contains("[read_api] but not api"), "{scope}");
        let revoked =
            TokenRecord { revoked: true, ..record(&["api"], None) }.assess(today, "s").unwrap_err().to_string();
        assert!(revoked.contains("revoked"), "{revoked}");
        assert!(record(&["api"], Some("soon")).assess(today, "s").is_err());
    }
}
