use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use seedcode_checkin::{Deps, config::Config};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Arc::new(Deps::new(&lambda_common::aws_config().await, Config::from_env()));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| seedcode_checkin::handle(deps.clone(), event))).await
}
