//! The GitLab client against the GitLab API double: the calls, their errors and the retries.

use std::time::{Duration, Instant};

use lambda_common::gitlab::{CommitAction, Forbidden, GitLab, GitLabError, NewCommit, NewProject, Variable};
use lambda_common::retry::RetryPolicy;
use lambda_common::token::token_from_secret;
use testkit::gitlab::tls::TestCa;
use testkit::gitlab::{GitLabDouble, PipelineVariablesDefault, Role, TokenSpec};

const TOKEN: &str = "glpat-test-token-0123456789";

fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) }
}

async fn setup() -> (GitLabDouble, GitLab) {
    let double = GitLabDouble::start(TOKEN).await;
    let client = client_for(&double.url(), TOKEN);
    (double, client)
}

fn client_for(url: &str, token: &str) -> GitLab {
    GitLab::new(url, token_from_secret("s", token).unwrap()).unwrap().with_retry(fast_retry())
}

/// A raw, unmasked, unprotected variable of the `*` scope.
fn plain(key: &str, value: &str) -> Variable {
    Variable { key: key.into(), value: value.into(), masked: false, hidden: false, protected: false, raw: true }
}

fn actions() -> [CommitAction; 1] {
    [CommitAction {
        action: "create",
        file_path: "run.sh".into(),
        content: "IyEvYmluL3NoCg==".into(),
        encoding: "base64",
        execute_filemode: true,
    }]
}

fn posts(double: &GitLabDouble, suffix: &str) -> usize {
    double.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with(suffix)).count()
}

fn new_project<'a>(path: &'a str, namespace_id: Option<u64>) -> NewProject<'a> {
    NewProject {
        name: path,
        path,
        namespace_id,
        description: "made by a test",
        visibility: "private",
        default_branch: "main",
        initialize_with_readme: false,
    }
}

#[tokio::test]
async fn creates_and_reads_projects_by_id_and_full_path() {
    let (double, client) = setup().await;
    let group = double.add_group("ml/team-a");
    let project = client.create_project(&new_project("churn-build-p-1", Some(group))).await.unwrap();
    assert_eq!(project.path_with_namespace, "ml/team-a/churn-build-p-1");
    assert_eq!(project.default_branch, None, "an empty repository has no default branch yet");
    assert_eq!(client.project(&project.id.to_string()).await.unwrap().unwrap(), project);
    assert_eq!(client.project("ml/team-a/churn-build-p-1").await.unwrap().unwrap(), project);
    assert!(double.requests().iter().any(|r| r.path == "/api/v4/projects/ml%2Fteam-a%2Fchurn-build-p-1"));
    assert_eq!(client.project("ml/team-a/other").await.unwrap(), None);

    let personal = client.create_project(&new_project("mine", None)).await.unwrap();
    assert_eq!(personal.namespace.id, double.user_namespace_id());
    assert_eq!(client.current_user().await.unwrap().username, testkit::gitlab::USERNAME);
}

#[tokio::test]
async fn duplicate_project_path_is_already_taken() {
    let (_double, client) = setup().await;
    client.create_project(&new_project("dup", None)).await.unwrap();
    let err = client.create_project(&new_project("dup", None)).await.unwrap_err();
    assert!(err.is_already_taken(), "{err}");
    assert!(err.to_string().contains("creating project dup"), "{err}");
}

#[tokio::test]
async fn variables_are_created_then_updated() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("vars", None)).await.unwrap();
    let mut variable = plain("AWS_REGION", "eu-west-1");
    client.upsert_variable(project.id, &variable).await.unwrap();
    variable.value = "us-east-1".into();
    client.upsert_variable(project.id, &variable).await.unwrap();
    let state = double.project("platform-bot/vars").unwrap();
    assert_eq!(state.variable("AWS_REGION").unwrap().value, "us-east-1");
    let methods: Vec<String> =
        double.requests().iter().filter(|r| r.path.contains("/variables")).map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "POST", "PUT"]);

    let unmaskable = Variable { masked: true, ..plain("SHORT", "abc") };
    let err = client.upsert_variable(project.id, &unmaskable).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn variables_of_other_environment_scopes_are_left_alone() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("scoped", None)).await.unwrap();
    // Someone added a production-only value of the same key by hand.
    double.add_variable(project.id, "AWS_REGION", "production", "eu-central-1");
    let mut variable = plain("AWS_REGION", "eu-west-1");
    client.upsert_variable(project.id, &variable).await.unwrap();
    variable.value = "us-east-1".into();
    client.upsert_variable(project.id, &variable).await.unwrap();
    let state = double.project("platform-bot/scoped").unwrap();
    assert_eq!(state.variable("AWS_REGION").unwrap().value, "us-east-1");
    let production = &state.variables[&("AWS_REGION".to_owned(), "production".to_owned())].0;
    assert_eq!(production.value, "eu-central-1", "the production-scoped value was overwritten");
    let put = double.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.query.as_deref(), Some("filter[environment_scope]=*"));
}

#[tokio::test]
async fn first_commit_creates_the_branch_and_a_pipeline_runs_on_it() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("code", None)).await.unwrap();
    assert_eq!(client.branch_head(project.id, "main").await.unwrap(), None);
    let actions = actions();
    let commit = client
        .create_commit(project.id, &NewCommit { branch: "main", commit_message: "Seed", actions: &actions })
        .await
        .unwrap();
    assert_eq!(client.branch_head(project.id, "main").await.unwrap().unwrap(), commit);
    let file = &double.project("platform-bot/code").unwrap().branches["main"]["run.sh"];
    assert_eq!((file.content.as_slice(), file.executable), (b"#!/bin/sh\n".as_slice(), true));

    // gitlab.com: a new project lets nobody pass pipeline variables until a Maintainer allows it.
    assert_eq!(project.ci_pipeline_variables_minimum_override_role.as_deref(), Some("no_one_allowed"));
    let err = client.create_pipeline(project.id, "main", &[("MODEL_PACKAGE_ARN", "arn:x")]).await.unwrap_err();
    assert!(err.is_pipeline_variables_not_allowed(), "{err}");
    let updated = client.set_pipeline_variables_role(project.id, "maintainer").await.unwrap();
    assert_eq!(updated.ci_pipeline_variables_minimum_override_role.as_deref(), Some("maintainer"));
    let pipeline = client.create_pipeline(project.id, "main", &[("MODEL_PACKAGE_ARN", "arn:x")]).await.unwrap();
    assert_eq!(pipeline.git_ref, "main");
    let state = double.project("platform-bot/code").unwrap();
    assert_eq!(state.pipelines.len(), 1);
    assert_eq!(state.pipelines[0].variables["MODEL_PACKAGE_ARN"], "arn:x");
    let listed = client.api_pipelines_since(project.id, "main", "2000-01-01T00:00:00Z").await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&pipeline));
    let variables = client.pipeline_variables(project.id, pipeline.id).await.unwrap();
    assert_eq!((variables[0].key.as_str(), variables[0].value.as_str()), ("MODEL_PACKAGE_ARN", "arn:x"));
    let err = client.create_pipeline(project.id, "nope", &[]).await.unwrap_err();
    assert!(err.to_string().contains("Reference not found"), "{err}");
}

#[tokio::test]
async fn a_gitlab_without_the_pipeline_variables_setting_lets_a_developer_pass_them() {
    let (double, client) = setup().await;
    double.set_pipeline_variables_default(PipelineVariablesDefault::Unsupported);
    let project = client.create_project(&new_project("old", None)).await.unwrap();
    assert_eq!(project.ci_pipeline_variables_minimum_override_role, None);
    let err = client.set_pipeline_variables_role(project.id, "maintainer").await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let actions = actions();
    client
        .create_commit(project.id, &NewCommit { branch: "main", commit_message: "Seed", actions: &actions })
        .await
        .unwrap();
    client.create_pipeline(project.id, "main", &[("MODEL_PACKAGE_ARN", "arn:x")]).await.unwrap();
}

#[tokio::test]
async fn a_commit_that_landed_behind_a_failed_answer_is_not_committed_again() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("landed", None)).await.unwrap();
    double.fail_next_after_applying("/repository/commits", 502);
    let actions = actions();
    let commit = client
        .create_commit(project.id, &NewCommit { branch: "main", commit_message: "Seed code", actions: &actions })
        .await
        .unwrap();
    assert_eq!(commit.message, "Seed code");
    assert_eq!(double.project("platform-bot/landed").unwrap().commits.len(), 1);
    assert_eq!(posts(&double, "/repository/commits"), 1, "the commit POST was sent again");

    // A 502 that GitLab's proxy gave before Rails saw the request: the commit is sent again.
    let project = client.create_project(&new_project("lost", None)).await.unwrap();
    double.fail_next(1, 502, None);
    client
        .create_commit(project.id, &NewCommit { branch: "main", commit_message: "Seed code", actions: &actions })
        .await
        .unwrap();
    assert_eq!(double.project("platform-bot/lost").unwrap().commits.len(), 1);
}

#[tokio::test]
async fn a_pipeline_post_is_never_repeated_blindly() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("deploy", None)).await.unwrap();
    double.seed_branch(project.id, "main");
    double.fail_next_after_applying("/pipeline", 502);
    let err = client.create_pipeline(project.id, "main", &[]).await.unwrap_err();
    assert!(matches!(err, GitLabError::Uncertain { .. }), "{err:?}");
    assert_eq!(posts(&double, "/pipeline"), 1);
    assert_eq!(double.project("platform-bot/deploy").unwrap().pipelines.len(), 1);

    double.hang_next_after_applying("/pipeline", Duration::from_secs(5));
    let err = client
        .with_deadline(Instant::now() + Duration::from_millis(800))
        .create_pipeline(project.id, "main", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, GitLabError::Uncertain { .. }), "{err:?}");
    assert_eq!(posts(&double, "/pipeline"), 2);

    // A 429 comes from the rate limiter, before anything ran: that one is repeated.
    double.fail_next(1, 429, Some(0));
    client.create_pipeline(project.id, "main", &[]).await.unwrap();
    assert_eq!(double.project("platform-bot/deploy").unwrap().pipelines.len(), 3);
}

#[tokio::test]
async fn each_403_names_its_cause() {
    let (double, _) = setup().await;
    let group = double.add_group("ml");

    let read_only = "glpat-read-api-only-000000";
    double.add_token(read_only, TokenSpec { scopes: vec!["read_api".into()], ..TokenSpec::owner("reader", 90) });
    let err = client_for(&double.url(), read_only).create_project(&new_project("x", None)).await.unwrap_err();
    assert!(matches!(err, GitLabError::Forbidden { cause: Forbidden::TokenScope, .. }), "{err:?}");
    assert!(err.to_string().contains("lacks the api scope"), "{err}");

    let limited = "glpat-limited-user-000000";
    double.add_token(limited, TokenSpec { projects_limit: Some(0), ..TokenSpec::owner("limited", 90) });
    let err = client_for(&double.url(), limited).create_project(&new_project("x", None)).await.unwrap_err();
    assert!(matches!(err, GitLabError::Forbidden { cause: Forbidden::ProjectLimit, .. }), "{err:?}");
    assert!(err.to_string().contains("Personal project creation is not allowed"), "{err}");

    let reporter = "glpat-reporter-user-00000";
    double.add_token(reporter, TokenSpec { group_role: Role::Reporter, ..TokenSpec::owner("reporter", 90) });
    let err = client_for(&double.url(), reporter).create_project(&new_project("x", Some(group))).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("namespace is not valid"), "{err}");

    let developer = "glpat-developer-user-0000";
    double.add_token(developer, TokenSpec { group_role: Role::Developer, ..TokenSpec::owner("dev", 90) });
    let owned = client_for(&double.url(), TOKEN).create_project(&new_project("team", Some(group))).await.unwrap();
    let variable = plain("K", "v");
    let err = client_for(&double.url(), developer).upsert_variable(owned.id, &variable).await.unwrap_err();
    assert!(matches!(err, GitLabError::Forbidden { cause: Forbidden::RoleOrArchived, .. }), "{err:?}");
    assert!(err.to_string().contains("lacks the role"), "{err}");

    double.archive(owned.id);
    let err = client_for(&double.url(), TOKEN).upsert_variable(owned.id, &variable).await.unwrap_err();
    assert!(err.to_string().contains("archived"), "{err}");
}

#[tokio::test]
async fn the_token_record_and_a_dead_token() {
    let (double, client) = setup().await;
    let record = client.token_record().await.unwrap().unwrap();
    assert_eq!(record.scopes, ["api"]);
    assert!(record.active && record.expires_at.is_some());

    double.update_token(TOKEN, |_, expires_at, _| *expires_at = Some(time::OffsetDateTime::now_utc().date()));
    let err = client.current_user().await.unwrap_err();
    assert!(matches!(err, GitLabError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("Token has expired"), "{err}");
    double.update_token(TOKEN, |_, expires_at, revoked| {
        *expires_at = None;
        *revoked = true;
    });
    let err = client.current_user().await.unwrap_err();
    assert!(err.to_string().contains("Token has been revoked"), "{err}");
}

#[tokio::test]
async fn a_group_is_read_without_its_projects() {
    let (double, client) = setup().await;
    let group = double.add_group("ml/team-b");
    assert_eq!(client.group(group).await.unwrap().full_path, "ml/team-b");
    let read = double.requests().into_iter().find(|r| r.path.ends_with(&format!("/groups/{group}"))).unwrap();
    assert_eq!(read.query.as_deref(), Some("with_projects=false"));
}

#[tokio::test]
async fn a_redirect_is_an_error_that_names_its_target() {
    let (double, _) = setup().await;
    let redirecting = double.redirecting_url().await;
    let client = client_for(&redirecting, TOKEN);
    let err = client.create_project(&new_project("x", None)).await.unwrap_err();
    let GitLabError::Redirected { status: 301, location, .. } = &err else { panic!("{err:?}") };
    assert_eq!(location, &format!("{}/api/v4/projects", double.url()));
    assert!(err.to_string().contains(&double.url()), "{err}");
    let requests = double.requests();
    assert_eq!(requests.len(), 1, "the redirect was followed: {requests:?}");
    assert!(double.projects().is_empty());
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let ca = TestCa::new();
    let double = GitLabDouble::start_tls(TOKEN, &ca).await;
    let err = client_for(&double.url(), TOKEN).current_user().await.unwrap_err();
    assert!(matches!(err, GitLabError::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("--gitlab-ca-bundle-secret-name"), "{err}");
    assert!(double.requests().is_empty(), "no request may pass an untrusted handshake");

    let trusting = lambda_common::http_client_trusting(ca.ca_pem(), "secret ca").unwrap();
    let client = client_for(&double.url(), TOKEN).with_http(trusting);
    assert_eq!(client.current_user().await.unwrap().username, testkit::gitlab::USERNAME);

    let err = lambda_common::http_client_trusting("not a certificate", "secret ca").unwrap_err().to_string();
    assert!(err.contains("secret ca"), "{err}");
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_servers_delay() {
    let (double, client) = setup().await;
    double.fail_next(1, 429, Some(1));
    let start = Instant::now();
    client.current_user().await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "retried after {:?}", start.elapsed());
    assert_eq!(double.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (double, client) = setup().await;
    double.fail_next(2, 502, None);
    client.current_user().await.unwrap();
    assert_eq!(double.requests().len(), 3);

    double.fail_next(4, 503, None);
    let err = client.current_user().await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert_eq!(double.requests().len(), 3 + 4, "max_attempts calls, no more");
}

#[tokio::test]
async fn rejected_token_fails_at_once_without_showing_it() {
    let double = GitLabDouble::start("glpat-the-right-one").await;
    let client = GitLab::new(&double.url(), token_from_secret("s", TOKEN).unwrap()).unwrap().with_retry(fast_retry());
    let err = client.current_user().await.unwrap_err();
    assert!(matches!(err, GitLabError::Unauthorized { .. }), "{err:?}");
    assert_eq!(double.requests().len(), 1, "a 401 is not retried");
    assert!(err.to_string().contains("Store a valid"), "{err}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn unreachable_server_is_reported_after_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = GitLab::new(&format!("http://127.0.0.1:{port}"), token_from_secret("s", TOKEN).unwrap())
        .unwrap()
        .with_retry(fast_retry());
    let err = client.current_user().await.unwrap_err();
    assert!(matches!(err, GitLabError::Unreachable { attempts: 4, .. }), "{err:?}");
    assert!(err.to_string().contains("connection"), "{err}");
}

#[tokio::test]
async fn retries_stop_before_the_deadline() {
    let (double, client) = setup().await;
    double.fail_next(100, 429, Some(2));
    let deadline = Instant::now() + Duration::from_millis(500);
    let err = client.with_deadline(deadline).current_user().await.unwrap_err();
    assert!(Instant::now() < deadline, "gave up too late");
    assert_eq!(err.status(), Some(429), "{err}");
}

#[test]
fn bad_urls_are_refused() {
    for url in [
        "gitlab.example.com",
        "ftp://gitlab.example.com",
        "",
        "http://gitlab.example.com",
        "https://gitlab.com@attacker.example",
        "https://gitlab.example.com/?next=https://attacker.example",
        "https://gitlab.example.com/#x",
    ] {
        let err = GitLab::new(url, token_from_secret("s", TOKEN).unwrap()).unwrap_err();
        assert!(matches!(err, GitLabError::BadUrl { .. }), "{url}: {err:?}");
    }
    for url in ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:80", "https://gitlab.example.com/gitlab"] {
        GitLab::new(url, token_from_secret("s", TOKEN).unwrap()).unwrap();
    }
}

#[tokio::test]
async fn only_an_owner_lifts_an_owner_only_pipeline_variables_setting() {
    let (double, owner) = setup().await;
    let group = double.add_group("ml");
    let maintainer_token = "glpat-maintainer-user-000";
    double.add_token(maintainer_token, TokenSpec { group_role: Role::Maintainer, ..TokenSpec::owner("maint", 90) });
    let maintainer = client_for(&double.url(), maintainer_token);
    let project = owner.create_project(&new_project("guarded", Some(group))).await.unwrap();

    // gitlab.com's `no_one_allowed`: a Maintainer may lift it (app/policies/project_policy.rb).
    maintainer.set_pipeline_variables_role(project.id, "maintainer").await.unwrap();
    let err = maintainer.set_pipeline_variables_role(project.id, "owner").await.unwrap_err();
    assert!(err.to_string().contains("to the owner role is not allowed"), "{err}");
    double.set_pipeline_variables_role(project.id, "owner");
    let err = maintainer.set_pipeline_variables_role(project.id, "maintainer").await.unwrap_err();
    assert!(err.to_string().contains("is not allowed"), "{err}");
    owner.set_pipeline_variables_role(project.id, "maintainer").await.unwrap();
}

#[tokio::test]
async fn an_oversized_answer_is_refused_not_held() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app =
        axum::Router::new().fallback(|| async { format!("{{\"id\": 1, \"username\": \"{}\"}}", "x".repeat(5 << 20)) });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = client_for(&url, TOKEN).current_user().await.unwrap_err();
    assert!(matches!(err, GitLabError::Unexpected { .. }) && err.to_string().contains("larger than"), "{err:?}");
}

#[test]
fn a_variables_debug_shows_no_value() {
    let variable = Variable {
        key: "AWS_SECRET_ACCESS_KEY".into(),
        value: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        masked: true,
        hidden: true,
        protected: true,
        raw: true,
    };
    let shown = format!("{variable:?}");
    assert!(shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("wJalr"), "{shown}");
    let sent = serde_json::to_value(&variable).unwrap();
    assert_eq!(sent["value"], "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "GitLab still gets the value");
}
