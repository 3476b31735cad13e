//! The permission proof for what Service Catalog launches: for every resource of
//! `cfn/project.yml` rendered for a sample project, every action CloudFormation's resource
//! handlers may call for it (the `handlers.{create,read,update,delete}.permissions` of its
//! registry schema, as the pinned cfn-lint ships them) is allowed to the launch role of
//! `cfn/bootstrap.yml` on that resource's own ARN, decided by `lambda_testkit::iam`: explicit
//! denies, wildcards, `Not*` elements and conditions as IAM evaluates them, not a string search.
//!
//! A schema permission that does not apply to this template is waived in `WAIVERS`, each tied to
//! the property whose absence makes it moot (a rendering that sets the property has the
//! permission checked instead) or to a one-line reason. The template is proven as published
//! for one account and with staging and production in accounts of their own. A failure names the resource, its type, the action, the ARN and the role.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lambda_testkit::iam::{self, Decision, Policies, Request};
use serde_json::Value as Json;
use xtask::cfn::Stack;

pub(crate) const REGION: &str = "eu-west-1";
pub(crate) const ACCOUNT: &str = "123456789012";
/// The accounts the sample project's stages get when published with accounts of their own.
pub(crate) const STAGING_ACCOUNT: &str = "111111111111";
pub(crate) const PRODUCTION_ACCOUNT: &str = "222222222222";
pub(crate) const PROJECT_NAME: &str = "Churn";
pub(crate) const PROJECT_ID: &str = "p-abcdef123456";
const ARTIFACT_BUCKET: &str = "sagemaker-gitlab-project-123456789012-eu-west-1";
pub(crate) const BUILD_PATH: &str = "ml/churn-team/model-build-p-abcdef123456";
pub(crate) const DEPLOY_PATH: &str = "ml/churn-team/model-deploy-p-abcdef123456";

fn ci_role_name(project_id: &str) -> String {
    format!("sagemaker-{project_id}-gitlab-ci")
}

/// Why a schema permission is not needed here.
enum Moot {
    /// The handler calls it only for these properties, which the resource does not set.
    Without(&'static [&'static str]),
    /// Only the delete handler calls it, and the resource has `DeletionPolicy: Retain`.
    Retained,
    /// A one-line reason, shown when the waiver is listed.
    Because(&'static str),
}

/// (resource type, action, why it is moot). `*` in an action matches as IAM does.
const WAIVERS: &[(&str, &str, Moot)] = &[
    // AWS::S3::Bucket: configurations the project bucket does not have.
    ("AWS::S3::Bucket", "s3:*Accelerate*", Moot::Without(&["AccelerateConfiguration"])),
    ("AWS::S3::Bucket", "s3:*AnalyticsConfiguration", Moot::Without(&["AnalyticsConfigurations"])),
    ("AWS::S3::Bucket", "s3:*BucketCORS", Moot::Without(&["CorsConfiguration"])),
    ("AWS::S3::Bucket", "s3:*BucketLifecycle", Moot::Without(&["LifecycleConfiguration"])),
    ("AWS::S3::Bucket", "s3:*LifecycleConfiguration", Moot::Without(&["LifecycleConfiguration"])),
    ("AWS::S3::Bucket", "s3:*BucketLogging", Moot::Without(&["LoggingConfiguration"])),
    ("AWS::S3::Bucket", "s3:*MetricsConfiguration", Moot::Without(&["MetricsConfigurations"])),
    ("AWS::S3::Bucket", "s3:*BucketNotification", Moot::Without(&["NotificationConfiguration"])),
    (
        "AWS::S3::Bucket",
        "s3:*ObjectLockConfiguration",
        Moot::Without(&["ObjectLockConfiguration", "ObjectLockEnabled"]),
    ),
    ("AWS::S3::Bucket", "s3:*OwnershipControls", Moot::Without(&["OwnershipControls"])),
    ("AWS::S3::Bucket", "s3:*Replication*", Moot::Without(&["ReplicationConfiguration"])),
    ("AWS::S3::Bucket", "iam:PassRole", Moot::Without(&["ReplicationConfiguration"])),
    ("AWS::S3::Bucket", "s3:*BucketWebsite", Moot::Without(&["WebsiteConfiguration"])),
    ("AWS::S3::Bucket", "s3:*IntelligentTieringConfiguration", Moot::Without(&["IntelligentTieringConfigurations"])),
    ("AWS::S3::Bucket", "s3:*InventoryConfiguration", Moot::Without(&["InventoryConfigurations"])),
    ("AWS::S3::Bucket", "s3:*BucketMetadata*", Moot::Without(&["MetadataTableConfiguration", "MetadataConfiguration"])),
    ("AWS::S3::Bucket", "s3tables:*", Moot::Without(&["MetadataTableConfiguration", "MetadataConfiguration"])),
    ("AWS::S3::Bucket", "s3:*BucketAbac", Moot::Without(&["AbacStatus"])),
    ("AWS::S3::Bucket", "s3:*BucketAcl", Moot::Without(&["AccessControl"])),
    ("AWS::S3::Bucket", "s3:PutObjectAcl", Moot::Without(&["AccessControl"])),
    ("AWS::S3::Bucket", "s3:DeleteBucket*", Moot::Retained),
    ("AWS::S3::Bucket", "s3:DeleteObject", Moot::Retained),
    ("AWS::S3::Bucket", "s3:ListBucket", Moot::Retained),
    ("AWS::S3::Bucket", "s3:UntagResource", Moot::Because("tags are set once, by the template; no update removes one")),
    (
        "AWS::S3::Bucket",
        "s3:TagResource",
        Moot::Because("the bucket's tags go through PutBucketTagging, which is granted"),
    ),
    (
        "AWS::S3::Bucket",
        "s3:ListTagsForResource",
        Moot::Because("the bucket's tags are read through GetBucketTagging, which is granted"),
    ),
    // AWS::SageMaker::ModelPackageGroup: no resource policy on the group; the group is kept.
    // GetModelPackageGroupPolicy stays: the create handler reads the policy whatever is set.
    (
        "AWS::SageMaker::ModelPackageGroup",
        "sagemaker:PutModelPackageGroupPolicy",
        Moot::Without(&["ModelPackageGroupPolicy"]),
    ),
    (
        "AWS::SageMaker::ModelPackageGroup",
        "sagemaker:DeleteModelPackageGroupPolicy",
        Moot::Without(&["ModelPackageGroupPolicy"]),
    ),
    ("AWS::SageMaker::ModelPackageGroup", "sagemaker:DeleteModelPackageGroup", Moot::Retained),
    // AWS::Logs::LogGroup: no KMS key, data protection, index, resource policy, delivery or deletion protection.
    ("AWS::Logs::LogGroup", "logs:*KmsKey", Moot::Without(&["KmsKeyId"])),
    ("AWS::Logs::LogGroup", "logs:*DataProtectionPolicy", Moot::Without(&["DataProtectionPolicy"])),
    ("AWS::Logs::LogGroup", "logs:*IndexPolic*", Moot::Without(&["FieldIndexPolicies"])),
    ("AWS::Logs::LogGroup", "logs:*ResourcePolic*", Moot::Without(&["ResourcePolicyDocument"])),
    ("AWS::Logs::LogGroup", "logs:CreateLogDelivery", Moot::Without(&["LogGroupClass"])),
    (
        "AWS::Logs::LogGroup",
        "firehose:TagDeliveryStream",
        Moot::Because("no Firehose delivery is configured for the log group"),
    ),
    (
        "AWS::Logs::LogGroup",
        "s3:REST.PUT.OBJECT",
        Moot::Because("not an IAM action: a log of the schema's own S3 writes"),
    ),
    ("AWS::Logs::LogGroup", "logs:PutBearerTokenAuthentication", Moot::Without(&["BearerTokenAuthenticationEnabled"])),
    ("AWS::Logs::LogGroup", "logs:PutLogGroupDeletionProtection", Moot::Without(&["DeletionProtectionEnabled"])),
    ("AWS::Logs::LogGroup", "logs:DeleteRetentionPolicy", Moot::Because("every log group keeps its RetentionInDays")),
    // AWS::Lambda::Function: no VPC, file system, KMS key, code signing, layers, concurrency,
    // runtime or recursion changes, capacity provider, SnapStart or aliases.
    ("AWS::Lambda::Function", "ec2:*", Moot::Without(&["VpcConfig"])),
    ("AWS::Lambda::Function", "elasticfilesystem:*", Moot::Without(&["FileSystemConfigs"])),
    ("AWS::Lambda::Function", "s3files:*", Moot::Without(&["FileSystemConfigs"])),
    ("AWS::Lambda::Function", "kms:*", Moot::Without(&["KmsKeyArn"])),
    ("AWS::Lambda::Function", "lambda:GetCodeSigningConfig", Moot::Without(&["CodeSigningConfigArn"])),
    ("AWS::Lambda::Function", "lambda:*FunctionCodeSigningConfig", Moot::Without(&["CodeSigningConfigArn"])),
    ("AWS::Lambda::Function", "lambda:GetLayerVersion", Moot::Without(&["Layers"])),
    ("AWS::Lambda::Function", "lambda:*FunctionConcurrency", Moot::Without(&["ReservedConcurrentExecutions"])),
    ("AWS::Lambda::Function", "lambda:PutRuntimeManagementConfig", Moot::Without(&["RuntimeManagementConfig"])),
    ("AWS::Lambda::Function", "lambda:PutFunctionRecursionConfig", Moot::Without(&["RecursiveLoop"])),
    ("AWS::Lambda::Function", "lambda:*FunctionScalingConfig", Moot::Without(&["FunctionScalingConfig"])),
    ("AWS::Lambda::Function", "lambda:PassCapacityProvider", Moot::Without(&["CapacityProviderConfig"])),
    ("AWS::Lambda::Function", "lambda:PublishVersion", Moot::Without(&["SnapStart", "PublishToLatestPublished"])),
    ("AWS::Lambda::Function", "lambda:AssociateRuntimeAlias", Moot::Without(&["RuntimeAlias"])),
    // AWS::IAM::Role (the project's CI role): inline policies only, and a boundary for good.
    ("AWS::IAM::Role", "iam:AttachRolePolicy", Moot::Without(&["ManagedPolicyArns"])),
    ("AWS::IAM::Role", "iam:DetachRolePolicy", Moot::Without(&["ManagedPolicyArns"])),
    (
        "AWS::IAM::Role",
        "iam:DeleteRolePermissionsBoundary",
        Moot::Because("the CI role keeps its boundary for good: no launch may take it off"),
    ),
    // AWS::Events::Rule: its one target is a Lambda function, invoked without a role.
    (
        "AWS::Events::Rule",
        "iam:PassRole",
        Moot::Because("no target has a RoleArn: EventBridge invokes the function through its resource policy"),
    ),
];

struct Proof {
    bootstrap: Stack,
    project: Stack,
    schemas: BTreeMap<String, BTreeSet<String>>,
}

pub(crate) fn arn(service: &str, rest: &str) -> String {
    in_account(ACCOUNT, service, rest)
}

pub(crate) fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// The handler permissions of every resource type, from the pinned cfn-lint's registry schemas
/// of this region.
pub(crate) fn schemas() -> BTreeMap<String, BTreeSet<String>> {
    let lib = common::tools_dir().join("test-venv/lib");
    let python = std::fs::read_dir(&lib).unwrap().find_map(|e| {
        let path = e.ok()?.path();
        path.file_name()?.to_str()?.starts_with("python").then_some(path)
    });
    let root: PathBuf = python.expect("the test venv has a python folder").join("site-packages/cfnlint/data/schemas");
    let read = |path: PathBuf| -> Json { serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap() };
    let index = read(root.join(format!("providers/{REGION}.json")));
    index
        .as_object()
        .unwrap()
        .iter()
        .filter(|(kind, _)| kind.starts_with("AWS::"))
        .map(|(kind, file)| {
            let schema = read(root.join(format!("resources/{}.json", file.as_str().unwrap())));
            let permissions = ["create", "read", "update", "delete"]
                .iter()
                .filter_map(|handler| schema["handlers"][handler]["permissions"].as_array())
                .flatten()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
            (kind.clone(), permissions)
        })
        .collect()
}

const OIDC_PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/gitlab.com";
const CI_BOUNDARY: &str = "arn:aws:iam::123456789012:policy/sagemaker-gitlab-project-ci-boundary-eu-west-1";
const TEMPLATE_REPOSITORY: &str = "platform/sagemaker-gitlab-template";

/// `cfn/bootstrap.yml` as deployed with GitLab CI publishing from `TEMPLATE_REPOSITORY`, and
/// the `parameters` given.
fn bootstrap_with(parameters: &[(&str, &str)]) -> Stack {
    let mut given = vec![("TemplateProjectPath", TEMPLATE_REPOSITORY)];
    given.extend_from_slice(parameters);
    xtask::cfn::bootstrap(REGION, ACCOUNT, ARTIFACT_BUCKET, &given).unwrap()
}

pub(crate) fn bootstrap() -> Stack {
    bootstrap_with(&[])
}

/// The project template as publish renders it, for a sample project, with the names and
/// attributes its resources get.
pub(crate) fn project() -> Stack {
    project_with(&[])
}

/// `project()` with more of publish's settings, e.g. target accounts.
pub(crate) fn project_with(extra: &[(&str, &str, &str)]) -> Stack {
    let source = common::read_repo_file(xtask::template::PROJECT_TEMPLATE);
    let digest = "0".repeat(64);
    let key = |file: &str| format!("sagemaker-gitlab-project/artifacts/{digest}/{file}");
    let keys = [
        key("lambda-seedcode-checkin-gitlab.zip"),
        key("lambda-gitlab-pipeline-trigger.zip"),
        key("mlops-gitlab-project-seedcode-model-build.zip"),
        key("mlops-gitlab-project-seedcode-model-deploy.zip"),
    ];
    let settings = [
        ("Artifacts", "Bucket", ARTIFACT_BUCKET),
        ("Artifacts", "CheckinCodeKey", keys[0].as_str()),
        ("Artifacts", "TriggerCodeKey", keys[1].as_str()),
        ("Artifacts", "BuildSeedcodeKey", keys[2].as_str()),
        ("Artifacts", "DeploySeedcodeKey", keys[3].as_str()),
        ("Artifacts", "CheckinCodeVersion", "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
        ("Artifacts", "TriggerCodeVersion", "Tm9ZY2hlY2tpbiBWZXJzaW9uSWQ"),
        ("Artifacts", "BuildSeedcodeSha256", digest.as_str()),
        ("Artifacts", "DeploySeedcodeSha256", digest.as_str()),
    ];
    let settings: Vec<_> = settings.into_iter().chain(extra.iter().copied()).collect();
    let rendered = xtask::template::render(&source, &settings).unwrap();
    let queue = format!("sagemaker-{PROJECT_ID}-gitlab-trigger-dlq");
    let refs = [
        ("SageMakerProjectName", PROJECT_NAME),
        ("SageMakerProjectId", PROJECT_ID),
        ("ArtifactBucket", &format!("sagemaker-project-{PROJECT_ID}")),
        ("CheckinLogGroup", &format!("/aws/lambda/sagemaker-{PROJECT_ID}-gitlab-checkin")),
        ("TriggerLogGroup", &format!("/aws/lambda/sagemaker-{PROJECT_ID}-gitlab-trigger")),
        ("TriggerDeadLetterQueue", &format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{queue}")),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let refs: Vec<(&str, &str)> = refs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut stack = Stack::new(&rendered, REGION, ACCOUNT, &refs).unwrap();
    let attributes = [
        ("ArtifactBucket", "Arn", format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}")),
        ("CheckinFunction", "Arn", arn("lambda", &format!("function:sagemaker-{PROJECT_ID}-gitlab-checkin"))),
        ("TriggerFunction", "Arn", arn("lambda", &format!("function:sagemaker-{PROJECT_ID}-gitlab-trigger"))),
        ("TriggerDeadLetterQueue", "Arn", arn("sqs", &queue)),
        ("TriggerDeadLetterQueue", "QueueName", queue.clone()),
        ("ModelApprovedRule", "Arn", arn("events", &format!("rule/sagemaker-{PROJECT_ID}-model-approved"))),
        ("SeedCodeCheckin", "BuildProjectCloneUrl", "https://gitlab.com/ml/build.git".into()),
        ("SeedCodeCheckin", "DeployProjectCloneUrl", "https://gitlab.com/ml/deploy.git".into()),
        ("SeedCodeCheckin", "DeployProjectId", "42".into()),
        ("SeedCodeCheckin", "DeployProjectPath", "ml/deploy".into()),
        ("GitLabProjectPaths", "BuildProjectPath", BUILD_PATH.into()),
        ("GitLabProjectPaths", "DeployProjectPath", DEPLOY_PATH.into()),
    ];
    for (resource, attribute, value) in attributes {
        stack.set_attribute(resource, attribute, &value);
    }
    stack.name_iam_resources().unwrap();
    stack
}

pub(crate) fn json(value: serde_yaml::Value) -> Json {
    serde_json::to_value(value).unwrap()
}

fn text(properties: &Json, path: &[&str]) -> String {
    let mut value = properties;
    for key in path {
        value = &value[*key];
    }
    value.as_str().unwrap_or_else(|| panic!("{} is not a string in {properties}", path.join("."))).to_owned()
}

/// The ARN IAM sees for a resource of this type, from its resolved properties.
fn own_arn(kind: &str, properties: &Json) -> String {
    let lower = |path: &[&str]| text(properties, path).to_ascii_lowercase();
    match kind {
        "AWS::S3::Bucket" => format!("arn:aws:s3:::{}", text(properties, &["BucketName"])),
        "AWS::S3::BucketPolicy" => format!("arn:aws:s3:::{}", text(properties, &["Bucket"])),
        "AWS::SageMaker::ModelPackageGroup" => {
            arn("sagemaker", &format!("model-package-group/{}", lower(&["ModelPackageGroupName"])))
        }
        "AWS::SageMaker::CodeRepository" => {
            arn("sagemaker", &format!("code-repository/{}", lower(&["CodeRepositoryName"])))
        }
        "AWS::Logs::LogGroup" => arn("logs", &format!("log-group:{}", text(properties, &["LogGroupName"]))),
        "AWS::Lambda::Function" => arn("lambda", &format!("function:{}", text(properties, &["FunctionName"]))),
        "AWS::Lambda::Permission" => text(properties, &["FunctionName"]),
        "AWS::SQS::Queue" => arn("sqs", &text(properties, &["QueueName"])),
        "AWS::SQS::QueuePolicy" => {
            let url = properties["Queues"][0].as_str().unwrap();
            arn("sqs", url.rsplit('/').next().unwrap())
        }
        "AWS::Events::Rule" => arn("events", &format!("rule/{}", text(properties, &["Name"]))),
        "AWS::CloudWatch::Alarm" => arn("cloudwatch", &format!("alarm:{}", text(properties, &["AlarmName"]))),
        "AWS::IAM::Role" => role_arn(&text(properties, &["RoleName"])),
        other => panic!("the proof does not know the ARN of a {other}: add it"),
    }
}

/// The request for `action` on a resource: its own ARN, except for actions on another resource
/// (the role passed, the code object read), with the context IAM gives them.
fn request_for(principal: &str, kind: &str, properties: &Json, action: &str) -> Request {
    match (kind, action) {
        ("AWS::Lambda::Function", "iam:PassRole") => Request::new(principal, action, &text(properties, &["Role"]))
            .with("iam:PassedToService", &["lambda.amazonaws.com"]),
        ("AWS::Lambda::Function", "s3:GetObject" | "s3:GetObjectVersion") => {
            let object = format!(
                "arn:aws:s3:::{}/{}",
                text(properties, &["Code", "S3Bucket"]),
                text(properties, &["Code", "S3Key"])
            );
            Request::new(principal, action, &object).with("aws:SecureTransport", &["true"])
        }
        // IAM: these actions carry the boundary the role has, or is to have, as iam:PermissionsBoundary.
        (
            "AWS::IAM::Role",
            "iam:CreateRole"
            | "iam:PutRolePolicy"
            | "iam:DeleteRolePolicy"
            | "iam:PutRolePermissionsBoundary"
            | "iam:AttachRolePolicy"
            | "iam:DetachRolePolicy",
        ) => {
            let boundary = properties["PermissionsBoundary"].as_str().unwrap_or_default();
            Request::new(principal, action, &own_arn(kind, properties)).with("iam:PermissionsBoundary", &[boundary])
        }
        _ => Request::new(principal, action, &own_arn(kind, properties)).with("aws:SecureTransport", &["true"]),
    }
}

impl Proof {
    fn new() -> Proof {
        Proof::of(bootstrap(), project())
    }

    fn of(bootstrap: Stack, project: Stack) -> Proof {
        Proof { bootstrap, project, schemas: schemas() }
    }

    fn launch_role_policies(&self) -> Vec<Json> {
        self.bootstrap.inline_policies("LaunchRole").unwrap()
    }

    /// The waiver for `action` on a resource, checked: a property it names must be absent.
    fn waiver(&self, resource: &str, kind: &str, properties: &Json, action: &str) -> Option<&'static Moot> {
        let (_, _, moot) = WAIVERS.iter().find(|(k, pattern, _)| {
            *k == kind && iam::glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
        })?;
        match moot {
            // A rendering that sets the property (target accounts give the group a policy) needs
            // the permission after all: it is checked, not waived.
            Moot::Without(names) if names.iter().any(|name| properties.get(*name).is_some_and(|v| !v.is_null())) => {
                return None;
            }
            Moot::Without(_) => {}
            Moot::Retained => {
                let policy = self.project.resource_field(resource, "DeletionPolicy");
                assert_eq!(
                    policy.as_deref(),
                    Some("Retain"),
                    "{resource} is not retained: {action} is needed to delete it"
                );
            }
            Moot::Because(reason) => assert!(reason.len() > 20, "{kind} {action}: say why it is moot"),
        }
        Some(moot)
    }
}

/// The project published with staging and production in accounts of their own.
pub(crate) fn project_with_target_accounts() -> Stack {
    project_with(&[
        ("Accounts", "StagingAccountId", STAGING_ACCOUNT),
        ("Accounts", "ProductionAccountId", PRODUCTION_ACCOUNT),
    ])
}

#[test]
fn the_launch_role_may_do_everything_each_project_resource_needs() {
    assert_launch_role_may_make(Proof::new());
    let accounts = [("StagingAccountId", STAGING_ACCOUNT), ("ProductionAccountId", PRODUCTION_ACCOUNT)];
    assert_launch_role_may_make(Proof::of(bootstrap_with(&accounts), project_with_target_accounts()));
}

fn assert_launch_role_may_make(proof: Proof) {
    let launch_role = role_arn("sagemaker-gitlab-project-launch-eu-west-1");
    let identity = proof.launch_role_policies();
    let artifact_bucket_policy = json(proof.bootstrap.property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap());
    let mut failures = Vec::new();
    let mut checked = 0;
    for (resource, kind) in proof.project.resources().unwrap() {
        let properties = json(proof.project.property(&resource, &[]).unwrap());
        let actions: Vec<String> = if kind.starts_with("Custom::") {
            // CloudFormation invokes a custom resource's function with the stack's role.
            vec!["lambda:InvokeFunction".into()]
        } else {
            let listed = proof.schemas.get(&kind).unwrap_or_else(|| panic!("cfn-lint has no schema for {kind}"));
            listed.iter().filter(|a| proof.waiver(&resource, &kind, &properties, a).is_none()).cloned().collect()
        };
        for action in actions {
            let request = if kind.starts_with("Custom::") {
                Request::new(&launch_role, &action, &text(&properties, &["ServiceToken"]))
            } else {
                request_for(&launch_role, &kind, &properties, &action)
            };
            let resource_policy = request
                .resource
                .starts_with(&format!("arn:aws:s3:::{ARTIFACT_BUCKET}/"))
                .then_some(&artifact_bucket_policy);
            let policies = Policies { identity: identity.iter().collect(), resource: resource_policy, boundary: None };
            checked += 1;
            match iam::evaluate(&policies, &request) {
                Decision::Allowed => {}
                denied => failures.push(format!(
                    "{resource} ({kind}): {action} on {} is {denied:?} for role {launch_role}",
                    request.resource
                )),
            }
        }
    }
    assert!(checked > 60, "only {checked} permissions checked");
    assert!(failures.is_empty(), "{} of {checked} permissions are missing:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_waiver_is_used() {
    let proof = Proof::new();
    let kinds: BTreeSet<String> = proof.project.resources().unwrap().into_iter().map(|(_, kind)| kind).collect();
    for (kind, pattern, _) in WAIVERS {
        assert!(kinds.contains(*kind), "waiver for {kind}, which the template no longer has");
        let listed = &proof.schemas[*kind];
        assert!(
            listed.iter().any(|a| iam::glob(&pattern.to_ascii_lowercase(), &a.to_ascii_lowercase())),
            "waiver {pattern} of {kind} matches no permission its schema lists"
        );
    }
}

#[test]
fn service_catalogs_template_copy_is_readable_and_nothing_else_outside_the_artifacts() {
    let proof = Proof::new();
    let launch_role = role_arn("sagemaker-gitlab-project-launch-eu-west-1");
    let identity = proof.launch_role_policies();
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: None };
    let copy = "arn:aws:s3:::sc-123456789012-eu-west-1-templates/prod/t.template";
    let tagged = Request::new(&launch_role, "s3:GetObject", copy)
        .with("s3:ExistingObjectTag/servicecatalog:provisioning", &["true"]);
    assert_eq!(
        iam::evaluate(&policies, &tagged),
        Decision::Allowed,
        "the launch role cannot read Service Catalog's copy"
    );
    let untagged = Request::new(&launch_role, "s3:GetObject", "arn:aws:s3:::someone-elses-bucket/secret.csv");
    assert_eq!(iam::evaluate(&policies, &untagged), Decision::ImplicitlyDenied);
}

/// The project's CI role as IAM decides for it: its inline policies, and bootstrap's boundary.
fn ci_role_policies(project: &Stack, bootstrap: &Stack) -> (Vec<Json>, Json) {
    (project.inline_policies("CiRole").unwrap(), bootstrap.json_property("CiBoundary", &["PolicyDocument"]).unwrap())
}

/// A trust policy written as JSON text, as both templates write those with GitLab's claims.
pub(crate) fn trust_policy(stack: &Stack, resource: &str) -> Json {
    let text = stack.property(resource, &["AssumeRolePolicyDocument"]).unwrap();
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

/// A GitLab CI job of `project_path` on `ref_type`/`reference` asking to assume `role`, with the
/// claims GitLab puts into its id_token (GitLab docs, "OpenID Connect (OIDC) Authentication
/// Using ID Tokens": sub is project_path:{group}/{project}:ref_type:{type}:ref:{branch_name}).
pub(crate) fn gitlab_job(
    role: &str,
    provider: &str,
    aud: &str,
    project_path: &str,
    ref_type: &str,
    reference: &str,
) -> Request {
    let sub = format!("project_path:{project_path}:ref_type:{ref_type}:ref:{reference}");
    Request::new(&format!("federated:{provider}"), "sts:AssumeRoleWithWebIdentity", role)
        .with("gitlab.com:aud", &[aud])
        .with("gitlab.com:sub", &[&sub])
}

#[test]
fn only_main_of_this_projects_two_repositories_may_assume_its_ci_role() {
    let project = project();
    let trust = trust_policy(&project, "CiRole");
    let policies = Policies { identity: vec![], resource: Some(&trust), boundary: None };
    let role = role_arn(&ci_role_name(PROJECT_ID));
    let aud = "https://gitlab.com";
    let job =
        |path: &str, ref_type: &str, reference: &str| gitlab_job(&role, OIDC_PROVIDER, aud, path, ref_type, reference);
    for path in [BUILD_PATH, DEPLOY_PATH] {
        assert_eq!(iam::evaluate(&policies, &job(path, "branch", "main")), Decision::Allowed, "{path} on main");
    }
    let attacks = [
        ("a feature branch of the build project", job(BUILD_PATH, "branch", "feature")),
        ("a branch named like a tag", job(BUILD_PATH, "tag", "main")),
        ("another project of the same group", job("ml/churn-team/model-build-p-zzzzzzzzzzzz", "branch", "main")),
        ("a project whose path starts like this one's", job(&format!("{BUILD_PATH}-fork"), "branch", "main")),
        ("the same project name in another namespace", job("mallory/model-build-p-abcdef123456", "branch", "main")),
        (
            "a token for another audience",
            gitlab_job(&role, OIDC_PROVIDER, "sts.amazonaws.com", BUILD_PATH, "branch", "main"),
        ),
        (
            "another identity provider",
            gitlab_job(
                &role,
                "arn:aws:iam::123456789012:oidc-provider/gitlab.mallory.example",
                aud,
                BUILD_PATH,
                "branch",
                "main",
            ),
        ),
    ];
    for (attack, request) in attacks {
        assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{attack} assumed the CI role");
    }
}

#[test]
fn a_projects_ci_role_reaches_its_own_resources_and_no_other_projects() {
    let project = project();
    let bootstrap = bootstrap();
    let (identity, boundary) = ci_role_policies(&project, &bootstrap);
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) };
    let role = role_arn(&ci_role_name(PROJECT_ID));
    let other = "p-zzzzzzzzzzzz";
    let sagemaker = |rest: &str| arn("sagemaker", rest);
    let own = [
        ("sagemaker:StartPipelineExecution", sagemaker(&format!("pipeline/churn-{PROJECT_ID}"))),
        ("sagemaker:DescribePipelineExecution", sagemaker(&format!("pipeline/churn-{PROJECT_ID}/execution/x1"))),
        ("sagemaker:ListModelPackages", sagemaker(&format!("model-package-group/churn-{PROJECT_ID}"))),
        ("sagemaker:DescribeModelPackage", sagemaker(&format!("model-package/churn-{PROJECT_ID}/3"))),
        ("sagemaker:InvokeEndpoint", sagemaker(&format!("endpoint/churn-{PROJECT_ID}-staging"))),
        (
            "cloudformation:UpdateStack",
            arn("cloudformation", &format!("stack/sagemaker-Churn-{PROJECT_ID}-production/0a1b")),
        ),
        ("s3:PutObject", format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}/input/data.csv")),
    ];
    for (action, resource) in own {
        let request = Request::new(&role, action, &resource);
        assert_eq!(iam::evaluate(&policies, &request), Decision::Allowed, "{action} on {resource}");
    }
    let others = [
        ("sagemaker:UpdatePipeline", sagemaker(&format!("pipeline/churn-{other}"))),
        ("sagemaker:DescribeModelPackage", sagemaker(&format!("model-package/fraud-{other}/1"))),
        ("sagemaker:DeleteEndpoint", sagemaker(&format!("endpoint/fraud-{other}-production"))),
        ("cloudformation:DeleteStack", arn("cloudformation", &format!("stack/sagemaker-fraud-{other}-production/9f"))),
        ("s3:GetObject", format!("arn:aws:s3:::sagemaker-project-{other}/model.tar.gz")),
        ("s3:PutObject", format!("arn:aws:s3:::{ARTIFACT_BUCKET}/artifacts/lambda-seedcode-checkin-gitlab.zip")),
        ("iam:PassRole", role_arn("sagemaker-gitlab-project-launch-eu-west-1")),
    ];
    for (action, resource) in others {
        let request = Request::new(&role, action, &resource);
        assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{action} on {resource}");
    }
    // Models and endpoint configs get names from CloudFormation: their project tag decides.
    let model = sagemaker("model/model-a1b2c3");
    let tagged = |key: &str, id: &str| Request::new(&role, "sagemaker:DeleteModel", &model).with(key, &[id]);
    assert_eq!(
        iam::evaluate(&policies, &tagged("aws:ResourceTag/sagemaker:project-id", PROJECT_ID)),
        Decision::Allowed
    );
    assert_eq!(
        iam::evaluate(&policies, &tagged("aws:ResourceTag/sagemaker:project-id", other)),
        Decision::ImplicitlyDenied,
        "another project's model"
    );
    let untagged = Request::new(&role, "sagemaker:CreateModel", &model);
    assert_eq!(iam::evaluate(&policies, &untagged), Decision::ImplicitlyDenied, "a model without the project's tag");
}

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

pub(crate) fn in_account(account: &str, service: &str, rest: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{account}:{rest}")
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
        // Every stage captures and is monitored; production also scales.
        let mut expected = BTreeSet::from([
            "AWS::SageMaker::Model",
            "AWS::SageMaker::EndpointConfig",
            "AWS::SageMaker::Endpoint",
            "AWS::SageMaker::DataQualityJobDefinition",
            "AWS::SageMaker::MonitoringSchedule",
        ]);
        if stage == "production" {
            expected
                .extend(["AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy"]);
        }
        assert_eq!(kinds, expected, "{stage}'s endpoint stack");
        let capture = json(stack.property("EndpointConfig", &["DataCaptureConfig"]).unwrap());
        assert_eq!(capture["DestinationS3Uri"], format!("s3://{}/data-capture/{stage}", deployer.bucket));

        for (resource, kind) in &resources {
            let properties = json(stack.property(resource, &[]).unwrap());
            let dependent = ENDPOINT_STACK_DEPENDENT.iter().filter(|(k, _)| k == kind).map(|(_, a)| a.to_string());
            for action in schemas[kind].iter().cloned().chain(dependent) {
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

#[test]
fn only_the_publisher_role_writes_the_artifact_bucket() {
    let bootstrap = bootstrap();
    let bucket_policy = json(bootstrap.property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap());
    let object = format!("arn:aws:s3:::{ARTIFACT_BUCKET}/artifacts/lambda-seedcode-checkin-gitlab.zip");
    // AmazonSageMakerFullAccess lets a Studio role write any bucket named *sagemaker*.
    let studio_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject", "s3:GetObject"],
        "Resource": ["arn:aws:s3:::*SageMaker*", "arn:aws:s3:::*Sagemaker*", "arn:aws:s3:::*sagemaker*"]}]});
    let studio = role_arn("service-role/AmazonSageMaker-ExecutionRole-20261127");
    let as_studio = Policies { identity: vec![&studio_policy], resource: Some(&bucket_policy), boundary: None };
    for action in ["s3:PutObject", "s3:DeleteObject"] {
        let request = Request::new(&studio, action, &object).with("aws:SecureTransport", &["true"]);
        assert_eq!(
            iam::evaluate(&as_studio, &request),
            Decision::ExplicitlyDenied("OnlyThePublisherWrites".into()),
            "a Studio role could {action} the checkin's code"
        );
    }
    let publisher = role_arn("sagemaker-gitlab-project-publisher-eu-west-1");
    let identity = bootstrap.inline_policies("PublisherRole").unwrap();
    let as_publisher = Policies { identity: identity.iter().collect(), resource: Some(&bucket_policy), boundary: None };
    let upload = Request::new(&publisher, "s3:PutObject", &object).with("aws:SecureTransport", &["true"]);
    assert_eq!(iam::evaluate(&as_publisher, &upload), Decision::Allowed);
    let plain_http = Request::new(&publisher, "s3:PutObject", &object).with("aws:SecureTransport", &["false"]);
    assert_eq!(iam::evaluate(&as_publisher, &plain_http), Decision::ExplicitlyDenied("DenyInsecureTransport".into()));
}

#[test]
fn the_publisher_role_is_assumed_only_from_the_default_branch_and_release_tags_of_this_repository() {
    let person = role_arn("platform-admin");
    for by_hand in ["", person.as_str()] {
        let bootstrap = bootstrap_with(&[("PublisherPrincipalArn", by_hand)]);
        let trust = trust_policy(&bootstrap, "PublisherRole");
        let policies = Policies { identity: vec![], resource: Some(&trust), boundary: None };
        let role = role_arn("sagemaker-gitlab-project-publisher-eu-west-1");
        let aud = "https://gitlab.com";
        let job = |path: &str, ref_type: &str, reference: &str| {
            gitlab_job(&role, OIDC_PROVIDER, aud, path, ref_type, reference)
        };
        for (ref_type, reference) in [("branch", "main"), ("tag", "v1.4.0")] {
            let request = job(TEMPLATE_REPOSITORY, ref_type, reference);
            assert_eq!(iam::evaluate(&policies, &request), Decision::Allowed, "{ref_type} {reference}");
        }
        for (attack, request) in [
            ("a feature branch", job(TEMPLATE_REPOSITORY, "branch", "feature")),
            ("a tag outside the release pattern", job(TEMPLATE_REPOSITORY, "tag", "nightly")),
            ("a data scientist's project", job(BUILD_PATH, "branch", "main")),
            ("a fork", job("mallory/sagemaker-gitlab-template", "tag", "v1.4.0")),
        ] {
            assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{attack} may publish");
        }
        let assume = Request::new(&person, "sts:AssumeRole", &role);
        let expected = if by_hand.is_empty() { Decision::ImplicitlyDenied } else { Decision::Allowed };
        assert_eq!(iam::evaluate(&policies, &assume), expected, "PublisherPrincipalArn={by_hand:?}");
    }
}

#[test]
fn the_launch_role_can_make_ci_roles_only_under_the_boundary() {
    let bootstrap = bootstrap();
    let identity = bootstrap.inline_policies("LaunchRole").unwrap();
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: None };
    let launch = role_arn("sagemaker-gitlab-project-launch-eu-west-1");
    let ci_role = role_arn(&ci_role_name(PROJECT_ID));
    let create = |role: &str, boundary: Option<&str>| {
        let request = Request::new(&launch, "iam:CreateRole", role);
        match boundary {
            Some(boundary) => request.with("iam:PermissionsBoundary", &[boundary]),
            None => request,
        }
    };
    assert_eq!(iam::evaluate(&policies, &create(&ci_role, Some(CI_BOUNDARY))), Decision::Allowed);
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    for (attack, request) in [
        ("a CI role without a boundary", create(&ci_role, None)),
        ("a CI role bounded by AdministratorAccess", create(&ci_role, Some(admin))),
        ("a role of another name", create(&role_arn("sagemaker-admin"), Some(CI_BOUNDARY))),
        (
            "taking the boundary off",
            Request::new(&launch, "iam:DeleteRolePermissionsBoundary", &ci_role)
                .with("iam:PermissionsBoundary", &[CI_BOUNDARY]),
        ),
        (
            "attaching a managed policy",
            Request::new(&launch, "iam:AttachRolePolicy", &ci_role).with("iam:PermissionsBoundary", &[admin]),
        ),
    ] {
        assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "the launch role allows {attack}");
    }
}

#[test]
fn studio_reads_s3_templates_only_where_enabled_and_only_the_templates() {
    let studio = role_arn("service-role/AmazonSageMaker-ExecutionRole-20261127");
    let template =
        format!("arn:aws:s3:::{ARTIFACT_BUCKET}/sagemaker-gitlab-project/studio-templates/mlops-with-gitlab.yml");
    let code = format!(
        "arn:aws:s3:::{ARTIFACT_BUCKET}/sagemaker-gitlab-project/artifacts/0f/lambda-seedcode-checkin-gitlab.zip"
    );
    let read =
        |action: &str, object: &str| Request::new(&studio, action, object).with("aws:SecureTransport", &["true"]);
    let cloudformation = Request::new(
        "service:cloudformation.amazonaws.com",
        "sts:AssumeRole",
        &role_arn("sagemaker-gitlab-project-launch-eu-west-1"),
    )
    .with("aws:SourceAccount", &[ACCOUNT]);
    for (setting, expected) in [("Enabled", Decision::Allowed), ("Disabled", Decision::ImplicitlyDenied)] {
        let bootstrap = bootstrap_with(&[("S3Templates", setting), ("StudioExecutionRoleArn", &studio)]);
        let bucket_policy = json(bootstrap.property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap());
        // No identity policy: what the bucket policy alone grants Studio.
        let policies = Policies { identity: vec![], resource: Some(&bucket_policy), boundary: None };
        for action in ["s3:GetObject", "s3:GetObjectTagging"] {
            assert_eq!(iam::evaluate(&policies, &read(action, &template)), expected, "S3Templates={setting}: {action}");
        }
        assert_eq!(
            iam::evaluate(&policies, &read("s3:GetObject", &code)),
            Decision::ImplicitlyDenied,
            "the Lambda code"
        );
        assert!(matches!(iam::evaluate(&policies, &read("s3:PutObject", &template)), Decision::ExplicitlyDenied(_)));
        let list = Request::new(&studio, "s3:ListBucket", &format!("arn:aws:s3:::{ARTIFACT_BUCKET}"))
            .with("s3:prefix", &["sagemaker-gitlab-project/studio-templates/"])
            .with("aws:SecureTransport", &["true"]);
        assert_eq!(iam::evaluate(&policies, &list), expected, "S3Templates={setting}: listing the templates");

        let trust = json(bootstrap.property("LaunchRole", &["AssumeRolePolicyDocument"]).unwrap());
        let trust = Policies { identity: vec![], resource: Some(&trust), boundary: None };
        assert_eq!(
            iam::evaluate(&trust, &cloudformation),
            expected,
            "S3Templates={setting}: CloudFormation's SP-* stacks"
        );
        let cors = bootstrap.property("ArtifactBucket", &["CorsConfiguration"]);
        assert_eq!(cors.is_ok(), setting == "Enabled", "S3Templates={setting}: CORS {cors:?}");
    }
}
