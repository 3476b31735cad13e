//! A stateful stand-in for GitLab's REST API v4, behaving as GitLab documents for the calls the
//! Lambdas make: `PRIVATE-TOKEN` auth (401), JSON error bodies, 404s for what does not exist,
//! 400 "has already been taken" for duplicate project paths and variable keys, masked-variable
//! validation, commits that create the branch of an empty repository, and pipelines on a ref.
//!
//! Tests can inject faults (429 with `Retry-After`, 5xx), add latency to every request, and read
//! back every request received and the resulting state.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

/// A request as the double received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// The `PRIVATE-TOKEN` header, so tests can check which token was sent.
    pub token: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableState {
    pub value: String,
    pub masked: bool,
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
    pub variables: BTreeMap<String, String>,
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
    /// Variables with the time each was last written.
    pub variables: BTreeMap<String, (VariableState, Instant)>,
    pub commits: Vec<CommitState>,
    /// The files at the tip of each branch.
    pub branches: BTreeMap<String, BTreeMap<String, FileState>>,
    pub pipelines: Vec<PipelineState>,
}

impl ProjectState {
    pub fn full_path(&self) -> String {
        format!("{}/{}", self.namespace_path, self.path)
    }
}

struct Fault {
    status: StatusCode,
    retry_after: Option<u64>,
}

struct Inner {
    base_url: String,
    token: String,
    user_namespace: (u64, String),
    groups: BTreeMap<u64, String>,
    projects: Vec<ProjectState>,
    next_id: u64,
    requests: Vec<Request>,
    faults: VecDeque<Fault>,
    latency: Duration,
}

type Shared = Arc<Mutex<Inner>>;

pub struct GitLabDouble {
    addr: SocketAddr,
    inner: Shared,
}

/// The user every valid token belongs to.
pub const USER_ID: u64 = 7;
pub const USERNAME: &str = "platform-bot";

impl GitLabDouble {
    /// Starts the double on a free loopback port; `token` is the one valid access token.
    pub async fn start(token: &str) -> GitLabDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let inner = Arc::new(Mutex::new(Inner {
            base_url: format!("http://{addr}"),
            token: token.to_owned(),
            user_namespace: (1000, USERNAME.to_owned()),
            groups: BTreeMap::new(),
            projects: Vec::new(),
            next_id: 2000,
            requests: Vec::new(),
            faults: VecDeque::new(),
            latency: Duration::ZERO,
        }));
        let app = Router::new()
            .route("/api/v4/user", get(current_user))
            .route("/api/v4/groups/{id}", get(get_group))
            .route("/api/v4/projects", post(create_project))
            .route("/api/v4/projects/{id}", get(get_project))
            .route("/api/v4/projects/{id}/variables", post(create_variable))
            .route("/api/v4/projects/{id}/variables/{key}", put(update_variable))
            .route("/api/v4/projects/{id}/repository/commits", post(create_commit))
            .route("/api/v4/projects/{id}/repository/branches/{branch}", get(get_branch))
            .route("/api/v4/projects/{id}/pipeline", post(create_pipeline))
            .fallback(|| async { error(StatusCode::NOT_FOUND, json!("404 Not Found")) })
            .layer(axum::middleware::from_fn_with_state(inner.clone(), record_and_authenticate))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("GitLab double stopped") });
        GitLabDouble { addr, inner }
    }

    /// The instance URL, as a GitLab server URL parameter would give it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a group and returns its namespace ID.
    pub fn add_group(&self, full_path: &str) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id();
        inner.groups.insert(id, full_path.to_owned());
        id
    }

    /// The namespace ID of the token owner's personal namespace.
    pub fn user_namespace_id(&self) -> u64 {
        self.lock().user_namespace.0
    }

    /// The next `times` requests (after authentication) get `status`, with `Retry-After`
    /// when given, instead of being served.
    pub fn fail_next(&self, times: usize, status: u16, retry_after: Option<u64>) {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        let mut inner = self.lock();
        inner.faults.extend((0..times).map(|_| Fault { status, retry_after }));
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

    /// Creates a project directly, as if someone had made it by hand.
    pub fn seed_project(&self, namespace_id: u64, path: &str, description: &str) -> u64 {
        let mut inner = self.lock();
        let namespace_path = inner.namespace_path(namespace_id).expect("a known namespace");
        let id = inner.next_id();
        inner.projects.push(ProjectState {
            id,
            name: path.to_owned(),
            path: path.to_owned(),
            namespace_id,
            namespace_path,
            description: description.to_owned(),
            visibility: "private".into(),
            default_branch: "main".into(),
            variables: BTreeMap::new(),
            commits: Vec::new(),
            branches: BTreeMap::new(),
            pipelines: Vec::new(),
        });
        id
    }

    /// Gives a project a branch with one commit, as if it had been seeded already.
    pub fn seed_branch(&self, project_id: u64, branch: &str) {
        let mut inner = self.lock();
        let commit_id = format!("{:040x}", inner.next_id());
        let project = inner.projects.iter_mut().find(|p| p.id == project_id).expect("a known project");
        project.branches.insert(branch.to_owned(), BTreeMap::new());
        project.commits.push(CommitState {
            id: commit_id,
            message: "Initial commit".into(),
            branch: branch.to_owned(),
            at: Instant::now(),
        });
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

    fn namespace_path(&self, id: u64) -> Option<String> {
        if id == self.user_namespace.0 {
            return Some(self.user_namespace.1.clone());
        }
        self.groups.get(&id).cloned()
    }

    /// `:id` of a project URL: a numeric ID or a URL-encoded full path (axum decoded it).
    fn project_index(&self, id: &str) -> Option<usize> {
        match id.parse::<u64>() {
            Ok(n) => self.projects.iter().position(|p| p.id == n),
            Err(_) => self.projects.iter().position(|p| p.full_path() == id),
        }
    }

    fn project_json(&self, p: &ProjectState) -> Value {
        let full_path = p.full_path();
        let default_branch = if p.branches.is_empty() { Value::Null } else { json!(p.default_branch) };
        json!({
            "id": p.id,
            "name": p.name,
            "path": p.path,
            "path_with_namespace": full_path,
            "description": p.description,
            "visibility": p.visibility,
            "default_branch": default_branch,
            "web_url": format!("{}/{full_path}", self.base_url),
            "http_url_to_repo": format!("{}/{full_path}.git", self.base_url),
            "namespace": { "id": p.namespace_id, "full_path": p.namespace_path },
        })
    }
}

/// A GitLab error answer: the status and the `message` of its JSON body.
struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

type Answer = Result<Response, ApiError>;

fn error(status: StatusCode, message: Value) -> ApiError {
    ApiError(status, message)
}

fn not_found(what: &str) -> ApiError {
    error(StatusCode::NOT_FOUND, json!(format!("404 {what} Not Found")))
}

async fn record_and_authenticate(
    State(inner): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let token = parts.headers.get("private-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (latency, fault, authorised) = {
        let mut inner = inner.lock().expect("state lock");
        inner.requests.push(Request {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            token: token.clone(),
            at: Instant::now(),
        });
        let authorised = token.as_deref() == Some(inner.token.as_str());
        let fault = if authorised { inner.faults.pop_front() } else { None };
        (inner.latency, fault, authorised)
    };
    tokio::time::sleep(latency).await;
    if !authorised {
        return error(StatusCode::UNAUTHORIZED, json!("401 Unauthorized")).into_response();
    }
    if let Some(fault) = fault {
        let reason = fault.status.canonical_reason().unwrap_or("error");
        let mut response = error(fault.status, json!(reason)).into_response();
        if let Some(seconds) = fault.retry_after {
            response.headers_mut().insert("retry-after", seconds.into());
        }
        return response;
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

async fn current_user() -> Json<Value> {
    Json(json!({ "id": USER_ID, "username": USERNAME }))
}

fn body_json(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, json!("400 Bad request - body is not JSON")))
}

fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, json!(format!("{field} is missing"))))
}

fn optional_str<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn create_project(State(inner): State<Shared>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let name = required_str(&body, "name")?.to_owned();
    let path = optional_str(&body, "path").unwrap_or(&name).to_owned();
    let mut inner = inner.lock().expect("state lock");
    let namespace_id = body.get("namespace_id").and_then(Value::as_u64).unwrap_or(inner.user_namespace.0);
    let namespace_path = inner
        .namespace_path(namespace_id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, json!("404 Namespace Not Found")))?;
    let siblings: Vec<&ProjectState> = inner.projects.iter().filter(|p| p.namespace_id == namespace_id).collect();
    let mut taken = serde_json::Map::new();
    if siblings.iter().any(|p| p.name == name) {
        taken.insert("name".into(), json!(["has already been taken"]));
    }
    if siblings.iter().any(|p| p.path == path) {
        taken.insert("path".into(), json!(["has already been taken"]));
    }
    if !taken.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, Value::Object(taken)));
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
        variables: BTreeMap::new(),
        commits: Vec::new(),
        branches: BTreeMap::new(),
        pipelines: Vec::new(),
    };
    let answer = inner.project_json(&project);
    inner.projects.push(project);
    created(answer)
}

async fn get_group(State(inner): State<Shared>, Path(id): Path<u64>) -> Answer {
    let inner = inner.lock().expect("state lock");
    let full_path = inner.groups.get(&id).ok_or_else(|| not_found("Group"))?;
    Ok(Json(json!({ "id": id, "full_path": full_path, "path": full_path.rsplit('/').next() })).into_response())
}

async fn get_project(State(inner): State<Shared>, Path(id): Path<String>) -> Answer {
    let inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    Ok(Json(inner.project_json(&inner.projects[i])).into_response())
}

/// GitLab's rule for masked values: at least 8 characters of the Base64 alphabet or `@:.~-`
/// (with `=` and `/` allowed too), on one line.
fn maskable(value: &str) -> bool {
    value.len() >= 8 && value.chars().all(|c| c.is_ascii_alphanumeric() || "+/=@:.~-_".contains(c))
}

fn variable_from(body: &Value, key: &str) -> Result<VariableState, ApiError> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(error(StatusCode::BAD_REQUEST, json!({ "key": ["can contain only letters, digits and '_'."] })));
    }
    let flag = |name: &str| body.get(name).and_then(Value::as_bool).unwrap_or(false);
    let value = optional_str(body, "value").unwrap_or_default().to_owned();
    let variable = VariableState { value, masked: flag("masked"), protected: flag("protected"), raw: flag("raw") };
    if variable.masked && !maskable(&variable.value) {
        return Err(error(StatusCode::BAD_REQUEST, json!({ "value": ["is invalid"] })));
    }
    Ok(variable)
}

fn variable_json(key: &str, v: &VariableState) -> Value {
    json!({ "key": key, "value": v.value, "masked": v.masked, "protected": v.protected, "raw": v.raw, "variable_type": "env_var" })
}

async fn create_variable(State(inner): State<Shared>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let key = optional_str(&body, "key").unwrap_or_default().to_owned();
    let variable = variable_from(&body, &key)?;
    let mut inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    let project = &mut inner.projects[i];
    if project.variables.contains_key(&key) {
        return Err(error(StatusCode::BAD_REQUEST, json!({ "key": [format!("({key}) has already been taken")] })));
    }
    let answer = variable_json(&key, &variable);
    project.variables.insert(key, (variable, Instant::now()));
    created(answer)
}

async fn update_variable(State(inner): State<Shared>, Path((id, key)): Path<(String, String)>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let variable = variable_from(&body, &key)?;
    let mut inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    let project = &mut inner.projects[i];
    if !project.variables.contains_key(&key) {
        return Err(not_found("Variable"));
    }
    let answer = variable_json(&key, &variable);
    project.variables.insert(key, (variable, Instant::now()));
    Ok(Json(answer).into_response())
}

fn decode_content(action: &Value, path: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    let content = optional_str(action, "content").unwrap_or_default();
    match optional_str(action, "encoding").unwrap_or("text") {
        "text" => Ok(content.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|_| error(StatusCode::BAD_REQUEST, json!(format!("{path}: content is not valid base64")))),
        other => Err(error(StatusCode::BAD_REQUEST, json!(format!("encoding {other} is not supported")))),
    }
}

async fn create_commit(State(inner): State<Shared>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let branch = required_str(&body, "branch")?.to_owned();
    let message = required_str(&body, "commit_message")?.to_owned();
    let actions = body
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, json!("actions is missing")))?;
    let mut inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    let commit_id = format!("{:040x}", inner.next_id());
    let project = &mut inner.projects[i];
    if !project.branches.contains_key(&branch) && !project.branches.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            json!("You can only create or edit files when you are on a branch"),
        ));
    }
    let mut files = project.branches.get(&branch).cloned().unwrap_or_default();
    for action in actions {
        let path = optional_str(action, "file_path").unwrap_or_default().to_owned();
        let content = decode_content(action, &path)?;
        let executable = action.get("execute_filemode").and_then(Value::as_bool).unwrap_or(false);
        match optional_str(action, "action") {
            Some("create") if files.contains_key(&path) => {
                return Err(error(StatusCode::BAD_REQUEST, json!("A file with this name already exists")));
            }
            Some("create" | "update") => {
                files.insert(path, FileState { content, executable });
            }
            other => {
                return Err(error(StatusCode::BAD_REQUEST, json!(format!("action {other:?} is not supported"))));
            }
        }
    }
    project.branches.insert(branch.clone(), files);
    project.commits.push(CommitState { id: commit_id.clone(), message: message.clone(), branch, at: Instant::now() });
    created(json!({ "id": commit_id, "short_id": &commit_id[..8], "message": message }))
}

async fn get_branch(State(inner): State<Shared>, Path((id, branch)): Path<(String, String)>) -> Answer {
    let inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    let commit =
        inner.projects[i].commits.iter().rev().find(|c| c.branch == branch).ok_or_else(|| not_found("Branch"))?;
    Ok(Json(json!({ "name": branch, "commit": { "id": commit.id, "message": commit.message } })).into_response())
}

async fn create_pipeline(State(inner): State<Shared>, Path(id): Path<String>, bytes: Bytes) -> Answer {
    let body = body_json(&bytes)?;
    let git_ref = required_str(&body, "ref")?.to_owned();
    let variables: BTreeMap<String, String> = body
        .get("variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.get("key")?.as_str()?.to_owned(), v.get("value")?.as_str()?.to_owned())))
        .collect();
    let mut inner = inner.lock().expect("state lock");
    let i = inner.project_index(&id).ok_or_else(|| not_found("Project"))?;
    let pipeline_id = inner.next_id();
    let base_url = inner.base_url.clone();
    let project = &mut inner.projects[i];
    if !project.branches.contains_key(&git_ref) {
        return Err(error(StatusCode::BAD_REQUEST, json!({ "base": ["Reference not found"] })));
    }
    let web_url = format!("{base_url}/{}/-/pipelines/{pipeline_id}", project.full_path());
    project.pipelines.push(PipelineState { id: pipeline_id, git_ref: git_ref.clone(), variables });
    created(json!({ "id": pipeline_id, "ref": git_ref, "status": "created", "web_url": web_url }))
}
