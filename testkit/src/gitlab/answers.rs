//! Every error answer the GitLab double gives, each as real GitLab gives it, with the source file
//! (in `gitlab-org/gitlab`) or documentation page it follows. One place, so that a test asserting
//! on an error asserts on GitLab's words, and a change of GitLab's words is made once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn message(status: StatusCode, message: Value) -> ApiError {
    ApiError(status, json!({ "message": message }))
}

/// `lib/api/helpers.rb` `unauthorized!`: no token, or one GitLab does not know.
pub fn unauthorized() -> ApiError {
    message(StatusCode::UNAUTHORIZED, json!("401 Unauthorized"))
}

/// `lib/api/api_guard.rb`: `Gitlab::Auth::ExpiredError` as an OAuth `invalid_token` answer.
pub fn token_expired() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, json!({ "error": "invalid_token", "error_description": "Token has expired." }))
}

/// `lib/api/api_guard.rb`: `Gitlab::Auth::RevokedError`.
pub fn token_revoked() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        json!({ "error": "invalid_token", "error_description": "Token has been revoked." }),
    )
}

/// `lib/api/api_guard.rb`: `Gitlab::Auth::InsufficientScopeError` (a `read_api` token writing,
/// say), with the scopes that would have done.
pub fn insufficient_scope(scopes: &[&str]) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        json!({
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": scopes.join(" "),
        }),
    )
}

/// `lib/api/helpers.rb` `forbidden!`: the user's role is too low, or the project is archived
/// (an archived project is read-only for everyone: `app/policies/project_policy.rb`).
pub fn forbidden() -> ApiError {
    message(StatusCode::FORBIDDEN, json!("403 Forbidden"))
}

/// `lib/api/projects.rb` `post`: `error!(project.errors[:limit_reached], 403)`, with the texts of
/// `app/models/project.rb` `check_personal_projects_limit`.
pub fn project_limit_reached(limit: usize) -> ApiError {
    let text = if limit == 0 {
        "Personal project creation is not allowed. Please contact your administrator with questions".to_owned()
    } else {
        format!("Your project limit is {limit} projects! Please contact your administrator to increase it")
    };
    message(StatusCode::FORBIDDEN, json!([text]))
}

/// `app/services/projects/create_service.rb`: a namespace that does not exist or that the user
/// may not create projects in; `render_validation_error!` makes it a 400.
pub fn namespace_not_valid() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "namespace": ["is not valid"] }))
}

/// `render_validation_error!` of a project whose name and/or path a sibling has.
pub fn project_taken(fields: &[&str]) -> ApiError {
    let fields: serde_json::Map<String, Value> =
        fields.iter().map(|field| ((*field).to_owned(), json!(["has already been taken"]))).collect();
    message(StatusCode::BAD_REQUEST, Value::Object(fields))
}

/// `app/models/ci/variable.rb`: the key (within its environment scope) exists.
pub fn variable_taken(key: &str) -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "key": [format!("({key}) has already been taken")] }))
}

/// `app/models/concerns/ci/maskable.rb`: a masked value GitLab cannot mask.
pub fn variable_not_maskable() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "value": ["is invalid"] }))
}

pub fn variable_key_invalid() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "key": ["can contain only letters, digits and '_'."] }))
}

/// `lib/api/helpers/variables_helpers.rb` `find_variable`: `conflict!` when the key exists under
/// several environment scopes and no `filter[environment_scope]` picks one.
pub fn multiple_variables() -> ApiError {
    message(
        StatusCode::CONFLICT,
        json!("There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"),
    )
}

/// `lib/gitlab/ci/pipeline/chain/build/associations.rb`: variables sent by a user below the
/// project's `ci_pipeline_variables_minimum_override_role` (or with `no_one_allowed`, by
/// anyone); `lib/api/ci/pipelines.rb` answers with `render_validation_error!`.
pub fn pipeline_variables_not_allowed() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "base": ["Insufficient permissions to set pipeline variables"] }))
}

/// `lib/api/ci/pipelines.rb`: a ref the repository does not have.
pub fn reference_not_found() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "base": ["Reference not found"] }))
}

/// `app/services/projects/update_service.rb` `validate_restrict_user_defined_variables_change`,
/// answered by `lib/api/projects.rb` `put` as `render_api_error!(message, 400)`.
pub fn override_role_change_not_allowed() -> ApiError {
    message(
        StatusCode::BAD_REQUEST,
        json!(
            "Changing the restrict_user_defined_variables or ci_pipeline_variables_minimum_override_role is not allowed"
        ),
    )
}

/// The same validation, for `owner` asked by someone who is not an Owner.
pub fn override_role_owner_not_allowed() -> ApiError {
    message(
        StatusCode::BAD_REQUEST,
        json!("Changing the ci_pipeline_variables_minimum_override_role to the owner role is not allowed"),
    )
}

/// Grape's `at_least_one_of` on `PUT /projects/:id` (`lib/api/projects.rb`), as a GitLab older
/// than 17.1 answers a request whose only attribute it does not know.
pub fn no_known_project_attribute() -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        json!({ "error": "name, description, default_branch, visibility are missing, at least one parameter must be provided" }),
    )
}

/// `app/services/files/multi_service.rb` via `lib/api/commits.rb`: every commit error is a 400
/// (`render_api_error!(result[:message], 400)`).
pub fn file_exists() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!("A file with this name already exists"))
}

/// A push rule's pre-receive rejection (`ee/lib/gitlab/checks/push_rules/commit_check.rb`),
/// answered as every commit error is: 400 with the check's message.
pub fn push_rule_commit_message(pattern: &str) -> ApiError {
    message(StatusCode::BAD_REQUEST, json!(format!("Commit message does not follow the pattern '{pattern}'")))
}

/// `lib/api/protected_branches.rb` `post`: `conflict!` for a branch protected already.
pub fn protected_branch_exists(name: &str) -> ApiError {
    message(StatusCode::CONFLICT, json!(format!("Protected branch '{name}' already exists")))
}

/// `render_validation_error!` of `PUT /projects/:id` for `validate_sub_claim_components`.
pub fn invalid_sub_claim_components(refusals: &[String]) -> ApiError {
    message(StatusCode::BAD_REQUEST, json!({ "ci_cd_settings.id_token_sub_claim_components": refusals }))
}

/// `lib/gitlab/checks/branch_check.rb` through the commits API: a push below the branch's level.
pub fn push_to_protected_branch() -> ApiError {
    message(StatusCode::FORBIDDEN, json!("You are not allowed to push into this branch"))
}

pub fn not_on_a_branch() -> ApiError {
    message(StatusCode::BAD_REQUEST, json!("You can only create or edit files when you are on a branch"))
}

/// `lib/api/helpers.rb` `not_found!`: absent, or not visible to the user (GitLab does not tell).
pub fn not_found(what: &str) -> ApiError {
    message(StatusCode::NOT_FOUND, json!(format!("404 {what} Not Found")))
}

pub fn bad_request(text: impl Into<String>) -> ApiError {
    message(StatusCode::BAD_REQUEST, json!(text.into()))
}

/// A fault injected by a test: the status's reason phrase, as a load balancer would send it.
pub fn fault(status: StatusCode) -> ApiError {
    message(status, json!(status.canonical_reason().unwrap_or("error")))
}
