use lambda_runtime::{Error, LambdaEvent, service_fn};
use pipeline_trigger::{Config, Deps};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_common::logging::init();
    let deps = Deps::new(&lambda_common::aws_config(), Config::from_env());
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| pipeline_trigger::handle(&deps, event))).await
}
