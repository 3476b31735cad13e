//! The CloudFormation stand-in (`src/moto_cloudformation.py` on moto) refuses parameter values
//! as CloudFormation does, before anything is made: CreateStack, UpdateStack and CreateChangeSet
//! answer a ValidationError naming the parameter and the rule (CloudFormation User Guide,
//! "Parameters" section structure).

use aws_sdk_cloudformation::types::Parameter;
use testkit::moto::moto;

fn cloudformation() -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&moto().sdk_config())
}

const TEMPLATE: &str = r#"
Parameters:
  Bucket:
    Type: String
    AllowedPattern: "^sagemaker-project-p-[a-z0-9]{12}$"
  Stage:
    Type: String
    AllowedValues: [staging, production]
  Name:
    Type: String
    MinLength: 3
    MaxLength: 8
    Default: churn
  Count:
    Type: Number
    MinValue: 1
    MaxValue: 4
    Default: 1
  Described:
    Type: String
    AllowedPattern: "[a-z]+"
    ConstraintDescription: lower-case letters only
    Default: fine
Resources:
  Topic:
    Type: AWS::SNS::Topic
"#;

fn parameter(key: &str, value: &str) -> Parameter {
    Parameter::builder().parameter_key(key).parameter_value(value).build()
}

/// The two required parameters with good values, then `extra` (which replaces a same-named one).
fn parameters(extra: &[(&str, &str)]) -> Vec<Parameter> {
    let mut given = vec![("Bucket", "sagemaker-project-p-abcdef123456"), ("Stage", "staging")];
    for (key, value) in extra {
        given.retain(|(k, _)| k != key);
        given.push((key, value));
    }
    given.into_iter().map(|(k, v)| parameter(k, v)).collect()
}

/// CreateStack's ValidationError message for `parameters`, and that no stack was made.
async fn refused(stack: &str, parameters: Vec<Parameter>) -> String {
    let err = cloudformation()
        .create_stack()
        .stack_name(stack)
        .template_body(TEMPLATE)
        .set_parameters(Some(parameters))
        .send()
        .await
        .expect_err("CloudFormation refuses the parameters");
    let service = err.into_service_error();
    assert_eq!(service.meta().code(), Some("ValidationError"), "{service:?}");
    let listed = cloudformation().describe_stacks().stack_name(stack).send().await;
    assert!(listed.is_err(), "a refused stack must not exist");
    service.meta().message().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn values_outside_the_parameters_rules_are_refused_before_any_stack_exists() {
    let target_bucket = [("Bucket", "sm-gl-eu-west-1-111111111111-123456789012-staging")];
    assert_eq!(
        refused("pattern", parameters(&target_bucket)).await,
        "Parameter 'Bucket' must match pattern ^sagemaker-project-p-[a-z0-9]{12}$"
    );
    assert_eq!(
        refused("values", parameters(&[("Stage", "dev")])).await,
        "Parameter 'Stage' must be one of AllowedValues"
    );
    assert_eq!(
        refused("short", parameters(&[("Name", "ab")])).await,
        "Parameter 'Name' must contain at least 3 characters"
    );
    assert_eq!(
        refused("long", parameters(&[("Name", "abcdefghi")])).await,
        "Parameter 'Name' must contain at most 8 characters"
    );
    assert_eq!(
        refused("small", parameters(&[("Count", "0")])).await,
        "Parameter 'Count' must be a number not less than 1"
    );
    assert_eq!(refused("nan", parameters(&[("Count", "two")])).await, "Parameter 'Count' must be a number");
    assert_eq!(
        refused("described", parameters(&[("Described", "UPPER")])).await,
        "Parameter Described failed to satisfy constraint: lower-case letters only"
    );
    assert_eq!(refused("missing", vec![parameter("Stage", "staging")]).await, "Parameters: [Bucket] must have values");
    assert_eq!(
        refused("unknown", parameters(&[("Colour", "red")])).await,
        "Parameters: [Colour] do not exist in the template"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn good_values_and_defaults_make_the_stack_and_updates_and_change_sets_are_checked_too() {
    cloudformation()
        .create_stack()
        .stack_name("accepted")
        .template_body(TEMPLATE)
        .set_parameters(Some(parameters(&[])))
        .send()
        .await
        .expect("every value satisfies its rules");

    let update = cloudformation()
        .update_stack()
        .stack_name("accepted")
        .template_body(TEMPLATE)
        .set_parameters(Some(parameters(&[("Stage", "dev")])))
        .send()
        .await;
    let message = update.expect_err("UpdateStack checks too").into_service_error().meta().message().map(str::to_owned);
    assert_eq!(message.as_deref(), Some("Parameter 'Stage' must be one of AllowedValues"));

    let change_set = cloudformation()
        .create_change_set()
        .stack_name("accepted")
        .change_set_name("bad-bucket")
        .template_body(TEMPLATE)
        .set_parameters(Some(parameters(&[("Bucket", "someone-elses-bucket")])))
        .send()
        .await;
    let message = change_set.expect_err("CreateChangeSet checks too").into_service_error();
    assert!(message.meta().message().is_some_and(|m| m.starts_with("Parameter 'Bucket' must match pattern")));
}
