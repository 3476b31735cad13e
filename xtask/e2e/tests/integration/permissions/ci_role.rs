//! Who may assume a project's CI role (only `main` pipelines of its two repositories, with
//! GitLab's claims for each kind of pipeline), and what the role reaches within bootstrap's
//! boundary: its own project's resources, no other project's.

use testkit::iam::{self, Decision, Policies, Request};

use super::*;

/// Each kind of pipeline GitLab runs, with the claims it gives it, against the CI role the
/// checkin's subs make where GitLab accepts the project ID and `ref_protected` in the sub.
#[test]
fn only_main_pipelines_of_this_projects_two_repositories_may_assume_its_ci_role() {
    let project = project();
    let trust = trust_policy(&project, "CiRole");
    let policies = Policies { identity: vec![], resource: Some(&trust), boundary: None };
    let role = role_arn(&ci_role_name(PROJECT_ID));
    let aud = "https://gitlab.com";
    let job =
        |claims: Json| web_identity(&role, OIDC_PROVIDER, aud, &testkit::gitlab::id_token_sub(&components(), &claims));
    for (path, id) in [(BUILD_PATH, BUILD_PROJECT_ID), (DEPLOY_PATH, DEPLOY_PROJECT_ID)] {
        let main = job(pipeline_claims(path, id, "branch", "main", true));
        assert_eq!(iam::evaluate(&policies, &main), Decision::Allowed, "{path} on main");
    }
    let attacks = [
        (
            "a merge request from main (merged results, or a fork's run in this project before GitLab 18.2.2)",
            job(pipeline_claims(BUILD_PATH, BUILD_PROJECT_ID, "branch", "main", false)),
        ),
        ("a feature branch", job(pipeline_claims(BUILD_PATH, BUILD_PROJECT_ID, "branch", "feature", false))),
        ("a tag named main", job(pipeline_claims(BUILD_PATH, BUILD_PROJECT_ID, "tag", "main", true))),
        (
            "a project made at the build project's path after it moved",
            job(pipeline_claims(BUILD_PATH, "9000", "branch", "main", true)),
        ),
        (
            "another project of the group",
            job(pipeline_claims("ml/churn-team/model-build-p-zzzzzzzzzzzz", "43", "branch", "main", true)),
        ),
        (
            "a token for another audience",
            web_identity(
                &role,
                OIDC_PROVIDER,
                "sts.amazonaws.com",
                &main_subject(&components(), BUILD_PATH, BUILD_PROJECT_ID),
            ),
        ),
        (
            "another identity provider",
            web_identity(
                &role,
                "arn:aws:iam::123456789012:oidc-provider/gitlab.mallory.example",
                aud,
                &main_subject(&components(), BUILD_PATH, BUILD_PROJECT_ID),
            ),
        ),
    ];
    for (attack, request) in attacks {
        assert_eq!(iam::evaluate(&policies, &request), Decision::ImplicitlyDenied, "{attack} assumed the CI role");
    }
}

/// Where GitLab accepts only its default components, the role trusts the path: the same
/// branches, tags and other projects are refused; what the path cannot tell apart (a merge
/// request's pipeline, a project at a moved project's path) the project settings close
/// (docs/gitlab.md#what-the-checkin-sets-on-both-projects).
#[test]
fn on_a_gitlab_with_the_default_sub_only_main_of_the_two_paths_may_assume_the_ci_role() {
    let mut project = project();
    for (key, path, id) in
        [("BuildSubject", BUILD_PATH, BUILD_PROJECT_ID), ("DeploySubject", DEPLOY_PATH, DEPLOY_PROJECT_ID)]
    {
        project.set_attribute("GitLabProjectPaths", key, &main_subject(&default_components(), path, id));
    }
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
        ("a tag named main", job(BUILD_PATH, "tag", "main")),
        ("another project of the same group", job("ml/churn-team/model-build-p-zzzzzzzzzzzz", "branch", "main")),
        ("a project whose path starts like this one's", job(&format!("{BUILD_PATH}-fork"), "branch", "main")),
        ("the same project name in another namespace", job("mallory/model-build-p-abcdef123456", "branch", "main")),
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
        // The Service Authorization Reference's resource type for listing is the package.
        ("sagemaker:ListModelPackages", sagemaker(&format!("model-package/churn-{PROJECT_ID}/*"))),
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

/// Tag grants scope by the project tag, so the tag itself must not change hands: re-tagging
/// another project's model with this project's ID would hand it over (the request carries this
/// project's tag, which `CreateTaggedModels` alone checks).
#[test]
fn a_projects_ci_role_cannot_adopt_another_projects_resources_by_retagging_them() {
    let project = project();
    let bootstrap = bootstrap();
    let (identity, boundary) = ci_role_policies(&project, &bootstrap);
    let policies = Policies { identity: identity.iter().collect(), resource: None, boundary: Some(&boundary) };
    let role = role_arn(&ci_role_name(PROJECT_ID));
    let tag = |resource: &str, owner: Option<&str>| {
        let request = Request::new(&role, "sagemaker:AddTags", &arn("sagemaker", resource))
            .with("aws:RequestTag/sagemaker:project-id", &[PROJECT_ID])
            .with("aws:TagKeys", &["sagemaker:project-id"]);
        let request = match owner {
            Some(owner) => request.with("aws:ResourceTag/sagemaker:project-id", &[owner]),
            None => request,
        };
        iam::evaluate(&policies, &request)
    };
    for resource in ["model/model-a1b2c3", "endpoint-config/config-a1b2c3", "data-quality-job-definition/dq-a1b2c3"] {
        assert_eq!(tag(resource, None), Decision::Allowed, "tagging {resource} as CloudFormation creates it");
        assert_eq!(tag(resource, Some(PROJECT_ID)), Decision::Allowed, "re-tagging its own {resource}");
        assert_eq!(tag(resource, Some("p-zzzzzzzzzzzz")), Decision::ImplicitlyDenied, "taking over {resource}");
    }
}
