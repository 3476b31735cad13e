//! The seed's endpoint stack (`seedcode/model-deploy/endpoint.yml`) for each stage, deployed by
//! the CI role within its boundary (or a target account's deploy role): every handler permission
//! of every resource, and the calls the handlers lead to, is allowed.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use testkit::cfn::Stack;
use testkit::iam::{self, Decision, Policies, Request};

use super::*;

/// What `seedcode/model-deploy/endpoint.yml` holds, deployed by the CI role as the deploy job
/// does (`deploy/stack.py`: no CloudFormation service role, so CloudFormation's handlers run with
/// the job's credentials): every handler permission is allowed by the role within its boundary.
/// Why the endpoint stack's resources do not need a permission their schema lists, or need one it
/// does not.
const ENDPOINT_STACK_MOOT: &[(&str, &str, &str)] = &[
    ("*", "sagemaker:DeleteTags", "the stage's tags never change, so no update removes one"),
    ("AWS::SageMaker::EndpointConfig", "kms:DescribeKey", "no KmsKeyId: SageMaker's own keys"),
    ("AWS::SageMaker::EndpointConfig", "iam:PassRole", "the config names no role; the model does"),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "iam:PassRole", "no RoleARN: the service-linked role"),
    (
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "lambda:*",
        "Lambda provisioned concurrency, not a SageMaker variant",
    ),
    (
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "application-autoscaling:PutScheduledAction",
        "no ScheduledActions",
    ),
    (
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "application-autoscaling:DeleteScheduledAction",
        "no ScheduledActions",
    ),
];

/// Calls a resource's handlers lead to beyond its schema's list: registering a SageMaker variant
/// makes Application Auto Scaling read the endpoint and set its capacity as the caller, and
/// create its service-linked role on first use (SageMaker Developer Guide, "Auto scaling
/// prerequisites").
const ENDPOINT_STACK_DEPENDENT: &[(&str, &str)] = &[
    ("AWS::ApplicationAutoScaling::ScalableTarget", "sagemaker:DescribeEndpoint"),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "sagemaker:DescribeEndpointConfig"),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "sagemaker:UpdateEndpointWeightsAndCapacities"),
];

/// Who deploys the endpoint stacks, and where: the account the stacks live in, the role that
/// deploys them with the policies IAM decides by, the role the endpoints run as and the bucket
/// they capture to. The model package is the development account's, wherever the stack is.
pub(crate) struct Deployer<'a> {
    pub account: &'a str,
    pub role: String,
    pub policies: Policies<'a>,
    pub execution_role: String,
    pub bucket: String,
}

/// The approved package the endpoint stacks serve, in the development account's registry.
pub(crate) fn model_package() -> String {
    arn("sagemaker", &format!("model-package/churn-{PROJECT_ID}/3"))
}

/// The endpoint stack of one stage, resolved with what `python -m deploy stack <stage>` passes:
/// the stage's config file, a package with a data-quality baseline, the deployer's roles and bucket.
fn endpoint_stack(stage: &str, deployer: &Deployer) -> Stack {
    let package = model_package();
    let baseline = format!("s3://sagemaker-project-{PROJECT_ID}/churn-{PROJECT_ID}/runs/x1/data-quality-baseline");
    let (statistics, constraints) = (format!("{baseline}/statistics.json"), format!("{baseline}/constraints.json"));
    let scalable_target = format!(
        "endpoint/{PROJECT_NAME}-{PROJECT_ID}-{stage}/variant/AllTraffic|sagemaker:variant:DesiredInstanceCount|sagemaker"
    );
    let config: serde_json::Map<String, Json> =
        serde_json::from_str(&common::read_repo_file(&format!("seedcode/model-deploy/config/{stage}.json"))).unwrap();
    let config: Vec<(String, String)> = config
        .into_iter()
        .map(|(key, value)| (key, value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())))
        .collect();
    let mut parameters = vec![
        ("ProjectName", PROJECT_NAME),
        ("ProjectId", PROJECT_ID),
        ("StageName", stage),
        ("ModelPackageArn", package.as_str()),
        ("ModelExecutionRoleArn", deployer.execution_role.as_str()),
        ("ArtifactBucket", deployer.bucket.as_str()),
        ("BaselineStatisticsUri", statistics.as_str()),
        ("BaselineConstraintsUri", constraints.as_str()),
        // What `Ref` gives for a scalable target (its resource ID, dimension and namespace).
        ("ScalableTarget", scalable_target.as_str()),
    ];
    parameters.extend(config.iter().map(|(key, value)| (key.as_str(), value.as_str())));
    let template = common::read_repo_file("seedcode/model-deploy/endpoint.yml");
    let mut stack = Stack::new(&template, REGION, deployer.account, &parameters).unwrap();
    // The names CloudFormation generates for the unnamed resources.
    stack.set_attribute("Model", "ModelName", "model-a1b2c3");
    stack.set_attribute("EndpointConfig", "EndpointConfigName", "endpointconfig-d4e5f6");
    stack.set_attribute("DataQualityJobDefinition", "JobDefinitionName", "dataqualityjobdefinition-g7h8");
    stack.set_attribute("Endpoint", "EndpointName", &format!("{PROJECT_NAME}-{PROJECT_ID}-{stage}"));
    stack
}

/// The ARN IAM sees for each endpoint-stack resource, and for the actions on another resource.
fn endpoint_stack_request(deployer: &Deployer, kind: &str, properties: &Json, action: &str, stage: &str) -> Request {
    let (role, account) = (deployer.role.as_str(), deployer.account);
    let endpoint = in_account(
        account,
        "sagemaker",
        &format!("endpoint/{}-{PROJECT_ID}-{stage}", PROJECT_NAME.to_ascii_lowercase()),
    );
    // Target tracking names its alarms TargetTracking-<resource id>-AlarmHigh/Low-<uuid>.
    let alarm = in_account(
        account,
        "cloudwatch",
        &format!("alarm:TargetTracking-endpoint/{PROJECT_NAME}-{PROJECT_ID}-{stage}/variant/AllTraffic-AlarmHigh-0a1b"),
    );
    let scalable_target = in_account(account, "application-autoscaling", "scalable-target/056a0b1c2d3e4f");
    let resource = match (kind, action) {
        (_, "iam:PassRole") => {
            return Request::new(role, action, &deployer.execution_role)
                .with("iam:PassedToService", &["sagemaker.amazonaws.com"]);
        }
        (_, "iam:CreateServiceLinkedRole") => {
            let linked = format!(
                "arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
            );
            return Request::new(role, action, &linked)
                .with("iam:AWSServiceName", &["sagemaker.application-autoscaling.amazonaws.com"]);
        }
        (_, "sagemaker:DescribeEndpoint" | "sagemaker:UpdateEndpointWeightsAndCapacities") => endpoint.clone(),
        (_, "sagemaker:DescribeEndpointConfig") if kind != "AWS::SageMaker::EndpointConfig" => {
            // The config the stack made, with the tags every resource of the stack carries.
            let config = in_account(account, "sagemaker", "endpoint-config/endpointconfig-d4e5f6");
            return Request::new(role, action, &config)
                .with("aws:ResourceTag/sagemaker:project-id", &[PROJECT_ID])
                .with("aws:ResourceTag/sagemaker:deployment-stage", &[stage]);
        }
        (_, a) if a.starts_with("cloudwatch:") && a != "cloudwatch:GetMetricData" => alarm,
        (_, "cloudwatch:GetMetricData") => "*".into(),
        (_, a) if a.starts_with("application-autoscaling:Describe") => "*".into(),
        (_, a) if a.starts_with("application-autoscaling:") => scalable_target,
        ("AWS::SageMaker::Model", _) => in_account(account, "sagemaker", "model/model-a1b2c3"),
        ("AWS::SageMaker::EndpointConfig", _) => {
            in_account(account, "sagemaker", "endpoint-config/endpointconfig-d4e5f6")
        }
        ("AWS::SageMaker::Endpoint", _) => endpoint,
        ("AWS::SageMaker::DataQualityJobDefinition", _) => {
            in_account(account, "sagemaker", "data-quality-job-definition/dataqualityjobdefinition-g7h8")
        }
        ("AWS::SageMaker::MonitoringSchedule", _) => in_account(
            account,
            "sagemaker",
            &format!("monitoring-schedule/{}", text(properties, &["MonitoringScheduleName"])),
        ),
        (other, _) => panic!("the proof does not know the ARN of a {other}: add it"),
    };
    let mut request = Request::new(role, action, &resource);
    // The create call carries the tags; every later call finds them on the resource.
    for tag in properties["Tags"].as_array().into_iter().flatten() {
        let (key, value) = (tag["Key"].as_str().unwrap(), tag["Value"].as_str().unwrap());
        request =
            request.with(&format!("aws:RequestTag/{key}"), &[value]).with(&format!("aws:ResourceTag/{key}"), &[value]);
    }
    request
}

/// Every handler permission of every resource of the endpoint stack of `stages`, evaluated for
/// the deployer (waivers and dependent calls as listed above), and the stack calls of the deploy
/// job. Fails naming each permission missing, and any waiver no permission needed.
pub(crate) fn assert_deploys_endpoint_stacks(deployments: &[(&str, &Deployer)]) {
    let schemas = schemas();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut used_waivers = BTreeSet::new();
    for (stage, deployer) in deployments {
        let (stage, deployer) = (*stage, *deployer);
        let stack = endpoint_stack(stage, deployer);
        let resources = stack.resources().unwrap();
        let kinds: BTreeSet<&str> = resources.iter().map(|(_, kind)| kind.as_str()).collect();
        // Every stage captures; production is also monitored and scales.
        let mut expected =
            BTreeSet::from(["AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"]);
        if stage == "production" {
            expected.extend([
                "AWS::SageMaker::DataQualityJobDefinition",
                "AWS::SageMaker::MonitoringSchedule",
                "AWS::ApplicationAutoScaling::ScalableTarget",
                "AWS::ApplicationAutoScaling::ScalingPolicy",
            ]);
        }
        assert_eq!(kinds, expected, "{stage}'s endpoint stack");
        let capture = json(stack.property("EndpointConfig", &["DataCaptureConfig"]).unwrap());
        assert_eq!(capture["DestinationS3Uri"], format!("s3://{}/data-capture/{stage}", deployer.bucket));

        for (resource, kind) in &resources {
            let properties = json(stack.property(resource, &[]).unwrap());
            let dependent = ENDPOINT_STACK_DEPENDENT.iter().filter(|(k, _)| k == kind).map(|(_, a)| a.to_string());
            for action in schemas[kind].keys().cloned().chain(dependent) {
                let moot = ENDPOINT_STACK_MOOT.iter().position(|(k, pattern, _)| {
                    (*k == "*" || k == kind) && iam::glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
                });
                if let Some(index) = moot {
                    used_waivers.insert(index);
                    continue;
                }
                let request = endpoint_stack_request(deployer, kind, &properties, &action, stage);
                checked += 1;
                match iam::evaluate(&deployer.policies, &request) {
                    Decision::Allowed => {}
                    denied => failures.push(format!(
                        "{stage} {resource} ({kind}): {action} on {} is {denied:?} for {}",
                        request.resource, deployer.role
                    )),
                }
            }
        }
        let stack_arn = in_account(
            deployer.account,
            "cloudformation",
            &format!("stack/sagemaker-{PROJECT_NAME}-{PROJECT_ID}-{stage}/0a1b"),
        );
        for action in ["CreateStack", "UpdateStack", "DeleteStack", "DescribeStacks", "DescribeStackEvents"] {
            let action = format!("cloudformation:{action}");
            checked += 1;
            if iam::evaluate(&deployer.policies, &Request::new(&deployer.role, &action, &stack_arn))
                != Decision::Allowed
            {
                failures.push(format!("{action} on {stack_arn}"));
            }
        }
    }
    assert!(checked > 20 * deployments.len(), "only {checked} permissions checked");
    assert!(failures.is_empty(), "missing:\n{}", failures.join("\n"));
    let unused: Vec<_> =
        (0..ENDPOINT_STACK_MOOT.len()).filter(|i| !used_waivers.contains(i)).map(|i| ENDPOINT_STACK_MOOT[i]).collect();
    assert!(unused.is_empty(), "waivers that match no permission: {unused:?}");
}

#[test]
fn the_ci_role_may_deploy_every_resource_of_the_endpoint_stack_of_each_stage() {
    let project = project();
    let bootstrap = bootstrap();
    let (identity, boundary) = ci_role_policies(&project, &bootstrap);
    let deployer = Deployer {
        account: ACCOUNT,
        role: role_arn(&ci_role_name(PROJECT_ID)),
        policies: Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) },
        execution_role: role_arn("service-role/AmazonSageMakerServiceCatalogProductsUseRole"),
        bucket: format!("sagemaker-project-{PROJECT_ID}"),
    };
    assert_deploys_endpoint_stacks(&[("staging", &deployer), ("production", &deployer)]);
}
