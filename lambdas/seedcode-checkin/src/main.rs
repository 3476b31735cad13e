use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use seedcode_checkin::{Deps, config::Config};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_common::logging::init();
    let mut deps = Deps::new(&lambda_common::aws_config(), Config::from_env());
    deps.allow_loopback_response_url =
        std::env::var(seedcode_checkin::config::LOOPBACK_RESPONSE_URL_SETTING).is_ok_and(|v| v == "true");
    let deps = Arc::new(deps);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| seedcode_checkin::handle(deps.clone(), event))).await
}
