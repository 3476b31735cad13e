//! A data scientist against the projects: the execution role Studio's set-up gives them, holding
//! AWS's own managed policies as AWS publishes them (`testkit::managed_policies`), evaluated
//! against what the templates make. They may not read the GitLab token, run code as a template
//! role that reads it, change or invoke a project's functions, or make a project whose grants
//! cover another's.

use testkit::iam::{self, Decision, Policies, Request};

use super::*;

const TOKEN_SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sagemaker-gitlab-project/gitlab-token-AbCdEf";
const CI_KEY_SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sagemaker-gitlab-project/ci-access-key-GhIjKl";

/// The bootstrap stack with its secrets' ARNs, in the mode where the CI access key exists too.
fn bootstrap_with_secrets() -> Stack {
    bootstrap_with(&[
        ("GitLabCiAccess", "AccessKey"),
        ("GitLabTokenSecret", TOKEN_SECRET),
        ("CiAccessKeySecret", CI_KEY_SECRET),
    ])
}

/// A function's ARN from the name the template gives it (not the fixture's attribute, which
/// would not follow a renamed function).
fn function_arn(project: &Stack, function: &str) -> String {
    let name = project.property(function, &["FunctionName"]).unwrap();
    arn("lambda", &format!("function:{}", name.as_str().unwrap()))
}

#[test]
fn a_studio_user_cannot_read_the_gitlab_secrets() {
    let bootstrap = bootstrap_with_secrets();
    let token_policy = json(bootstrap.property("GitLabTokenSecretPolicy", &["ResourcePolicy"]).unwrap());
    let studio = StudioUser::new();
    for (secret, policy) in [(TOKEN_SECRET, Some(&token_policy)), (CI_KEY_SECRET, None)] {
        let read = Request::new(STUDIO_ROLE, "secretsmanager:GetSecretValue", secret);
        assert_ne!(studio.decide(read, policy), Decision::Allowed, "a Studio user reads {secret}");
    }
}

/// The token's readers: the two Lambda roles, and the rotator `cargo xtask rotate-token` runs as
/// where bootstrap names one; an administrator whose own policy allows everything is refused
/// unless it is that rotator.
#[test]
fn only_the_lambda_roles_and_a_named_rotator_read_the_token() {
    let admin_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin = role_arn("platform-admin");
    let read = |bootstrap: &Stack, who: &str| {
        let token_policy = json(bootstrap.property("GitLabTokenSecretPolicy", &["ResourcePolicy"]).unwrap());
        let policies = Policies { identity: vec![&admin_policy], resource: Some(&token_policy), boundary: None };
        let request =
            Request::new(who, "secretsmanager:GetSecretValue", TOKEN_SECRET).with("aws:SecureTransport", &["true"]);
        iam::evaluate(&policies, &request)
    };
    let unnamed = bootstrap_with(&[("GitLabTokenSecret", TOKEN_SECRET)]);
    assert_eq!(read(&unnamed, &admin), Decision::ExplicitlyDenied("OnlyTheLambdasReadTheToken".into()));
    let named = bootstrap_with(&[("GitLabTokenSecret", TOKEN_SECRET), ("TokenRotatorArn", &admin)]);
    assert_eq!(read(&named, &admin), Decision::Allowed, "the rotator bootstrap names");
    assert_eq!(
        read(&named, &role_arn("someone-else")),
        Decision::ExplicitlyDenied("OnlyTheLambdasReadTheToken".into())
    );
    assert_ne!(
        StudioUser::new().decide(Request::new(STUDIO_ROLE, "secretsmanager:GetSecretValue", TOKEN_SECRET), None),
        Decision::Allowed
    );
}

#[test]
fn a_studio_user_cannot_change_invoke_or_replace_the_project_functions() {
    let project = project();
    let studio = StudioUser::new();
    assert!(!studio.holders("lambda").is_empty(), "the premise: AWS's policies grant Lambda actions");
    for function in ["CheckinFunction", "TriggerFunction"] {
        let function = function_arn(&project, function);
        let reached: Vec<&str> = [
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "lambda:InvokeFunction",
            "lambda:DeleteFunction",
            "lambda:CreateFunction",
            "lambda:AddPermission",
        ]
        .into_iter()
        .filter(|action| studio.may(action, &function))
        .collect();
        assert!(
            reached.is_empty(),
            "a Studio user may {reached:?} on {function} through {:?}",
            studio.holders("lambda")
        );
    }
}

/// The code a Studio user may run as a template role: every role of both templates that trusts
/// a service the Studio user may pass it to, run by a function they may create (AWS's policies
/// allow `iam:PassRole` of any role to Lambda and `lambda:CreateFunction` of `*sagemaker*`
/// names, so the candidates include names that imitate the project's own).
#[test]
fn code_a_studio_user_runs_as_a_template_role_cannot_read_the_token() {
    let bootstrap = bootstrap_with_secrets();
    let project = project();
    let token_policy = json(bootstrap.property("GitLabTokenSecretPolicy", &["ResourcePolicy"]).unwrap());
    let studio = StudioUser::new();
    let own_functions = ["CheckinFunction", "TriggerFunction"].map(|f| function_arn(&project, f));
    // Names imitating the project's own, in each spelling the managed policies allow.
    let imitations = ["p-sagemaker123", "p-sageMaker123", "p-SageMaker123", "p-Sagemaker123"];
    let candidates: Vec<String> = own_functions
        .iter()
        .flat_map(|arn| imitations.map(|id| arn.replace(PROJECT_ID, id)))
        .chain([arn("lambda", "function:sagemaker-token-reader")])
        .filter(|function| studio.may("lambda:CreateFunction", function))
        .collect();
    // All but the two `Sagemaker` spellings, which the policies let a Studio user invoke only.
    assert_eq!(candidates.len(), 7, "the premise: a Studio user may create these");

    let mut passable = Vec::new();
    for stack in [&bootstrap, &project] {
        for (role, kind) in stack.resources().unwrap() {
            if kind != "AWS::IAM::Role" {
                continue;
            }
            let role_arn = stack.attribute(&role, "Arn").unwrap().to_owned();
            let trust = trust_policy(stack, &role);
            for service in ["lambda.amazonaws.com", "sagemaker.amazonaws.com", "ec2.amazonaws.com"] {
                let assume = Request::new(&format!("service:{service}"), "sts:AssumeRole", &role_arn);
                let trusted =
                    iam::evaluate(&Policies { identity: vec![], resource: Some(&trust), boundary: None }, &assume)
                        == Decision::Allowed;
                let pass = Request::new(STUDIO_ROLE, "iam:PassRole", &role_arn).with("iam:PassedToService", &[service]);
                if trusted && studio.decide(pass, None) == Decision::Allowed {
                    passable.push((stack, role.clone(), role_arn.clone(), service));
                }
            }
        }
    }
    let names: Vec<&str> = passable.iter().map(|(_, role, _, _)| role.as_str()).collect();
    assert!(names.contains(&"CheckinRole") && names.contains(&"TriggerRole"), "the premise: {names:?}");

    for (stack, role, role_arn, service) in passable {
        let identity = stack.inline_policies(&role).unwrap();
        let policies = Policies { identity: identity.iter().collect(), resource: Some(&token_policy), boundary: None };
        let read = || Request::new(&role_arn, "secretsmanager:GetSecretValue", TOKEN_SECRET);
        let from = |function: &str| read().with("lambda:SourceFunctionArn", &[function]);
        let attacks = match service {
            "lambda.amazonaws.com" => candidates.iter().map(|function| from(function)).collect(),
            _ => vec![read()],
        };
        for attack in attacks {
            assert_ne!(
                iam::evaluate(&policies, &attack),
                Decision::Allowed,
                "code a Studio user runs as {role} ({service}) reads the token: {:?}",
                attack.context.get("lambda:sourcefunctionarn")
            );
        }
    }
    // The project's own functions still read it.
    for (role, function) in [("CheckinRole", &own_functions[0]), ("TriggerRole", &own_functions[1])] {
        let identity = bootstrap.inline_policies(role).unwrap();
        let policies = Policies { identity: identity.iter().collect(), resource: Some(&token_policy), boundary: None };
        let role_arn = bootstrap.attribute(role, "Arn").unwrap();
        let read = Request::new(role_arn, "secretsmanager:GetSecretValue", TOKEN_SECRET)
            .with("lambda:SourceFunctionArn", &[function]);
        assert_eq!(iam::evaluate(&policies, &read), Decision::Allowed, "{function} reads the token");
    }
}

/// `servicecatalog:ProvisionProduct` lets a Studio user provision the product with parameters of
/// their choosing; without `p-` the victim's ID makes grants `*-<id>-*` that cover the victim's
/// endpoints and stacks.
#[test]
fn a_studio_user_cannot_provision_a_project_whose_grants_cover_another() {
    let studio = StudioUser::new();
    assert!(studio.may("servicecatalog:ProvisionProduct", &arn("catalog", "product/prod-abcdefghijklm")));
    let template = common::read_repo_file(xtask::template::PROJECT_TEMPLATE);
    let provision = |id: &str| Stack::new(&template, REGION, ACCOUNT, &[("SageMakerProjectId", id)]).map(|_| ());
    provision(PROJECT_ID).unwrap();
    let victim = PROJECT_ID.trim_start_matches("p-");
    for crafted in [victim, "p-abcdef12345", "p-ABCDEF123456", "p-abcdef123456-x", "p-*"] {
        let refused = provision(crafted).expect_err(crafted).to_string();
        assert!(refused.contains("SageMakerProjectId"), "{crafted}: {refused}");
    }
}

/// The premise of the deploy jobs' model-file check (seedcode/model-deploy/tests/test_deploy.py
/// plays the replacement): AWS's policies let a Studio user write the project bucket's model
/// files, which the project's bucket policy cannot refuse without refusing the training jobs
/// that write them (they run as roles a Studio user may pass to SageMaker).
#[test]
fn a_studio_user_may_write_the_model_files_which_the_deploy_jobs_therefore_check() {
    let project = project();
    let bucket_policy = json(project.property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap());
    let model =
        format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}/churn-{PROJECT_ID}/models/job-1/output/model.tar.gz");
    let write = Request::new(STUDIO_ROLE, "s3:PutObject", &model);
    assert_eq!(StudioUser::new().decide(write, Some(&bucket_policy)), Decision::Allowed);
    let pass = Request::new(
        STUDIO_ROLE,
        "iam:PassRole",
        &role_arn("service-role/AmazonSageMakerServiceCatalogProductsUseRole"),
    )
    .with("iam:PassedToService", &["sagemaker.amazonaws.com"]);
    assert!(
        StudioUser::new().decide(pass, None) == Decision::Allowed,
        "the pipelines' role, to a SageMaker job of theirs"
    );
}
