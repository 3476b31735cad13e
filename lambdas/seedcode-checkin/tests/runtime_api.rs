//! The real binary on the Lambda Runtime API: it starts, takes an invocation and answers it.

use std::path::Path;
use std::time::Duration;

use lambda_testkit::runtime_api::{Outcome, RuntimeApi};
use serde_json::json;

fn create_request() -> serde_json::Value {
    json!({
        "RequestType": "Create",
        "RequestId": "5d478078-13e9-baf0-464a-7ef285ecc786",
        "ResponseURL": "http://127.0.0.1:9/response",
        "ResourceType": "Custom::SeedCodeCheckin",
        "LogicalResourceId": "SeedCodeCheckin",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/SC-123/6a3c4f10-0000-11ef-0000-0a1b2c3d4e5f",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:checkin",
        "ResourceProperties": { "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:checkin" }
    })
}

#[tokio::test]
async fn answers_a_custom_resource_request() {
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(Path::new(env!("CARGO_BIN_EXE_seedcode-checkin")), &[]);
    let outcome = api.invoke(create_request(), Duration::from_secs(10)).await;
    let Outcome::Response { body, .. } = outcome else {
        panic!("expected a response, got {outcome:?}")
    };
    assert_eq!(
        body,
        json!({ "RequestType": "Create", "LogicalResourceId": "SeedCodeCheckin" })
    );
    assert!(api.first_poll().is_some());
}

#[tokio::test]
async fn reports_an_unreadable_event_as_an_invocation_error() {
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(Path::new(env!("CARGO_BIN_EXE_seedcode-checkin")), &[]);
    let outcome = api
        .invoke(json!({ "RequestType": "Explode" }), Duration::from_secs(10))
        .await;
    assert!(matches!(outcome, Outcome::Error { .. }), "{outcome:?}");
}
