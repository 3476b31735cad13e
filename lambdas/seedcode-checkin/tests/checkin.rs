//! The checkin handler end to end in-process, against the stand-ins of `support`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use seedcode_checkin::Deps;
use serde_json::Value;
use support::*;
use testkit::gitlab::{BranchProtection, GitLabDouble, SubClaimComponents};
use testkit::moto::{ACCOUNT_ID, REGION, moto};

#[tokio::test]
async fn create_makes_both_projects_sets_variables_then_commits_every_file() {
    let stand = stand().await;
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], format!("gitlab-projects-{}", stand.project_id));

    let build = stand.gitlab.project(&stand.build_path()).expect("build project");
    let deploy = stand.gitlab.project(&stand.deploy_path()).expect("deploy project");
    for (prefix, project) in [("Build", &build), ("Deploy", &deploy)] {
        assert_eq!(project.visibility, "private");
        assert_eq!(project.default_branch, "main");
        assert_eq!(body["Data"][format!("{prefix}ProjectId")], project.id.to_string());
        assert_eq!(body["Data"][format!("{prefix}ProjectPath")], project.full_path());
        assert_eq!(
            body["Data"][format!("{prefix}ProjectWebUrl")],
            format!("{}/{}", stand.gitlab.url(), project.full_path())
        );
        assert_eq!(
            body["Data"][format!("{prefix}ProjectCloneUrl")],
            format!("{}/{}.git", stand.gitlab.url(), project.full_path())
        );
        assert_eq!(project.commits.len(), 1);
        let commit_at = project.commits[0].at;
        assert!(
            project.variables.values().all(|(_, set_at)| *set_at < commit_at),
            "variables must be set before the commit"
        );
    }

    for (project, files) in [(&build, build_files()), (&deploy, deploy_files())] {
        let tree = &project.branches["main"];
        assert_eq!(tree.len(), files.len());
        for (path, mode, content) in files {
            let file = &tree[path];
            assert_eq!(file.content, content, "{path}");
            assert_eq!(file.executable, mode & 0o111 != 0, "{path}");
        }
    }
    // gitlab.com's default for a new namespace lets nobody pass pipeline variables; the trigger
    // passes the approved package to the deploy pipeline as one.
    assert_eq!(deploy.pipeline_variables_role.as_deref(), Some("maintainer"));
    assert_eq!(build.pipeline_variables_role.as_deref(), Some("no_one_allowed"), "only the deploy project needs it");
    assert!(!build.commits[0].message.contains("[skip ci]"));
    assert!(deploy.commits[0].message.contains("[skip ci]"), "the deploy seed must not start a deploy pipeline");

    let role = |name: &str| (format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}"), false);
    let plain = |value: &str| (value.to_owned(), false);
    let mut expected = BTreeMap::from([
        ("SAGEMAKER_PROJECT_NAME".to_owned(), plain("churn")),
        ("SAGEMAKER_PROJECT_ID".to_owned(), plain(&stand.project_id)),
        ("SAGEMAKER_PROJECT_ARN".to_owned(), plain(&format!("arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:project/churn"))),
        ("AWS_REGION".to_owned(), plain(REGION)),
        ("ARTIFACT_BUCKET".to_owned(), plain(&format!("sagemaker-project-{}", stand.project_id))),
        ("MODEL_PACKAGE_GROUP_NAME".to_owned(), plain(&format!("churn-{}", stand.project_id))),
        ("AWS_ROLE_ARN".to_owned(), role("gitlab-ci")),
    ]);
    let mut expected_build = expected.clone();
    expected_build.insert("SAGEMAKER_PIPELINE_ROLE_ARN".into(), role("pipeline"));
    assert_eq!(variables(&build), expected_build);
    expected.insert("MODEL_EXECUTION_ROLE_ARN".into(), role("model"));
    assert_eq!(variables(&deploy), expected);
    assert!(stand.gitlab.requests().iter().all(|r| r.token.as_deref() == Some(TOKEN)));
    assert_secret_free(&testkit::logs::captured());
}

#[tokio::test]
async fn a_stage_in_its_own_account_gets_its_roles_and_bucket_on_the_deploy_project_only() {
    let mut stand = stand().await;
    let production = [
        (
            "PRODUCTION_DEPLOY_ROLE_ARN",
            format!("arn:aws:iam::222222222222:role/sagemaker-gitlab-{ACCOUNT_ID}-production-deploy"),
        ),
        (
            "PRODUCTION_MODEL_EXECUTION_ROLE_ARN",
            format!("arn:aws:iam::222222222222:role/sagemaker-gitlab-{ACCOUNT_ID}-production-model"),
        ),
        ("PRODUCTION_DATA_BUCKET", format!("sm-gl-{REGION}-222222222222-{ACCOUNT_ID}-production")),
    ];
    for (key, value) in &production {
        stand.env.insert((*key).to_owned(), value.clone());
    }
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    let deploy = variables(&stand.gitlab.project(&stand.deploy_path()).unwrap());
    let build = variables(&stand.gitlab.project(&stand.build_path()).unwrap());
    for ((_, value), key) in production.iter().zip([
        "PRODUCTION_AWS_ROLE_ARN",
        "PRODUCTION_MODEL_EXECUTION_ROLE_ARN",
        "PRODUCTION_ARTIFACT_BUCKET",
    ]) {
        assert_eq!(deploy[key], (value.clone(), false), "{key}");
        assert!(!build.contains_key(key), "the build project got {key}");
    }
    assert!(!deploy.keys().any(|key| key.starts_with("STAGING_")), "staging stays in this account: {deploy:?}");
    // The development account's CI role still runs the build and picks the package.
    assert_eq!(deploy["AWS_ROLE_ARN"], (format!("arn:aws:iam::{ACCOUNT_ID}:role/gitlab-ci"), false));
}

#[tokio::test]
async fn group_namespace_and_masked_access_keys() {
    let mut stand = stand().await;
    let group = stand.gitlab.add_group("ml/churn-team");
    stand.env.insert("GITLAB_GROUP_ID".into(), group.to_string());
    stand.env.insert("GITLAB_CI_ROLE_ARN".into(), String::new());
    let keys_secret = stand.env["GITLAB_TOKEN_SECRET_NAME"].replace("gitlab-token", "ci-keys");
    stand.env.insert("GITLAB_CI_ACCESS_KEY_SECRET_NAME".into(), keys_secret);
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    let build =
        stand.gitlab.project(&format!("ml/churn-team/churn-build-{}", stand.project_id)).expect("project in the group");
    let vars = variables(&build);
    assert_eq!(vars["AWS_ACCESS_KEY_ID"], (ACCESS_KEY_ID.to_owned(), true));
    assert_eq!(vars["AWS_SECRET_ACCESS_KEY"], (SECRET_ACCESS_KEY.to_owned(), true));
    assert!(!vars.contains_key("AWS_ROLE_ARN"));
    // A long-lived key reaches only protected refs, and GitLab never shows it again.
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let variable = build.variable(key).unwrap();
        assert!(variable.protected && variable.hidden, "{key}: {variable:?}");
    }
    assert!(build.variable("SAGEMAKER_PROJECT_NAME").is_some_and(|v| !v.protected && !v.hidden));
    assert_eq!(build.protected_branches.get("main"), Some(&BranchProtection::MAINTAINERS));
    assert!(stand.gitlab.project(&format!("ml/churn-team/churn-deploy-{}", stand.project_id)).is_some());
    assert_secret_free(&testkit::logs::captured());
}

/// The CI role trusts the paths this answers before any project exists: they must be the paths
/// Create then gives the projects, in the personal namespace and in a group.
/// `Custom::GitLabProjectPaths` makes the two projects, empty, and answers the sub their `main`
/// pipelines' ID tokens carry, which the CI role then trusts: with the project ID and
/// `ref_protected` where GitLab accepts them, else GitLab's default by path. The seed commit
/// comes later, into the same projects.
#[tokio::test]
async fn project_paths_make_the_empty_projects_and_answer_their_main_pipelines_sub() {
    let stand = stand().await;
    // A group whose Developers may push the first commit to a new project's default branch.
    stand.gitlab.set_default_branch_protection(Some(BranchProtection::DEVELOPERS_PUSH));
    let paths = stand.invoke_project_paths("Create").await;
    assert_eq!(paths["Status"], "SUCCESS", "{paths}");
    assert_eq!(paths["PhysicalResourceId"], format!("gitlab-project-paths-{}", stand.project_id));
    // Between this answer and the seed commit the projects are empty, and the CI role is made
    // trusting their main: already nobody but a Maintainer may write it.
    for path in [stand.build_path(), stand.deploy_path()] {
        let project = stand.gitlab.project(&path).unwrap();
        assert_eq!(project.protected_branches.get("main"), Some(&BranchProtection::MAINTAINERS), "{path}");
        assert!(!project.fork_pipelines_in_parent, "{path}");
    }
    let created = stand.invoke("Create", None).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    for (prefix, path) in [("Build", stand.build_path()), ("Deploy", stand.deploy_path())] {
        assert_eq!(paths["Data"][format!("{prefix}ProjectPath")], path);
        assert_eq!(created["Data"][format!("{prefix}ProjectPath")], path);
        let project = stand.gitlab.project(&path).unwrap();
        assert_eq!(project.sub_claim_components, seedcode_checkin::provision::SUB_CLAIM_COMPONENTS);
        let subject =
            format!("project_path:{path}:project_id:{}:ref_type:branch:ref:main:ref_protected:true", project.id);
        assert_eq!(paths["Data"][format!("{prefix}Subject")], subject);
        assert_eq!(sub_of(&stand.gitlab.id_token(&path, "main", "https://gitlab.com", None)), subject);
    }

    // A GitLab that accepts only its default components: the sub by path, components untouched.
    let mut older = support::stand().await;
    older.gitlab.set_sub_claim_components(SubClaimComponents::PathAndRef);
    let group = older.gitlab.add_group("ml/churn-team");
    older.env.insert("GITLAB_GROUP_ID".into(), group.to_string());
    let paths = older.invoke_project_paths("Create").await;
    assert_eq!(paths["Status"], "SUCCESS", "{paths}");
    let path = paths["Data"]["BuildProjectPath"].as_str().unwrap();
    assert!(path.starts_with("ml/churn-team/"), "{path}");
    assert!(older.gitlab.project(path).unwrap().branches.is_empty(), "nothing is committed before the CI role exists");
    assert_eq!(paths["Data"]["BuildSubject"], format!("project_path:{path}:ref_type:branch:ref:main"));

    older.env.insert("GITLAB_GROUP_ID".into(), "999999".into());
    let unknown = older.invoke_project_paths("Create").await;
    assert_failed(&unknown, &["999999"]);
}

/// The `sub` of an ID token the GitLab double issued.
fn sub_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// The CI role trusts `main`, so only Maintainers may write it. GitLab's default branch
/// protection, applied by the first push, may let Developers push or merge (a group's "Partially
/// protected" or "Protected against pushes", app/services/projects/protect_default_branch_service.rb);
/// a rule someone weakened later is raised again on the next Create or Update.
#[tokio::test]
async fn main_takes_pushes_and_merges_of_maintainers_only_whatever_the_group_says() {
    let defaults = [None, Some(BranchProtection::DEVELOPERS_PUSH), Some(BranchProtection::DEVELOPERS_MERGE)];
    for default in defaults {
        let stand = stand().await;
        stand.gitlab.set_default_branch_protection(default);
        let body = stand.invoke("Create", None).await;
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        for project in stand.gitlab.projects() {
            let rule = project.protected_branches.get("main");
            assert_eq!(rule, Some(&BranchProtection::MAINTAINERS), "{} under {default:?}", project.full_path());
        }
    }

    let stand = stand().await;
    let first = stand.invoke("Create", None).await;
    let weakened = BranchProtection { allow_force_push: true, ..BranchProtection::DEVELOPERS_PUSH };
    stand.gitlab.set_branch_protection(&stand.deploy_path(), "main", weakened);
    let updated = stand.invoke("Update", first["PhysicalResourceId"].as_str()).await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    let deploy = stand.gitlab.project(&stand.deploy_path()).unwrap();
    assert_eq!(deploy.protected_branches.get("main"), Some(&BranchProtection::MAINTAINERS));
}

/// A fork's merge request pipeline may run in the parent project (before GitLab 18.2.2 with the
/// parent's path in its ID token: GitLab issue 548165), and a merged results pipeline of a merge
/// request from `main` carries `ref` `main` whatever it merges into (`Ci::Pipeline#source_ref`):
/// either hands a Developer the CI role. Both projects turn them off, again on every Update; a
/// tier without merged results has nothing to turn off.
#[tokio::test]
async fn fork_and_merged_results_pipelines_are_off_on_both_projects() {
    for premium in [false, true] {
        let stand = stand().await;
        stand.gitlab.set_premium(premium);
        let body = stand.invoke("Create", None).await;
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        for project in stand.gitlab.projects() {
            assert!(!project.fork_pipelines_in_parent, "{}", project.full_path());
            let off = premium.then_some(false);
            assert_eq!((project.merged_results_pipelines, project.merge_trains), (off, off), "{}", project.full_path());
        }
    }

    let stand = stand().await;
    stand.gitlab.set_premium(true);
    let first = stand.invoke("Create", None).await;
    stand.gitlab.edit_project(&stand.deploy_path(), |project| {
        project.fork_pipelines_in_parent = true;
        project.merged_results_pipelines = Some(true);
        project.merge_trains = Some(true);
    });
    let updated = stand.invoke("Update", first["PhysicalResourceId"].as_str()).await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    let deploy = stand.gitlab.project(&stand.deploy_path()).unwrap();
    assert!(!deploy.fork_pipelines_in_parent);
    assert_eq!((deploy.merged_results_pipelines, deploy.merge_trains), (Some(false), Some(false)));
}

#[tokio::test]
async fn retried_create_and_update_converge_without_duplicates() {
    let stand = stand().await;
    let first = stand.invoke("Create", None).await;
    let again = stand.invoke("Create", None).await;
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["PhysicalResourceId"], first["PhysicalResourceId"]);
    assert_eq!(again["Data"], first["Data"]);
    assert!(again["Reason"].as_str().unwrap().contains("adopted"), "{again}");

    let physical_id = first["PhysicalResourceId"].as_str().unwrap();
    let updated = stand.invoke("Update", Some(physical_id)).await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], physical_id);
    assert_eq!(updated["Data"], first["Data"], "GetAtt must keep working after an update");

    assert_eq!(stand.gitlab.projects().len(), 2);
    for project in stand.gitlab.projects() {
        assert_eq!(project.commits.len(), 1, "{} was committed to twice", project.full_path());
    }
}

#[tokio::test]
async fn delete_keeps_the_projects_and_calls_nobody() {
    let stand = stand().await;
    let body = stand.invoke("Delete", Some("gitlab-projects-p-old")).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], "gitlab-projects-p-old");
    assert!(stand.gitlab.requests().is_empty());
}

#[tokio::test]
async fn a_project_made_by_someone_else_is_not_taken_over() {
    let stand = stand().await;
    let namespace = stand.gitlab.user_namespace_id();
    stand.gitlab.seed_project(namespace, &format!("churn-deploy-{}", stand.project_id), "the team's hand-made repo");
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &[&stand.deploy_path(), "already exists", "not made for this SageMaker project"]);
    let deploy = stand.gitlab.project(&stand.deploy_path()).unwrap();
    assert!(deploy.variables.is_empty() && deploy.commits.is_empty(), "the foreign project was modified");
}

#[tokio::test]
async fn missing_token_secret_fails_naming_it() {
    let mut stand = stand().await;
    stand.env.insert("GITLAB_TOKEN_SECRET_NAME".into(), "no-such-secret".into());
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["no-such-secret", "does not exist"]);
    assert!(stand.gitlab.requests().is_empty());
}

#[tokio::test]
async fn rejected_token_fails_once_with_a_remedy() {
    let stand = stand().await;
    let wrong = GitLabDouble::start("glpat-another-token").await;
    let mut stand = stand;
    stand.env.insert("GITLAB_SERVER_URL".into(), wrong.url());
    let body = stand.invoke("Create", None).await;
    let secret = stand.env["GITLAB_TOKEN_SECRET_NAME"].clone();
    assert_failed(&body, &["did not accept the token", "401", "Store a valid", &format!("in secret {secret}")]);
    assert!(wrong.requests().len() <= 2, "a 401 is not retried: {}", wrong.requests().len());
}

#[tokio::test]
async fn a_token_that_cannot_work_fails_create_before_anything_is_made() {
    let stand = stand().await;
    stand.gitlab.update_token(TOKEN, |scopes, _, _| *scopes = vec!["read_api".into(), "read_repository".into()]);
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["[read_api, read_repository] but not api", "store it in secret"]);
    assert!(stand.gitlab.projects().is_empty());

    stand.gitlab.update_token(TOKEN, |scopes, expires_at, _| {
        *scopes = vec!["api".into()];
        *expires_at = Some(time::OffsetDateTime::now_utc().date());
    });
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["Token has expired"]);
    assert!(stand.gitlab.projects().is_empty());
}

#[tokio::test]
async fn a_token_near_its_end_is_reported_in_the_answer() {
    let stand = stand().await;
    let soon = time::OffsetDateTime::now_utc().date() + time::Duration::days(10);
    stand.gitlab.update_token(TOKEN, |_, expires_at, _| *expires_at = Some(soon));
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains(&format!("expires on {soon}, in 10 days")), "{reason}");
    assert!(testkit::logs::captured().contains("expires soon"));
}

#[tokio::test]
async fn pipeline_variables_are_left_as_a_self_managed_gitlab_has_them() {
    use testkit::gitlab::PipelineVariablesDefault;
    for (default, expected) in
        [(PipelineVariablesDefault::Developer, Some("developer")), (PipelineVariablesDefault::Unsupported, None)]
    {
        let stand = stand().await;
        stand.gitlab.set_pipeline_variables_default(default);
        let body = stand.invoke("Create", None).await;
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        let deploy = stand.gitlab.project(&stand.deploy_path()).unwrap();
        assert_eq!(deploy.pipeline_variables_role.as_deref(), expected);
        let changes = stand.gitlab.requests().into_iter().filter(|r| r.method == "PUT");
        let role_changes = changes.filter(|r| r.body.get("ci_pipeline_variables_minimum_override_role").is_some());
        assert_eq!(role_changes.count(), 0, "{default:?}: nothing to change");
    }
}

#[tokio::test]
async fn a_seed_commit_that_landed_behind_a_502_is_kept() {
    let stand = stand().await;
    stand.gitlab.fail_next_after_applying("/repository/commits", 502);
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    for project in stand.gitlab.projects() {
        assert_eq!(project.commits.len(), 1, "{}", project.full_path());
    }
    let commit_posts = stand.gitlab.requests().iter().filter(|r| r.path.ends_with("/repository/commits")).count();
    assert_eq!(commit_posts, 2, "one per project: the one that landed was not sent again");
}

#[tokio::test]
async fn a_push_rule_that_refuses_the_seed_commit_is_named() {
    let stand = stand().await;
    stand.gitlab.require_in_commit_messages("JIRA-");
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["Commit message does not follow the pattern 'JIRA-'", "push rule"]);
}

#[tokio::test]
async fn an_archived_project_is_named_before_anything_is_written() {
    let stand = stand().await;
    let first = stand.invoke("Create", None).await;
    assert_eq!(first["Status"], "SUCCESS", "{first}");
    let deploy = stand.gitlab.project(&stand.deploy_path()).unwrap();
    stand.gitlab.archive(deploy.id);
    let physical_id = first["PhysicalResourceId"].as_str().unwrap();
    let body = stand.invoke("Update", Some(physical_id)).await;
    assert_failed(&body, &[&stand.deploy_path(), "is archived", "unarchive it"]);
}

#[tokio::test]
async fn an_http_url_that_redirects_is_refused_with_its_target() {
    let mut stand = stand().await;
    let redirecting = stand.gitlab.redirecting_url().await;
    stand.env.insert("GITLAB_SERVER_URL".into(), redirecting);
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["redirect (301)", &stand.gitlab.url(), "redirects are not followed"]);
    assert!(stand.gitlab.projects().is_empty());
    assert!(stand.gitlab.requests().iter().all(|r| r.path.starts_with("(redirect)")), "nothing reached the API");
}

#[tokio::test]
async fn a_gitlab_behind_a_private_ca_needs_its_bundle() {
    use testkit::gitlab::tls::TestCa;
    let mut stand = stand().await;
    let ca = TestCa::new();
    let internal = GitLabDouble::start_tls(TOKEN, &ca).await;
    stand.env.insert("GITLAB_SERVER_URL".into(), internal.url());
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["not trusted", "UnknownIssuer", "--gitlab-ca-bundle-secret-name"]);
    assert!(internal.requests().is_empty());

    let ca_secret = format!("gitlab-ca-{}", stand.project_id);
    let secrets = aws_sdk_secretsmanager::Client::new(&moto().sdk_config());
    secrets.create_secret().name(&ca_secret).secret_string(ca.ca_pem()).send().await.unwrap();
    stand.env.insert("GITLAB_CA_BUNDLE_SECRET_NAME".into(), ca_secret);
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(internal.projects().len(), 2);
}

#[tokio::test]
async fn an_unreachable_response_url_is_given_up_before_the_deadline() {
    let stand = stand().await;
    stand.sink.set_delay(Duration::from_secs(30));
    let request = seedcode_checkin::custom_resource::Request::from_payload(&stand.request("Create", None)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let work = async { Ok::<_, String>(seedcode_checkin::custom_resource::Done::default()) };
    let err = seedcode_checkin::custom_resource::answer(&request, "pid".into(), deadline, work)
        .await
        .unwrap_err()
        .to_string();
    assert!(std::time::Instant::now() < deadline, "still sending at the deadline");
    assert!(err.contains("could not be reached") && !err.contains("X-Amz-Signature"), "{err}");
}

#[tokio::test]
async fn a_forged_request_with_a_foreign_response_url_gets_no_answer() {
    let stand = stand().await;
    // The shipped Lambda: loopback is not allowed, as for any URL that is not S3's.
    let mut deps = Deps::new(
        &moto().sdk_config(),
        seedcode_checkin::config::Config::from_lookup(|name| stand.env.get(name).cloned()),
    );
    deps.gitlab_retry = stand.retry;
    let mut context = lambda_runtime::Context::default();
    context.invoked_function_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:checkin");
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let event = lambda_runtime::LambdaEvent::new(stand.request("Create", None), context);
    let err = seedcode_checkin::handle(std::sync::Arc::new(deps), event).await.unwrap_err();
    assert!(err.to_string().contains("not a pre-signed S3 URL"), "{err}");
    assert!(stand.sink.received().is_empty(), "the forged ResponseURL got an answer");
    assert!(stand.gitlab.requests().is_empty(), "a forged request made GitLab calls");
    assert!(!testkit::logs::captured().contains("X-Amz-Signature"), "the URL was logged");
}

#[tokio::test]
async fn unreachable_gitlab_fails_before_the_deadline() {
    let mut stand = stand().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    stand.env.insert("GITLAB_SERVER_URL".into(), format!("http://127.0.0.1:{port}"));
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["could not be reached", "connection"]);
}

#[tokio::test]
async fn slow_gitlab_gets_a_failed_answer_before_the_lambda_times_out() {
    let stand = stand().await;
    stand.gitlab.set_latency(Duration::from_secs(30));
    let answers = stand.invoke_with(stand.deps(), stand.request("Create", None), Duration::from_secs(7)).await;
    assert_failed(&one_answer(answers), &["did not finish before the Lambda timeout", "timeout"]);
}

#[tokio::test]
async fn rate_limited_gitlab_is_retried_to_success() {
    let stand = stand().await;
    stand.gitlab.fail_next(2, 429, Some(0));
    let body = stand.invoke("Create", None).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
}

#[tokio::test]
async fn missing_or_corrupt_seed_code_fails_clearly() {
    let mut stand = stand().await;
    stand.env.insert("MODEL_DEPLOY_SEEDCODE_KEY".into(), "v1/missing.zip".into());
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["v1/missing.zip", "does not exist", "cargo xtask publish"]);

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto().sdk_config()).force_path_style(true).build(),
    );
    let corrupt = b"PK\x03\x04garbage".to_vec();
    stand.env.insert("MODEL_DEPLOY_SEEDCODE_SHA256".into(), sha256_hex(&corrupt));
    s3.put_object()
        .bucket(&stand.env["SEEDCODE_BUCKET"])
        .key("v1/corrupt.zip")
        .body(corrupt.into())
        .send()
        .await
        .unwrap();
    stand.env.insert("MODEL_DEPLOY_SEEDCODE_KEY".into(), "v1/corrupt.zip".into());
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["v1/corrupt.zip", "not a readable zip"]);
    assert!(stand.gitlab.projects().is_empty(), "nothing is created from unreadable seed code");
}

#[tokio::test]
async fn a_seed_zip_replaced_after_publishing_fails_create_naming_both_digests() {
    let stand = stand().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto().sdk_config()).force_path_style(true).build(),
    );
    // Someone with write access to the bucket swaps in a pipeline of their own.
    let poisoned = zip_of(&[(".gitlab-ci.yml", 0o644, b"steal: { script: [env] }\n")]);
    let published = stand.env["MODEL_BUILD_SEEDCODE_SHA256"].clone();
    s3.put_object()
        .bucket(&stand.env["SEEDCODE_BUCKET"])
        .key(&stand.env["MODEL_BUILD_SEEDCODE_KEY"])
        .body(poisoned.clone().into())
        .send()
        .await
        .unwrap();
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &[&sha256_hex(&poisoned), &published, "replaced it after publishing"]);
    assert!(stand.gitlab.projects().is_empty(), "nothing is made from swapped seed code");
}

#[tokio::test]
async fn missing_configuration_fails_instead_of_hanging() {
    let mut stand = stand().await;
    stand.env.remove("SEEDCODE_BUCKET");
    let body = stand.invoke("Create", None).await;
    assert_failed(&body, &["SEEDCODE_BUCKET is not set"]);
    assert_eq!(body["PhysicalResourceId"], "gitlab-projects-unconfigured");
}

#[tokio::test]
async fn unknown_request_type_fails() {
    let stand = stand().await;
    let body = stand.invoke("Explode", None).await;
    assert_failed(&body, &["unknown RequestType \"Explode\""]);
}

#[tokio::test]
async fn a_panic_still_gets_a_failed_answer() {
    let stand = stand().await;
    let request = seedcode_checkin::custom_resource::Request::from_payload(&stand.request("Create", None)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let work = async { panic!("index out of bounds") as Result<seedcode_checkin::custom_resource::Done, String> };
    seedcode_checkin::custom_resource::answer(&request, "pid".into(), deadline, work).await.unwrap();
    assert_failed(&one_answer(stand.sink.received()), &["internal error", "index out of bounds"]);
}

#[tokio::test]
async fn the_real_binary_answers_through_the_runtime_api() {
    use testkit::runtime_api::{Outcome, RuntimeApi};
    use tokio::io::AsyncReadExt;

    let stand = stand().await;
    let api = RuntimeApi::start().await;
    let mut env: Vec<(&str, String)> = moto().lambda_env();
    env.extend(stand.env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    env.push((seedcode_checkin::config::LOOPBACK_RESPONSE_URL_SETTING, "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut function = api.spawn_function(std::path::Path::new(env!("CARGO_BIN_EXE_seedcode-checkin")), &env);

    let outcome = api.invoke(stand.request("Create", None), Duration::from_secs(30)).await;
    assert!(matches!(outcome, Outcome::Response { .. }), "the invocation itself must succeed: {outcome:?}");
    let body = one_answer(stand.sink.wait(Duration::from_secs(5)).await);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(stand.gitlab.projects().len(), 2);

    function.kill().await.unwrap();
    let mut log = String::new();
    function.stdout.take().unwrap().read_to_string(&mut log).await.unwrap();
    assert!(log.contains("seed code committed") && log.contains("answering CloudFormation"), "{log}");
    for line in log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
    }
    assert_secret_free(&log);
}

/// moto does not check signatures, so the seed-code GET's SigV4 is compared with botocore's, an
/// implementation of its own, for the same request, credentials and time: keys with spaces and
/// `+`, a session token, virtual-hosted and path-style URLs.
#[test]
fn the_seed_code_get_is_signed_as_botocore_signs_it() {
    const BOTOCORE_SIGV4: &str = r#"
import datetime, json, sys
from unittest import mock
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, region, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = AWSRequest(method="GET", url=url)
request.context["payload_signing_enabled"] = True
when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
with mock.patch("botocore.auth.get_current_datetime", return_value=when):
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session/token+="), "s3", region).add_auth(request)
print(json.dumps({k.lower(): v for k, v in request.headers.items()}))
"#;
    let seconds = 1_700_000_000;
    let time = std::time::UNIX_EPOCH + Duration::from_secs(seconds);
    let credentials = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session/token+=".into()),
        None,
        "test",
    );
    for (url, region) in [
        ("https://seedcode.s3.eu-west-1.amazonaws.com/v1/model%20build%2Bx.zip", "eu-west-1"),
        ("https://s3.us-east-1.amazonaws.com/my.bucket/templates/v2/deploy.zip", "us-east-1"),
    ] {
        let ours = seedcode_checkin::s3::signed_get(url, region, credentials.clone(), time).unwrap();
        let python = testkit::tools_dir().join("test-venv/bin/python");
        let output = std::process::Command::new(&python)
            .args(["-c", BOTOCORE_SIGV4, url, region, &seconds.to_string()])
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", python.display()));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let botocore: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
        for header in ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
            let ours = ours.headers().get(header).map(|v| v.to_str().unwrap());
            assert_eq!(ours, botocore.get(header).map(String::as_str), "{header} of {url}");
        }
    }
}
