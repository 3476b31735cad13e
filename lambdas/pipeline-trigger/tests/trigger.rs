//! The trigger Lambda against moto (Secrets Manager) and the GitLab API double.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_common::retry::RetryPolicy;
use lambda_runtime::{Context, LambdaEvent};
use pipeline_trigger::{Config, Deps, handle};
use serde_json::{Value, json};
use testkit::gitlab::GitLabDouble;
use testkit::moto::{ACCOUNT_ID, REGION, moto};
use testkit::runtime_api::{Outcome, RuntimeApi};

const TOKEN: &str = "glpat-Trigger-Token-0123456789";
const GROUP: &str = "churn-p-abc123def456";

fn state_change(group: &str, status: &str, version: u64) -> Value {
    let arn = format!("arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/{group}/{version}");
    json!({
        "version": "0",
        "id": "3f5d2b0a-8a7e-4c3b-9d55-6a1c2e0f4b11",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT_ID,
        "time": "2026-11-26T10:00:00Z",
        "region": REGION,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": version,
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            "CreationTime": 1764150000000u64
        }
    })
}

struct Stand {
    gitlab: GitLabDouble,
    deploy_id: u64,
    env: Vec<(&'static str, String)>,
}

async fn stand() -> Stand {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    testkit::logs::capture();
    let secret = format!("trigger-token-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let secrets = aws_sdk_secretsmanager::Client::new(&moto().sdk_config());
    secrets.create_secret().name(&secret).secret_string(TOKEN).send().await.unwrap();
    let gitlab = GitLabDouble::start(TOKEN).await;
    let deploy_id = gitlab.seed_project(gitlab.user_namespace_id(), "churn-deploy-p-abc123def456", "deploy");
    gitlab.seed_branch(deploy_id, "main");
    // What the checkin does to the deploy project: gitlab.com lets nobody pass variables otherwise.
    gitlab.set_pipeline_variables_role(deploy_id, "maintainer");
    let env = vec![
        ("GITLAB_SERVER_URL", gitlab.url()),
        ("GITLAB_TOKEN_SECRET_NAME", secret),
        ("MODEL_PACKAGE_GROUP_NAME", GROUP.into()),
        ("DEPLOY_PROJECT_ID", deploy_id.to_string()),
    ];
    Stand { gitlab, deploy_id, env }
}

impl Stand {
    fn deps(&self) -> Deps {
        let config = Config::from_lookup(|name| self.env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
        let mut deps = Deps::new(&moto().sdk_config(), config);
        deps.gitlab_retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        deps
    }

    async fn invoke(&self, event: Value) -> Result<Value, String> {
        let mut context = Context::default();
        context.invoked_function_arn =
            format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:mlops-gitlab-p-abc123def456-trigger");
        context.deadline =
            (SystemTime::now() + Duration::from_secs(30)).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        handle(&self.deps(), LambdaEvent::new(event, context)).await.map_err(|err| err.to_string())
    }

    fn pipelines(&self) -> Vec<testkit::gitlab::PipelineState> {
        self.gitlab.projects().into_iter().find(|p| p.id == self.deploy_id).unwrap().pipelines
    }
}

fn assert_token_free(text: &str) {
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
}

#[tokio::test]
async fn approval_starts_one_pipeline_for_exactly_that_version() {
    let stand = stand().await;
    let answer = stand.invoke(state_change(GROUP, "Approved", 3)).await.unwrap();
    assert_eq!(answer["action"], "pipeline started");
    let pipelines = stand.pipelines();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].git_ref, "main");
    let arn = format!("arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/{GROUP}/3");
    assert_eq!(pipelines[0].variables.get("MODEL_PACKAGE_ARN"), Some(&arn));
    assert_eq!(pipelines[0].variables.get("MODEL_PACKAGE_VERSION").map(String::as_str), Some("3"));
    let calls: Vec<String> = stand.gitlab.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let id = stand.deploy_id;
    assert_eq!(
        calls,
        [
            "GET /api/v4/personal_access_tokens/self".to_owned(),
            format!("GET /api/v4/projects/{id}/pipelines"),
            format!("POST /api/v4/projects/{id}/pipeline"),
        ],
        "the token's health, this approval's pipeline if any, then the start"
    );
    let listed = &stand.gitlab.requests()[1];
    let query = listed.query.as_deref().unwrap();
    assert!(query.contains("source=api") && query.contains("ref=main"), "{query}");
    assert!(query.contains("updated_after=2026-11-26T09:55:00Z"), "since the event, less clock skew: {query}");
    assert_token_free(&testkit::logs::captured());
}

#[tokio::test]
async fn an_event_delivered_twice_starts_one_pipeline() {
    let stand = stand().await;
    let first = stand.invoke(state_change(GROUP, "Approved", 3)).await.unwrap();
    let again = stand.invoke(state_change(GROUP, "Approved", 3)).await.unwrap();
    assert_eq!(again["action"], "already started", "{again}");
    assert_eq!(again["pipeline_id"], first["pipeline_id"]);
    assert_eq!(stand.pipelines().len(), 1);
    // Another version's approval is another deploy.
    stand.invoke(state_change(GROUP, "Approved", 4)).await.unwrap();
    assert_eq!(stand.pipelines().len(), 2);
}

#[tokio::test]
async fn a_start_whose_answer_was_lost_is_found_not_repeated() {
    let stand = stand().await;
    stand.gitlab.fail_next_after_applying("/pipeline", 502);
    let answer = stand.invoke(state_change(GROUP, "Approved", 5)).await.unwrap();
    assert_eq!(answer["action"], "pipeline started", "{answer}");
    assert_eq!(stand.pipelines().len(), 1);
    let posts = stand.gitlab.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "the pipeline POST was sent again");
    assert_eq!(answer["pipeline_id"], stand.pipelines()[0].id);
}

#[tokio::test]
async fn pipeline_variables_refused_by_gitlab_name_the_setting() {
    let stand = stand().await;
    stand.gitlab.set_pipeline_variables_role(stand.deploy_id, "no_one_allowed");
    let err = stand.invoke(state_change(GROUP, "Approved", 6)).await.unwrap_err();
    assert!(err.contains("Insufficient permissions to set pipeline variables"), "{err}");
    assert!(err.contains("Minimum role to use pipeline variables") && err.contains("Maintainer"), "{err}");
    assert!(stand.pipelines().is_empty(), "no pipeline may start without the package");
}

#[tokio::test]
async fn an_archived_deploy_project_is_named() {
    let stand = stand().await;
    stand.gitlab.archive(stand.deploy_id);
    let err = stand.invoke(state_change(GROUP, "Approved", 6)).await.unwrap_err();
    assert!(err.contains("is archived"), "{err}");
}

#[tokio::test]
async fn a_token_near_its_end_is_logged_on_every_run() {
    let stand = stand().await;
    let soon = time::OffsetDateTime::now_utc().date() + time::Duration::days(5);
    stand.gitlab.update_token(TOKEN, |_, expires_at, _| *expires_at = Some(soon));
    stand.invoke(state_change(GROUP, "Approved", 7)).await.unwrap();
    assert!(testkit::logs::captured().contains(&format!("expires on {soon}, in 5 days")));
    stand.gitlab.update_token(TOKEN, |_, expires_at, _| *expires_at = Some(time::OffsetDateTime::now_utc().date()));
    let err = stand.invoke(state_change(GROUP, "Approved", 8)).await.unwrap_err();
    assert!(err.contains("Token has expired"), "{err}");
}

#[tokio::test]
async fn other_events_are_acknowledged_without_calling_gitlab() {
    let stand = stand().await;
    for event in [
        state_change(GROUP, "PendingManualApproval", 4),
        state_change(GROUP, "Rejected", 4),
        state_change("other-project-p-zzz", "Approved", 1),
    ] {
        let answer = stand.invoke(event).await.unwrap();
        assert_eq!(answer["action"], "ignored", "{answer}");
    }
    assert!(stand.gitlab.requests().is_empty());
}

#[tokio::test]
async fn forged_events_start_nothing() {
    let stand = stand().await;
    let genuine = state_change(GROUP, "Approved", 4);
    let forged = |change: &dyn Fn(&mut Value)| {
        let mut event = genuine.clone();
        change(&mut event);
        event
    };
    let other_group_arn = format!("arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/other-team-p-zzz/4");
    let foreign_arn = format!("arn:aws:sagemaker:{REGION}:999999999999:model-package/{GROUP}/4");
    for (why, event) in [
        ("someone's own source", forged(&|e| e["source"] = json!("my.app"))),
        ("another detail type", forged(&|e| e["detail-type"] = json!("SageMaker Model State Change"))),
        ("another account", forged(&|e| e["account"] = json!("999999999999"))),
        ("another region", forged(&|e| e["region"] = json!("eu-west-1"))),
        ("no account", forged(&|e| drop(e.as_object_mut().unwrap().remove("account")))),
        (
            "another group's package under this group's name",
            forged(&|e| e["detail"]["ModelPackageArn"] = json!(other_group_arn)),
        ),
        ("a package of another account", forged(&|e| e["detail"]["ModelPackageArn"] = json!(foreign_arn))),
        ("another version than the ARN's", forged(&|e| e["detail"]["ModelPackageVersion"] = json!(5))),
    ] {
        let answer = stand.invoke(event).await.unwrap();
        assert_eq!(answer["action"], "ignored", "{why}: {answer}");
    }
    assert!(stand.gitlab.requests().is_empty(), "a forged event reached GitLab");
    assert!(stand.pipelines().is_empty());
    stand.invoke(genuine).await.unwrap();
    assert_eq!(stand.pipelines().len(), 1);
}

#[tokio::test]
async fn deploy_project_found_by_exact_path_when_no_id() {
    let mut stand = stand().await;
    stand.env.retain(|(k, _)| *k != "DEPLOY_PROJECT_ID");
    // A project whose name contains the same words must not be picked.
    stand.gitlab.seed_project(stand.gitlab.user_namespace_id(), "churn-deploy-p-abc123def456-old", "decoy");
    stand.env.push(("DEPLOY_PROJECT_PATH", "platform-bot/churn-deploy-p-abc123def456".into()));
    stand.invoke(state_change(GROUP, "Approved", 5)).await.unwrap();
    assert_eq!(stand.pipelines().len(), 1);

    stand.env.retain(|(k, _)| *k != "DEPLOY_PROJECT_PATH");
    stand.env.push(("DEPLOY_PROJECT_PATH", "platform-bot/gone".into()));
    let err = stand.invoke(state_change(GROUP, "Approved", 6)).await.unwrap_err();
    assert!(err.contains("deploy project platform-bot/gone does not exist"), "{err}");
}

#[tokio::test]
async fn rate_limit_is_retried() {
    let stand = stand().await;
    stand.gitlab.fail_next(1, 429, Some(0));
    stand.invoke(state_change(GROUP, "Approved", 7)).await.unwrap();
    assert_eq!(stand.pipelines().len(), 1);
    assert_eq!(stand.gitlab.requests().len(), 4, "the rate-limited read was sent twice");
}

#[tokio::test]
async fn rejected_token_fails_the_invocation() {
    let mut stand = stand().await;
    let elsewhere = GitLabDouble::start("glpat-someone-else").await;
    stand.env[0].1 = elsewhere.url();
    let err = stand.invoke(state_change(GROUP, "Approved", 8)).await.unwrap_err();
    assert!(err.contains("did not accept the token") && err.contains("401"), "{err}");
    assert_token_free(&err);
}

#[tokio::test]
async fn deleted_project_and_gitlab_down_fail_the_invocation() {
    let mut stand = stand().await;
    stand.env[3].1 = "999999".into();
    let err = stand.invoke(state_change(GROUP, "Approved", 9)).await.unwrap_err();
    assert!(err.contains("deploy project 999999 does not exist"), "{err}");

    stand.gitlab.fail_next(3, 503, None);
    stand.env[3].1 = stand.deploy_id.to_string();
    let err = stand.invoke(state_change(GROUP, "Approved", 9)).await.unwrap_err();
    assert!(err.contains("503"), "{err}");
}

#[tokio::test]
async fn malformed_events_fail_clearly() {
    let stand = stand().await;
    let err = stand.invoke(json!({ "detail": { "ModelApprovalStatus": "Approved" } })).await.unwrap_err();
    assert!(err.contains("not a SageMaker Model Package State Change"), "{err}");
    assert!(stand.gitlab.requests().is_empty());
}

#[tokio::test]
async fn the_real_binary_starts_a_pipeline_through_the_runtime_api() {
    use tokio::io::AsyncReadExt;

    let stand = stand().await;
    let api = RuntimeApi::start().await;
    let mut env = moto().lambda_env();
    env.extend(stand.env.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut function = api.spawn_function(Path::new(env!("CARGO_BIN_EXE_pipeline-trigger")), &env);

    let outcome = api.invoke(state_change(GROUP, "Approved", 10), Duration::from_secs(20)).await;
    let Outcome::Response { body, .. } = outcome else { panic!("expected a response, got {outcome:?}") };
    assert_eq!(body["action"], "pipeline started");
    let outcome = api.invoke(json!({ "detail": {} }), Duration::from_secs(20)).await;
    assert!(matches!(outcome, Outcome::Error { .. }), "{outcome:?}");
    assert_eq!(stand.pipelines().len(), 1);

    function.kill().await.unwrap();
    let mut log = String::new();
    function.stdout.take().unwrap().read_to_string(&mut log).await.unwrap();
    assert!(log.contains("deploy pipeline started"), "{log}");
    assert_token_free(&log);
}
