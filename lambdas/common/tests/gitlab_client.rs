//! The GitLab client against the GitLab API double: the calls, their errors and the retries.

use std::time::{Duration, Instant};

use lambda_common::gitlab::{CommitAction, GitLab, GitLabError, NewCommit, NewProject, Variable};
use lambda_common::retry::RetryPolicy;
use lambda_common::token::token_from_secret;
use lambda_testkit::gitlab::GitLabDouble;

const TOKEN: &str = "glpat-test-token-0123456789";

fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) }
}

async fn setup() -> (GitLabDouble, GitLab) {
    let double = GitLabDouble::start(TOKEN).await;
    let client = GitLab::new(&double.url(), token_from_secret("s", TOKEN).unwrap()).unwrap().with_retry(fast_retry());
    (double, client)
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
    assert_eq!(client.current_user().await.unwrap().username, lambda_testkit::gitlab::USERNAME);
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
    let mut variable =
        Variable { key: "AWS_REGION".into(), value: "eu-west-1".into(), masked: false, protected: false, raw: true };
    client.upsert_variable(project.id, &variable).await.unwrap();
    variable.value = "us-east-1".into();
    client.upsert_variable(project.id, &variable).await.unwrap();
    let state = double.project("platform-bot/vars").unwrap();
    assert_eq!(state.variables["AWS_REGION"].0.value, "us-east-1");
    let methods: Vec<String> =
        double.requests().iter().filter(|r| r.path.contains("/variables")).map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["POST", "POST", "PUT"]);

    let unmaskable = Variable { key: "SHORT".into(), value: "abc".into(), masked: true, protected: false, raw: true };
    let err = client.upsert_variable(project.id, &unmaskable).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn first_commit_creates_the_branch_and_a_pipeline_runs_on_it() {
    let (double, client) = setup().await;
    let project = client.create_project(&new_project("code", None)).await.unwrap();
    assert_eq!(client.branch_head(project.id, "main").await.unwrap(), None);
    let actions = [CommitAction {
        action: "create",
        file_path: "run.sh".into(),
        content: "IyEvYmluL3NoCg==".into(),
        encoding: "base64",
        execute_filemode: true,
    }];
    let commit = client
        .create_commit(project.id, &NewCommit { branch: "main", commit_message: "Seed", actions: &actions })
        .await
        .unwrap();
    assert_eq!(client.branch_head(project.id, "main").await.unwrap().unwrap(), commit);
    let file = &double.project("platform-bot/code").unwrap().branches["main"]["run.sh"];
    assert_eq!((file.content.as_slice(), file.executable), (b"#!/bin/sh\n".as_slice(), true));

    let pipeline = client.create_pipeline(project.id, "main", &[("MODEL_PACKAGE_ARN", "arn:x")]).await.unwrap();
    assert_eq!(pipeline.git_ref, "main");
    let state = double.project("platform-bot/code").unwrap();
    assert_eq!(state.pipelines.len(), 1);
    assert_eq!(state.pipelines[0].variables["MODEL_PACKAGE_ARN"], "arn:x");
    let err = client.create_pipeline(project.id, "nope", &[]).await.unwrap_err();
    assert!(err.to_string().contains("Reference not found"), "{err}");
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
    assert!(matches!(err, GitLabError::Unauthorized { status: 401, .. }), "{err:?}");
    assert_eq!(double.requests().len(), 1, "a 401 is not retried");
    assert!(err.to_string().contains("valid token"), "{err}");
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
    for url in ["gitlab.example.com", "ftp://gitlab.example.com", ""] {
        let err = GitLab::new(url, token_from_secret("s", TOKEN).unwrap()).unwrap_err();
        assert!(matches!(err, GitLabError::BadUrl { .. }), "{url}: {err:?}");
    }
}
