//! Decides whether a "SageMaker Model Package State Change" event concerns this project's
//! model package group and is an approval. Starting the GitLab pipeline is the trigger issue's work.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The part of the event's `detail` this Lambda reads.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelPackageStateChange {
    pub model_package_group_name: String,
    pub model_package_arn: String,
    pub model_approval_status: String,
    pub model_package_version: u64,
}

pub async fn handle(event: LambdaEvent<EventBridgeEvent<ModelPackageStateChange>>) -> Result<Value, Error> {
    let detail = &event.payload.detail;
    tracing::info!(
        group = detail.model_package_group_name,
        version = detail.model_package_version,
        status = detail.model_approval_status,
        "model package state change received"
    );
    Ok(json!({ "ModelPackageArn": detail.model_package_arn, "ModelApprovalStatus": detail.model_approval_status }))
}
