//! The permission proof for stages in accounts of their own: `cfn/target-account.yml` deployed
//! in a staging and a production account for the development account of `permissions`, and
//! `cfn/project.yml` published with both. Decided by `testkit::iam`, which evaluates
//! cross-account requests as IAM does: the identity side and the resource side must both allow.

use serde_json::Value as Json;
use testkit::cfn::Stack;
use testkit::iam::{self, Decision, Policies, Request};

use crate::permissions::{
    ACCOUNT as DEVELOPMENT, DEPLOY_PATH, DEPLOY_PROJECT_ID, Deployer, PRODUCTION_ACCOUNT as PRODUCTION, PROJECT_ID,
    PROJECT_NAME, REGION, STAGING_ACCOUNT as STAGING, assert_deploys_endpoint_stacks, components, gitlab_job,
    in_account, json, model_package, pipeline_claims, project, project_with_target_accounts, trust_policy,
    web_identity,
};

const STRANGER: &str = "333333333333";
/// The GitLab group the development account's projects are created in (`DEPLOY_PATH`'s).
const GROUP: &str = "ml/churn-team";

fn account_of(stage: &str) -> &'static str {
    if stage == "staging" { STAGING } else { PRODUCTION }
}

/// `cfn/target-account.yml` as the platform team deploys it for `stage`.
fn target(stage: &str) -> Stack {
    let parameters = [("DevelopmentAccountId", DEVELOPMENT), ("StageName", stage), ("GitLabGroupPath", GROUP)];
    testkit::cfn::target_account(REGION, account_of(stage), &parameters).unwrap()
}

fn role(stage: &str, kind: &str) -> String {
    format!("arn:aws:iam::{}:role/sagemaker-gitlab-{DEVELOPMENT}-{stage}-{kind}", account_of(stage))
}

/// A role of a target stack as IAM decides for it: its inline policies within the boundary.
fn role_policies(stack: &Stack, resource: &str) -> (Vec<Json>, Json) {
    (stack.inline_policies(resource).unwrap(), stack.json_property("Boundary", &["PolicyDocument"]).unwrap())
}

#[test]
fn only_main_of_the_groups_projects_with_the_stages_audience_may_assume_its_deploy_role() {
    for stage in ["staging", "production"] {
        let stack = target(stage);
        let trust = trust_policy(&stack, "DeployRole");
        let policies = Policies { identity: vec![], resource: Some(&trust), boundary: None };
        let deploy_role = role(stage, "deploy");
        let provider = format!("arn:aws:iam::{}:oidc-provider/gitlab.com", account_of(stage));
        let audience = format!("sagemaker-deploy-{stage}");
        let other_stage = if stage == "staging" { "sagemaker-deploy-production" } else { "sagemaker-deploy-staging" };
        let job = |aud: &str, path: &str, ref_type: &str, reference: &str| {
            gitlab_job(&deploy_role, &provider, aud, path, ref_type, reference)
        };
        assert_eq!(iam::evaluate(&policies, &job(&audience, DEPLOY_PATH, "branch", "main")), Decision::Allowed);
        let attacks = [
            ("a token minted for the other stage", job(other_stage, DEPLOY_PATH, "branch", "main")),
            ("a token for the development account's CI role", job("https://gitlab.com", DEPLOY_PATH, "branch", "main")),
            ("a feature branch", job(&audience, DEPLOY_PATH, "branch", "feature")),
            ("a tag named main", job(&audience, DEPLOY_PATH, "tag", "main")),
            (
                "a group whose path starts like this one's",
                job(&audience, "ml/churn-team-x/model-deploy-p-1", "branch", "main"),
            ),
            ("another namespace", job(&audience, "mallory/model-deploy-p-abcdef123456", "branch", "main")),
            (
                "another identity provider",
                gitlab_job(
                    &deploy_role,
                    &format!("arn:aws:iam::{}:oidc-provider/gitlab.mallory.example", account_of(stage)),
                    &audience,
                    DEPLOY_PATH,
                    "branch",
                    "main",
                ),
            ),
        ];
        for (attack, request) in attacks {
            assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{stage}: {attack} got in");
        }
        // The same with the sub the checkin sets where GitLab accepts the project ID and
        // ref_protected: a merge request's pipeline carries ref_protected false.
        let with_id = |path: &str, reference: &str, protected: bool| {
            let claims = pipeline_claims(path, DEPLOY_PROJECT_ID, "branch", reference, protected);
            web_identity(&deploy_role, &provider, &audience, &testkit::gitlab::id_token_sub(&components(), &claims))
        };
        assert_eq!(iam::evaluate(&policies, &with_id(DEPLOY_PATH, "main", true)), Decision::Allowed);
        for (attack, request) in [
            ("a merge request from main", with_id(DEPLOY_PATH, "main", false)),
            ("a feature branch", with_id(DEPLOY_PATH, "feature", false)),
            ("another namespace", with_id("mallory/model-deploy-p-abcdef123456", "main", true)),
        ] {
            assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{stage}: {attack} got in");
        }
        // The model role is SageMaker's, of this account only.
        let model_trust = stack.json_property("ModelExecutionRole", &["AssumeRolePolicyDocument"]).unwrap();
        let policies = Policies { identity: vec![], resource: Some(&model_trust), boundary: None };
        let sagemaker = |account: &str| {
            Request::new("service:sagemaker.amazonaws.com", "sts:AssumeRole", &role(stage, "model"))
                .with("aws:SourceAccount", &[account])
        };
        assert_eq!(iam::evaluate(&policies, &sagemaker(account_of(stage))), Decision::Allowed);
        assert_eq!(iam::evaluate(&policies, &sagemaker(STRANGER)), Decision::ImplicitlyDenied, "a confused deputy");
    }
}

#[test]
fn each_stages_deploy_role_may_deploy_every_resource_of_its_endpoint_stack() {
    let stages = ["staging", "production"];
    let policies = stages.map(|stage| role_policies(&target(stage), "DeployRole"));
    let deployers: Vec<Deployer> = stages
        .iter()
        .zip(&policies)
        .map(|(stage, (identity, boundary))| Deployer {
            account: account_of(stage),
            role: role(stage, "deploy"),
            policies: Policies { identity: identity.iter().collect(), resource: None, boundary: Some(boundary) },
            execution_role: role(stage, "model"),
            bucket: format!("sm-gl-{REGION}-{}-{DEVELOPMENT}-{stage}", account_of(stage)),
        })
        .collect();
    assert_deploys_endpoint_stacks(&[("staging", &deployers[0]), ("production", &deployers[1])]);
}

#[test]
fn a_stages_roles_touch_neither_the_other_stage_nor_the_development_account() {
    let staging = target("staging");
    let (identity, boundary) = role_policies(&staging, "DeployRole");
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) };
    let deploy_role = role("staging", "deploy");
    let production_stack = format!("stack/sagemaker-{PROJECT_NAME}-{PROJECT_ID}-production/0a1b");
    let production_endpoint = format!("endpoint/churn-{PROJECT_ID}-production");
    let denied = [
        // Production in the staging account (one account may serve both) and in its own.
        ("cloudformation:UpdateStack", in_account(STAGING, "cloudformation", &production_stack)),
        ("cloudformation:DeleteStack", in_account(PRODUCTION, "cloudformation", &production_stack)),
        ("sagemaker:DeleteEndpoint", in_account(STAGING, "sagemaker", &production_endpoint)),
        ("sagemaker:InvokeEndpoint", in_account(PRODUCTION, "sagemaker", &production_endpoint)),
        ("iam:PassRole", role("production", "model")),
        // The development account: its stacks, pipeline, registry writes and bucket.
        (
            "cloudformation:DeleteStack",
            in_account(
                DEVELOPMENT,
                "cloudformation",
                &format!("stack/sagemaker-{PROJECT_NAME}-{PROJECT_ID}-staging/9f"),
            ),
        ),
        (
            "sagemaker:StartPipelineExecution",
            in_account(DEVELOPMENT, "sagemaker", &format!("pipeline/churn-{PROJECT_ID}")),
        ),
        ("sagemaker:UpdateModelPackage", model_package()),
        (
            "sagemaker:DeleteEndpoint",
            in_account(DEVELOPMENT, "sagemaker", &format!("endpoint/churn-{PROJECT_ID}-staging")),
        ),
    ];
    for (action, resource) in denied {
        let request = Request::new(&deploy_role, action, &resource);
        assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{action} on {resource}");
    }
    // The stage tag scopes models and endpoint configs: re-tagging production's as staging's
    // (one account may serve both) would hand them over.
    let tag = |owner: Option<&str>| {
        let request = Request::new(&deploy_role, "sagemaker:AddTags", &in_account(STAGING, "sagemaker", "model/m-1"))
            .with("aws:RequestTag/sagemaker:deployment-stage", &["staging"]);
        let request = match owner {
            Some(stage) => request.with("aws:ResourceTag/sagemaker:deployment-stage", &[stage]),
            None => request,
        };
        iam::evaluate(&policies, &request)
    };
    assert_eq!(tag(None), Decision::Allowed, "tagging a model as CloudFormation creates it");
    assert_eq!(tag(Some("production")), Decision::ImplicitlyDenied, "re-tagging production's model");
    let write_dev_bucket = Request::new(
        &deploy_role,
        "s3:PutObject",
        &format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}/churn-{PROJECT_ID}/models/m.tar.gz"),
    )
    .with("s3:ResourceAccount", &[DEVELOPMENT]);
    assert_eq!(iam::evaluate(&policies, &write_dev_bucket), Decision::ImplicitlyDenied);

    // A model role of one stage reads the development account's model files, never writes them,
    // and writes its own stage's bucket only.
    let (identity, boundary) = role_policies(&staging, "ModelExecutionRole");
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) };
    let model_role = role("staging", "model");
    let object = |bucket: &str, key: &str, account: &str, action: &str| {
        Request::new(&model_role, action, &format!("arn:aws:s3:::{bucket}/{key}"))
            .with("s3:ResourceAccount", &[account])
    };
    let own_bucket = format!("sm-gl-{REGION}-{STAGING}-{DEVELOPMENT}-staging");
    let production_bucket = format!("sm-gl-{REGION}-{PRODUCTION}-{DEVELOPMENT}-production");
    let dev_bucket = format!("sagemaker-project-{PROJECT_ID}");
    let model = format!("churn-{PROJECT_ID}/models/job-1/output/model.tar.gz");
    for (request, expected) in [
        (object(&own_bucket, "data-capture/staging/x.jsonl", STAGING, "s3:PutObject"), Decision::Allowed),
        (
            object(&production_bucket, "data-capture/production/x.jsonl", PRODUCTION, "s3:PutObject"),
            Decision::ImplicitlyDenied,
        ),
        (object(&dev_bucket, &model, DEVELOPMENT, "s3:PutObject"), Decision::ImplicitlyDenied),
        // A bucket of that name in an account other than the development one.
        (object(&dev_bucket, &model, STRANGER, "s3:GetObject"), Decision::ImplicitlyDenied),
    ] {
        assert_eq!(iam::evaluate(&policies, &request), expected, "{} on {}", request.action, request.resource);
    }
}

/// The development account's side: the model package group's policy and the bucket policy.
fn development_grants(project: &Stack) -> (Option<Json>, Json) {
    let group_policy = project.property("ModelPackageGroup", &["ModelPackageGroupPolicy"]).ok().map(json);
    let bucket_policy = project.json_property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap();
    (group_policy.filter(|policy| !policy.is_null()), bucket_policy)
}

#[test]
fn the_development_account_shares_the_approved_packages_and_model_files_with_the_configured_accounts_only() {
    let (group_policy, bucket_policy) = development_grants(&project_with_target_accounts());
    let group_policy = group_policy.expect("a group policy when stages have accounts of their own");
    let dev_bucket = format!("sagemaker-project-{PROJECT_ID}");
    for stage in ["staging", "production"] {
        let stack = target(stage);

        // The deploy role makes its endpoint's model from the package: both sides allow.
        let (identity, boundary) = role_policies(&stack, "DeployRole");
        for action in ["sagemaker:DescribeModelPackage", "sagemaker:CreateModel"] {
            let request = Request::new(&role(stage, "deploy"), action, &model_package());
            let both = Policies {
                identity: identity.iter().collect(),
                resource: Some(&group_policy),
                boundary: Some(&boundary),
            };
            assert_eq!(iam::evaluate(&both, &request), Decision::Allowed, "{stage}: {action}");
            let identity_only =
                Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) };
            assert_eq!(
                iam::evaluate(&identity_only, &request),
                Decision::ImplicitlyDenied,
                "{stage}: {action} unshared"
            );
        }
        let other_group = format!("arn:aws:sagemaker:{REGION}:{DEVELOPMENT}:model-package/fraud-p-zzzzzzzzzzzz/1");
        let request = Request::new(&role(stage, "deploy"), "sagemaker:CreateModel", &other_group);
        let both =
            Policies { identity: identity.iter().collect(), resource: Some(&group_policy), boundary: Some(&boundary) };
        assert_eq!(iam::evaluate(&both, &request), Decision::ImplicitlyDenied, "another project's package");

        // What a role of the stage may read of the development account's bucket.
        let reads = |resource: &str, kind: &str, key: &str| {
            let (identity, boundary) = role_policies(&stack, resource);
            let both = Policies {
                identity: identity.iter().collect(),
                resource: Some(&bucket_policy),
                boundary: Some(&boundary),
            };
            let get = Request::new(&role(stage, kind), "s3:GetObject", &format!("arn:aws:s3:::{dev_bucket}/{key}"))
                .with("s3:ResourceAccount", &[DEVELOPMENT])
                .with("aws:SecureTransport", &["true"]);
            iam::evaluate(&both, &get) == Decision::Allowed
        };
        let model = format!("churn-{PROJECT_ID}/models/job-1/output/model.tar.gz");
        let baseline = format!("churn-{PROJECT_ID}/runs/x1/data-quality-baseline/statistics.json");
        let others = [
            format!("churn-{PROJECT_ID}/runs/x1/preprocess/train/train.csv"),
            format!("churn-{PROJECT_ID}/runs/x1/evaluation/evaluation.json"),
            "input/penguins.csv".to_owned(),
        ];
        // The model role loads the model and its monitor the baseline; nothing else of the bucket.
        for key in [&model, &baseline] {
            assert!(reads("ModelExecutionRole", "model", key), "{stage}'s model role reads {key}");
        }
        // The deploy role reads the model file, to check it is the bytes selected at approval.
        assert!(reads("DeployRole", "deploy", &model), "{stage}'s deploy role reads {model}");
        for key in &others {
            assert!(!reads("ModelExecutionRole", "model", key), "{stage}'s model role reads {key}");
            assert!(!reads("DeployRole", "deploy", key), "{stage}'s deploy role reads {key}");
        }
    }

    // An account nobody configured, whatever its own policies say.
    let anything = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let stranger = format!("arn:aws:iam::{STRANGER}:role/admin");
    let package = Request::new(&stranger, "sagemaker:DescribeModelPackage", &model_package());
    let policies = Policies { identity: vec![&anything], resource: Some(&group_policy), boundary: None };
    assert_eq!(iam::evaluate(&policies, &package), Decision::ImplicitlyDenied);
    let model = Request::new(
        &stranger,
        "s3:GetObject",
        &format!("arn:aws:s3:::{dev_bucket}/churn-{PROJECT_ID}/models/job-1/output/model.tar.gz"),
    )
    .with("s3:ResourceAccount", &[DEVELOPMENT])
    .with("aws:SecureTransport", &["true"]);
    let policies = Policies { identity: vec![&anything], resource: Some(&bucket_policy), boundary: None };
    assert_eq!(iam::evaluate(&policies, &model), Decision::ImplicitlyDenied);

    // Published for one account, the project shares nothing.
    let (group_policy, bucket_policy) = development_grants(&project());
    assert!(group_policy.is_none(), "a group policy without target accounts: {group_policy:?}");
    let policies = Policies { identity: vec![&anything], resource: Some(&bucket_policy), boundary: None };
    let staging_model = Request::new(&role("staging", "model"), "s3:GetObject", &model.resource)
        .with("s3:ResourceAccount", &[DEVELOPMENT])
        .with("aws:SecureTransport", &["true"]);
    assert_eq!(iam::evaluate(&policies, &staging_model), Decision::ImplicitlyDenied);
}
