//! The permission proofs of the templates, evaluated by `testkit::iam` (explicit denies,
//! wildcards, `Not*` elements and conditions as IAM evaluates them, not a string search) on the
//! templates resolved for a sample project (`testkit::cfn`):
//!
//! - `actions`: every action granted exists, on resources of the types IAM checks it against;
//! - `launch_role`: everything Service Catalog's launch role must make for `cfn/project.yml`;
//! - `ci_role`: who may assume a project's CI role, and what it reaches;
//! - `endpoint_stack`: the seed's endpoint stack, deployed by the CI role within its boundary;
//! - `bootstrap_roles`: the publisher role, the artifact bucket and Studio's S3 template route;
//! - `studio_user`: a data scientist's role holding AWS's managed SageMaker policies.
//!
//! The fixtures they share are here: the sample account, project and stacks, and the registry
//! schemas' handler permissions.

mod actions;
mod bootstrap_roles;
mod ci_role;
mod endpoint_stack;
mod launch_role;
mod studio_user;

pub(crate) use self::endpoint_stack::{Deployer, assert_deploys_endpoint_stacks, model_package};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value as Json;
use testkit::cfn::Stack;
use testkit::iam::{self, Decision, Policies, Request};
use testkit::managed_policies::{self, ManagedPolicy};

use crate::common;

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
/// The two GitLab projects' numeric IDs.
pub(crate) const BUILD_PROJECT_ID: &str = "41";
pub(crate) const DEPLOY_PROJECT_ID: &str = "42";

fn ci_role_name(project_id: &str) -> String {
    format!("sagemaker-{project_id}-gitlab-ci")
}

pub(crate) fn arn(service: &str, rest: &str) -> String {
    in_account(ACCOUNT, service, rest)
}

pub(crate) fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

pub(crate) fn in_account(account: &str, service: &str, rest: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{account}:{rest}")
}

/// The handler permissions of every resource type, from the pinned cfn-lint's registry schemas
/// of this region: type, then action, then the handlers (create, read, update, delete) that
/// list it.
pub(crate) fn schemas() -> BTreeMap<String, BTreeMap<String, BTreeSet<&'static str>>> {
    let lib = common::tools_dir().join("test-venv/lib");
    let python = std::fs::read_dir(&lib).unwrap().find_map(|e| {
        let path = e.ok()?.path();
        path.file_name()?.to_str()?.starts_with("python").then_some(path)
    });
    let root: PathBuf = python.expect("the test venv has a python folder").join("site-packages/cfnlint/data/schemas");
    let read = |path: PathBuf| -> Json { serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap() };
    let index = read(root.join(format!("providers/{REGION}.json")));
    let mut schemas = BTreeMap::new();
    for (kind, file) in index.as_object().unwrap().iter().filter(|(kind, _)| kind.starts_with("AWS::")) {
        let schema = read(root.join(format!("resources/{}.json", file.as_str().unwrap())));
        let mut actions: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        for handler in ["create", "read", "update", "delete"] {
            for action in schema["handlers"][handler]["permissions"].as_array().into_iter().flatten() {
                actions.entry(action.as_str().unwrap().to_owned()).or_default().insert(handler);
            }
        }
        schemas.insert(kind.clone(), actions);
    }
    schemas
}

const OIDC_PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/gitlab.com";
const CI_BOUNDARY: &str = "arn:aws:iam::123456789012:policy/sagemaker-gitlab-project-ci-boundary-eu-west-1";
const TEMPLATE_REPOSITORY: &str = "platform/sagemaker-gitlab-template";

/// `cfn/bootstrap.yml` as deployed with GitLab CI publishing from `TEMPLATE_REPOSITORY`, and
/// the `parameters` given.
fn bootstrap_with(parameters: &[(&str, &str)]) -> Stack {
    let mut given = vec![("TemplateProjectPath", TEMPLATE_REPOSITORY)];
    given.extend_from_slice(parameters);
    testkit::cfn::bootstrap(REGION, ACCOUNT, ARTIFACT_BUCKET, &given).unwrap()
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
    let queue = format!("mlops-gitlab-{PROJECT_ID}-trigger-dlq");
    let refs = [
        ("SageMakerProjectName", PROJECT_NAME),
        ("SageMakerProjectId", PROJECT_ID),
        ("ArtifactBucket", &format!("sagemaker-project-{PROJECT_ID}")),
        ("CheckinLogGroup", &format!("/aws/lambda/mlops-gitlab-{PROJECT_ID}-checkin")),
        ("TriggerLogGroup", &format!("/aws/lambda/mlops-gitlab-{PROJECT_ID}-trigger")),
        ("TriggerDeadLetterQueue", &format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{queue}")),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let refs: Vec<(&str, &str)> = refs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut stack = Stack::new(&rendered, REGION, ACCOUNT, &refs).unwrap();
    let attributes = [
        ("ArtifactBucket", "Arn", format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}")),
        ("CheckinFunction", "Arn", arn("lambda", &format!("function:mlops-gitlab-{PROJECT_ID}-checkin"))),
        ("TriggerFunction", "Arn", arn("lambda", &format!("function:mlops-gitlab-{PROJECT_ID}-trigger"))),
        ("TriggerDeadLetterQueue", "Arn", arn("sqs", &queue)),
        ("TriggerDeadLetterQueue", "QueueName", queue.clone()),
        ("ModelApprovedRule", "Arn", arn("events", &format!("rule/sagemaker-{PROJECT_ID}-model-approved"))),
        ("SeedCodeCheckin", "BuildProjectCloneUrl", "https://gitlab.com/ml/build.git".into()),
        ("SeedCodeCheckin", "DeployProjectCloneUrl", "https://gitlab.com/ml/deploy.git".into()),
        ("SeedCodeCheckin", "DeployProjectId", DEPLOY_PROJECT_ID.into()),
        ("SeedCodeCheckin", "DeployProjectPath", "ml/deploy".into()),
        ("GitLabProjectPaths", "BuildProjectPath", BUILD_PATH.into()),
        ("GitLabProjectPaths", "DeployProjectPath", DEPLOY_PATH.into()),
        ("GitLabProjectPaths", "BuildSubject", main_subject(&components(), BUILD_PATH, BUILD_PROJECT_ID)),
        ("GitLabProjectPaths", "DeploySubject", main_subject(&components(), DEPLOY_PATH, DEPLOY_PROJECT_ID)),
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

/// The project published with staging and production in accounts of their own.
pub(crate) fn project_with_target_accounts() -> Stack {
    project_with(&[
        ("Accounts", "StagingAccountId", STAGING_ACCOUNT),
        ("Accounts", "ProductionAccountId", PRODUCTION_ACCOUNT),
    ])
}

/// A role's trust policy: written as YAML, or as JSON text where it carries GitLab's claims.
pub(crate) fn trust_policy(stack: &Stack, resource: &str) -> Json {
    match json(stack.property(resource, &["AssumeRolePolicyDocument"]).unwrap()) {
        Json::String(text) => serde_json::from_str(&text).unwrap(),
        document => document,
    }
}

/// The sub claim components the checkin sets where GitLab accepts them.
pub(crate) fn components() -> Vec<String> {
    seedcode_checkin::provision::SUB_CLAIM_COMPONENTS.map(String::from).to_vec()
}

/// GitLab's default sub claim components, all an older GitLab accepts.
pub(crate) fn default_components() -> Vec<String> {
    testkit::gitlab::DEFAULT_SUB_CLAIM_COMPONENTS.map(String::from).to_vec()
}

/// The claims of a pipeline of project `project_path` (numeric ID `project_id`) as
/// lib/gitlab/ci/jwt.rb gives them: `ref` is the pipeline's source ref, a merge request's source
/// branch for every merge request pipeline (`Ci::Pipeline#source_ref`), and `ref_protected`
/// whether the job runs for a protected ref (never for a merge request's).
pub(crate) fn pipeline_claims(
    project_path: &str,
    project_id: &str,
    ref_type: &str,
    reference: &str,
    protected: bool,
) -> Json {
    serde_json::json!({
        "project_path": project_path, "project_id": project_id, "ref_type": ref_type, "ref": reference,
        "ref_protected": protected.to_string(),
    })
}

/// The sub of a protected `main` pipeline's ID token under `components`.
pub(crate) fn main_subject(components: &[String], project_path: &str, project_id: &str) -> String {
    testkit::gitlab::id_token_sub(components, &pipeline_claims(project_path, project_id, "branch", "main", true))
}

/// A GitLab CI job asking to assume `role` with an ID token of `aud` and `sub` from `provider`,
/// under the condition keys IAM names after the provider that issued it.
pub(crate) fn web_identity(role: &str, provider: &str, aud: &str, sub: &str) -> Request {
    let issuer = provider.split_once(":oidc-provider/").expect("an OIDC provider's ARN").1;
    Request::new(&format!("federated:{provider}"), "sts:AssumeRoleWithWebIdentity", role)
        .with(&format!("{issuer}:aud"), &[aud])
        .with(&format!("{issuer}:sub"), &[sub])
}

/// A GitLab CI job of `project_path` on `ref_type`/`reference` asking to assume `role`, with the
/// claims GitLab puts into its id_token by default (GitLab docs, "OpenID Connect (OIDC)
/// Authentication Using ID Tokens": sub is project_path:{group}/{project}:ref_type:{type}:ref:{branch_name}).
pub(crate) fn gitlab_job(
    role: &str,
    provider: &str,
    aud: &str,
    project_path: &str,
    ref_type: &str,
    reference: &str,
) -> Request {
    let sub = format!("project_path:{project_path}:ref_type:{ref_type}:ref:{reference}");
    web_identity(role, provider, aud, &sub)
}

/// The project's CI role as IAM decides for it: its inline policies, and bootstrap's boundary.
pub(crate) fn ci_role_policies(project: &Stack, bootstrap: &Stack) -> (Vec<Json>, Json) {
    (project.inline_policies("CiRole").unwrap(), bootstrap.json_property("CiBoundary", &["PolicyDocument"]).unwrap())
}

/// A data scientist's role, as Studio's domain set-up names it.
pub(crate) const STUDIO_ROLE: &str =
    "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-20261208T101010";
/// A Studio user's role holding AWS's managed SageMaker policies, as IAM decides for it.
pub(crate) struct StudioUser {
    policies: Vec<ManagedPolicy>,
}

impl StudioUser {
    pub(crate) fn new() -> StudioUser {
        StudioUser { policies: managed_policies::studio_execution_role() }
    }

    pub(crate) fn decide(&self, request: Request, resource_policy: Option<&Json>) -> Decision {
        let identity = self.policies.iter().map(|p| &p.document).collect();
        let request = request.with("aws:SecureTransport", &["true"]);
        iam::evaluate(&Policies { identity, resource: resource_policy, boundary: None }, &request)
    }

    pub(crate) fn may(&self, action: &str, resource: &str) -> bool {
        self.decide(Request::new(STUDIO_ROLE, action, resource), None) == Decision::Allowed
    }

    /// Which of its policies name an action of `service`: the witness of a test's premise.
    pub(crate) fn holders(&self, service: &str) -> Vec<String> {
        let prefix = format!("\"{service}:");
        let names = self.policies.iter().filter(|p| p.document.to_string().contains(&prefix));
        names.map(|p| format!("{} {}", p.name, p.version)).collect()
    }
}
