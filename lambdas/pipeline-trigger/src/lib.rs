//! The EventBridge target for "SageMaker Model Package State Change": when a model package of
//! this project's group is approved, start the deploy project's GitLab pipeline for exactly
//! that package version.
//!
//! Errors fail the invocation, so Lambda's asynchronous retries and the rule's dead-letter
//! queue keep the event; other events are acknowledged without calling GitLab. Only a genuine
//! event is acted on: from SageMaker (`aws.sagemaker`, which no one else may put on a bus), of
//! the state-change type, in this function's account and region, for a package of this project's
//! group. Anyone allowed to invoke the function could send anything else.
//!
//! One approval starts at most one pipeline, however often its event arrives (EventBridge
//! delivers at least once; Lambda retries a failed invocation): before starting one, and after a
//! start whose answer was lost, GitLab's own list of API pipelines since the approval is searched
//! for one carrying this package's ARN.

mod error;

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_common::gitlab::{Forbidden, GitLab, GitLabError, Pipeline};
use lambda_common::retry::RetryPolicy;
use lambda_common::{ConfigError, FunctionArn};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::error::TriggerError;

/// Every variable the Lambda reads, for the template-drift test.
pub const ENV_VARS: &[&str] = &[
    "GITLAB_SERVER_URL",
    "GITLAB_TOKEN_SECRET_NAME",
    "GITLAB_CA_BUNDLE_SECRET_NAME",
    "MODEL_PACKAGE_GROUP_NAME",
    "DEPLOY_PROJECT_ID",
    "DEPLOY_PROJECT_PATH",
];

/// The branch the deploy pipeline runs on.
pub const DEPLOY_BRANCH: &str = "main";

/// What SageMaker's events carry: `source` and `detail-type`.
pub const EVENT_SOURCE: &str = "aws.sagemaker";
pub const EVENT_DETAIL_TYPE: &str = "SageMaker Model Package State Change";

/// The variable that carries the approved package to the deploy pipeline.
pub const PACKAGE_VARIABLE: &str = "MODEL_PACKAGE_ARN";

/// How far before the event's time a pipeline still counts as its own: clocks of AWS and GitLab
/// may disagree by this much.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Kept back from the invocation deadline so an error is still reported, not cut off.
const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gitlab_url: String,
    pub token_secret: String,
    pub ca_bundle_secret: Option<String>,
    pub model_package_group: String,
    /// The deploy project's ID (the checkin's output) or, failing that, its full path.
    pub deploy_project: String,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = lambda_common::Env(lookup);
        let deploy_project = match (env.optional("DEPLOY_PROJECT_ID"), env.optional("DEPLOY_PROJECT_PATH")) {
            (Some(id), _) => id,
            (None, Some(path)) => path,
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "neither DEPLOY_PROJECT_ID nor DEPLOY_PROJECT_PATH is set: the project template must set one"
                        .into(),
                ));
            }
        };
        Ok(Config {
            gitlab_url: env.required("GITLAB_SERVER_URL")?,
            token_secret: env.required("GITLAB_TOKEN_SECRET_NAME")?,
            ca_bundle_secret: env.optional("GITLAB_CA_BUNDLE_SECRET_NAME"),
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
    pub config: Result<Config, ConfigError>,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub gitlab_retry: RetryPolicy,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, config: Result<Config, ConfigError>) -> Deps {
        Deps { config, secrets: aws_sdk_secretsmanager::Client::new(sdk), gitlab_retry: RetryPolicy::default() }
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let deadline = lambda_common::deadline_instant(event.context.deadline);
    let result = match FunctionArn::parse(&event.context.invoked_function_arn) {
        Ok(function) => trigger(deps, event.payload, &function, deadline).await,
        Err(err) => Err(err.into()),
    };
    if let Err(err) = &result {
        tracing::error!(reason = %err, "the deploy pipeline was not started");
    }
    result.map_err(Error::from)
}

async fn trigger(
    deps: &Deps,
    payload: Value,
    function: &FunctionArn,
    deadline: Instant,
) -> Result<Value, TriggerError> {
    let event: EventBridgeEvent<ModelPackageStateChange> =
        serde_json::from_value(payload).map_err(|err| TriggerError::NotAStateChange(err.to_string()))?;
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
    if event.source != EVENT_SOURCE || event.detail_type != EVENT_DETAIL_TYPE {
        return ignore("not a SageMaker model package state change");
    }
    if event.account.as_deref() != Some(function.account.as_str())
        || event.region.as_deref() != Some(function.region.as_str())
    {
        return ignore("from another account or region");
    }
    if detail.model_package_group_name != config.model_package_group
        || !is_package_of(
            &detail.model_package_arn,
            function,
            &config.model_package_group,
            detail.model_package_version,
        )
    {
        return ignore("another project's model package group");
    }
    if detail.model_approval_status != "Approved" {
        return ignore("not an approval");
    }

    let deadline = deadline.checked_sub(DEADLINE_RESERVE).unwrap_or_else(Instant::now);
    let gitlab = lambda_common::gitlab_client(
        &deps.secrets,
        &config.gitlab_url,
        &config.token_secret,
        config.ca_bundle_secret.as_deref(),
    )
    .await?
    .with_retry(deps.gitlab_retry)
    .with_deadline(deadline);
    // Logged on every run while the token nears its end, so the warning is seen before approvals fail.
    gitlab.check_token().await?;
    let project_id = match config.deploy_project.parse::<u64>() {
        Ok(id) => id,
        Err(_) => {
            let project = gitlab.project(&config.deploy_project).await?;
            project
                .ok_or_else(|| TriggerError::NoSuchProject {
                    project: config.deploy_project.clone(),
                    host: gitlab.host().to_string(),
                })?
                .id
        }
    };
    let arn = detail.model_package_arn.as_str();
    // EventBridge always sets `time`; without it, a day back covers Lambda's retries of an event.
    let happened = event.time.unwrap_or_else(|| {
        chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()) - chrono::TimeDelta::days(1)
    });
    let since = (happened - CLOCK_SKEW).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let existing = match started_for(&gitlab, project_id, arn, &since).await {
        Ok(existing) => existing,
        Err(err) => return Err(explain(&gitlab, config, project_id, err).await),
    };
    if let Some(pipeline) = existing {
        tracing::info!(
            project_id,
            pipeline = pipeline.id,
            model_package = arn,
            "this approval's pipeline exists already"
        );
        return Ok(json!({ "action": "already started", "pipeline_id": pipeline.id, "web_url": pipeline.web_url }));
    }
    let version = detail.model_package_version.to_string();
    let variables = [(PACKAGE_VARIABLE, arn), ("MODEL_PACKAGE_VERSION", version.as_str())];
    let pipeline = match gitlab.create_pipeline(project_id, DEPLOY_BRANCH, &variables).await {
        Ok(pipeline) => pipeline,
        Err(err @ GitLabError::Uncertain { .. }) => match started_for(&gitlab, project_id, arn, &since).await {
            Ok(Some(pipeline)) => pipeline,
            Ok(None) => return Err(TriggerError::NotStarted { lost: Box::new(err), arn: arn.to_owned() }),
            Err(listing) => return Err(TriggerError::MaybeStarted { lost: Box::new(err), listing: Box::new(listing) }),
        },
        Err(err) => return Err(explain(&gitlab, config, project_id, err).await),
    };
    tracing::info!(
        project_id,
        pipeline = pipeline.id,
        url = pipeline.web_url,
        model_package = arn,
        "deploy pipeline started"
    );
    Ok(json!({ "action": "pipeline started", "pipeline_id": pipeline.id, "web_url": pipeline.web_url }))
}

/// Whether `arn` names version `version` of model package group `group` in the function's
/// partition, region and account (`arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/3`).
/// SageMaker writes resource names in ARNs in lower case.
fn is_package_of(arn: &str, function: &FunctionArn, group: &str, version: u64) -> bool {
    let expected = format!(
        "arn:{}:sagemaker:{}:{}:model-package/{}/{version}",
        function.partition, function.region, function.account, group
    );
    arn.eq_ignore_ascii_case(&expected)
}

/// The API-started pipeline on the deploy branch, updated since `since`, that carries `arn`.
async fn started_for(
    gitlab: &GitLab,
    project_id: u64,
    arn: &str,
    since: &str,
) -> Result<Option<Pipeline>, GitLabError> {
    for pipeline in gitlab.api_pipelines_since(project_id, DEPLOY_BRANCH, since).await? {
        let variables = gitlab.pipeline_variables(project_id, pipeline.id).await?;
        if variables.iter().any(|v| v.key == PACKAGE_VARIABLE && v.value == arn) {
            return Ok(Some(pipeline));
        }
    }
    Ok(None)
}

/// The failed start's reason, with what to do about it.
async fn explain(gitlab: &GitLab, config: &Config, project_id: u64, err: GitLabError) -> TriggerError {
    let project = config.deploy_project.clone();
    if err.is_pipeline_variables_not_allowed() {
        return TriggerError::PipelineVariablesNotAllowed { project, refusal: Box::new(err) };
    }
    match err.status() {
        Some(404) => TriggerError::ProjectGone { project, host: gitlab.host().to_string(), refusal: Box::new(err) },
        Some(403) if matches!(err, GitLabError::Forbidden { cause: Forbidden::RoleOrArchived, .. }) => {
            match gitlab.project(&project_id.to_string()).await {
                Ok(Some(found)) if found.archived => TriggerError::ProjectArchived { project, refusal: Box::new(err) },
                _ => err.into(),
            }
        }
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_arn_names_its_partition_region_account_group_and_version() {
        let function = FunctionArn::parse("arn:aws:lambda:eu-west-1:123456789012:function:f").unwrap();
        let arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn-p-abc/3";
        assert!(is_package_of(arn, &function, "churn-p-abc", 3));
        // SageMaker writes names in ARNs in lower case; project names may have capitals.
        assert!(is_package_of(arn, &function, "Churn-p-abc", 3));
        assert!(!is_package_of(arn, &function, "churn-p-abc", 4));
        assert!(!is_package_of(arn, &function, "churn-p-ab", 3));
        assert!(!is_package_of(&arn.replace("eu-west-1", "us-east-1"), &function, "churn-p-abc", 3));
        assert!(!is_package_of(&arn.replace("arn:aws:", "arn:aws-cn:"), &function, "churn-p-abc", 3));
        assert!(!is_package_of(&format!("{arn}/extra"), &function, "churn-p-abc", 3));
    }
}
