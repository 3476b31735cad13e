//! A project's repository and pipelines: commits (with the push rule), branches and their
//! protection, pipelines with their variables, listed as the pipelines API lists them.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Answer, body_json, created, lock, optional_str, required_str};
use crate::gitlab::answers::{self, ApiError};
use crate::gitlab::state::*;

pub(super) fn decode_content(action: &Value, path: &str) -> Result<Vec<u8>, ApiError> {
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

pub(super) async fn create_commit(
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
    let default_protection = inner.default_branch_protection;
    let role = inner.role(caller, &inner.projects[i]);
    let project = &mut inner.projects[i];
    // lib/gitlab/checks/branch_check.rb: a protected branch takes pushes of its push level and up.
    if project.protected_branches.get(&branch).is_some_and(|rule| role < Some(rule.push)) {
        return Err(answers::push_to_protected_branch());
    }
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
    // The first push to the default branch protects it, unless a rule exists already.
    if let Some(protection) =
        default_protection.filter(|_| project.branches.is_empty() && branch == project.default_branch)
    {
        project.protected_branches.entry(branch.clone()).or_insert(protection);
    }
    project.branches.insert(branch.clone(), files);
    project.commits.push(CommitState { id: commit_id.clone(), message: message.clone(), branch, at: Instant::now() });
    created(json!({ "id": commit_id, "short_id": &commit_id[..8], "message": message }))
}

pub(super) async fn get_branch(
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
/// when the branch is protected already. `push_access_level` and `merge_access_level` default
/// to Maintainer, `allow_force_push` to false.
pub(super) async fn protect_branch(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let name = required_str(&body, "name")?.to_owned();
    let level = |key: &str| match body.get(key).and_then(Value::as_u64) {
        None => Ok(Role::Maintainer),
        Some(30) => Ok(Role::Developer),
        Some(40) => Ok(Role::Maintainer),
        Some(other) => Err(answers::bad_request(format!("{key} does not have a valid value: {other}"))),
    };
    let protection = BranchProtection {
        push: level("push_access_level")?,
        merge: level("merge_access_level")?,
        allow_force_push: body.get("allow_force_push").and_then(Value::as_bool).unwrap_or(false),
    };
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let project = &mut inner.projects[i];
    if project.protected_branches.contains_key(&name) {
        return Err(answers::protected_branch_exists(&name));
    }
    project.protected_branches.insert(name.clone(), protection);
    created(protected_branch_json(&name, &protection))
}

/// `GET /projects/:id/protected_branches/:name`: the rule, or 404.
pub(super) async fn get_protected_branch(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> Answer {
    let inner = lock(&inner);
    let (i, _) = inner.visible_project(caller, &id)?;
    let rule = inner.projects[i].protected_branches.get(&name).ok_or_else(|| answers::not_found(""))?;
    Ok(Json(protected_branch_json(&name, rule)).into_response())
}

/// `DELETE /projects/:id/protected_branches/:name`: a Maintainer's (the rule's default
/// `unprotect_access_level`); 204, or 404 for a branch not protected.
pub(super) async fn unprotect_branch(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> Answer {
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    match inner.projects[i].protected_branches.remove(&name) {
        Some(_) => Ok(axum::http::StatusCode::NO_CONTENT.into_response()),
        None => Err(answers::not_found("")),
    }
}

/// The `ProtectedBranch` entity (lib/api/entities/protected_branch.rb).
fn protected_branch_json(name: &str, rule: &BranchProtection) -> Value {
    let level = |role: Role| {
        let description = if role == Role::Developer { "Developers + Maintainers" } else { "Maintainers" };
        json!([{ "access_level": role as u8, "access_level_description": description }])
    };
    json!({ "name": name, "push_access_levels": level(rule.push), "merge_access_levels": level(rule.merge),
            "allow_force_push": rule.allow_force_push })
}

pub(super) fn pipeline_json(base_url: &str, project: &ProjectState, p: &PipelineState) -> Value {
    let at = p.created_at.format(&Rfc3339).expect("a formattable time");
    json!({
        "id": p.id, "ref": p.git_ref, "status": "created", "source": p.source,
        "created_at": at, "updated_at": at,
        "web_url": format!("{base_url}/{}/-/pipelines/{}", project.full_path(), p.id),
    })
}

pub(super) async fn create_pipeline(
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
pub(super) async fn list_pipelines(
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
pub(super) async fn pipeline_variables(
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
