//! The roles and policies of `cfn/bootstrap.yml` that guard the releases: only the publisher role
//! writes the artifact bucket, it is assumed only from this repository's default branch and
//! release tags, and Studio reads S3-based templates only where enabled.

use testkit::iam::{self, Decision, Policies, Request};

use super::*;

#[test]
fn only_the_publisher_role_writes_the_artifact_bucket() {
    let bootstrap = bootstrap();
    let bucket_policy = json(bootstrap.property("ArtifactBucketPolicy", &["PolicyDocument"]).unwrap());
    let object = format!("arn:aws:s3:::{ARTIFACT_BUCKET}/artifacts/lambda-seedcode-checkin-gitlab.zip");
    // AmazonSageMakerFullAccess lets a Studio role write any bucket named *sagemaker*.
    let studio = StudioUser::new();
    for action in ["s3:PutObject", "s3:DeleteObject"] {
        assert!(studio.may(action, &object), "the premise: {action} on *sagemaker* buckets");
        assert_eq!(
            studio.decide(Request::new(STUDIO_ROLE, action, &object), Some(&bucket_policy)),
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
fn studio_reads_s3_templates_only_where_enabled_and_only_the_templates() {
    let studio = STUDIO_ROLE;
    let template =
        format!("arn:aws:s3:::{ARTIFACT_BUCKET}/sagemaker-gitlab-project/studio-templates/mlops-with-gitlab.yml");
    let code = format!(
        "arn:aws:s3:::{ARTIFACT_BUCKET}/sagemaker-gitlab-project/artifacts/0f/lambda-seedcode-checkin-gitlab.zip"
    );
    let read = |action: &str, object: &str| Request::new(studio, action, object).with("aws:SecureTransport", &["true"]);
    let cloudformation = Request::new(
        "service:cloudformation.amazonaws.com",
        "sts:AssumeRole",
        &role_arn("sagemaker-gitlab-project-launch-eu-west-1"),
    )
    .with("aws:SourceAccount", &[ACCOUNT]);
    for (setting, expected) in [("Enabled", Decision::Allowed), ("Disabled", Decision::ImplicitlyDenied)] {
        let bootstrap = bootstrap_with(&[("S3Templates", setting), ("StudioExecutionRoleArn", studio)]);
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
        let list = Request::new(studio, "s3:ListBucket", &format!("arn:aws:s3:::{ARTIFACT_BUCKET}"))
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
