//! Projects and their CI/CD variables: create (with GitLab's namespace, limit and duplicate
//! checks), read, update (the pipeline-variables role, fork and merged results pipelines, the ID
//! token's sub claim), and variables per environment scope.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{Answer, body_json, created, lock, optional_str, required_str};
use crate::gitlab::answers::{self, ApiError};
use crate::gitlab::state::*;

pub(super) async fn create_project(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    bytes: Bytes,
) -> Answer {
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
    let project = ProjectState {
        description: optional_str(&body, "description").unwrap_or_default().to_owned(),
        visibility: optional_str(&body, "visibility").unwrap_or("private").to_owned(),
        default_branch: optional_str(&body, "default_branch").unwrap_or("main").to_owned(),
        ..inner.new_project(namespace_id, &name, &path, (user_id, creator_role))
    };
    let answer = inner.project_json(&project);
    inner.projects.push(project);
    created(answer)
}

pub(super) async fn get_project(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let inner = lock(&inner);
    let (i, _) = inner.visible_project(caller, &id)?;
    Ok(Json(inner.project_json(&inner.projects[i])).into_response())
}

/// `PUT /projects/:id` for the attributes the Lambdas change, with the checks of
/// `app/services/projects/update_service.rb` and `app/policies/project_policy.rb`: Maintainer
/// and up may change them, only an Owner may set the pipeline-variables role to `owner` or change
/// it away from `owner`. An attribute this GitLab (or tier) has no setting for is dropped, as
/// Grape drops undeclared parameters; with none left, `at_least_one_of` refuses the request.
/// Nothing changes unless every attribute passes.
pub(super) async fn update_project(
    State(inner): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let body = body_json(&bytes)?;
    let mut inner = lock(&inner);
    let i = inner.writable_project(caller, &id, Role::Maintainer)?;
    let is_owner = inner.role(caller, &inner.projects[i]) == Some(Role::Owner);
    let mut project = inner.projects[i].clone();
    let mut known = 0;
    let wanted = optional_str(&body, "ci_pipeline_variables_minimum_override_role");
    if let (Some(current), Some(wanted)) = (project.pipeline_variables_role.as_deref(), wanted) {
        if !["no_one_allowed", "developer", "maintainer", "owner"].contains(&wanted) {
            return Err(answers::bad_request(
                "ci_pipeline_variables_minimum_override_role does not have a valid value",
            ));
        }
        if wanted == "owner" && !is_owner {
            return Err(answers::override_role_owner_not_allowed());
        }
        if wanted != current && current == "owner" && !is_owner {
            return Err(answers::override_role_change_not_allowed());
        }
        project.pipeline_variables_role = Some(wanted.to_owned());
        known += 1;
    }
    let flag = |key: &str| body.get(key).and_then(Value::as_bool);
    if let Some(allow) = flag("ci_allow_fork_pipelines_to_run_in_parent_project") {
        project.fork_pipelines_in_parent = allow;
        known += 1;
    }
    for (key, setting) in [
        ("merge_pipelines_enabled", &mut project.merged_results_pipelines),
        ("merge_trains_enabled", &mut project.merge_trains),
    ] {
        if let (Some(setting), Some(value)) = (setting.as_mut(), flag(key)) {
            *setting = value;
            known += 1;
        }
    }
    if let Some(components) = body.get("ci_id_token_sub_claim_components").and_then(Value::as_array) {
        let components: Vec<String> = components.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        let refusals = inner.sub_claim_components.refusals(&components);
        if !refusals.is_empty() {
            return Err(answers::invalid_sub_claim_components(&refusals));
        }
        project.sub_claim_components = components;
        known += 1;
    }
    if known == 0 {
        return Err(answers::no_known_project_attribute());
    }
    let answer = inner.project_json(&project);
    inner.projects[i] = project;
    Ok(Json(answer).into_response())
}

/// GitLab's rule for masked values: at least 8 characters of the Base64 alphabet or `@:.~-`
/// (with `=` and `/` allowed too), on one line.
pub(super) fn maskable(value: &str) -> bool {
    value.len() >= 8 && value.chars().all(|c| c.is_ascii_alphanumeric() || "+/=@:.~-_".contains(c))
}

pub(super) fn variable_from(body: &Value, key: &str) -> Result<VariableState, ApiError> {
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

pub(super) fn variable_json(key: &str, scope: &str, v: &VariableState) -> Value {
    json!({ "key": key, "value": v.value, "masked": v.masked, "protected": v.protected, "raw": v.raw,
            "variable_type": "env_var", "environment_scope": scope })
}

pub(super) async fn create_variable(
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

pub(super) async fn update_variable(
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
