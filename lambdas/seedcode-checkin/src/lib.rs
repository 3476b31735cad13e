//! The seedcode checkin custom resource. This crate so far only receives and classifies the
//! CloudFormation request; creating the GitLab projects is the checkin issue's work.

use aws_lambda_events::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};

pub async fn handle(
    event: LambdaEvent<CloudFormationCustomResourceRequest<Value>>,
) -> Result<Value, Error> {
    let (request_type, logical_id) = match &event.payload {
        CloudFormationCustomResourceRequest::Create(r) => ("Create", &r.logical_resource_id),
        CloudFormationCustomResourceRequest::Update(r) => ("Update", &r.logical_resource_id),
        CloudFormationCustomResourceRequest::Delete(r) => ("Delete", &r.logical_resource_id),
        _ => {
            return Err(
                "unknown CloudFormation RequestType: expected Create, Update or Delete".into(),
            );
        }
    };
    tracing::info!(request_type, logical_id, request_id = %event.context.request_id, "custom resource request received");
    Ok(json!({ "RequestType": request_type, "LogicalResourceId": logical_id }))
}
