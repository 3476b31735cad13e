//! The EventBridge target for "SageMaker Model Package State Change": when a model package of
//! this project's group is approved, start the deploy project's GitLab pipeline for exactly
//! that package version.
//!
//! Errors fail the invocation, so Lambda's asynchronous retries and the rule's dead-letter
//! queue keep the event; other events are acknowledged without calling GitLab.

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_common::gitlab::GitLab;
use lambda_common::retry::RetryPolicy;
use lambda_common::secrets;
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Every variable the Lambda reads, for the template-drift test.
pub const ENV_VARS: &[&str] = &[
    "GITLAB_SERVER_URL",
    "GITLAB_TOKEN_SECRET_NAME",
    "MODEL_PACKAGE_GROUP_NAME",
    "DEPLOY_PROJECT_ID",
    "DEPLOY_PROJECT_PATH",
];

/// The branch the deploy pipeline runs on.
pub const DEPLOY_BRANCH: &str = "main";

/// Kept back from the invocation deadline so an error is still reported, not cut off.
const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gitlab_url: String,
    pub token_secret: String,
    pub model_package_group: String,
    /// The deploy project's ID (the checkin's output) or, failing that, its full path.
    pub deploy_project: String,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let env = lambda_common::Env(lookup);
        let deploy_project = match (env.optional("DEPLOY_PROJECT_ID"), env.optional("DEPLOY_PROJECT_PATH")) {
            (Some(id), _) => id,
            (None, Some(path)) => path,
            (None, None) => {
                return Err(
                    "neither DEPLOY_PROJECT_ID nor DEPLOY_PROJECT_PATH is set: the project template must set one"
                        .into(),
                );
            }
        };
        Ok(Config {
            gitlab_url: env.required("GITLAB_SERVER_URL")?,
            token_secret: env.required("GITLAB_TOKEN_SECRET_NAME")?,
            model_package_group: env.required("MODEL_PACKAGE_GROUP_NAME")?,
            deploy_project,
        })
    }
}

/// The part of the event's `detail` this Lambda reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelPackageStateChange {
    pub model_package_group_name: String,
    pub model_package_arn: String,
    pub model_approval_status: String,
    pub model_package_version: u64,
}

pub struct Deps {
    pub config: Result<Config, String>,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub gitlab_retry: RetryPolicy,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, config: Result<Config, String>) -> Deps {
        Deps { config, secrets: aws_sdk_secretsmanager::Client::new(sdk), gitlab_retry: RetryPolicy::default() }
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let result = trigger(deps, event.payload, lambda_common::deadline_instant(event.context.deadline)).await;
    if let Err(reason) = &result {
        tracing::error!(reason, "the deploy pipeline was not started");
    }
    result.map_err(Error::from)
}

async fn trigger(deps: &Deps, payload: Value, deadline: Instant) -> Result<Value, String> {
    let event: EventBridgeEvent<ModelPackageStateChange> = serde_json::from_value(payload)
        .map_err(|err| format!("the event is not a SageMaker Model Package State Change: {err}"))?;
    let detail = &event.detail;
    let config = deps.config.as_ref().map_err(Clone::clone)?;
    let ignore = |why: &str| {
        tracing::info!(
            group = detail.model_package_group_name,
            version = detail.model_package_version,
            status = detail.model_approval_status,
            why,
            "event ignored"
        );
        Ok(json!({ "action": "ignored", "why": why }))
    };
    if detail.model_package_group_name != config.model_package_group {
        return ignore("another project's model package group");
    }
    if detail.model_approval_status != "Approved" {
        return ignore("not an approval");
    }

    let token = secrets::read_gitlab_token(&deps.secrets, &config.token_secret).await.map_err(|e| e.to_string())?;
    let deadline = deadline.checked_sub(DEADLINE_RESERVE).unwrap_or_else(Instant::now);
    let gitlab = GitLab::new(&config.gitlab_url, token)
        .map_err(|e| e.to_string())?
        .with_retry(deps.gitlab_retry)
        .with_deadline(deadline);
    let project_id = match config.deploy_project.parse::<u64>() {
        Ok(id) => id,
        Err(_) => {
            let project = gitlab.project(&config.deploy_project).await.map_err(|e| e.to_string())?;
            project
                .ok_or_else(|| {
                    format!(
                        "deploy project {} does not exist on {}: was it renamed or deleted?",
                        config.deploy_project,
                        gitlab.host()
                    )
                })?
                .id
        }
    };
    let version = detail.model_package_version.to_string();
    let variables =
        [("MODEL_PACKAGE_ARN", detail.model_package_arn.as_str()), ("MODEL_PACKAGE_VERSION", version.as_str())];
    let pipeline =
        gitlab.create_pipeline(project_id, DEPLOY_BRANCH, &variables).await.map_err(|err| match err.status() {
            Some(404) => format!(
                "deploy project {} does not exist on {}: was it deleted? ({err})",
                config.deploy_project,
                gitlab.host()
            ),
            _ => err.to_string(),
        })?;
    tracing::info!(
        project_id,
        pipeline = pipeline.id,
        url = pipeline.web_url,
        model_package = detail.model_package_arn,
        "deploy pipeline started"
    );
    Ok(json!({ "action": "pipeline started", "pipeline_id": pipeline.id, "web_url": pipeline.web_url }))
}
