//! The checkin's two custom resources as CloudFormation sends them, answered by the packaged
//! `bootstrap` to a local ResponseURL; then the fault runs: GitLab unreachable, a rejected token,
//! CloudFormation retrying the Create.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use testkit::cfn::Stack;
use testkit::gitlab::GitLabDouble;
use testkit::moto::{ACCOUNT_ID, REGION};
use testkit::response_sink::ResponseSink;
use testkit::runtime_api::{Outcome, RuntimeApi};

use crate::calls::Caller;
use crate::provision::lambda_env;
use crate::runner::Runner;
use crate::{PROJECT_ID, REVOKED_TOKEN_SECRET, World, aws_json};

/// The checkin's two custom resources in `cfn/project.yml`: (type, logical ID).
const PROJECT_PATHS: (&str, &str) = (seedcode_checkin::PROJECT_PATHS_RESOURCE, "GitLabProjectPaths");

pub(crate) const SEED_CODE: (&str, &str) = ("Custom::SeedCodeCheckin", "SeedCodeCheckin");

fn create_event(sink: &ResponseSink, request_id: &str, (resource_type, logical_id): (&str, &str)) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": sink.url(),
        "ResourceType": resource_type,
        "LogicalResourceId": logical_id,
        "StackId": format!("arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/SC-{ACCOUNT_ID}-pp-e2e/0000"),
        "ServiceToken": format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:mlops-gitlab-{PROJECT_ID}-checkin"),
        "ResourceProperties": { "ServiceToken": "checkin" }
    })
}

/// Sends a Create as CloudFormation does and returns the one answer the ResponseURL got.
async fn answer_to(
    api: &RuntimeApi,
    request_id: &str,
    resource: (&str, &str),
    time_limit: Duration,
) -> anyhow::Result<Value> {
    let sink = ResponseSink::start().await;
    let started = Instant::now();
    let event = create_event(&sink, request_id, resource);
    let outcome = api.try_invoke(event, time_limit).await?;
    ensure!(matches!(outcome, Outcome::Response { .. }), "the invocation ended {outcome:?}");
    let answers = sink.wait(Duration::from_secs(1)).await;
    ensure!(started.elapsed() < time_limit, "answered after the deadline ({:?})", started.elapsed());
    let [answer] = &answers[..] else { bail!("{} answers reached the ResponseURL, not one", answers.len()) };
    Ok(answer.body.clone())
}

pub(crate) fn timeout_of(stack: &Stack, function: &str) -> Duration {
    let seconds = stack.property(function, &["Timeout"]).ok().and_then(|t| t.as_u64()).unwrap_or(60);
    Duration::from_secs(seconds)
}

/// CloudFormation's first request: the projects, made empty, and the sub of their main
/// pipelines' ID tokens, which the CI role's trust then names.
pub(crate) async fn project_paths(
    api: &RuntimeApi,
    stack: &mut Stack,
    gitlab: &GitLabDouble,
) -> anyhow::Result<((), String)> {
    let answer = answer_to(api, "e2e-paths-1", PROJECT_PATHS, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "the checkin answered {answer}");
    for key in ["BuildProjectPath", "DeployProjectPath", "BuildSubject", "DeploySubject"] {
        let value = answer["Data"][key].as_str().with_context(|| format!("Data has no {key}: {answer}"))?;
        stack.set_attribute(PROJECT_PATHS.1, key, value);
    }
    let trust = stack.property("CiRole", &["AssumeRolePolicyDocument"])?;
    let trust = trust.as_str().context("the CI role's trust policy is not JSON text")?;
    let mut subjects = Vec::new();
    for (path, subject) in [("BuildProjectPath", "BuildSubject"), ("DeployProjectPath", "DeploySubject")] {
        let (path, subject) = (&answer["Data"][path], answer["Data"][subject].as_str().unwrap_or_default());
        ensure!(trust.contains(&format!("\"{subject}\"")), "the CI role does not trust {subject}: {trust}");
        ensure!(
            gitlab.project(path.as_str().unwrap_or_default()).is_some_and(|p| p.branches.is_empty()),
            "{path} is not an empty project before the seed commit"
        );
        subjects.push(subject.to_owned());
    }
    Ok(((), format!("the CI role trusts the subs {}", subjects.join(" and "))))
}

pub(crate) async fn create(api: &RuntimeApi, stack: &Stack) -> anyhow::Result<(Value, String)> {
    let answer = answer_to(api, "e2e-create-1", SEED_CODE, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "the checkin answered {answer}");
    for key in ["BuildProjectId", "BuildProjectPath", "BuildProjectCloneUrl", "DeployProjectId", "DeployProjectPath"] {
        ensure!(answer["Data"][key].as_str().is_some_and(|v| !v.is_empty()), "Data has no {key}: {answer}");
    }
    // The first pipeline assumes the CI role: the projects must be where its trust says.
    for key in ["BuildProjectPath", "DeployProjectPath"] {
        let trusted = stack.attribute(PROJECT_PATHS.1, key);
        ensure!(
            answer["Data"][key].as_str() == trusted,
            "{key} is {}, but the CI role trusts {trusted:?}",
            answer["Data"][key]
        );
    }
    let summary = format!("SUCCESS, {}; {}", answer["PhysicalResourceId"], answer["Reason"].as_str().unwrap_or(""));
    Ok((answer, summary))
}

/// A checkin process with `overrides` on the template's environment, answering one Create.
async fn checkin_with(
    world: &World,
    stack: &Stack,
    runner: &Runner,
    overrides: &[(&str, &str)],
    time_limit: Duration,
) -> anyhow::Result<Value> {
    let mut env = lambda_env(stack, "CheckinFunction")?;
    let fault_run = [("AWS_ACCESS_KEY_ID", Caller::FaultRun.access_key_id())];
    for (key, value) in overrides.iter().chain(&fault_run) {
        env.retain(|(k, _)| k != key);
        env.push(((*key).to_owned(), (*value).to_owned()));
    }
    let api = RuntimeApi::start().await;
    let _checkin = runner.spawn(&api, &world.work.path().join("checkin/bootstrap"), &env);
    answer_to(&api, "e2e-fault", SEED_CODE, time_limit).await
}

pub(crate) async fn unreachable_gitlab(world: &World, stack: &Stack, runner: &Runner) -> anyhow::Result<((), String)> {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("https://{closed}");
    let time_limit = Duration::from_secs(20);
    let started = Instant::now();
    let answer = checkin_with(world, stack, runner, &[("GITLAB_SERVER_URL", &url)], time_limit).await?;
    ensure!(answer["Status"] == "FAILED", "answered {answer}");
    Ok((
        (),
        format!(
            "one FAILED after {:.1} s of a {} s limit: {}",
            started.elapsed().as_secs_f64(),
            time_limit.as_secs(),
            answer["Reason"]
        ),
    ))
}

pub(crate) async fn rejected_token(world: &World, stack: &Stack, runner: &Runner) -> anyhow::Result<((), String)> {
    let revoked = "glpat-revoked-e2e";
    aws_json(
        "secretsmanager",
        "secretsmanager.CreateSecret",
        json!({ "Name": REVOKED_TOKEN_SECRET, "SecretString": revoked }),
    )
    .await?;
    let answer = checkin_with(
        world,
        stack,
        runner,
        &[("GITLAB_TOKEN_SECRET_NAME", REVOKED_TOKEN_SECRET)],
        Duration::from_secs(30),
    )
    .await?;
    let reason = answer["Reason"].as_str().unwrap_or_default();
    ensure!(answer["Status"] == "FAILED", "answered {answer}");
    ensure!(reason.contains(REVOKED_TOKEN_SECRET), "the reason does not name the secret: {reason}");
    ensure!(!reason.contains(revoked), "the reason shows the token");
    Ok(((), format!("FAILED: {reason}")))
}

pub(crate) async fn retried_create(api: &RuntimeApi, stack: &Stack, world: &World) -> anyhow::Result<((), String)> {
    let commits = |w: &World| w.gitlab.projects().iter().map(|p| p.commits.len()).sum::<usize>();
    let before = (world.gitlab.projects().len(), commits(world));
    let answer = answer_to(api, "e2e-create-2", SEED_CODE, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "answered {answer}");
    let after = (world.gitlab.projects().len(), commits(world));
    ensure!(before == after, "projects and commits went from {before:?} to {after:?}");
    Ok(((), format!("SUCCESS again, still {} projects and {} commits", after.0, after.1)))
}
