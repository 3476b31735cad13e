//! `cargo xtask e2e`: the whole flow on one machine, with the artifacts `publish` packages:
//! publish to moto, provision the project's custom resource by playing CloudFormation's part,
//! check what the checkin Lambda made in a GitLab double, run the seeded build repository's CI
//! job, approve a model package and deliver the EventBridge event to the trigger Lambda, run the
//! deploy pipeline's jobs it started, then three fault runs; last, every AWS call those made is
//! checked against the role that makes it in AWS (`calls`). Each step prints as it goes; a
//! table at the end says which passed.
//!
//! `flow` below is the script; the steps live by what they play: `provision` (the stand-ins,
//! publish, CloudFormation's part), `checkin` (its custom resources and the fault runs),
//! `pipelines` (GitLab's side: the projects, the approval, the CI jobs), `accounts` (stages in
//! accounts of their own), `calls` (the recorded-calls proof); `runner` starts a packaged
//! `bootstrap` natively or under qemu. This crate is the only xtask crate that links the test
//! stand-ins (testkit); its binary runs every task, so the system tests (tests/integration)
//! drive one binary.

mod accounts;
mod calls;
mod checkin;
mod pipelines;
mod provision;
mod runner;

use std::path::PathBuf;

use anyhow::bail;
use serde_json::Value;
use testkit::gitlab::GitLabDouble;
use testkit::moto::moto;
use testkit::runtime_api::RuntimeApi;
use xshell::Shell;
use xtask::flags;
use xtask::{project, tools};
use xtask_aws::report::{self, Row};

use self::runner::Runner;

pub(crate) const BUCKET: &str = "e2e-artifacts";
pub(crate) const TOKEN_SECRET: &str = "sagemaker-gitlab-project/gitlab-token";
pub(crate) const REVOKED_TOKEN_SECRET: &str = "sagemaker-gitlab-project/revoked-token";
/// The GitLab double is served over TLS by a CA of the run's own, as a self-managed GitLab
/// behind a company CA would be; its PEM bundle is stored here and published into the template.
pub(crate) const CA_BUNDLE_SECRET: &str = "sagemaker-gitlab-project/gitlab-ca-bundle";
pub(crate) const PROJECT_NAME: &str = "churn";
pub(crate) const PROJECT_ID: &str = "p-e2e0test0001";
pub(crate) const GROUP_PATH: &str = "data-science";

pub fn run(args: &flags::E2e) -> anyhow::Result<()> {
    let sh = &Shell::new()?;
    sh.change_dir(project::root());
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    tools::ensure_python_tools(sh, tools::Requirements::Seedcode)?;
    // The IAM proof of the recorded calls asks iam-simulate too.
    tools::ensure_npm_tools(sh)?;
    // moto runs from the test venv just installed.
    testkit::use_tools_dir(project::tools_dir());
    let runner = Runner::for_arch(sh, args.arch)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut report = Report::default();
    runtime.block_on(flow(args, &runner, &mut report));
    report::print_table(Some("step"), &report.rows);
    let failed = report::failed(&report.rows);
    if failed > 0 {
        bail!("{failed} step(s) of the end-to-end run failed");
    }
    Ok(())
}

/// The steps' outcomes: each printed as it ends, all in the table at the end.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Prints the step's outcome as it ends and keeps it for the table; the value goes on to
    /// the steps that need it.
    fn record<T>(&mut self, step: &str, result: anyhow::Result<(T, String)>) -> Option<T> {
        let (value, result) = match result {
            Ok((value, summary)) => {
                println!("  ok      {step}: {summary}");
                (Some(value), Ok(summary))
            }
            Err(err) => {
                let reason = format!("{err:#}");
                println!("  FAILED  {step}: {reason}");
                (None, Err(reason))
            }
        };
        self.rows.push(Row { check: step.to_owned(), result });
        value
    }

    fn start(&self, step: &str) {
        println!("▶ {step}");
    }
}

/// What the steps share.
pub(crate) struct World {
    pub(crate) gitlab: GitLabDouble,
    /// The Service Catalog portfolio publish adds the product to, with its launch constraint.
    pub(crate) portfolio_id: String,
    /// moto's S3.
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) group_id: u64,
    pub(crate) dist: PathBuf,
    pub(crate) work: tempfile::TempDir,
}

async fn flow(args: &flags::E2e, runner: &Runner, report: &mut Report) {
    report.start("start moto and the GitLab double, store the token");
    let Some(world) = report.record("stand-ins", provision::start_stand_ins().await) else { return };
    // From here on, every AWS call is the product's or the run's own: the proof tells them apart.
    if let Err(err) = moto().start_recording() {
        report.record::<()>("stand-ins", Err(err));
        return;
    }

    let targets = if args.target_accounts {
        report.start("target accounts: cfn/target-account.yml in a staging and a production account");
        let Some(targets) = report.record("target accounts", accounts::set_up(&world.gitlab.url(), GROUP_PATH).await)
        else {
            return;
        };
        targets
    } else {
        Vec::new()
    };

    report.start("cargo xtask publish to moto");
    let Some(template_url) = report.record("publish", provision::publish(args, &world)) else { return };

    report.start("provision: resolve the published template for a sample project");
    let Some(mut stack) = report.record("provision", provision::provision(&world, &template_url, args.arch).await)
    else {
        return;
    };

    report.start(&format!("checkin project paths: the packaged bootstrap {}", runner.describe()));
    let api = RuntimeApi::start().await;
    // One checkin process serves this Create and, at the end, CloudFormation's retry of it.
    let _checkin = match provision::lambda_env(&stack, "CheckinFunction") {
        Ok(env) => runner.spawn(&api, &world.work.path().join("checkin/bootstrap"), &env),
        Err(err) => {
            report.record::<()>("checkin Create", Err(err));
            return;
        }
    };
    if report.record("checkin project paths", checkin::project_paths(&api, &mut stack, &world.gitlab).await).is_none() {
        return;
    }
    report.start("checkin Create: projects, variables, seed commits");
    let Some(answer) = report.record("checkin Create", checkin::create(&api, &stack).await) else { return };
    for (key, value) in answer["Data"].as_object().into_iter().flatten() {
        stack.set_attribute(checkin::SEED_CODE.1, key, value.as_str().unwrap_or_default());
    }

    report.start("GitLab: projects, files, variables");
    report.record("GitLab projects", pipelines::check_projects(&world, &stack));

    report.start("model-build CI: the run-pipeline job against moto");
    report.record("model-build CI job", pipelines::build_job(&world, &stack).await);

    report.start(&format!("approve a model package, deliver the event to the trigger {}", runner.describe()));
    if let Some(approved) =
        report.record("trigger on approval", pipelines::approve_and_trigger(&world, &stack, runner).await)
    {
        if targets.is_empty() {
            report.start("model-deploy CI: the build and deploy-staging jobs against moto");
            report.record("model-deploy CI jobs", pipelines::deploy_jobs(&world, &stack, &approved).await);
        } else {
            report.start(
                "model-deploy CI: build here, deploy-staging and (the manual step) deploy-production in their accounts",
            );
            report.record(
                "model-deploy CI jobs",
                pipelines::deploy_jobs_to_targets(&world, &stack, &approved, &targets).await,
            );
        }
    }

    report.start("fault: GitLab unreachable");
    report.record("fault: GitLab unreachable", checkin::unreachable_gitlab(&world, &stack, runner).await);
    report.start("fault: token rejected");
    report.record("fault: token rejected", checkin::rejected_token(&world, &stack, runner).await);
    report.start("fault: CloudFormation retries the Create");
    report.record("fault: retried Create", checkin::retried_create(&api, &stack, &world).await);

    report.start("IAM: every AWS call of publish, the Lambdas and the CI jobs against its role");
    report.record("IAM: recorded calls", calls::recorded_calls_allowed(&stack).await);
}

async fn sagemaker(action: &str, body: Value) -> anyhow::Result<Value> {
    aws_json("sagemaker", &format!("SageMaker.{action}"), body).await
}

/// `sagemaker` in the account of `access_key` (an assumed role's key acts in the role's account).
async fn sagemaker_as(access_key: &str, action: &str, body: Value) -> anyhow::Result<Value> {
    testkit::moto::json_call(access_key, "sagemaker", &format!("SageMaker.{action}"), body).await
}

/// One call to an AWS JSON-protocol API in moto, as the run itself, in the development account.
async fn aws_json(service: &str, target: &str, body: Value) -> anyhow::Result<Value> {
    testkit::moto::json_call("testing", service, target, body).await
}
