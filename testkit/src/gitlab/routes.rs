//! The HTTP side of the double: one handler per GitLab endpoint the Lambdas call, each answering
//! as GitLab does (its error bodies in `answers.rs`, with their sources), behind a layer that
//! records every request, authenticates its token and plays the faults a test queued.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

mod projects;
mod repository;

use self::projects::{create_project, create_variable, get_project, update_project, update_variable};
use self::repository::{
    create_commit, create_pipeline, get_branch, get_protected_branch, list_pipelines, pipeline_variables,
    protect_branch, unprotect_branch,
};
use super::answers::{self, ApiError};
use super::state::{Caller, FaultKind, Inner, Request, Shared, Token, today};

/// GitLab's REST API v4, as far as the Lambdas call it.
pub(super) fn router(inner: Shared) -> Router {
    Router::new()
        .route("/api/v4/user", get(current_user))
        .route("/api/v4/personal_access_tokens/self", get(token_self))
        .route("/api/v4/personal_access_tokens/self/rotate", post(rotate_token_self))
        .route("/api/v4/groups/{id}", get(get_group))
        .route("/api/v4/projects", post(create_project))
        .route("/api/v4/projects/{id}", get(get_project).put(update_project))
        .route("/api/v4/projects/{id}/variables", post(create_variable))
        .route("/api/v4/projects/{id}/variables/{key}", axum::routing::put(update_variable))
        .route("/api/v4/projects/{id}/repository/commits", post(create_commit))
        .route("/api/v4/projects/{id}/repository/branches/{branch}", get(get_branch))
        .route("/api/v4/projects/{id}/protected_branches", post(protect_branch))
        .route("/api/v4/projects/{id}/protected_branches/{name}", get(get_protected_branch).delete(unprotect_branch))
        .route("/api/v4/projects/{id}/pipeline", post(create_pipeline))
        .route("/api/v4/projects/{id}/pipelines", get(list_pipelines))
        .route("/api/v4/projects/{id}/pipelines/{pipeline}/variables", get(pipeline_variables))
        .fallback(|| async { answers::not_found("") })
        .layer(axum::middleware::from_fn_with_state(inner.clone(), record_and_authenticate))
        .with_state(inner)
}

pub(super) type Answer = Result<Response, ApiError>;

pub(super) fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
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
    let token = &inner.tokens[calling_token(&inner, &request_token)];
    Json(token_json(token, inner.users[caller.0].id))
}

/// The index of the token a request authenticated with.
fn calling_token(inner: &Inner, headers: &axum::http::HeaderMap) -> usize {
    let value = headers.get("private-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    inner.tokens.iter().position(|t| t.value == value).expect("authenticated by the middleware")
}

/// The `PersonalAccessToken` entity (lib/api/entities/personal_access_token.rb).
fn token_json(token: &Token, user_id: u64) -> Value {
    json!({
        "id": token.id,
        "name": "sagemaker-projects",
        "revoked": token.revoked,
        "created_at": "2026-01-05T09:00:00.000Z",
        "scopes": token.scopes,
        "user_id": user_id,
        "active": !token.revoked,
        "expires_at": token.expires_at.map(|d| d.to_string()),
    })
}

/// `POST /personal_access_tokens/self/rotate` (lib/api/personal_access_tokens.rb, GitLab 16.10+;
/// `PersonalAccessTokens::RotateService`): the calling token is revoked first, then a new one
/// with its scopes is made, expiring on `expires_at` (one week from today without it).
async fn rotate_token_self(
    State(inner): State<Shared>,
    request_token: axum::http::HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = if bytes.is_empty() { json!({}) } else { body_json(&bytes)? };
    let expires_at = match body.get("expires_at").and_then(Value::as_str) {
        Some(date) => time::Date::parse(date, &time::format_description::well_known::Iso8601::DATE)
            .map_err(|_| answers::bad_request("expires_at is invalid"))?,
        None => today() + time::Duration::days(7),
    };
    let mut inner = lock(&inner);
    let i = calling_token(&inner, &request_token);
    inner.tokens[i].revoked = true;
    let id = inner.next_id();
    let new = Token {
        value: format!("glpat-rotated{id:015}"),
        id,
        user: inner.tokens[i].user,
        scopes: inner.tokens[i].scopes.clone(),
        expires_at: Some(expires_at),
        revoked: false,
    };
    let mut answer = token_json(&new, inner.users[new.user].id);
    // Only the answer that makes a token shows its value.
    answer["token"] = new.value.clone().into();
    inner.tokens.push(new);
    Ok(Json(answer))
}

pub(super) fn body_json(bytes: &Bytes) -> Result<Value, ApiError> {
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

pub(super) fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
