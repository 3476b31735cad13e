//! A stateful stand-in for GitLab's REST API v4, behaving as GitLab does for the calls the
//! Lambdas make. Where GitLab's behaviour decides whether the Lambdas work, the double follows
//! it, and `answers.rs` keeps every error body with the GitLab source it follows:
//!
//! - tokens with scopes, an expiry and a revocation, each owned by a user with a role in the
//!   groups and a personal project limit (401/403 as GitLab words them), and the token's own
//!   record at `/personal_access_tokens/self`;
//! - project creation that checks the namespace (400 `namespace is not valid`), the personal
//!   project limit (403) and duplicates (400 `has already been taken`); archived projects are
//!   read-only (403);
//! - the per-project `ci_pipeline_variables_minimum_override_role`: new projects get
//!   `no_one_allowed` as on gitlab.com since 17.7 (switchable to a self-managed default, or to a
//!   GitLab older than 17.1 that has no such setting), changed with `PUT /projects/:id` by the
//!   roles GitLab allows, and enforced on `POST /projects/:id/pipeline` with GitLab's 400;
//! - CI/CD variables per environment scope, with the 409 of an ambiguous update;
//! - commits that create the branch of an empty repository, a push rule on commit messages;
//! - pipelines with their variables, listed as the pipelines API lists them;
//! - faults a load balancer adds: 429/5xx before the request is served, 5xx or a hang *after*
//!   it was applied; an `http://` listener that redirects as gitlab.com does; TLS with a CA a
//!   test makes (`tls::TestCa`).
//!
//! Tests read back every request received and the resulting state.

pub mod answers;
pub mod tls;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use self::answers::ApiError;

/// A request as the double received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The query string, decoded as sent (`None` without one).
    pub query: Option<String>,
    pub body: Value,
    /// The `PRIVATE-TOKEN` header, so tests can check which token was sent.
    pub token: Option<String>,
    pub at: Instant,
}

/// GitLab's access levels (`app/models/members/member.rb`, `Gitlab::Access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Guest = 10,
    Reporter = 20,
    Developer = 30,
    Maintainer = 40,
    Owner = 50,
}

impl Role {
    /// The role a `ci_pipeline_variables_minimum_override_role` value names; `None` for
    /// `no_one_allowed`.
    fn from_override_setting(value: &str) -> Option<Role> {
        match value {
            "developer" => Some(Role::Developer),
            "maintainer" => Some(Role::Maintainer),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// What a new project's pipeline-variable setting starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineVariablesDefault {
    /// gitlab.com for projects in namespaces created since 17.7 (doc/ci/variables/_index.md,
    /// "Restrict pipeline variables"), and self-managed with the secure default switched on.
    NoOneAllowed,
    /// Self-managed GitLab 17.1+ by default: `restrict_user_defined_variables` off, which GitLab
    /// shows as `developer`.
    Developer,
    /// GitLab before 17.1: the attribute does not exist, any Developer may set variables.
    Unsupported,
}

/// An access token and the user it acts as.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub username: String,
    /// The user's role in every group the double has.
    pub group_role: Role,
    pub scopes: Vec<String>,
    pub expires_at: Option<time::Date>,
    pub revoked: bool,
    /// How many projects the user may create in their personal namespace (`None`: no limit).
    pub projects_limit: Option<usize>,
}

impl TokenSpec {
    /// A personal access token with the `api` scope of a group Owner, expiring in `days`.
    pub fn owner(username: &str, days: i64) -> TokenSpec {
        TokenSpec {
            username: username.to_owned(),
            group_role: Role::Owner,
            scopes: vec!["api".to_owned()],
            expires_at: Some(today() + time::Duration::days(days)),
            revoked: false,
            projects_limit: None,
        }
    }
}

fn today() -> time::Date {
    OffsetDateTime::now_utc().date()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableState {
    pub value: String,
    pub masked: bool,
    /// Masked and hidden (GitLab 17.4+): its value is never shown again, in the UI or the API.
    pub hidden: bool,
    pub protected: bool,
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    pub executable: bool,
}

#[derive(Debug, Clone)]
pub struct CommitState {
    pub id: String,
    pub message: String,
    pub branch: String,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct PipelineState {
    pub id: u64,
    pub git_ref: String,
    /// `api` for pipelines started through the API.
    pub source: String,
    pub variables: BTreeMap<String, String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct ProjectState {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub namespace_id: u64,
    pub namespace_path: String,
    pub description: String,
    pub visibility: String,
    pub default_branch: String,
    pub archived: bool,
    /// `ci_pipeline_variables_minimum_override_role`; `None` on a GitLab that has no such setting.
    pub pipeline_variables_role: Option<String>,
    /// Members by user ID (the creator, for a start).
    pub members: BTreeMap<u64, Role>,
    /// Variables by key and environment scope, with the time each was last written.
    pub variables: BTreeMap<(String, String), (VariableState, Instant)>,
    pub commits: Vec<CommitState>,
    /// The files at the tip of each branch.
    pub branches: BTreeMap<String, BTreeMap<String, FileState>>,
    /// Branches only Maintainers push to; protected variables reach only their pipelines.
    pub protected_branches: std::collections::BTreeSet<String>,
    pub pipelines: Vec<PipelineState>,
}

impl ProjectState {
    pub fn full_path(&self) -> String {
        format!("{}/{}", self.namespace_path, self.path)
    }

    /// The variable `key` of the `*` environment scope.
    pub fn variable(&self, key: &str) -> Option<&VariableState> {
        self.variables.get(&(key.to_owned(), "*".to_owned())).map(|(v, _)| v)
    }

    /// The variables of the `*` environment scope, by key, with the time each was written.
    pub fn variables_for_all_environments(&self) -> BTreeMap<&str, &(VariableState, Instant)> {
        self.variables.iter().filter(|((_, scope), _)| scope == "*").map(|((key, _), v)| (key.as_str(), v)).collect()
    }
}

enum FaultKind {
    /// Answered instead of serving the next request.
    Before { status: StatusCode, retry_after: Option<u64> },
    /// The next write to a path ending in the text is served, then this status is answered
    /// instead (a proxy's 502 or 504).
    After(String, StatusCode),
    /// The next write to a path ending in the text is served, then its answer waits this long (a
    /// client's timeout fires first).
    HangAfter(String, Duration),
}

impl FaultKind {
    fn applies_to(&self, method: &axum::http::Method, path: &str) -> bool {
        match self {
            FaultKind::Before { .. } => true,
            FaultKind::After(suffix, _) | FaultKind::HangAfter(suffix, _) => {
                method != axum::http::Method::GET && path.ends_with(suffix.as_str())
            }
        }
    }
}

struct User {
    id: u64,
    username: String,
    namespace_id: u64,
    group_role: Role,
    projects_limit: Option<usize>,
}

struct Token {
    value: String,
    id: u64,
    user: usize,
    scopes: Vec<String>,
    expires_at: Option<time::Date>,
    revoked: bool,
}

struct Inner {
    base_url: String,
    users: Vec<User>,
    tokens: Vec<Token>,
    groups: BTreeMap<u64, String>,
    projects: Vec<ProjectState>,
    pipeline_variables_default: PipelineVariablesDefault,
    /// A push rule: commit messages must contain this text.
    commit_message_rule: Option<String>,
    /// Whether the first push protects the default branch (GitLab's default "fully protected";
    /// a group or instance may say "not protected").
    protect_default_branch: bool,
    next_id: u64,
    requests: Vec<Request>,
    faults: VecDeque<FaultKind>,
    latency: Duration,
}

type Shared = Arc<Mutex<Inner>>;

/// The user a request is authenticated as (index into `Inner::users`).
#[derive(Clone, Copy)]
struct Caller(usize);

pub struct GitLabDouble {
    url: String,
    inner: Shared,
}

/// The user of the token `start` is given.
pub const USER_ID: u64 = 7;
pub const USERNAME: &str = "platform-bot";

impl GitLabDouble {
    /// Starts the double on a free loopback port, as gitlab.com behaves for a new namespace;
    /// `token` is a personal access token (`api`, 300 days left) of a group Owner.
    pub async fn start(token: &str) -> GitLabDouble {
        GitLabDouble::start_on(token, None).await
    }

    /// The same, served over TLS with a certificate of `ca` (`https://localhost:<port>`).
    pub async fn start_tls(token: &str, ca: &tls::TestCa) -> GitLabDouble {
        GitLabDouble::start_on(token, Some(ca)).await
    }

    async fn start_on(token: &str, ca: Option<&tls::TestCa>) -> GitLabDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let url = match ca {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let inner = Arc::new(Mutex::new(Inner {
            base_url: url.clone(),
            users: Vec::new(),
            tokens: Vec::new(),
            groups: BTreeMap::new(),
            projects: Vec::new(),
            pipeline_variables_default: PipelineVariablesDefault::NoOneAllowed,
            commit_message_rule: None,
            protect_default_branch: true,
            next_id: 2000,
            requests: Vec::new(),
            faults: VecDeque::new(),
            latency: Duration::ZERO,
        }));
        let double = GitLabDouble { url, inner: inner.clone() };
        double.add_user_token(USER_ID, 1000, token, TokenSpec::owner(USERNAME, 300));
        let app = Router::new()
            .route("/api/v4/user", get(current_user))
            .route("/api/v4/personal_access_tokens/self", get(token_self))
            .route("/api/v4/groups/{id}", get(get_group))
            .route("/api/v4/projects", post(create_project))
            .route("/api/v4/projects/{id}", get(get_project).put(update_project))
            .route("/api/v4/projects/{id}/variables", post(create_variable))
            .route("/api/v4/projects/{id}/variables/{key}", axum::routing::put(update_variable))
            .route("/api/v4/projects/{id}/repository/commits", post(create_commit))
            .route("/api/v4/projects/{id}/repository/branches/{branch}", get(get_branch))
            .route("/api/v4/projects/{id}/protected_branches", post(protect_branch))
            .route("/api/v4/projects/{id}/pipeline", post(create_pipeline))
            .route("/api/v4/projects/{id}/pipelines", get(list_pipelines))
            .route("/api/v4/projects/{id}/pipelines/{pipeline}/variables", get(pipeline_variables))
            .fallback(|| async { answers::not_found("") })
            .layer(axum::middleware::from_fn_with_state(inner.clone(), record_and_authenticate))
            .with_state(inner);
        match ca {
            Some(ca) => {
                tls::serve(listener, ca, app);
            }
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await.expect("GitLab double stopped") });
            }
        }
        double
    }

    /// The instance URL, as a GitLab server URL parameter would give it.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// An `http://` listener that answers every request with a 301 to the same path on this
    /// double, as gitlab.com and Omnibus' `redirect_http_to_https` answer plain HTTP.
    pub async fn redirecting_url(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr: SocketAddr = listener.local_addr().expect("bound socket has an address");
        let target = self.url.clone();
        let inner = self.inner.clone();
        let app = Router::new().fallback(move |request: axum::extract::Request| {
            let (target, inner) = (target.clone(), inner.clone());
            async move {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                inner.lock().expect("state lock").requests.push(Request {
                    method: request.method().to_string(),
                    path: format!("(redirect) {path}"),
                    query: None,
                    body: Value::Null,
                    token: request.headers().get("private-token").and_then(|v| v.to_str().ok()).map(str::to_owned),
                    at: Instant::now(),
                });
                (StatusCode::MOVED_PERMANENTLY, [("location", format!("{target}{path}"))]).into_response()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.expect("redirect listener stopped") });
        format!("http://{addr}")
    }

    /// The ID token GitLab CI hands a job of `project_path` on branch `branch` for an
    /// `id_tokens` entry with audience `aud` (and the job's `environment`, if it names one), with
    /// the claims GitLab documents ("OpenID Connect (OIDC) Authentication Using ID Tokens"): `iss`
    /// the server URL, `sub` = `project_path:{path}:ref_type:branch:ref:{branch}` (the default
    /// `ci_id_token_sub_claim_components`), `aud`, and the project, ref and environment claims.
    /// Unsigned (`alg: none`): the stand-ins that take it (moto's STS) verify no signature, and
    /// the tests decide trust from its claims with the IAM evaluator.
    pub fn id_token(&self, project_path: &str, branch: &str, aud: &str, environment: Option<&str>) -> String {
        use base64::Engine as _;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let namespace = project_path.rsplit_once('/').map_or("", |(namespace, _)| namespace);
        let mut claims = serde_json::json!({
            "iss": self.url,
            "sub": format!("project_path:{project_path}:ref_type:branch:ref:{branch}"),
            "aud": aud,
            "namespace_path": namespace,
            "project_path": project_path,
            "ref": branch,
            "ref_type": "branch",
            "ref_protected": "true",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
        });
        if let Some(environment) = environment {
            claims["environment"] = environment.into();
            claims["environment_protected"] = "false".into();
        }
        let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.", encode(&serde_json::json!({ "alg": "none", "typ": "JWT" })), encode(&claims))
    }

    /// Adds a token of a new user; returns the user's personal namespace ID.
    pub fn add_token(&self, token: &str, spec: TokenSpec) -> u64 {
        let (user_id, namespace_id) = {
            let mut inner = self.lock();
            (inner.next_id(), inner.next_id())
        };
        self.add_user_token(user_id, namespace_id, token, spec);
        namespace_id
    }

    fn add_user_token(&self, user_id: u64, namespace_id: u64, token: &str, spec: TokenSpec) {
        let mut inner = self.lock();
        let token_id = inner.next_id();
        inner.users.push(User {
            id: user_id,
            username: spec.username,
            namespace_id,
            group_role: spec.group_role,
            projects_limit: spec.projects_limit,
        });
        let user = inner.users.len() - 1;
        inner.tokens.push(Token {
            value: token.to_owned(),
            id: token_id,
            user,
            scopes: spec.scopes,
            expires_at: spec.expires_at,
            revoked: spec.revoked,
        });
    }

    /// Changes the record of an existing token (its scopes, expiry, revocation).
    pub fn update_token(&self, token: &str, update: impl FnOnce(&mut Vec<String>, &mut Option<time::Date>, &mut bool)) {
        let mut inner = self.lock();
        let token = inner.tokens.iter_mut().find(|t| t.value == token).expect("a known token");
        update(&mut token.scopes, &mut token.expires_at, &mut token.revoked);
    }

    /// Adds a group and returns its namespace ID.
    pub fn add_group(&self, full_path: &str) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id();
        inner.groups.insert(id, full_path.to_owned());
        id
    }

    /// The namespace ID of the personal namespace of `start`'s token owner.
    pub fn user_namespace_id(&self) -> u64 {
        self.lock().users[0].namespace_id
    }

    /// What the pipeline-variable setting of projects created from now on starts as.
    pub fn set_pipeline_variables_default(&self, default: PipelineVariablesDefault) {
        self.lock().pipeline_variables_default = default;
    }

    /// A push rule: commits whose message lacks `text` are rejected as GitLab's pre-receive
    /// check rejects them.
    pub fn require_in_commit_messages(&self, text: &str) {
        self.lock().commit_message_rule = Some(text.to_owned());
    }

    /// Whether the first push to a project protects its default branch.
    pub fn set_default_branch_protection(&self, protect: bool) {
        self.lock().protect_default_branch = protect;
    }

    /// The next `times` requests (after authentication) get `status`, with `Retry-After`
    /// when given, instead of being served.
    pub fn fail_next(&self, times: usize, status: u16, retry_after: Option<u64>) {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        self.lock().faults.extend((0..times).map(|_| FaultKind::Before { status, retry_after }));
    }

    /// The next write to a path ending in `path_suffix` is served (its change made), then
    /// answered with `status`.
    pub fn fail_next_after_applying(&self, path_suffix: &str, status: u16) {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        self.lock().faults.push_back(FaultKind::After(path_suffix.to_owned(), status));
    }

    /// The next write to a path ending in `path_suffix` is served (its change made), then its
    /// answer waits `delay`.
    pub fn hang_next_after_applying(&self, path_suffix: &str, delay: Duration) {
        self.lock().faults.push_back(FaultKind::HangAfter(path_suffix.to_owned(), delay));
    }

    /// Waits this long before answering each request, like a distant server.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    pub fn projects(&self) -> Vec<ProjectState> {
        self.lock().projects.clone()
    }

    pub fn project(&self, full_path: &str) -> Option<ProjectState> {
        self.lock().projects.iter().find(|p| p.full_path() == full_path).cloned()
    }

    /// Creates a project directly, as if someone had made it by hand; the token owner of `start`
    /// is its Owner.
    pub fn seed_project(&self, namespace_id: u64, path: &str, description: &str) -> u64 {
        let mut inner = self.lock();
        let namespace_path = inner.namespace_path(namespace_id).expect("a known namespace");
        let id = inner.next_id();
        let pipeline_variables_role = inner.new_project_pipeline_variables_role();
        inner.projects.push(ProjectState {
            id,
            name: path.to_owned(),
            path: path.to_owned(),
            namespace_id,
            namespace_path,
            description: description.to_owned(),
            visibility: "private".into(),
            default_branch: "main".into(),
            archived: false,
            pipeline_variables_role,
            members: BTreeMap::from([(USER_ID, Role::Owner)]),
            variables: BTreeMap::new(),
            commits: Vec::new(),
            branches: BTreeMap::new(),
            protected_branches: Default::default(),
            pipelines: Vec::new(),
        });
        id
    }

    /// Gives a project a branch with one commit, as if it had been seeded already.
    pub fn seed_branch(&self, project_id: u64, branch: &str) {
        let mut inner = self.lock();
        let commit_id = format!("{:040x}", inner.next_id());
        let project = inner.project_mut(project_id);
        project.branches.insert(branch.to_owned(), BTreeMap::new());
        project.commits.push(CommitState {
            id: commit_id,
            message: "Initial commit".into(),
            branch: branch.to_owned(),
            at: Instant::now(),
        });
    }

    /// Sets a project's pipeline-variable role directly, as an Owner would in the settings.
    pub fn set_pipeline_variables_role(&self, project_id: u64, role: &str) {
        self.lock().project_mut(project_id).pipeline_variables_role = Some(role.to_owned());
    }

    /// Archives a project: GitLab keeps it readable and refuses every write.
    pub fn archive(&self, project_id: u64) {
        self.lock().project_mut(project_id).archived = true;
    }

    /// Adds a CI/CD variable under an environment scope, as someone would by hand.
    pub fn add_variable(&self, project_id: u64, key: &str, environment_scope: &str, value: &str) {
        let variable =
            VariableState { value: value.to_owned(), masked: false, hidden: false, protected: false, raw: true };
        self.lock()
            .project_mut(project_id)
            .variables
            .insert((key.to_owned(), environment_scope.to_owned()), (variable, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("no test panicked while holding the double's state")
    }
}

impl Inner {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn project_mut(&mut self, id: u64) -> &mut ProjectState {
        self.projects.iter_mut().find(|p| p.id == id).expect("a known project")
    }

    fn new_project_pipeline_variables_role(&self) -> Option<String> {
        match self.pipeline_variables_default {
            PipelineVariablesDefault::NoOneAllowed => Some("no_one_allowed".into()),
            PipelineVariablesDefault::Developer => Some("developer".into()),
            PipelineVariablesDefault::Unsupported => None,
        }
    }

    fn namespace_path(&self, id: u64) -> Option<String> {
        if let Some(user) = self.users.iter().find(|u| u.namespace_id == id) {
            return Some(user.username.clone());
        }
        self.groups.get(&id).cloned()
    }

    /// The caller's role in a project: Owner in their own namespace, their membership, else
    /// their group role for a group's project; `None` when they cannot see it.
    fn role(&self, caller: Caller, project: &ProjectState) -> Option<Role> {
        let user = &self.users[caller.0];
        if project.namespace_id == user.namespace_id {
            return Some(Role::Owner);
        }
        let group_role = self.groups.contains_key(&project.namespace_id).then_some(user.group_role);
        project.members.get(&user.id).copied().max(group_role)
    }

    /// The project at `:id` (numeric ID or URL-encoded full path, which axum decoded) as the
    /// caller sees it: 404 when absent or invisible, as GitLab does not tell the two apart.
    fn visible_project(&self, caller: Caller, id: &str) -> Result<(usize, Role), ApiError> {
        let index = match id.parse::<u64>() {
            Ok(n) => self.projects.iter().position(|p| p.id == n),
            Err(_) => self.projects.iter().position(|p| p.full_path() == id),
        };
        index
            .and_then(|i| Some((i, self.role(caller, &self.projects[i])?)))
            .ok_or_else(|| answers::not_found("Project"))
    }

    /// The project for a write that needs `needed`: 403 below it, and for an archived project.
    fn writable_project(&self, caller: Caller, id: &str, needed: Role) -> Result<usize, ApiError> {
        let (i, role) = self.visible_project(caller, id)?;
        if role < needed || self.projects[i].archived {
            return Err(answers::forbidden());
        }
        Ok(i)
    }

    fn project_json(&self, p: &ProjectState) -> Value {
        let full_path = p.full_path();
        let default_branch = if p.branches.is_empty() { Value::Null } else { json!(p.default_branch) };
        let mut project = json!({
            "id": p.id,
            "name": p.name,
            "path": p.path,
            "path_with_namespace": full_path,
            "description": p.description,
            "visibility": p.visibility,
            "default_branch": default_branch,
            "archived": p.archived,
            "web_url": format!("{}/{full_path}", self.base_url),
            "http_url_to_repo": format!("{}/{full_path}.git", self.base_url),
            "namespace": { "id": p.namespace_id, "full_path": p.namespace_path },
        });
        if let Some(role) = &p.pipeline_variables_role {
            project["ci_pipeline_variables_minimum_override_role"] = json!(role);
        }
        project
    }
}

type Answer = Result<Response, ApiError>;

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().expect("state lock")
}

/// Records the request, authenticates its token (GitLab's 401s and scope 403), then plays any
/// fault a test queued around serving it.
async fn record_and_authenticate(
    State(inner): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let token = parts.headers.get("private-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (latency, fault, caller) = {
        let mut inner = lock(&inner);
        inner.requests.push(Request {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(percent_decode),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            token: token.clone(),
            at: Instant::now(),
        });
        let caller = authenticate(&inner, token.as_deref(), parts.method == axum::http::Method::GET);
        let fault = match inner.faults.iter().position(|f| f.applies_to(&parts.method, parts.uri.path())) {
            Some(i) if caller.is_ok() => inner.faults.remove(i),
            _ => None,
        };
        (inner.latency, fault, caller)
    };
    tokio::time::sleep(latency).await;
    let caller = match caller {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    parts.extensions.insert(caller);
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    match fault {
        None => next.run(request).await,
        Some(FaultKind::Before { status, retry_after }) => {
            let mut response = answers::fault(status).into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.into());
            }
            response
        }
        Some(FaultKind::After(_, status)) => {
            drop(next.run(request).await);
            answers::fault(status).into_response()
        }
        Some(FaultKind::HangAfter(_, delay)) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
    }
}

fn authenticate(inner: &Inner, token: Option<&str>, read_only: bool) -> Result<Caller, ApiError> {
    let token = token.and_then(|value| inner.tokens.iter().find(|t| t.value == value));
    let token = token.ok_or_else(answers::unauthorized)?;
    if token.revoked {
        return Err(answers::token_revoked());
    }
    if token.expires_at.is_some_and(|date| date <= today()) {
        return Err(answers::token_expired());
    }
    let has = |scope: &str| token.scopes.iter().any(|s| s == scope);
    if !(has("api") || (read_only && has("read_api"))) {
        return Err(answers::insufficient_scope(if read_only { &["api", "read_api"] } else { &["api"] }));
    }
    Ok(Caller(token.user))
}

/// Enough percent-decoding for the query strings the Lambdas send (`filter%5Benvironment_scope%5D=%2A`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn current_user(State(inner): State<Shared>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let inner = lock(&inner);
    let user = &inner.users[caller.0];
    Json(json!({ "id": user.id, "username": user.username }))
}

/// `GET /personal_access_tokens/self` (doc/api/personal_access_tokens.md), which group and
/// project access tokens answer too.
async fn token_self(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    request_token: axum::http::HeaderMap,
) -> Json<Value> {
    let inner = lock(&inner);
    let value = request_token.get("private-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = inner.tokens.iter().find(|t| t.value == value).expect("authenticated by the middleware");
    Json(json!({
        "id": token.id,
        "name": "sagemaker-projects",
        "revoked": token.revoked,
        "created_at": "2026-01-05T09:00:00.000Z",
        "scopes": token.scopes,
        "user_id": inner.users[caller.0].id,
        "active": !token.revoked,
        "expires_at": token.expires_at.map(|d| d.to_string()),
    }))
}

fn body_json(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|_| answers::bad_request("400 Bad request - body is not JSON"))
}

fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| answers::bad_request(format!("{field} is missing")))
}

fn optional_str<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn create_project(State(inner): State<Shared>, Extension(caller): Extension<Caller>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let name = required_str(&body, "name")?.to_owned();
    let path = optional_str(&body, "path").unwrap_or(&name).to_owned();
    let mut inner = lock(&inner);
    let user = &inner.users[caller.0];
    let (user_id, personal) = (user.id, user.namespace_id);
    let namespace_id = body.get("namespace_id").and_then(Value::as_u64).unwrap_or(personal);
    // Projects::CreateService: the user's own namespace, or a group where their role may create
    // projects (Developer and up under the default "Developers + Maintainers" setting).
    let creator_role = if namespace_id == personal {
        Role::Owner
    } else if inner.groups.contains_key(&namespace_id) && user.group_role >= Role::Developer {
        // A Developer allowed to create a project becomes its Maintainer (gitlab MR 76613).
        user.group_role.max(Role::Maintainer)
    } else {
        return Err(answers::namespace_not_valid());
    };
    if namespace_id == personal
        && let Some(limit) = user.projects_limit
        && inner.projects.iter().filter(|p| p.namespace_id == personal).count() >= limit
    {
        return Err(answers::project_limit_reached(limit));
    }
    let namespace_path = inner.namespace_path(namespace_id).expect("checked above");
    let siblings: Vec<&ProjectState> = inner.projects.iter().filter(|p| p.namespace_id == namespace_id).collect();
    let mut taken = Vec::new();
    if siblings.iter().any(|p| p.name == name) {
        taken.push("name");
    }
    if siblings.iter().any(|p| p.path == path) {
        taken.push("path");
    }
    if !taken.is_empty() {
        return Err(answers::project_taken(&taken));
    }
    let id = inner.next_id();
    let project = ProjectState {
        id,
        name,
        path,
        namespace_id,
        namespace_path,
        description: optional_str(&body, "description").unwrap_or_default().to_owned(),
        visibility: optional_str(&body, "visibility").unwrap_or("private").to_owned(),
        default_branch: optional_str(&body, "default_branch").unwrap_or("main").to_owned(),
        archived: false,
        pipeline_variables_role: inner.new_project_pipeline_variables_role(),
        members: BTreeMap::from([(user_id, creator_role)]),
        variables: BTreeMap::new(),
        commits: Vec::new(),
        branches: BTreeMap::new(),
        protected_branches: Default::default(),
        pipelines: Vec::new(),
    };
    let answer = inner.project_json(&project);
    inner.projects.push(project);
    created(answer)
}

/// `GET /groups/:id`: embeds the group's projects unless `with_projects=false`
/// (doc/api/groups.md, "Get a single group").
async fn get_group(
    State(inner): State<Shared>,
    Path(id): Path<u64>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let inner = lock(&inner);
    let full_path = inner.groups.get(&id).ok_or_else(|| answers::not_found("Group"))?;
    let mut group = json!({ "id": id, "full_path": full_path, "path": full_path.rsplit('/').next() });
    if query.get("with_projects").map(String::as_str) != Some("false") {
        let projects: Vec<Value> =
            inner.projects.iter().filter(|p| p.namespace_id == id).take(100).map(|p| inner.project_json(p)).collect();
        group["projects"] = Value::Array(projects);
    }
    Ok(Json(group).into_response())
}

async fn get_project(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let inner = lock(&inner);
    let (i, _) = inner.visible_project(caller, &id)?;
    Ok(Json(inner.project_json(&inner.projects[i])).into_response())
}

/// `PUT /projects/:id` for the one attribute the Lambdas change, with the checks of
/// `app/services/projects/update_service.rb` and `app/policies/project_policy.rb`: Maintainer
/// and up may change it, only an Owner may set `owner` or change it away from `owner`.
async fn update_project(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let is_owner = inner.role(caller, &inner.projects[i]) == Some(Role::Owner);
    let project = &mut inner.projects[i];
    let Some(current) = project.pipeline_variables_role.clone() else {
        return Err(answers::no_known_project_attribute());
    };
    let Some(wanted) = optional_str(&body, "ci_pipeline_variables_minimum_override_role") else {
        return Err(answers::no_known_project_attribute());
    };
    if !["no_one_allowed", "developer", "maintainer", "owner"].contains(&wanted) {
        return Err(answers::bad_request("ci_pipeline_variables_minimum_override_role does not have a valid value"));
    }
    if wanted == "owner" && !is_owner {
        return Err(answers::override_role_owner_not_allowed());
    }
    if wanted != current && current == "owner" && !is_owner {
        return Err(answers::override_role_change_not_allowed());
    }
    project.pipeline_variables_role = Some(wanted.to_owned());
    let answer = inner.project_json(&inner.projects[i]);
    Ok(Json(answer).into_response())
}

/// GitLab's rule for masked values: at least 8 characters of the Base64 alphabet or `@:.~-`
/// (with `=` and `/` allowed too), on one line.
fn maskable(value: &str) -> bool {
    value.len() >= 8 && value.chars().all(|c| c.is_ascii_alphanumeric() || "+/=@:.~-_".contains(c))
}

fn variable_from(body: &Value, key: &str) -> Result<VariableState, ApiError> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(answers::variable_key_invalid());
    }
    let flag = |name: &str| body.get(name).and_then(Value::as_bool).unwrap_or(false);
    let value = optional_str(body, "value").unwrap_or_default().to_owned();
    let variable = VariableState {
        value,
        masked: flag("masked") || flag("masked_and_hidden"),
        hidden: flag("masked_and_hidden"),
        protected: flag("protected"),
        raw: flag("raw"),
    };
    if variable.masked && !maskable(&variable.value) {
        return Err(answers::variable_not_maskable());
    }
    Ok(variable)
}

fn variable_json(key: &str, scope: &str, v: &VariableState) -> Value {
    json!({ "key": key, "value": v.value, "masked": v.masked, "protected": v.protected, "raw": v.raw,
            "variable_type": "env_var", "environment_scope": scope })
}

async fn create_variable(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let key = optional_str(&body, "key").unwrap_or_default().to_owned();
    let scope = optional_str(&body, "environment_scope").unwrap_or("*").to_owned();
    let variable = variable_from(&body, &key)?;
    let mut inner = lock(&inner);
    // Variables are a Maintainer's (`admin_cicd_variables`).
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let project = &mut inner.projects[i];
    let slot = (key, scope);
    if project.variables.contains_key(&slot) {
        return Err(answers::variable_taken(&slot.0));
    }
    let answer = variable_json(&slot.0, &slot.1, &variable);
    project.variables.insert(slot, (variable, Instant::now()));
    created(answer)
}

async fn update_variable(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let variable = variable_from(&body, &key)?;
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let project = &mut inner.projects[i];
    let filter = query.get("filter[environment_scope]");
    let matches: Vec<(String, String)> =
        project.variables.keys().filter(|(k, scope)| *k == key && filter.is_none_or(|f| f == scope)).cloned().collect();
    let slot = match matches.as_slice() {
        [] => return Err(answers::not_found("Variable")),
        [one] => one.clone(),
        _ => return Err(answers::multiple_variables()),
    };
    let answer = variable_json(&slot.0, &slot.1, &variable);
    project.variables.insert(slot, (variable, Instant::now()));
    Ok(Json(answer).into_response())
}

fn decode_content(action: &Value, path: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    let content = optional_str(action, "content").unwrap_or_default();
    match optional_str(action, "encoding").unwrap_or("text") {
        "text" => Ok(content.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|_| answers::bad_request(format!("{path}: content is not valid base64"))),
        other => Err(answers::bad_request(format!("encoding {other} is not supported"))),
    }
}

async fn create_commit(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let branch = required_str(&body, "branch")?.to_owned();
    let message = required_str(&body, "commit_message")?.to_owned();
    let actions =
        body.get("actions").and_then(Value::as_array).ok_or_else(|| answers::bad_request("actions is missing"))?;
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Developer)?;
    if let Some(rule) = inner.commit_message_rule.clone().filter(|rule| !message.contains(rule.as_str())) {
        return Err(answers::push_rule_commit_message(&rule));
    }
    let commit_id = format!("{:040x}", inner.next_id());
    let protect_default_branch = inner.protect_default_branch;
    let project = &mut inner.projects[i];
    if !project.branches.contains_key(&branch) && !project.branches.is_empty() {
        return Err(answers::not_on_a_branch());
    }
    let mut files = project.branches.get(&branch).cloned().unwrap_or_default();
    for action in actions {
        let path = optional_str(action, "file_path").unwrap_or_default().to_owned();
        let content = decode_content(action, &path)?;
        let executable = action.get("execute_filemode").and_then(Value::as_bool).unwrap_or(false);
        match optional_str(action, "action") {
            Some("create") if files.contains_key(&path) => return Err(answers::file_exists()),
            Some("create" | "update") => {
                files.insert(path, FileState { content, executable });
            }
            other => return Err(answers::bad_request(format!("action {other:?} is not supported"))),
        }
    }
    if project.branches.is_empty() && branch == project.default_branch && protect_default_branch {
        project.protected_branches.insert(branch.clone());
    }
    project.branches.insert(branch.clone(), files);
    project.commits.push(CommitState { id: commit_id.clone(), message: message.clone(), branch, at: Instant::now() });
    created(json!({ "id": commit_id, "short_id": &commit_id[..8], "message": message }))
}

async fn get_branch(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, branch)): Path<(String, String)>,
) -> Answer {
    let inner = lock(&inner);
    let (i, _) = inner.visible_project(caller, &id)?;
    let commit = inner.projects[i]
        .commits
        .iter()
        .rev()
        .find(|c| c.branch == branch)
        .ok_or_else(|| answers::not_found("Branch"))?;
    Ok(Json(json!({ "name": branch, "commit": { "id": commit.id, "message": commit.message } })).into_response())
}

/// `POST /projects/:id/protected_branches` (lib/api/protected_branches.rb): a Maintainer's; 409
/// when the branch is protected already.
async fn protect_branch(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let name = required_str(&body, "name")?.to_owned();
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let project = &mut inner.projects[i];
    if !project.protected_branches.insert(name.clone()) {
        return Err(answers::protected_branch_exists(&name));
    }
    created(json!({ "name": name, "push_access_levels": [{ "access_level": 40 }] }))
}

fn pipeline_json(base_url: &str, project: &ProjectState, p: &PipelineState) -> Value {
    let at = p.created_at.format(&Rfc3339).expect("a formattable time");
    json!({
        "id": p.id, "ref": p.git_ref, "status": "created", "source": p.source,
        "created_at": at, "updated_at": at,
        "web_url": format!("{base_url}/{}/-/pipelines/{}", project.full_path(), p.id),
    })
}

async fn create_pipeline(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let git_ref = required_str(&body, "ref")?.to_owned();
    let variables: BTreeMap<String, String> = body
        .get("variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.get("key")?.as_str()?.to_owned(), v.get("value")?.as_str()?.to_owned())))
        .collect();
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Developer)?;
    let role = inner.role(caller, &inner.projects[i]).expect("visible");
    let pipeline_id = inner.next_id();
    let base_url = inner.base_url.clone();
    let project = &mut inner.projects[i];
    if !project.branches.contains_key(&git_ref) {
        return Err(answers::reference_not_found());
    }
    // `Ci::PipelinePolicy`/`ProjectCiCdSetting#override_pipeline_variables_allowed?`: no setting
    // (GitLab < 17.1) lets a Developer set variables; `no_one_allowed` lets nobody.
    let minimum = match &project.pipeline_variables_role {
        None => Some(Role::Developer),
        Some(setting) => Role::from_override_setting(setting),
    };
    if !variables.is_empty() && minimum.is_none_or(|minimum| role < minimum) {
        return Err(answers::pipeline_variables_not_allowed());
    }
    let pipeline = PipelineState {
        id: pipeline_id,
        git_ref,
        source: "api".into(),
        variables,
        created_at: OffsetDateTime::now_utc(),
    };
    let answer = pipeline_json(&base_url, project, &pipeline);
    project.pipelines.push(pipeline);
    created(answer)
}

/// `GET /projects/:id/pipelines` with the filters the Lambdas use (`ref`, `source`,
/// `updated_after`, `per_page`), newest first as GitLab's default `order_by=id&sort=desc`.
async fn list_pipelines(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Answer {
    let inner = lock(&inner);
    let (i, _) = inner.visible_project(caller, &id)?;
    let project = &inner.projects[i];
    let after = match query.get("updated_after") {
        Some(text) => {
            Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|_| answers::bad_request("updated_after is invalid"))?)
        }
        None => None,
    };
    let per_page = query.get("per_page").and_then(|n| n.parse().ok()).unwrap_or(20usize).min(100);
    let listed: Vec<Value> = project
        .pipelines
        .iter()
        .rev()
        .filter(|p| query.get("ref").is_none_or(|r| *r == p.git_ref))
        .filter(|p| query.get("source").is_none_or(|s| *s == p.source))
        .filter(|p| after.is_none_or(|after| p.created_at >= after))
        .take(per_page)
        .map(|p| pipeline_json(&inner.base_url, project, p))
        .collect();
    Ok(Json(Value::Array(listed)).into_response())
}

/// `GET /projects/:id/pipelines/:pipeline_id/variables` (doc/api/pipelines.md).
async fn pipeline_variables(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, pipeline)): Path<(String, u64)>,
) -> Answer {
    let inner = lock(&inner);
    let (i, role) = inner.visible_project(caller, &id)?;
    if role < Role::Developer {
        return Err(answers::forbidden());
    }
    let pipeline =
        inner.projects[i].pipelines.iter().find(|p| p.id == pipeline).ok_or_else(|| answers::not_found("Pipeline"))?;
    let variables: Vec<Value> = pipeline
        .variables
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value, "variable_type": "env_var" }))
        .collect();
    Ok(Json(Value::Array(variables)).into_response())
}
