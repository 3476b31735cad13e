//! Why an approval started no deploy pipeline, typed as the trigger's parts report it. It fails
//! the invocation, so Lambda's retries and the rule's dead-letter queue keep the event; its text
//! says what to do.

use lambda_common::gitlab::GitLabError;
use lambda_common::{BadFunctionArn, ClientError, ConfigError};

use crate::PACKAGE_VARIABLE;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    FunctionArn(#[from] BadFunctionArn),
    #[error("the event is not a SageMaker Model Package State Change: {0}")]
    NotAStateChange(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    #[error("deploy project {project} does not exist on {host}: was it renamed or deleted?")]
    NoSuchProject { project: String, host: String },
    #[error("deploy project {project} does not exist on {host}: was it deleted? ({refusal})")]
    ProjectGone { project: String, host: String, refusal: Box<GitLabError> },
    #[error("deploy project {project} is archived, so no pipeline can start: unarchive it ({refusal})")]
    ProjectArchived { project: String, refusal: Box<GitLabError> },
    #[error(
        "{refusal}: deploy project {project} does not let the token's user pass pipeline variables, and the deploy pipeline gets the approved package through {PACKAGE_VARIABLE}. Set Settings > CI/CD > Variables > \"Minimum role to use pipeline variables\" to Maintainer (updating the SageMaker project's stack does it too), then send the event again from the dead-letter queue. No pipeline was started without the variable: it would deploy the newest approved version, which need not be this one"
    )]
    PipelineVariablesNotAllowed { project: String, refusal: Box<GitLabError> },
    #[error("{lost}; no pipeline for {arn} is listed, so the next attempt starts one")]
    NotStarted { lost: Box<GitLabError>, arn: String },
    #[error("{lost}; whether it started cannot be told: {listing}")]
    MaybeStarted { lost: Box<GitLabError>, listing: Box<GitLabError> },
}
