//! The double's state: users and their tokens, groups, projects with their variables, branches,
//! commits and pipelines, the requests received and the faults queued. Tests read it back
//! through `GitLabDouble`; the routes change it as GitLab would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::answers::{self, ApiError};

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
    pub(crate) fn from_override_setting(value: &str) -> Option<Role> {
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

/// `ci_id_token_sub_claim_components` of a new project (`id_token_sub_claim_components`'s
/// default in db/structure.sql), and all an older GitLab accepts.
pub const DEFAULT_SUB_CLAIM_COMPONENTS: [&str; 3] = ["project_path", "ref_type", "ref"];

/// Which `ci_id_token_sub_claim_components` a GitLab accepts (`ProjectCiCdSetting::
/// ALLOWED_SUB_CLAIM_COMPONENTS` and `validate_sub_claim_components`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubClaimComponents {
    /// `project_path ref_type ref`, `project_path` first: app/models/project_ci_cd_setting.rb at
    /// gitlabhq 06937a48 and in 18.2.
    PathAndRef,
    /// Also `project_id`, `ref_protected`, `environment_protected` and `deployment_tier`, with
    /// `project_path` or `project_id` first: current GitLab, as `../shared/reviews/gitlab.md`
    /// reads project_ci_cd_setting.rb at d66adcb6 (a release near 18.7; not verified here).
    WithProjectIdAndProtection,
}

impl SubClaimComponents {
    /// GitLab's validation errors for `components`, none when it accepts them.
    pub(crate) fn refusals(self, components: &[String]) -> Vec<String> {
        let (allowed, first): (&[&str], &[&str]) = match self {
            SubClaimComponents::PathAndRef => (&DEFAULT_SUB_CLAIM_COMPONENTS, &["project_path"]),
            SubClaimComponents::WithProjectIdAndProtection => (
                &[
                    "project_path",
                    "project_id",
                    "ref_type",
                    "ref",
                    "ref_protected",
                    "environment_protected",
                    "deployment_tier",
                ],
                &["project_path", "project_id"],
            ),
        };
        let mut refusals = Vec::new();
        if !components.first().is_some_and(|c| first.contains(&c.as_str())) {
            refusals.push(format!("{} must be the first element of the sub claim", first.join(" or ")));
        }
        for component in components.iter().filter(|c| !allowed.contains(&c.as_str())) {
            refusals.push(format!("{component} is not an allowed sub claim component"));
        }
        refusals
    }
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

pub(crate) fn today() -> time::Date {
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

/// One protected branch (`ProtectedBranch` with one role-based push and merge access level
/// each): the lowest role that may push, and merge, and whether force pushes are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchProtection {
    pub push: Role,
    pub merge: Role,
    pub allow_force_push: bool,
}

impl BranchProtection {
    /// `POST /protected_branches`'s defaults (lib/api/protected_branches.rb): Maintainers push
    /// and merge, no force push. Also GitLab's default branch protection, "Fully protected".
    pub const MAINTAINERS: BranchProtection =
        BranchProtection { push: Role::Maintainer, merge: Role::Maintainer, allow_force_push: false };
    /// A group's or the instance's "Partially protected": Developers push and merge.
    pub const DEVELOPERS_PUSH: BranchProtection =
        BranchProtection { push: Role::Developer, merge: Role::Developer, allow_force_push: false };
    /// "Protected against pushes": Developers merge.
    pub const DEVELOPERS_MERGE: BranchProtection =
        BranchProtection { push: Role::Maintainer, merge: Role::Developer, allow_force_push: false };
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
    /// `ci_allow_fork_pipelines_to_run_in_parent_project` (default true,
    /// db/structure.sql's `project_ci_cd_settings`): a fork's merge request pipeline may run in
    /// this project, with this project's path in its ID token before GitLab 18.2.2.
    pub fork_pipelines_in_parent: bool,
    /// `ci_id_token_sub_claim_components`: the claims a job's ID token `sub` is made of, in
    /// this order (lib/gitlab/ci/jwt_v2.rb); default `project_path ref_type ref`.
    pub sub_claim_components: Vec<String>,
    /// `merge_pipelines_enabled` and `merge_trains_enabled` (Premium: merged results and merge
    /// trains, off until a Maintainer turns them on); `None` where the tier has no such setting.
    pub merged_results_pipelines: Option<bool>,
    pub merge_trains: Option<bool>,
    /// Members by user ID (the creator, for a start).
    pub members: BTreeMap<u64, Role>,
    /// Variables by key and environment scope, with the time each was last written.
    pub variables: BTreeMap<(String, String), (VariableState, Instant)>,
    pub commits: Vec<CommitState>,
    /// The files at the tip of each branch.
    pub branches: BTreeMap<String, BTreeMap<String, FileState>>,
    /// Protected branches and who may push to and merge into each; protected variables reach
    /// only their pipelines.
    pub protected_branches: BTreeMap<String, BranchProtection>,
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

pub(crate) enum FaultKind {
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
    pub(crate) fn applies_to(&self, method: &axum::http::Method, path: &str) -> bool {
        match self {
            FaultKind::Before { .. } => true,
            FaultKind::After(suffix, _) | FaultKind::HangAfter(suffix, _) => {
                method != axum::http::Method::GET && path.ends_with(suffix.as_str())
            }
        }
    }
}

pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) username: String,
    pub(crate) namespace_id: u64,
    pub(crate) group_role: Role,
    pub(crate) projects_limit: Option<usize>,
}

pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) id: u64,
    pub(crate) user: usize,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: Option<time::Date>,
    pub(crate) revoked: bool,
}

pub(crate) struct Inner {
    pub(crate) base_url: String,
    pub(crate) users: Vec<User>,
    pub(crate) tokens: Vec<Token>,
    pub(crate) groups: BTreeMap<u64, String>,
    pub(crate) projects: Vec<ProjectState>,
    pub(crate) pipeline_variables_default: PipelineVariablesDefault,
    /// Whether the instance (or the group's subscription) is Premium: projects then have the
    /// merged results and merge train settings.
    pub(crate) premium: bool,
    pub(crate) sub_claim_components: SubClaimComponents,
    /// A push rule: commit messages must contain this text.
    pub(crate) commit_message_rule: Option<String>,
    /// How the first push protects the default branch when nothing protects it yet
    /// (app/services/projects/protect_default_branch_service.rb): GitLab's default is "Fully
    /// protected"; a group or the instance may say weaker, or "Not protected" (`None`).
    pub(crate) default_branch_protection: Option<BranchProtection>,
    pub(crate) next_id: u64,
    pub(crate) requests: Vec<Request>,
    pub(crate) faults: VecDeque<FaultKind>,
    pub(crate) latency: Duration,
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

/// The user a request is authenticated as (index into `Inner::users`).
#[derive(Clone, Copy)]
pub(crate) struct Caller(pub(crate) usize);

impl Inner {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn project_mut(&mut self, id: u64) -> &mut ProjectState {
        self.projects.iter_mut().find(|p| p.id == id).expect("a known project")
    }

    /// A project as `Projects::CreateService` makes it in `namespace_id`, with this instance's
    /// defaults for its settings: private, on `main`, with no repository yet.
    pub(crate) fn new_project(
        &mut self,
        namespace_id: u64,
        name: &str,
        path: &str,
        owner: (u64, Role),
    ) -> ProjectState {
        let premium = self.premium.then_some(false);
        ProjectState {
            id: self.next_id(),
            name: name.to_owned(),
            path: path.to_owned(),
            namespace_id,
            namespace_path: self.namespace_path(namespace_id).expect("a known namespace"),
            description: String::new(),
            visibility: "private".into(),
            default_branch: "main".into(),
            archived: false,
            pipeline_variables_role: self.new_project_pipeline_variables_role(),
            fork_pipelines_in_parent: true,
            sub_claim_components: DEFAULT_SUB_CLAIM_COMPONENTS.map(String::from).to_vec(),
            merged_results_pipelines: premium,
            merge_trains: premium,
            members: BTreeMap::from([owner]),
            variables: BTreeMap::new(),
            commits: Vec::new(),
            branches: BTreeMap::new(),
            protected_branches: BTreeMap::new(),
            pipelines: Vec::new(),
        }
    }

    pub(crate) fn new_project_pipeline_variables_role(&self) -> Option<String> {
        match self.pipeline_variables_default {
            PipelineVariablesDefault::NoOneAllowed => Some("no_one_allowed".into()),
            PipelineVariablesDefault::Developer => Some("developer".into()),
            PipelineVariablesDefault::Unsupported => None,
        }
    }

    pub(crate) fn namespace_path(&self, id: u64) -> Option<String> {
        if let Some(user) = self.users.iter().find(|u| u.namespace_id == id) {
            return Some(user.username.clone());
        }
        self.groups.get(&id).cloned()
    }

    /// The caller's role in a project: Owner in their own namespace, their membership, else
    /// their group role for a group's project; `None` when they cannot see it.
    pub(crate) fn role(&self, caller: Caller, project: &ProjectState) -> Option<Role> {
        let user = &self.users[caller.0];
        if project.namespace_id == user.namespace_id {
            return Some(Role::Owner);
        }
        let group_role = self.groups.contains_key(&project.namespace_id).then_some(user.group_role);
        project.members.get(&user.id).copied().max(group_role)
    }

    /// The project at `:id` (numeric ID or URL-encoded full path, which axum decoded) as the
    /// caller sees it: 404 when absent or invisible, as GitLab does not tell the two apart.
    pub(crate) fn visible_project(&self, caller: Caller, id: &str) -> Result<(usize, Role), ApiError> {
        let index = match id.parse::<u64>() {
            Ok(n) => self.projects.iter().position(|p| p.id == n),
            Err(_) => self.projects.iter().position(|p| p.full_path() == id),
        };
        index
            .and_then(|i| Some((i, self.role(caller, &self.projects[i])?)))
            .ok_or_else(|| answers::not_found("Project"))
    }

    /// The project for a write that needs `needed`: 403 below it, and for an archived project.
    pub(crate) fn writable_project(&self, caller: Caller, id: &str, needed: Role) -> Result<usize, ApiError> {
        let (i, role) = self.visible_project(caller, id)?;
        if role < needed || self.projects[i].archived {
            return Err(answers::forbidden());
        }
        Ok(i)
    }

    pub(crate) fn project_json(&self, p: &ProjectState) -> Value {
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
        project["ci_allow_fork_pipelines_to_run_in_parent_project"] = json!(p.fork_pipelines_in_parent);
        project["ci_id_token_sub_claim_components"] = json!(p.sub_claim_components);
        if let (Some(merged), Some(trains)) = (p.merged_results_pipelines, p.merge_trains) {
            project["merge_pipelines_enabled"] = json!(merged);
            project["merge_trains_enabled"] = json!(trains);
        }
        project
    }
}
