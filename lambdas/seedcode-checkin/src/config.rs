//! The checkin Lambda's configuration. All of it comes from the function's environment, which
//! `cfn/project.yml` sets; the custom resource's properties carry nothing the Lambda reads.

use lambda_common::ConfigError;
use lambda_common::gitlab::encode_path_segment;

/// Every variable the Lambda reads, for the template-drift test.
pub const ENV_VARS: &[&str] = &[
    "GITLAB_SERVER_URL",
    "GITLAB_TOKEN_SECRET_NAME",
    "GITLAB_CA_BUNDLE_SECRET_NAME",
    "GITLAB_GROUP_ID",
    "BUILD_REPOSITORY_NAME",
    "DEPLOY_REPOSITORY_NAME",
    "SAGEMAKER_PROJECT_NAME",
    "SAGEMAKER_PROJECT_ID",
    "SEEDCODE_BUCKET",
    "MODEL_BUILD_SEEDCODE_KEY",
    "MODEL_DEPLOY_SEEDCODE_KEY",
    "MODEL_BUILD_SEEDCODE_SHA256",
    "MODEL_DEPLOY_SEEDCODE_SHA256",
    "SAGEMAKER_PIPELINE_ROLE_ARN",
    "MODEL_EXECUTION_ROLE_ARN",
    "GITLAB_CI_ROLE_ARN",
    "GITLAB_CI_ACCESS_KEY_SECRET_NAME",
    "STAGING_DEPLOY_ROLE_ARN",
    "STAGING_MODEL_EXECUTION_ROLE_ARN",
    "STAGING_DATA_BUCKET",
    "PRODUCTION_DEPLOY_ROLE_ARN",
    "PRODUCTION_MODEL_EXECUTION_ROLE_ARN",
    "PRODUCTION_DATA_BUCKET",
];

/// The deployment stages, in the order the deploy pipeline runs them.
pub const STAGES: [&str; 2] = ["staging", "production"];

/// Set to `true`, lets the checkin answer to a plain-http ResponseURL on a loopback address: the
/// local stand-in for CloudFormation's pre-signed S3 URL in tests. The shipped template never
/// sets it (a template test checks).
pub const LOOPBACK_RESPONSE_URL_SETTING: &str = "CHECKIN_ALLOW_LOOPBACK_RESPONSE_URL";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub gitlab_url: String,
    pub token_secret: String,
    /// The secret holding the PEM bundle of a private CA GitLab's certificate chains to.
    pub ca_bundle_secret: Option<String>,
    /// The GitLab group (namespace) ID; `None`: the token owner's personal namespace.
    pub group_id: Option<u64>,
    pub build_repository: String,
    pub deploy_repository: String,
    pub project_name: String,
    pub project_id: String,
    pub seedcode_bucket: String,
    pub build_seedcode_key: String,
    pub deploy_seedcode_key: String,
    /// The SHA-256 (hex) publish recorded for each seed zip.
    pub build_seedcode_sha256: String,
    pub deploy_seedcode_sha256: String,
    pub pipeline_role_arn: String,
    pub model_execution_role_arn: String,
    pub ci_credentials: CiCredentials,
    /// The stages whose endpoints go to an account of their own (`cfn/target-account.yml`).
    pub target_accounts: Vec<TargetAccount>,
}

/// A stage deployed in another account: what `cfn/target-account.yml` made there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAccount {
    /// `staging` or `production`.
    pub stage: &'static str,
    /// The role the stage's deploy jobs assume with their id_token.
    pub deploy_role_arn: String,
    /// The role the stage's endpoints run as.
    pub model_execution_role_arn: String,
    /// The bucket the stage's endpoints capture data and report monitoring to.
    pub data_bucket: String,
}

/// How the GitLab pipelines get AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiCredentials {
    /// GitLab's `id_tokens` exchanged for this role (no long-lived secret anywhere).
    WebIdentity { role_arn: String },
    /// An IAM user's access key, kept in this secret as JSON with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, copied into masked CI/CD variables.
    AccessKey { secret: String },
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = lambda_common::Env(lookup);
        let group_id = match env.optional("GITLAB_GROUP_ID").as_deref() {
            None | Some("None") => None,
            Some(id) => Some(id.parse().map_err(|_| {
                ConfigError::Invalid(format!("GITLAB_GROUP_ID {id:?} is not a GitLab group ID: give the group's numeric ID, or leave it empty for the token owner's namespace"))
            })?),
        };
        let ci_credentials = match (
            env.optional("GITLAB_CI_ROLE_ARN"),
            env.optional("GITLAB_CI_ACCESS_KEY_SECRET_NAME"),
        ) {
            (Some(role_arn), _) => CiCredentials::WebIdentity { role_arn },
            (None, Some(secret)) => CiCredentials::AccessKey { secret },
            (None, None) => {
                return Err(ConfigError::Invalid("neither GITLAB_CI_ROLE_ARN nor GITLAB_CI_ACCESS_KEY_SECRET_NAME is set: GitLab CI would have no AWS access".into()));
            }
        };
        let mut target_accounts = Vec::new();
        for stage in STAGES {
            let prefix = stage.to_ascii_uppercase();
            let names =
                ["DEPLOY_ROLE_ARN", "MODEL_EXECUTION_ROLE_ARN", "DATA_BUCKET"].map(|name| format!("{prefix}_{name}"));
            let [role, model_role, bucket] = names.each_ref().map(|name| env.optional(name));
            match (role, model_role, bucket) {
                (None, None, None) => {}
                (Some(deploy_role_arn), Some(model_execution_role_arn), Some(data_bucket)) => target_accounts
                    .push(TargetAccount { stage, deploy_role_arn, model_execution_role_arn, data_bucket }),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{} must be set together or not at all: the project template sets them for a {stage} account of its own",
                        names.join(", ")
                    )));
                }
            }
        }
        if !target_accounts.is_empty() && !matches!(ci_credentials, CiCredentials::WebIdentity { .. }) {
            return Err(ConfigError::Invalid("a stage in an account of its own is deployed with id_tokens, but GitLab CI is set to use an access key: publish with --ci-access web-identity".into()));
        }
        let config = Config {
            gitlab_url: env.required("GITLAB_SERVER_URL")?,
            token_secret: env.required("GITLAB_TOKEN_SECRET_NAME")?,
            ca_bundle_secret: env.optional("GITLAB_CA_BUNDLE_SECRET_NAME"),
            group_id,
            build_repository: env.required("BUILD_REPOSITORY_NAME")?,
            deploy_repository: env.required("DEPLOY_REPOSITORY_NAME")?,
            project_name: env.required("SAGEMAKER_PROJECT_NAME")?,
            project_id: env.required("SAGEMAKER_PROJECT_ID")?,
            seedcode_bucket: env.required("SEEDCODE_BUCKET")?,
            build_seedcode_key: env.required("MODEL_BUILD_SEEDCODE_KEY")?,
            deploy_seedcode_key: env.required("MODEL_DEPLOY_SEEDCODE_KEY")?,
            build_seedcode_sha256: sha256_setting(&env, "MODEL_BUILD_SEEDCODE_SHA256")?,
            deploy_seedcode_sha256: sha256_setting(&env, "MODEL_DEPLOY_SEEDCODE_SHA256")?,
            pipeline_role_arn: env.required("SAGEMAKER_PIPELINE_ROLE_ARN")?,
            model_execution_role_arn: env.required("MODEL_EXECUTION_ROLE_ARN")?,
            ci_credentials,
            target_accounts,
        };
        check_project_id(&config.project_id)?;
        for name in [&config.build_repository, &config.deploy_repository] {
            check_repository_name(name)?;
        }
        Ok(config)
    }

    /// GitLab project path of a repository: `<base name>-<SageMaker project ID>`, so a second
    /// SageMaker project with the same names never collides.
    pub fn project_path(&self, base_name: &str) -> String {
        format!("{base_name}-{}", self.project_id)
    }

    /// The text in a project's description that shows it was made for this SageMaker project, so
    /// that a retried Create adopts it and nothing else is ever taken over.
    pub fn marker(&self) -> String {
        format!("(sagemaker-project-id: {})", self.project_id)
    }

    /// The description of the model `kind` (`build` or `deploy`) project, with the marker.
    pub fn description(&self, kind: &str) -> String {
        format!("Model {kind} code of SageMaker project {} {}", self.project_name, self.marker())
    }

    /// The SageMaker model package group the build registers into and the deploy reads.
    pub fn model_package_group(&self) -> String {
        format!("{}-{}", self.project_name, self.project_id)
    }

    pub fn artifact_bucket(&self) -> String {
        format!("sagemaker-project-{}", self.project_id)
    }
}

/// A SHA-256 in hex, as publish renders it: anything else means the template was not rendered.
fn sha256_setting<F: Fn(&str) -> Option<String>>(
    env: &lambda_common::Env<F>,
    name: &str,
) -> Result<String, ConfigError> {
    let value = env.required(name)?.to_ascii_lowercase();
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid(format!(
            "{name} is not a SHA-256: publish the template with cargo xtask publish, which renders it"
        )));
    }
    Ok(value)
}

/// GitLab project paths: letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`.
/// SageMaker's project IDs are `p-` and twelve lower-case letters or digits (the template's
/// pattern too). The project's grants match `*-<id>-*`, which only an ID of that form keeps to
/// this project: `abc123def456` would match `p-abc123def456`'s resources as well.
fn check_project_id(id: &str) -> Result<(), ConfigError> {
    let twelve = id.strip_prefix("p-").filter(|rest| rest.len() == 12);
    if twelve.is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())) {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "SAGEMAKER_PROJECT_ID {:?} is not a SageMaker project ID (p- and twelve lower-case letters or digits): the project's permissions are scoped by it",
        encode_path_segment(id)
    )))
}

fn check_repository_name(name: &str) -> Result<(), ConfigError> {
    let valid_start = name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if valid_start && valid_chars && !name.ends_with(".git") && name.len() <= 200 {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "repository name {:?} cannot be a GitLab project path: use letters, digits, '_', '-' and '.', starting with a letter or digit",
        encode_path_segment(name)
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("GITLAB_SERVER_URL", "https://gitlab.example.com"),
            ("GITLAB_TOKEN_SECRET_NAME", "gitlab-token"),
            ("GITLAB_GROUP_ID", "None"),
            ("BUILD_REPOSITORY_NAME", "churn-build"),
            ("DEPLOY_REPOSITORY_NAME", "churn-deploy"),
            ("SAGEMAKER_PROJECT_NAME", "churn"),
            ("SAGEMAKER_PROJECT_ID", "p-abc123def456"),
            ("SEEDCODE_BUCKET", "templates"),
            ("MODEL_BUILD_SEEDCODE_KEY", "a/build.zip"),
            ("MODEL_DEPLOY_SEEDCODE_KEY", "a/deploy.zip"),
            ("MODEL_BUILD_SEEDCODE_SHA256", "ab".repeat(32).leak()),
            ("MODEL_DEPLOY_SEEDCODE_SHA256", "CD".repeat(32).leak()),
            ("SAGEMAKER_PIPELINE_ROLE_ARN", "arn:aws:iam::123456789012:role/use"),
            ("MODEL_EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/use"),
            ("GITLAB_CI_ROLE_ARN", "arn:aws:iam::123456789012:role/gitlab-ci"),
        ])
    }

    fn parse(env: &HashMap<&str, &str>) -> Result<Config, String> {
        Config::from_lookup(|name| env.get(name).map(|v| v.to_string())).map_err(|err| err.to_string())
    }

    #[test]
    fn reads_every_variable_it_lists() {
        let config = parse(&env()).unwrap();
        assert_eq!(config.group_id, None);
        assert_eq!(config.project_path(&config.build_repository), "churn-build-p-abc123def456");
        assert_eq!(config.model_package_group(), "churn-p-abc123def456");
        assert_eq!(
            config.ci_credentials,
            CiCredentials::WebIdentity { role_arn: "arn:aws:iam::123456789012:role/gitlab-ci".into() }
        );
        let read = std::cell::RefCell::new(Vec::new());
        let mut full = env();
        full.insert("GITLAB_CI_ACCESS_KEY_SECRET_NAME", "ci-keys");
        let _ = Config::from_lookup(|name| {
            read.borrow_mut().push(name.to_owned());
            full.get(name).map(|v| v.to_string())
        });
        let mut read = read.into_inner();
        read.sort();
        read.dedup();
        let mut listed: Vec<String> = ENV_VARS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(read, listed, "ENV_VARS must list exactly what from_lookup reads");
    }

    #[test]
    fn group_id_forms() {
        for (value, expected) in [("", None), ("None", None), ("42", Some(42))] {
            let mut env = env();
            env.insert("GITLAB_GROUP_ID", value);
            assert_eq!(parse(&env).unwrap().group_id, expected, "{value:?}");
        }
        let mut env = env();
        env.insert("GITLAB_GROUP_ID", "ml-team");
        assert!(parse(&env).unwrap_err().contains("GITLAB_GROUP_ID"));
    }

    #[test]
    fn access_key_secret_when_no_role() {
        let mut env = env();
        env.remove("GITLAB_CI_ROLE_ARN");
        env.insert("GITLAB_CI_ACCESS_KEY_SECRET_NAME", "ci-keys");
        assert_eq!(parse(&env).unwrap().ci_credentials, CiCredentials::AccessKey { secret: "ci-keys".into() });
        env.remove("GITLAB_CI_ACCESS_KEY_SECRET_NAME");
        assert!(parse(&env).unwrap_err().contains("GitLab CI would have no AWS access"));
    }

    #[test]
    fn a_stage_in_its_own_account_needs_all_three_names_and_id_tokens() {
        let mut env = env();
        env.insert(
            "PRODUCTION_DEPLOY_ROLE_ARN",
            "arn:aws:iam::222222222222:role/sagemaker-gitlab-123456789012-production-deploy",
        );
        assert!(parse(&env).unwrap_err().contains("PRODUCTION_DEPLOY_ROLE_ARN, PRODUCTION_MODEL_EXECUTION_ROLE_ARN, PRODUCTION_DATA_BUCKET must be set together"));
        env.insert(
            "PRODUCTION_MODEL_EXECUTION_ROLE_ARN",
            "arn:aws:iam::222222222222:role/sagemaker-gitlab-123456789012-production-model",
        );
        env.insert("PRODUCTION_DATA_BUCKET", "sm-gl-eu-west-1-222222222222-123456789012-production");
        let config = parse(&env).unwrap();
        assert_eq!(config.target_accounts.len(), 1);
        assert_eq!(config.target_accounts[0].stage, "production");
        assert_eq!(config.target_accounts[0].data_bucket, "sm-gl-eu-west-1-222222222222-123456789012-production");
        env.remove("GITLAB_CI_ROLE_ARN");
        env.insert("GITLAB_CI_ACCESS_KEY_SECRET_NAME", "ci-keys");
        assert!(parse(&env).unwrap_err().contains("--ci-access web-identity"));
    }

    #[test]
    fn missing_and_invalid_values_are_named() {
        let mut env = env();
        env.remove("SEEDCODE_BUCKET");
        assert!(parse(&env).unwrap_err().contains("SEEDCODE_BUCKET is not set"));
        let mut env = self::env();
        env.insert("DEPLOY_REPOSITORY_NAME", "my deploy/repo");
        assert!(parse(&env).unwrap_err().contains("cannot be a GitLab project path"));
    }

    /// The project's grants match `*-<id>-*`: an ID without `p-`, or of another length, could
    /// make them cover another project's resources.
    #[test]
    fn only_a_project_id_in_sagemakers_form_is_accepted() {
        for crafted in ["abc123def456", "p-abc123def45", "p-ABC123DEF456", "p-abc123def456-x", "p-abc*23def456"] {
            let mut env = env();
            env.insert("SAGEMAKER_PROJECT_ID", crafted);
            let refused = parse(&env).unwrap_err();
            assert!(refused.contains("SAGEMAKER_PROJECT_ID") && refused.contains("p-"), "{crafted}: {refused}");
        }
    }
}
