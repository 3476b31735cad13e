//! Bringing one GitLab project to its seeded state: created (or adopted on a retry), its CI/CD
//! variables set, then its seed code committed once. Every step converges, so a retried
//! Create or an Update repeats nothing that is done.

use futures_util::future::try_join_all;
use lambda_common::gitlab::{GitLab, GitLabError, NewCommit, NewProject, Project, Variable};

use crate::seedcode::{SeedFile, commit_actions};

pub const BRANCH: &str = "main";

/// The lowest `ci_pipeline_variables_minimum_override_role` that lets the token start the deploy
/// pipeline with variables: its user is the project's Maintainer at least (GitLab makes the
/// creator one), and a Maintainer may set it. `owner` would shut out a Maintainer's token;
/// `developer` would let every Developer pass variables to a pipeline that deploys.
pub const PIPELINE_VARIABLES_ROLE: &str = "maintainer";

/// What one repository should become.
pub struct Repository {
    /// "model build" or "model deploy", for messages.
    pub role: &'static str,
    pub path: String,
    pub description: String,
    pub variables: Vec<Variable>,
    /// Whether the token starts this project's pipelines with variables.
    pub pipeline_variables: bool,
    pub files: Vec<SeedFile>,
    pub commit_message: String,
}

/// Why a repository could not be brought to its seeded state: GitLab's answer, with what it means
/// for this project where GitLab's own message does not say it.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    #[error(
        "GitLab project {path} is archived, so nothing can be written to it: unarchive it (Settings > General > Advanced), or choose other repository names"
    )]
    Archived { path: String },
    #[error(
        "{refusal}. A push rule of the group or instance (commit message format, signed commits, file names) may refuse the seed commit: relax it for these projects, then update the stack"
    )]
    CommitRefused { refusal: Box<GitLabError> },
    #[error(
        "{refusal}. The deploy pipeline gets the approved model through a pipeline variable, which project {path} allows {allowed}: make the token's user an Owner of it, or have an Owner set Settings > CI/CD > Variables > \"Minimum role to use pipeline variables\" to Maintainer, then update the stack"
    )]
    PipelineVariables { refusal: Box<GitLabError>, path: String, allowed: &'static str },
    #[error(
        "{taken}; yet project {path} cannot be read with this token: give the token's user access to it, or choose other repository names"
    )]
    TakenButUnreadable { taken: Box<GitLabError>, path: String },
    #[error(
        "GitLab project {path} already exists and was not made for this SageMaker project: rename or delete it, or choose other repository names"
    )]
    NotOurs { path: String },
    #[error(
        "branch main of GitLab project {path} is protected by a rule this token cannot read or replace ({why}); the project's CI role trusts main, so only Maintainers may push or merge it: protect main for Maintainers only, without force push (in the group's protected branches if the rule is the group's), then update the stack"
    )]
    MainProtection { path: String, why: String },
    #[error(
        "GitLab kept {kept} on for project {path}: those pipelines can run a Developer's change with ref main, which the project's CI role trusts. Turn them off in Settings > CI/CD and Settings > Merge requests, then update the stack"
    )]
    PipelinesBorrowMain { path: String, kept: String },
    #[error(
        "the CI ID tokens of GitLab project {path} carry a sub made of {components}, which a main pipeline's token cannot be told from in advance: set Settings > CI/CD > ID token sub claim components back to project_path, ref_type, ref (or remove the others), then update the stack"
    )]
    SubClaim { path: String, components: String },
}

#[derive(Debug)]
pub struct Provisioned {
    pub project: Project,
    pub adopted: bool,
    pub committed: bool,
}

/// `marker` is the text in a project's description that shows it was made for this SageMaker
/// project, so a retried Create adopts it and nothing else is ever taken over.
pub async fn provision(
    gitlab: &GitLab,
    group_id: Option<u64>,
    marker: &str,
    repo: &Repository,
) -> Result<Provisioned, ProvisionError> {
    let (project, adopted) = create_or_adopt(gitlab, group_id, marker, &repo.path, &repo.description).await?;
    tracing::info!(role = repo.role, project = project.path_with_namespace, adopted, "project ready");
    if project.archived {
        return Err(ProvisionError::Archived { path: project.path_with_namespace });
    }

    // Variables and settings first: the first commit starts a pipeline, which needs them.
    let variables = async {
        try_join_all(repo.variables.iter().map(|variable| gitlab.upsert_variable(project.id, variable)))
            .await
            .map_err(ProvisionError::from)
    };
    let settings = async {
        match repo.pipeline_variables {
            true => allow_pipeline_variables(gitlab, &project).await,
            false => Ok(()),
        }
    };
    tokio::try_join!(variables, settings, turn_off_pipelines_that_borrow_main(gitlab, &project))?;
    let keys: Vec<&str> = repo.variables.iter().map(|v| v.key.as_str()).collect();
    tracing::info!(role = repo.role, project = project.path_with_namespace, ?keys, "CI/CD variables set");
    // Before the first commit: the first push would apply the group's default protection,
    // which may let Developers write main.
    protect_main(gitlab, &project).await?;

    // A new project has no branch yet; an adopted one may have been seeded by an earlier try.
    let head = if adopted { gitlab.branch_head(project.id, BRANCH).await? } else { None };
    if let Some(head) = head {
        tracing::info!(
            role = repo.role,
            project = project.path_with_namespace,
            head = head.id,
            "branch {BRANCH} exists: seed code not committed again"
        );
        return Ok(Provisioned { project, adopted, committed: false });
    }
    let actions = commit_actions(&repo.files);
    let commit = NewCommit { branch: BRANCH, commit_message: &repo.commit_message, actions: &actions };
    let commit = gitlab.create_commit(project.id, &commit).await.map_err(|err| match err.status() {
        // Every commit refusal is a 400 (lib/api/commits.rb); a push rule is the usual cause here.
        Some(400) => ProvisionError::CommitRefused { refusal: Box::new(err) },
        _ => ProvisionError::GitLab(err),
    })?;
    tracing::info!(
        role = repo.role,
        project = project.path_with_namespace,
        commit = commit.id,
        files = actions.len(),
        "seed code committed"
    );
    Ok(Provisioned { project, adopted, committed: true })
}

/// Protects `main` for Maintainers only (push, merge, no force push): the CI role trusts `main`,
/// and protected CI/CD variables (the access-key fallback's keys) reach only its pipelines. A
/// rule there already (an adopted project, a group's default, one weakened since) is read, and
/// replaced when it lets anyone below Maintainer write: unprotected for the moment between the
/// two calls, which GitLab's API offers no way around on every tier.
pub async fn protect_main(gitlab: &GitLab, project: &Project) -> Result<(), ProvisionError> {
    if gitlab.protect_branch(project.id, BRANCH).await? {
        return Ok(());
    }
    let path = &project.path_with_namespace;
    let refuse = |why: String| ProvisionError::MainProtection { path: path.clone(), why };
    let Some(rule) = gitlab.protected_branch(project.id, BRANCH).await? else {
        return Err(refuse("GitLab says main is protected, yet lists no rule for it in the project".into()));
    };
    let weaker = rule.weaker_than_maintainers();
    if weaker.is_empty() {
        return Ok(());
    }
    tracing::warn!(project = path, ?weaker, "main lets more than Maintainers write it: protecting it again");
    gitlab.unprotect_branch(project.id, BRANCH).await.map_err(|err| refuse(format!("{}; {err}", weaker.join(", "))))?;
    match gitlab.protect_branch(project.id, BRANCH).await? {
        true => Ok(()),
        false => Err(refuse(format!("{}; a rule came back after it was removed", weaker.join(", ")))),
    }
}

/// Turns off the pipelines that can carry `ref` `main` for a Developer's change, and so the CI
/// role's trust: a fork's merge request pipelines run in this project (before GitLab 18.2.2 with
/// this project's path in the ID token), and merged results pipelines and merge trains (Premium)
/// of a merge request from `main` into any branch. A setting the project does not list (another
/// tier or an older GitLab) guards nothing there.
pub async fn turn_off_pipelines_that_borrow_main(gitlab: &GitLab, project: &Project) -> Result<(), ProvisionError> {
    let on = settings_on_that_borrow_main(project);
    if on.is_empty() {
        return Ok(());
    }
    let body: serde_json::Map<String, serde_json::Value> =
        on.iter().map(|key| ((*key).to_owned(), false.into())).collect();
    let operation = format!("turning off {} of project {}", on.join(", "), project.id);
    let edited = gitlab.edit_project(project.id, &serde_json::Value::Object(body), &operation).await?;
    let kept = settings_on_that_borrow_main(&edited);
    if !kept.is_empty() {
        return Err(ProvisionError::PipelinesBorrowMain {
            path: project.path_with_namespace.clone(),
            kept: kept.join(", "),
        });
    }
    tracing::info!(project = project.path_with_namespace, "fork and merged results pipelines turned off");
    Ok(())
}

/// What the CI role trusts the project's `main` pipelines by: their ID tokens' `sub` is made of
/// these where GitLab accepts them (the `project_id` a project recreated at the same path does
/// not have, and the `ref_protected` a merge request's pipeline lacks), else of what the project
/// says (GitLab's default `project_path ref_type ref` on one that accepts no other). The path
/// stays first: a stage account's deploy role knows the group's path, not the projects' IDs.
pub const SUB_CLAIM_COMPONENTS: [&str; 5] = ["project_path", "project_id", "ref_type", "ref", "ref_protected"];

/// Sets the project's sub claim components to `SUB_CLAIM_COMPONENTS` where GitLab accepts them,
/// and returns the `sub` of its `main` pipelines' ID tokens as lib/gitlab/ci/jwt_v2.rb composes
/// it from the components in force.
pub async fn main_pipeline_subject(gitlab: &GitLab, project: &Project) -> Result<String, ProvisionError> {
    let body = serde_json::json!({ "ci_id_token_sub_claim_components": SUB_CLAIM_COMPONENTS });
    let operation = format!("setting the ID token sub claim of project {}", project.id);
    let components = match gitlab.edit_project(project.id, &body, &operation).await {
        Ok(edited) => edited.ci_id_token_sub_claim_components,
        // A GitLab that knows fewer components refuses them (or, before 17.3, the attribute).
        Err(refused) if refused.status() == Some(400) => {
            tracing::warn!(project = project.path_with_namespace, %refused, "GitLab keeps the sub claim by path");
            project.ci_id_token_sub_claim_components.clone()
        }
        Err(err) => return Err(err.into()),
    };
    let components = components.unwrap_or_else(|| ["project_path", "ref_type", "ref"].map(String::from).to_vec());
    let id = project.id.to_string();
    let mut parts = Vec::new();
    for component in &components {
        let value = match component.as_str() {
            "project_path" => project.path_with_namespace.as_str(),
            "project_id" => id.as_str(),
            "ref_type" => "branch",
            "ref" => BRANCH,
            "ref_protected" => "true",
            _ => {
                return Err(ProvisionError::SubClaim {
                    path: project.path_with_namespace.clone(),
                    components: components.join(", "),
                });
            }
        };
        parts.extend([component.as_str(), value]);
    }
    Ok(parts.join(":"))
}

/// The settings of `turn_off_pipelines_that_borrow_main` that `project` lists as on.
fn settings_on_that_borrow_main(project: &Project) -> Vec<&'static str> {
    [
        ("ci_allow_fork_pipelines_to_run_in_parent_project", project.ci_allow_fork_pipelines_to_run_in_parent_project),
        ("merge_pipelines_enabled", project.merge_pipelines_enabled),
        ("merge_trains_enabled", project.merge_trains_enabled),
    ]
    .into_iter()
    .filter_map(|(key, value)| (value == Some(true)).then_some(key))
    .collect()
}

/// Lets Maintainers pass pipeline variables when the project says nobody (gitlab.com's default
/// for new namespaces since 17.7) or only Owners may. A GitLab before 17.1 shows no such setting
/// and has no such restriction: nothing to do.
async fn allow_pipeline_variables(gitlab: &GitLab, project: &Project) -> Result<(), ProvisionError> {
    let current = project.ci_pipeline_variables_minimum_override_role.as_deref();
    if matches!(current, None | Some("developer" | "maintainer")) {
        return Ok(());
    }
    gitlab.set_pipeline_variables_role(project.id, PIPELINE_VARIABLES_ROLE).await.map_err(|refusal| {
        ProvisionError::PipelineVariables {
            refusal: Box::new(refusal),
            path: project.path_with_namespace.clone(),
            allowed: if current == Some("owner") { "only Owners to pass" } else { "nobody to pass" },
        }
    })?;
    tracing::info!(
        project = project.path_with_namespace,
        from = current,
        to = PIPELINE_VARIABLES_ROLE,
        "pipeline variables allowed"
    );
    Ok(())
}

/// The full path of the namespace projects are created in: the group's, or, without a group, the
/// token user's personal namespace, whose path is the username.
pub async fn namespace_path(gitlab: &GitLab, group_id: Option<u64>) -> Result<String, GitLabError> {
    match group_id {
        Some(id) => Ok(gitlab.group(id).await?.full_path),
        None => Ok(gitlab.current_user().await?.username),
    }
}

/// Creates the project `path` in the group (or the token user's namespace), or adopts the one
/// there when its description carries `marker`; says whether it adopted.
pub async fn create_or_adopt(
    gitlab: &GitLab,
    group_id: Option<u64>,
    marker: &str,
    path: &str,
    description: &str,
) -> Result<(Project, bool), ProvisionError> {
    let new = NewProject {
        name: path,
        path,
        namespace_id: group_id,
        description,
        visibility: "private",
        default_branch: BRANCH,
        initialize_with_readme: false,
    };
    let err = match gitlab.create_project(&new).await {
        Ok(project) => return Ok((project, false)),
        Err(err) if err.is_already_taken() => err,
        Err(err) => return Err(err.into()),
    };
    let namespace = namespace_path(gitlab, group_id).await?;
    let full_path = format!("{namespace}/{path}");
    let Some(existing) = gitlab.project(&full_path).await? else {
        return Err(ProvisionError::TakenButUnreadable { taken: Box::new(err), path: full_path });
    };
    if !existing.description.as_deref().unwrap_or_default().contains(marker) {
        return Err(ProvisionError::NotOurs { path: full_path });
    }
    Ok((existing, true))
}
