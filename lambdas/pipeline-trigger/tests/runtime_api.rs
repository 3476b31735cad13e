//! The real binary on the Lambda Runtime API: it starts, takes an invocation and answers it.

use std::path::Path;
use std::time::Duration;

use lambda_testkit::runtime_api::{Outcome, RuntimeApi};
use serde_json::json;

fn state_change(status: &str) -> serde_json::Value {
    json!({
        "version": "0",
        "id": "3f5d2b0a-8a7e-4c3b-9d55-6a1c2e0f4b11",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-26T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:sagemaker:us-east-1:123456789012:model-package/churn-p-abc123/3"],
        "detail": {
            "ModelPackageGroupName": "churn-p-abc123",
            "ModelPackageVersion": 3,
            "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn-p-abc123/3",
            "ModelApprovalStatus": status,
            "CreationTime": 1764150000000u64
        }
    })
}

#[tokio::test]
async fn answers_a_model_package_state_change() {
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(Path::new(env!("CARGO_BIN_EXE_pipeline-trigger")), &[]);
    let outcome = api.invoke(state_change("Approved"), Duration::from_secs(10)).await;
    let Outcome::Response { body, .. } = outcome else { panic!("expected a response, got {outcome:?}") };
    assert_eq!(body["ModelApprovalStatus"], "Approved");
    assert_eq!(body["ModelPackageArn"], "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn-p-abc123/3");
}

#[tokio::test]
async fn reports_a_malformed_event_as_an_invocation_error() {
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(Path::new(env!("CARGO_BIN_EXE_pipeline-trigger")), &[]);
    let outcome = api.invoke(json!({ "detail": { "ModelApprovalStatus": "Approved" } }), Duration::from_secs(10)).await;
    let Outcome::Error { body, .. } = outcome else { panic!("expected an error, got {outcome:?}") };
    assert!(body.to_string().contains("missing field"), "{body}");
}
