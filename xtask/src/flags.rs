//! Command-line flags of `cargo xtask`: one subcommand per task module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test and release the SageMaker Projects template for GitLab"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

/// The tasks, in three groups by the crate that runs them: `LocalTask`s run in xtask; `AwsTask`s
/// use the AWS SDK and live in `xtask-aws` (xtask/aws), so that `cargo xtask package` never
/// compiles the SDK; `e2e` plays the whole flow against the test stand-ins and lives in
/// `xtask-e2e` (xtask/e2e), so that no product command links them.
#[derive(Debug, Subcommand)]
pub enum Task {
    #[command(flatten)]
    Local(LocalTask),
    #[command(flatten)]
    Aws(AwsTask),
    /// Run the whole flow on this machine against moto and a GitLab double: publish, provision,
    /// checkin, the seed repositories' CI jobs, approve, trigger, and three fault runs
    E2e(E2e),
}

#[derive(Debug, Subcommand)]
pub enum LocalTask {
    /// Cross-compile both Lambdas and write the four deterministic zips, SHA256SUMS and manifest.json
    Package(Package),
    /// Install the tools the tests need, then run formatting, lint and every test of the workspace
    Test(Test),
    /// Measure the speed targets and print medians against a baseline measured in the same run
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
pub enum AwsTask {
    /// Upload the artifacts and add a version of the Service Catalog product Studio shows
    Publish(Box<Publish>),
    /// List the Service Catalog product's versions and the artifacts each points to
    Versions(Versions),
    /// Check an account's set-up, read-only: one row per piece, and the fix for each that fails
    Doctor(Doctor),
    /// Rotate the GitLab token: GitLab issues its successor, which replaces it in its secret
    RotateToken(RotateToken),
}

#[derive(Debug, clap::Args)]
pub struct Package {
    /// CPU architecture of the Lambda functions
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Directory for the artifacts [default: <target dir>/dist]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct Publish {
    /// S3 bucket for the artifacts and the template (cfn/bootstrap.yml's ArtifactBucketName)
    #[arg(long)]
    pub bucket: String,
    /// Key prefix in the bucket
    #[arg(long, default_value = "sagemaker-gitlab-project")]
    pub prefix: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Service Catalog product to create or add a version to
    #[arg(long, default_value = "MLOps with GitLab")]
    pub product_name: String,
    /// Portfolio a new product joins (cfn/bootstrap.yml's PortfolioId)
    #[arg(long)]
    pub portfolio_id: Option<String>,
    /// Launch role of a new product's launch constraint (cfn/bootstrap.yml's LaunchRoleArn)
    #[arg(long)]
    pub launch_role_arn: Option<String>,
    /// Version name [default: <crate version>-<template sha256 prefix>]
    #[arg(long)]
    pub version_name: Option<String>,
    /// Version description [default: the commit and the artifacts' hashes]
    #[arg(long)]
    pub description: Option<String>,
    /// Mark every older version DEPRECATED
    #[arg(long)]
    pub deprecate_previous: bool,
    /// Publish even when the working tree (with --dist: the packaged one) has uncommitted changes
    #[arg(long)]
    pub allow_dirty: bool,
    /// Show what would be uploaded and created, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also publish the template the S3-based way: tagged for Studio under <prefix>/studio-templates/
    #[arg(long)]
    pub s3_template: bool,
    /// Also write PRODUCT_ID, VERSION_ID and VERSION_NAME as KEY=value lines to FILE (a GitLab
    /// CI dotenv report for later jobs)
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// CPU architecture of the Lambda functions
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Publish the artifacts already packaged in DIR (checked against SHA256SUMS, manifest.json
    /// and the checkout's commit) instead of packaging
    #[arg(long, value_name = "DIR")]
    pub dist: Option<PathBuf>,
    /// The GitLab instance the token belongs to, https://host[/path]; rendered into the template,
    /// so no Studio user can point the token elsewhere
    #[arg(long, default_value = "https://gitlab.com")]
    pub gitlab_server_url: String,
    /// Secrets Manager secret holding the GitLab token
    #[arg(long, default_value = "sagemaker-gitlab-project/gitlab-token")]
    pub token_secret_name: String,
    /// How GitLab CI gets AWS credentials (cfn/bootstrap.yml's GitLabCiAccess)
    #[arg(long, value_enum, default_value_t = CiAccess::WebIdentity)]
    pub ci_access: CiAccess,
    /// Secret with the CI access key, for --ci-access access-key
    #[arg(long, default_value = "sagemaker-gitlab-project/ci-access-key")]
    pub ci_access_key_secret_name: String,
    /// Secret with the PEM bundle of the private CA GitLab's certificate chains to (empty: none)
    #[arg(long, default_value = "")]
    pub gitlab_ca_bundle_secret_name: String,
    /// SNS topic told when an approval started no deploy pipeline (empty: the alarm alone)
    #[arg(long, default_value = "")]
    pub alarm_topic_arn: String,
    /// Account the staging endpoints go to, where cfn/target-account.yml runs with StageName=staging
    /// (cfn/bootstrap.yml's StagingAccountId) [default: this account]
    #[arg(long, value_parser = account_id)]
    pub staging_account_id: Option<String>,
    /// Account the production endpoints go to, where cfn/target-account.yml runs with
    /// StageName=production (cfn/bootstrap.yml's ProductionAccountId) [default: this account]
    #[arg(long, value_parser = account_id)]
    pub production_account_id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Versions {
    /// Service Catalog product to list
    #[arg(long, default_value = "MLOps with GitLab")]
    pub product_name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, clap::Args)]
pub struct Doctor {
    /// Name of the stack cfn/bootstrap.yml was deployed as
    #[arg(long, default_value = "sagemaker-gitlab-project-bootstrap")]
    pub bootstrap_stack: String,
    /// Service Catalog product Studio shows
    #[arg(long, default_value = "MLOps with GitLab")]
    pub product_name: String,
    /// Portfolio Studio's users see [default: the bootstrap stack's PortfolioId output]
    #[arg(long)]
    pub portfolio_id: Option<String>,
    /// The GitLab instance publish renders (its OIDC provider is checked)
    #[arg(long, default_value = "https://gitlab.com")]
    pub gitlab_server_url: String,
    /// Also check the S3-based template route: the bucket's CORS rule and Studio's read grant
    #[arg(long)]
    pub s3_template: bool,
    /// AWS profile that can read the staging account the bootstrap stack names, to check what
    /// cfn/target-account.yml made there
    #[arg(long)]
    pub staging_profile: Option<String>,
    /// AWS profile that can read the production account the bootstrap stack names
    #[arg(long)]
    pub production_profile: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, clap::Args)]
pub struct RotateToken {
    /// The GitLab instance the token belongs to, as publish renders it
    #[arg(long, default_value = "https://gitlab.com")]
    pub gitlab_server_url: String,
    /// Secrets Manager secret holding the GitLab token
    #[arg(long, default_value = "sagemaker-gitlab-project/gitlab-token")]
    pub token_secret_name: String,
    /// Secret with the PEM bundle of the private CA GitLab's certificate chains to (empty: none)
    #[arg(long, default_value = "")]
    pub gitlab_ca_bundle_secret_name: String,
    /// Days until the new token expires (gitlab.com allows at most 365)
    #[arg(long, default_value_t = 364, value_parser = clap::value_parser!(u16).range(1..=400))]
    pub expires_in_days: u16,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Where AWS calls go; credentials come from the standard chain.
#[derive(Debug, clap::Args)]
pub struct AwsArgs {
    /// AWS region [default: from the environment or profile]
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile [default: the standard credential chain]
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CiAccess {
    WebIdentity,
    AccessKey,
}

#[derive(Debug, clap::Args)]
pub struct Test {
    /// Run one part only, as CI's parallel jobs do: `lint` (rustfmt, clippy) or `tests`
    #[arg(long, value_enum)]
    pub only: Option<TestPart>,
    /// Extra arguments for `cargo test`, e.g. a test name filter
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestPart {
    /// `cargo fmt --check` and `cargo clippy -D warnings`: seconds, and no tools to install
    Lint,
    /// Install the test tools and run `cargo test --workspace` (clippy lints as it builds)
    Tests,
}

#[derive(Debug, clap::Args)]
pub struct E2e {
    /// Architecture to package and run (arm64, what ships, runs under qemu-user on x86_64)
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Deploy staging and production to moto accounts of their own (cfn/target-account.yml),
    /// reached with id_tokens minted by the GitLab double
    #[arg(long)]
    pub target_accounts: bool,
}

#[derive(Debug, clap::Args)]
pub struct Bench {
    /// Which benchmark [default: all]
    #[arg(value_enum)]
    pub which: Option<BenchName>,
    /// Timed runs per measurement (the median is reported)
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// One run of each, with coldstart on the debug build's Lambdas: proves the benchmarks still
    /// run (`cargo xtask test` does this), measures nothing
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchName {
    /// `cargo xtask package` when nothing changed
    Package,
    /// The checkin Lambda's Create against a GitLab with 100 ms latency
    Checkin,
    /// Both Lambdas' cold start and memory, against a Python process importing boto3 and python-gitlab
    Coldstart,
    /// `cargo xtask publish` when nothing changed, against moto
    Publish,
}

/// Lambda architectures, named as Lambda names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }
}

fn account_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "{id:?} is not an AWS account ID: twelve digits, as `aws sts get-caller-identity` shows in that account"
        ))
    }
}
