//! The seedcode checkin custom resources. `Custom::GitLabProjectPaths` makes the model build and
//! model deploy GitLab projects, empty, and answers the `sub` of their `main` pipelines' ID
//! tokens, so that the project template can make the CI role trusting exactly those two before
//! any pipeline runs; `Custom::SeedCodeCheckin` then brings both projects to their seeded state
//! on Create (and Update). On Delete both keep the
//! projects. Whatever happens, CloudFormation gets exactly one answer before the deadline.

pub mod config;
pub mod custom_resource;
pub mod error;
pub mod provision;
pub mod s3;
pub mod seedcode;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use lambda_common::gitlab::{GitLab, Variable};
use lambda_common::retry::RetryPolicy;
use lambda_common::secrets;
use lambda_common::{ConfigError, FunctionArn};
use lambda_runtime::{Error, LambdaEvent};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::config::{CiCredentials, Config};
use crate::custom_resource::{Done, Request};
use crate::error::{CheckinError, SeedCodeError};
use crate::provision::{
    Provisioned, Repository, create_or_adopt, main_pipeline_subject, namespace_path, protect_main, provision,
    turn_off_pipelines_that_borrow_main,
};

/// The custom resource type that reports the two projects' paths (`cfn/project.yml`).
pub const PROJECT_PATHS_RESOURCE: &str = "Custom::GitLabProjectPaths";

/// What the handler needs, made once per execution environment.
pub struct Deps {
    /// A configuration error is answered per request as FAILED: the stack must not hang.
    pub config: Result<Config, ConfigError>,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub s3: s3::ObjectReader,
    pub gitlab_retry: RetryPolicy,
    /// Whether a plain-http loopback ResponseURL is answered (`config::LOOPBACK_RESPONSE_URL_SETTING`).
    pub allow_loopback_response_url: bool,
}

impl Deps {
    pub fn new(sdk: &aws_config::SdkConfig, config: Result<Config, ConfigError>) -> Deps {
        Deps {
            config,
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            s3: s3::ObjectReader::new(sdk),
            gitlab_retry: RetryPolicy::default(),
            allow_loopback_response_url: false,
        }
    }
}

pub async fn handle(deps: Arc<Deps>, event: LambdaEvent<Value>) -> Result<(), Error> {
    let request = match Request::from_payload(&event.payload) {
        Ok(request) => request,
        Err(reason) => {
            // Without a ResponseURL there is nobody to answer: fail the invocation loudly.
            tracing::error!(reason = %reason, "cannot answer CloudFormation");
            return Err(reason.into());
        }
    };
    let function = FunctionArn::parse(&event.context.invoked_function_arn);
    let partition = function.as_ref().map_or("aws", |f| f.partition.as_str());
    if let Err(reason) =
        custom_resource::check_response_url(&request.response_url, partition, deps.allow_loopback_response_url)
    {
        tracing::error!(
            reason = %reason,
            request_type = request.request_type,
            stack = request.stack_id,
            "refusing the request"
        );
        return Err(reason.into());
    }
    tracing::info!(
        request_type = request.request_type,
        logical_id = request.logical_resource_id,
        stack = request.stack_id,
        "custom resource request"
    );
    let deadline = lambda_common::deadline_instant(event.context.deadline);
    let physical_id =
        request.physical_resource_id.clone().unwrap_or_else(|| physical_resource_id(&request, &deps.config));
    let work = run(
        deps.clone(),
        request.clone(),
        event.context.invoked_function_arn.clone(),
        custom_resource::work_deadline(deadline),
    );
    custom_resource::answer(&request, physical_id, deadline, work).await.map_err(Error::from)
}

/// Stable across retries and updates: one SageMaker project, one pair of repositories.
fn physical_resource_id(request: &Request, config: &Result<Config, ConfigError>) -> String {
    let kind = if request.resource_type == PROJECT_PATHS_RESOURCE { "gitlab-project-paths" } else { "gitlab-projects" };
    match config {
        Ok(config) => format!("{kind}-{}", config.project_id),
        Err(_) => format!("{kind}-unconfigured"),
    }
}

async fn run(deps: Arc<Deps>, request: Request, function_arn: String, deadline: Instant) -> Result<Done, CheckinError> {
    let paths_only = request.resource_type == PROJECT_PATHS_RESOURCE;
    match request.request_type.as_str() {
        // Boxed: side by side, the two futures nest deeper than rustc's layout query allows.
        "Create" | "Update" if paths_only => Box::pin(project_paths(&deps, deadline)).await,
        "Create" | "Update" => Box::pin(converge(&deps, &function_arn, deadline)).await,
        "Delete" => {
            tracing::info!(
                physical_id = request.physical_resource_id,
                "delete: the GitLab projects stay, they hold the team's work"
            );
            Ok(Done { reason: "GitLab projects kept".into(), data: BTreeMap::new() })
        }
        other => Err(CheckinError::UnknownRequestType(other.to_owned())),
    }
}

/// The GitLab client, once the token is known to work, and a warning about the token if any: a
/// token that cannot work fails Create before anything is made in GitLab.
async fn connect(deps: &Deps, config: &Config, deadline: Instant) -> Result<(GitLab, Option<String>), CheckinError> {
    let secret = config.ca_bundle_secret.as_deref();
    let gitlab = lambda_common::gitlab_client(&deps.secrets, &config.gitlab_url, &config.token_secret, secret)
        .await?
        .with_retry(deps.gitlab_retry)
        .with_deadline(deadline);
    let warning = gitlab.check_token().await?;
    Ok((gitlab, warning))
}

/// The two projects, made empty (or adopted) before the CI role: their paths, and the `sub` of
/// their `main` pipelines' ID tokens, which the role's trust policy names, so that it exists
/// before the seed commit starts the first pipeline.
async fn project_paths(deps: &Deps, deadline: Instant) -> Result<Done, CheckinError> {
    let config = deps.config.as_ref().map_err(Clone::clone)?;
    let (gitlab, _) = connect(deps, config, deadline).await?;
    // A group that does not exist is named here, before anything is made.
    let namespace = namespace_path(&gitlab, config.group_id).await?;
    let marker = config.marker();
    let ready = |kind: &'static str, repository: &str| {
        let (gitlab, marker) = (&gitlab, &marker);
        let (path, description) = (config.project_path(repository), config.description(kind));
        async move {
            let (project, _) = create_or_adopt(gitlab, config.group_id, marker, &path, &description).await?;
            // Before the CI role exists and trusts main: nobody but a Maintainer may write main,
            // and no pipeline may run a Developer's change as main, from this moment on.
            protect_main(gitlab, &project).await?;
            turn_off_pipelines_that_borrow_main(gitlab, &project).await?;
            let subject = main_pipeline_subject(gitlab, &project).await?;
            Ok::<_, CheckinError>((project, subject))
        }
    };
    let ((build, build_subject), (deploy, deploy_subject)) =
        tokio::try_join!(ready("build", &config.build_repository), ready("deploy", &config.deploy_repository))?;
    let data = BTreeMap::from([
        ("BuildProjectPath".to_owned(), build.path_with_namespace),
        ("BuildSubject".to_owned(), build_subject.clone()),
        ("DeployProjectPath".to_owned(), deploy.path_with_namespace),
        ("DeploySubject".to_owned(), deploy_subject.clone()),
    ]);
    let reason =
        format!("GitLab projects in {namespace}; their main pipelines' subs: {build_subject}, {deploy_subject}");
    Ok(Done { reason, data })
}

async fn converge(deps: &Deps, function_arn: &str, deadline: Instant) -> Result<Done, CheckinError> {
    let config = deps.config.as_ref().map_err(Clone::clone)?;
    let arn = FunctionArn::parse(function_arn)?;

    // Boxed: the SDK's futures nest deep, and four of them side by side exceed rustc's layout
    // depth limit in release builds. The token check runs while the seed code downloads.
    let ((gitlab, token_warning), ci_variables, build_zip, deploy_zip) = tokio::try_join!(
        Box::pin(connect(deps, config, deadline)),
        ci_access_variables(deps, config),
        seed_zip(deps, config, &config.build_seedcode_key, &config.build_seedcode_sha256, deadline),
        seed_zip(deps, config, &config.deploy_seedcode_key, &config.deploy_seedcode_sha256, deadline),
    )?;
    let build_files =
        seedcode::read_zip(&build_zip, &format!("s3://{}/{}", config.seedcode_bucket, config.build_seedcode_key))?;
    let deploy_files =
        seedcode::read_zip(&deploy_zip, &format!("s3://{}/{}", config.seedcode_bucket, config.deploy_seedcode_key))?;

    let marker = config.marker();
    let common = project_variables(config, &arn, ci_variables);
    let with = |key: &str, value: &str| {
        let mut variables = common.clone();
        variables.push(variable(key, value));
        variables
    };
    let build = Repository {
        role: "model build",
        path: config.project_path(&config.build_repository),
        description: config.description("build"),
        variables: with("SAGEMAKER_PIPELINE_ROLE_ARN", &config.pipeline_role_arn),
        // Its pipelines start from pushes, which pass no variables.
        pipeline_variables: false,
        files: build_files,
        commit_message: format!("Seed code of SageMaker project {}", config.project_name),
    };
    let deploy = Repository {
        role: "model deploy",
        path: config.project_path(&config.deploy_repository),
        description: config.description("deploy"),
        variables: deploy_variables(config, with("MODEL_EXECUTION_ROLE_ARN", &config.model_execution_role_arn)),
        // The trigger passes the approved package's ARN as a pipeline variable.
        pipeline_variables: true,
        files: deploy_files,
        // No model is approved yet: the first deploy pipeline would have nothing to deploy.
        commit_message: format!("Seed code of SageMaker project {} [skip ci]", config.project_name),
    };
    let (build, deploy) = tokio::try_join!(
        provision(&gitlab, config.group_id, &marker, &build),
        provision(&gitlab, config.group_id, &marker, &deploy),
    )?;
    let mut data = BTreeMap::new();
    for (prefix, provisioned) in [("Build", &build), ("Deploy", &deploy)] {
        let project = &provisioned.project;
        data.insert(format!("{prefix}ProjectId"), project.id.to_string());
        data.insert(format!("{prefix}ProjectPath"), project.path_with_namespace.clone());
        data.insert(format!("{prefix}ProjectWebUrl"), project.web_url.clone());
        data.insert(format!("{prefix}ProjectCloneUrl"), project.http_url_to_repo.clone());
    }
    let reason = match token_warning {
        Some(warning) => format!("{}. Warning: {warning}", summary(&build, &deploy)),
        None => summary(&build, &deploy),
    };
    Ok(Done { reason, data })
}

fn summary(build: &Provisioned, deploy: &Provisioned) -> String {
    let describe = |p: &Provisioned| {
        let made = if p.adopted { "adopted" } else { "created" };
        let code = if p.committed { "seed code committed" } else { "seed code already there" };
        format!("{} {made}, {code}", p.project.path_with_namespace)
    };
    format!("{}; {}", describe(build), describe(deploy))
}

fn variable(key: &str, value: &str) -> Variable {
    Variable { key: key.into(), value: value.into(), masked: false, hidden: false, protected: false, raw: true }
}

/// The CI/CD variables both projects get.
fn project_variables(config: &Config, arn: &FunctionArn, ci_access: Vec<Variable>) -> Vec<Variable> {
    let project_arn =
        format!("arn:{}:sagemaker:{}:{}:project/{}", arn.partition, arn.region, arn.account, config.project_name);
    let mut variables = vec![
        variable("SAGEMAKER_PROJECT_NAME", &config.project_name),
        variable("SAGEMAKER_PROJECT_ID", &config.project_id),
        variable("SAGEMAKER_PROJECT_ARN", &project_arn),
        variable("AWS_REGION", &arn.region),
        variable("ARTIFACT_BUCKET", &config.artifact_bucket()),
        variable("MODEL_PACKAGE_GROUP_NAME", &config.model_package_group()),
    ];
    variables.extend(ci_access);
    variables
}

/// The deploy project's variables: `variables`, and for each stage in an account of its own the
/// role its jobs assume there, the role its endpoints run as and its data bucket, under the
/// stage's prefix (`STAGING_AWS_ROLE_ARN`, ...), as seedcode/model-deploy reads them.
fn deploy_variables(config: &Config, mut variables: Vec<Variable>) -> Vec<Variable> {
    for target in &config.target_accounts {
        let prefix = target.stage.to_ascii_uppercase();
        variables.push(variable(&format!("{prefix}_AWS_ROLE_ARN"), &target.deploy_role_arn));
        variables.push(variable(&format!("{prefix}_MODEL_EXECUTION_ROLE_ARN"), &target.model_execution_role_arn));
        variables.push(variable(&format!("{prefix}_ARTIFACT_BUCKET"), &target.data_bucket));
    }
    variables
}

/// How GitLab CI reaches AWS: the role to assume with its `id_tokens`, or masked access keys.
async fn ci_access_variables(deps: &Deps, config: &Config) -> Result<Vec<Variable>, CheckinError> {
    match &config.ci_credentials {
        CiCredentials::WebIdentity { role_arn } => Ok(vec![variable("AWS_ROLE_ARN", role_arn)]),
        CiCredentials::AccessKey { secret } => {
            /// The secret's JSON, read straight into secret strings.
            #[derive(serde::Deserialize)]
            struct AccessKey {
                #[serde(rename = "AWS_ACCESS_KEY_ID")]
                id: Option<SecretString>,
                #[serde(rename = "AWS_SECRET_ACCESS_KEY")]
                secret: Option<SecretString>,
            }
            let value = secrets::read_string(&deps.secrets, secret).await?;
            let keys: AccessKey = serde_json::from_str(value.expose_secret())
                .map_err(|_| CheckinError::AccessKeyNotJson { secret: secret.clone() })?;
            [("AWS_ACCESS_KEY_ID", keys.id), ("AWS_SECRET_ACCESS_KEY", keys.secret)]
                .into_iter()
                .map(|(key, value)| {
                    let value = value.filter(|v| !v.expose_secret().is_empty());
                    let value = value.ok_or_else(|| CheckinError::AccessKeyMissing { secret: secret.clone(), key })?;
                    // Hidden and protected: a long-lived key reaches only pipelines of protected
                    // `main` (and tags), and nobody reads it back from GitLab.
                    Ok(Variable { key: key.into(), value, masked: true, hidden: true, protected: true, raw: true })
                })
                .collect()
        }
    }
}

/// `download` from the seed code bucket, its error as the checkin's.
async fn seed_zip(
    deps: &Deps,
    config: &Config,
    key: &str,
    sha256: &str,
    deadline: Instant,
) -> Result<Vec<u8>, CheckinError> {
    Ok(download(&deps.s3, &config.seedcode_bucket, key, sha256, deadline).await?)
}

/// The seed zip at `key`, if its bytes are the ones publish recorded (`sha256`, hex): anyone who
/// can write the bucket could otherwise put their code into every new repository.
async fn download(
    s3: &s3::ObjectReader,
    bucket: &str,
    key: &str,
    sha256: &str,
    deadline: Instant,
) -> Result<Vec<u8>, SeedCodeError> {
    let location = format!("s3://{bucket}/{key}");
    // A zip holds at most what it unpacks to: no larger object is read into memory.
    let bytes = s3.get(bucket, key, seedcode::MAX_TOTAL_BYTES, deadline).await.map_err(|err| match err {
        s3::GetObjectError::Missing(_) => SeedCodeError::Missing { location: location.clone() },
        s3::GetObjectError::Denied(_) => SeedCodeError::Denied { location: location.clone() },
        s3::GetObjectError::TooLarge { size, .. } => SeedCodeError::TooLarge { location: location.clone(), size },
        s3::GetObjectError::Failed(reason) => SeedCodeError::Failed { location: location.clone(), reason },
    })?;
    let actual = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
    if actual != sha256 {
        return Err(SeedCodeError::Replaced { location, actual, expected: sha256.to_owned() });
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
