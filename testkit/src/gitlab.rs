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
mod routes;
mod state;
pub mod tls;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;

pub use self::state::{
    BranchProtection, CommitState, DEFAULT_SUB_CLAIM_COMPONENTS, FileState, PipelineState, PipelineVariablesDefault,
    ProjectState, Request, Role, SubClaimComponents, TokenSpec, VariableState,
};
use self::state::{FaultKind, Inner, Shared, Token, User};

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
            premium: false,
            sub_claim_components: SubClaimComponents::WithProjectIdAndProtection,
            commit_message_rule: None,
            default_branch_protection: Some(BranchProtection::MAINTAINERS),
            next_id: 2000,
            requests: Vec::new(),
            faults: VecDeque::new(),
            latency: Duration::ZERO,
        }));
        let double = GitLabDouble { url, inner: inner.clone() };
        double.add_user_token(USER_ID, 1000, token, TokenSpec::owner(USERNAME, 300));
        let app = routes::router(inner);
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
    /// the server URL, `sub` made of the project's `ci_id_token_sub_claim_components`
    /// (`id_token_sub`; the default for a project the double does not hold), `aud`, and the
    /// project, ref and environment claims, `ref_protected` as the branch's protection says.
    /// Unsigned (`alg: none`): the stand-ins that take it (moto's STS) verify no signature, and
    /// the tests decide trust from its claims with the IAM evaluator.
    pub fn id_token(&self, project_path: &str, branch: &str, aud: &str, environment: Option<&str>) -> String {
        use base64::Engine as _;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let namespace = project_path.rsplit_once('/').map_or("", |(namespace, _)| namespace);
        let project = self.project(project_path);
        let protected = project.as_ref().is_none_or(|p| p.protected_branches.contains_key(branch));
        let mut claims = serde_json::json!({
            "iss": self.url,
            "aud": aud,
            "namespace_path": namespace,
            "project_path": project_path,
            "ref": branch,
            "ref_type": "branch",
            "ref_protected": protected.to_string(),
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
        });
        if let Some(project) = &project {
            claims["project_id"] = project.id.to_string().into();
        }
        if let Some(environment) = environment {
            claims["environment"] = environment.into();
            claims["environment_protected"] = "false".into();
        }
        let default = DEFAULT_SUB_CLAIM_COMPONENTS.map(String::from).to_vec();
        let components = project.as_ref().map_or(&default, |p| &p.sub_claim_components);
        claims["sub"] = id_token_sub(components, &claims).into();
        let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.", encode(&serde_json::json!({ "alg": "none", "typ": "JWT" })), encode(&claims))
    }

    /// Which sub claim components projects accept: as the GitLab version the test plays.
    pub fn set_sub_claim_components(&self, accepted: SubClaimComponents) {
        self.lock().sub_claim_components = accepted;
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

    /// Whether projects created from now on have Premium's merged results and merge train
    /// settings.
    pub fn set_premium(&self, premium: bool) {
        self.lock().premium = premium;
    }

    /// Changes project `full_path` as a Maintainer may in its settings.
    pub fn edit_project(&self, full_path: &str, edit: impl FnOnce(&mut ProjectState)) {
        let mut inner = self.lock();
        edit(inner.projects.iter_mut().find(|p| p.full_path() == full_path).expect("a project of the double"));
    }

    /// How the first push to a project protects its default branch; `None`: not at all.
    pub fn set_default_branch_protection(&self, protection: Option<BranchProtection>) {
        self.lock().default_branch_protection = protection;
    }

    /// Sets `branch` of project `full_path` protected as `protection`, as a Maintainer may in
    /// the project's settings.
    pub fn set_branch_protection(&self, full_path: &str, branch: &str, protection: BranchProtection) {
        self.edit_project(full_path, |project| {
            project.protected_branches.insert(branch.to_owned(), protection);
        });
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

    /// Every token the double knows, and whether it is revoked.
    pub fn tokens(&self) -> Vec<(String, bool)> {
        self.lock().tokens.iter().map(|t| (t.value.clone(), t.revoked)).collect()
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
        let project = ProjectState {
            description: description.to_owned(),
            ..inner.new_project(namespace_id, path, path, (USER_ID, Role::Owner))
        };
        let id = project.id;
        inner.projects.push(project);
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

/// An ID token's `sub` as lib/gitlab/ci/jwt_v2.rb composes it: each of the project's
/// `components`, in order, that the job's `claims` give a value, as `name:value`, joined by `:`.
pub fn id_token_sub(components: &[String], claims: &Value) -> String {
    let present = components.iter().filter_map(|name| Some((name, claims.get(name)?.as_str()?)));
    present.flat_map(|(name, value)| [name.as_str(), value]).collect::<Vec<_>>().join(":")
}
