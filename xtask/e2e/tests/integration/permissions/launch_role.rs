//! The permission proof for what Service Catalog launches: for every resource of
//! `cfn/project.yml` rendered for a sample project, every action CloudFormation's resource
//! handlers may call for it (the `handlers.{create,read,update,delete}.permissions` of its
//! registry schema, as the pinned cfn-lint ships them) is allowed to the launch role of
//! `cfn/bootstrap.yml` on that resource's own ARN, decided by `testkit::iam`: explicit
//! denies, wildcards, `Not*` elements and conditions as IAM evaluates them, not a string search.
//!
//! A schema permission that does not apply to this template is waived in `WAIVERS`, each tied to
//! the property whose absence makes it moot (a rendering that sets the property has the
//! permission checked instead) or to a one-line reason. The template is proven as published
//! for one account and with staging and production in accounts of their own. A failure names the resource, its type, the action, the ARN and the role.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use testkit::cfn::Stack;
use testkit::iam::{self, Decision, Policies, Request};

use super::*;

/// Why a schema permission is not needed here.
enum Moot {
    /// The handler calls it only for these properties, which the resource does not set.
    Without(&'static [&'static str]),
    /// Only the delete handler calls it (its schema lists it for no other handler), and the
    /// resource has `DeletionPolicy: Retain`.
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
    ("AWS::S3::Bucket", "s3:DeleteBucket", Moot::Retained),
    (
        "AWS::S3::Bucket",
        "s3:DeleteBucketEncryption",
        Moot::Because("the bucket has BucketEncryption in every version of the template: no update removes it"),
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
    schemas: BTreeMap<String, BTreeMap<String, BTreeSet<&'static str>>>,
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
    // The Service Authorization Reference gives these no resource type: IAM authorizes them on `*`.
    if iam::action_resource_types(action).is_some_and(|types| types.is_empty()) {
        return Request::new(principal, action, "*").with("aws:SecureTransport", &["true"]);
    }
    match (kind, action) {
        ("AWS::Lambda::Function", "iam:PassRole") => Request::new(principal, action, &text(properties, &["Role"]))
            .with("iam:PassedToService", &["lambda.amazonaws.com"]),
        // The bucket's create handler deletes objects of the bucket it makes.
        ("AWS::S3::Bucket", "s3:DeleteObject") => {
            Request::new(principal, action, &format!("{}/*", own_arn(kind, properties)))
                .with("aws:SecureTransport", &["true"])
        }
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
                // Delete-only by the schema itself: a grant another handler needs is never waived.
                let handlers = &self.schemas[kind][action];
                assert!(
                    handlers.iter().all(|handler| *handler == "delete"),
                    "{kind} {action} is waived as delete-only, but its schema lists it for {handlers:?}: grant it"
                );
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
            listed.keys().filter(|a| proof.waiver(&resource, &kind, &properties, a).is_none()).cloned().collect()
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
            listed.keys().any(|a| iam::glob(&pattern.to_ascii_lowercase(), &a.to_ascii_lowercase())),
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
