//! `cargo xtask e2e`: the whole flow on one machine, with the artifacts `publish` packages:
//! publish to moto, provision the project's custom resource by playing CloudFormation's part,
//! check what the checkin Lambda made in a GitLab double, run the seeded build repository's CI
//! job, approve a model package and deliver the EventBridge event to the trigger Lambda, run the
//! deploy pipeline's jobs it started, then three fault runs; last, every AWS call those made is
//! checked against the role that makes it in AWS (`calls`). Each step prints as it goes; a
//! table at the end says which passed.

mod accounts;
mod calls;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use lambda_testkit::gitlab::tls::TestCa;
use lambda_testkit::gitlab::{GitLabDouble, ProjectState};
use lambda_testkit::moto::{ACCOUNT_ID, REGION, moto};
use lambda_testkit::response_sink::ResponseSink;
use lambda_testkit::runtime_api::{Outcome, RuntimeApi};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use self::calls::Caller;
use xtask::cfn::Stack;
use xtask::flags::{self, Arch};
use xtask::{package, project, template, tools};

const BUCKET: &str = "e2e-artifacts";
const TOKEN_SECRET: &str = "sagemaker-gitlab-project/gitlab-token";
const REVOKED_TOKEN_SECRET: &str = "sagemaker-gitlab-project/revoked-token";
/// The GitLab double is served over TLS by a CA of the run's own, as a self-managed GitLab
/// behind a company CA would be; its PEM bundle is stored here and published into the template.
const CA_BUNDLE_SECRET: &str = "sagemaker-gitlab-project/gitlab-ca-bundle";
const PROJECT_NAME: &str = "churn";
const PROJECT_ID: &str = "p-e2e0test0001";
const GROUP_PATH: &str = "data-science";
/// The CI/CD variables each seed repository's code reads (model-build's
/// `pipelines/run_pipeline.py`, model-deploy's `deploy/__main__.py`, both `ci/aws-credentials.sh`),
/// in the order of `package::SEEDCODE`.
const READ_BY_SEED_CODE: [(&str, &[&str]); 2] = [
    (
        "Build",
        &[
            "SAGEMAKER_PROJECT_NAME",
            "SAGEMAKER_PROJECT_ID",
            "AWS_REGION",
            "ARTIFACT_BUCKET",
            "MODEL_PACKAGE_GROUP_NAME",
            "SAGEMAKER_PIPELINE_ROLE_ARN",
            "AWS_ROLE_ARN",
        ],
    ),
    (
        "Deploy",
        &[
            "SAGEMAKER_PROJECT_NAME",
            "SAGEMAKER_PROJECT_ID",
            "AWS_REGION",
            "MODEL_PACKAGE_GROUP_NAME",
            "MODEL_EXECUTION_ROLE_ARN",
            "AWS_ROLE_ARN",
        ],
    ),
];

pub fn run(sh: &Shell, args: &flags::E2e) -> anyhow::Result<()> {
    tools::ensure_python_tools(sh, tools::Requirements::Test)?;
    tools::ensure_python_tools(sh, tools::Requirements::Seedcode)?;
    // moto runs from the test venv just installed.
    lambda_testkit::use_tools_dir(project::tools_dir());
    let runner = Runner::for_arch(sh, args.arch)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut report = Report::default();
    runtime.block_on(flow(args, &runner, &mut report));
    report.print_table();
    let failed = report.rows.iter().filter(|row| row.1.is_err()).count();
    if failed > 0 {
        bail!("{failed} step(s) of the end-to-end run failed");
    }
    Ok(())
}

/// How a packaged `bootstrap` runs here: natively, or under qemu-user on another CPU.
enum Runner {
    Native,
    Qemu { qemu: PathBuf },
}

impl Runner {
    fn for_arch(sh: &Shell, arch: Arch) -> anyhow::Result<Runner> {
        let native = matches!((arch, std::env::consts::ARCH), (Arch::X86_64, "x86_64") | (Arch::Arm64, "aarch64"));
        if native {
            return Ok(Runner::Native);
        }
        ensure!(arch == Arch::Arm64, "an x86_64 bootstrap cannot run on this {} machine", std::env::consts::ARCH);
        tools::ensure_debian_programs(
            sh,
            &[("qemu-aarch64-static", "qemu-user-static"), (ARM64_LOADER, "libc6-arm64-cross")],
        )?;
        let qemu = cmd!(sh, "sh -c 'command -v qemu-aarch64-static'").quiet().read()?;
        Ok(Runner::Qemu { qemu: PathBuf::from(qemu) })
    }

    fn spawn(&self, api: &RuntimeApi, bootstrap: &Path, env: &[(String, String)]) -> tokio::process::Child {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match self {
            Runner::Native => api.spawn_function(bootstrap, &env),
            Runner::Qemu { qemu } => {
                let bootstrap = bootstrap.to_str().expect("temporary paths are UTF-8");
                api.spawn_command(qemu, &["-L", "/usr/aarch64-linux-gnu", bootstrap], &env)
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Runner::Native => "natively",
            Runner::Qemu { .. } => "under qemu-aarch64-static",
        }
    }
}

/// The arm64 dynamic loader libc6-arm64-cross installs, which qemu's `-L` points at.
const ARM64_LOADER: &str = "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1";

#[derive(Default)]
struct Report {
    rows: Vec<(String, Result<String, String>)>,
}

impl Report {
    /// Prints the step's outcome as it ends and keeps it for the table; the value goes on to
    /// the steps that need it.
    fn record<T>(&mut self, step: &str, result: anyhow::Result<(T, String)>) -> Option<T> {
        match result {
            Ok((value, summary)) => {
                println!("  ok      {step}: {summary}");
                self.rows.push((step.to_owned(), Ok(summary)));
                Some(value)
            }
            Err(err) => {
                let reason = format!("{err:#}");
                println!("  FAILED  {step}: {reason}");
                self.rows.push((step.to_owned(), Err(reason)));
                None
            }
        }
    }

    fn start(&self, step: &str) {
        println!("▶ {step}");
    }

    fn print_table(&self) {
        let width = self.rows.iter().map(|row| row.0.len()).max().unwrap_or(4).max(4);
        println!("\n{:width$}  result", "step");
        for (step, result) in &self.rows {
            let (verdict, text) = match result {
                Ok(summary) => ("pass", summary),
                Err(reason) => ("FAIL", reason),
            };
            println!("{step:width$}  {verdict}  {text}");
        }
    }
}

/// What the steps share.
struct World {
    gitlab: GitLabDouble,
    /// The Service Catalog portfolio publish adds the product to, with its launch constraint.
    portfolio_id: String,
    /// moto's S3.
    s3: aws_sdk_s3::Client,
    group_id: u64,
    dist: PathBuf,
    work: tempfile::TempDir,
}

async fn flow(args: &flags::E2e, runner: &Runner, report: &mut Report) {
    report.start("start moto and the GitLab double, store the token");
    let Some(world) = report.record("stand-ins", start_stand_ins().await) else { return };
    // From here on, every AWS call is the product's or the run's own: the proof tells them apart.
    if let Err(err) = moto().start_recording() {
        report.record::<()>("stand-ins", Err(anyhow::anyhow!(err)));
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
    let Some(template_url) = report.record("publish", publish(args, &world)) else { return };

    report.start("provision: resolve the published template for a sample project");
    let Some(mut stack) = report.record("provision", provision(&world, &template_url, args.arch).await) else {
        return;
    };

    report.start(&format!("checkin project paths: the packaged bootstrap {}", runner.describe()));
    let api = RuntimeApi::start().await;
    // One checkin process serves this Create and, at the end, CloudFormation's retry of it.
    let _checkin = match lambda_env(&stack, "CheckinFunction") {
        Ok(env) => runner.spawn(&api, &world.work.path().join("checkin/bootstrap"), &env),
        Err(err) => {
            report.record::<()>("checkin Create", Err(err));
            return;
        }
    };
    if report.record("checkin project paths", project_paths(&api, &mut stack).await).is_none() {
        return;
    }
    report.start("checkin Create: projects, variables, seed commits");
    let Some(answer) = report.record("checkin Create", create(&api, &stack).await) else { return };
    for (key, value) in answer["Data"].as_object().into_iter().flatten() {
        stack.set_attribute(SEED_CODE.1, key, value.as_str().unwrap_or_default());
    }

    report.start("GitLab: projects, files, variables");
    report.record("GitLab projects", check_projects(&world, &stack));

    report.start("model-build CI: the run-pipeline job against moto");
    report.record("model-build CI job", build_job(&world, &stack).await);

    report.start(&format!("approve a model package, deliver the event to the trigger {}", runner.describe()));
    if let Some(approved) = report.record("trigger on approval", approve_and_trigger(&world, &stack, runner).await) {
        if targets.is_empty() {
            report.start("model-deploy CI: the build and deploy-staging jobs against moto");
            report.record("model-deploy CI jobs", deploy_jobs(&world, &stack, &approved).await);
        } else {
            report.start(
                "model-deploy CI: build here, deploy-staging and (the manual step) deploy-production in their accounts",
            );
            report.record("model-deploy CI jobs", deploy_jobs_to_targets(&world, &stack, &approved, &targets).await);
        }
    }

    report.start("fault: GitLab unreachable");
    report.record("fault: GitLab unreachable", unreachable_gitlab(&world, &stack, runner).await);
    report.start("fault: token rejected");
    report.record("fault: token rejected", rejected_token(&world, &stack, runner).await);
    report.start("fault: CloudFormation retries the Create");
    report.record("fault: retried Create", retried_create(&api, &stack, &world).await);

    report.start("IAM: every AWS call of publish, the Lambdas and the CI jobs against its role");
    report.record("IAM: recorded calls", recorded_calls_allowed(&stack).await);
}

async fn start_stand_ins() -> anyhow::Result<(World, String)> {
    let token = format!("glpat-e2e-{}", std::process::id());
    let endpoint = moto().endpoint().to_owned();
    let ca = TestCa::new();
    let gitlab = GitLabDouble::start_tls(&token, &ca).await;
    let group_id = gitlab.add_group(GROUP_PATH);
    let s3 = aws_sdk_s3::Client::new(&moto().sdk_config());
    lambda_testkit::moto::create_artifact_bucket(&s3, BUCKET).await.map_err(anyhow::Error::msg)?;
    let iam = aws_sdk_iam::Client::new(&moto().sdk_config());
    lambda_testkit::moto::enable_sagemaker_projects(&iam).await.map_err(anyhow::Error::msg)?;
    aws_json("secretsmanager", "secretsmanager.CreateSecret", json!({ "Name": TOKEN_SECRET, "SecretString": token }))
        .await?;
    let ca_bundle = json!({ "Name": CA_BUNDLE_SECRET, "SecretString": ca.ca_pem() });
    aws_json("secretsmanager", "secretsmanager.CreateSecret", ca_bundle).await?;
    let portfolio = json!({ "DisplayName": "SageMaker project templates", "ProviderName": "e2e" });
    let portfolio = aws_json("servicecatalog", "AWS242ServiceCatalogService.CreatePortfolio", portfolio).await?;
    let portfolio_id = portfolio["PortfolioDetail"]["Id"].as_str().context("CreatePortfolio gave no ID")?.to_owned();
    let world = World {
        gitlab,
        portfolio_id,
        s3,
        group_id,
        dist: project::target_dir().join("dist"),
        work: tempfile::tempdir()?,
    };
    let summary = format!(
        "moto {endpoint}, GitLab double {} as gitlab.com behaves for a new namespace, over TLS from a private CA \
         (its bundle in {CA_BUNDLE_SECRET}), group {GROUP_PATH} = {group_id}, token in {TOKEN_SECRET}",
        world.gitlab.url()
    );
    Ok((world, summary))
}

/// Runs the real `publish` command against moto (it packages into target/dist first), then
/// `versions`, which must list the version publish made.
fn publish(args: &flags::E2e, world: &World) -> anyhow::Result<(String, String)> {
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let xtask = |task_args: &[&str]| {
        let mut command = std::process::Command::new(&exe);
        command.args(task_args).envs(moto().lambda_env()).env("AWS_ACCESS_KEY_ID", Caller::Publish.access_key_id());
        command
    };
    let gitlab_url = world.gitlab.url();
    let launch_role = format!("arn:aws:iam::{ACCOUNT_ID}:role/sagemaker-gitlab-project-launch-{REGION}");
    let publish = [
        "publish",
        "--bucket",
        BUCKET,
        "--region",
        REGION,
        "--arch",
        args.arch.lambda_name(),
        "--gitlab-server-url",
        &gitlab_url,
        "--gitlab-ca-bundle-secret-name",
        CA_BUNDLE_SECRET,
        "--portfolio-id",
        &world.portfolio_id,
        "--launch-role-arn",
        &launch_role,
        // A trial run on this machine: a developer's uncommitted change is what they want to try.
        "--allow-dirty",
    ];
    let [(_, staging), (_, production)] = accounts::STAGES;
    let accounts = ["--staging-account-id", staging, "--production-account-id", production];
    let extra: &[&str] = if args.target_accounts { &accounts } else { &[] };
    let publish: Vec<&str> = publish.iter().chain(extra).copied().collect();
    let status = xtask(&publish).status().context("cannot run cargo xtask publish")?;
    ensure!(status.success(), "cargo xtask publish failed ({status})");
    let published: Value = serde_json::from_slice(&std::fs::read(world.dist.join("publish.json"))?)?;
    let url = published["template_url"].as_str().context("publish.json has no template_url")?.to_owned();
    let version = published["version_name"].as_str().context("publish.json has no version_name")?;
    let listed = xtask(&["versions", "--region", REGION]).output().context("cannot run cargo xtask versions")?;
    let listing = String::from_utf8_lossy(&listed.stdout);
    ensure!(
        listed.status.success() && listing.contains(version),
        "cargo xtask versions does not list {version}:\n{listing}"
    );
    let summary = format!(
        "product {} version {} ({version}, listed by versions), template {url}",
        published["product_id"].as_str().unwrap_or("?"),
        published["version_id"].as_str().unwrap_or("?"),
    );
    Ok((url, summary))
}

/// Reads the template Service Catalog would load, resolves it for the sample project, and
/// fetches both Lambdas' code from where the template points, checking it is what was packaged.
async fn provision(world: &World, template_url: &str, arch: Arch) -> anyhow::Result<(Stack, String)> {
    let key = template_url.split_once(".amazonaws.com/").map(|(_, key)| key).context("unexpected template URL")?;
    let template = String::from_utf8(s3_get(world, BUCKET, key).await?).context("the template is not UTF-8")?;
    let group_id = world.group_id.to_string();
    let parameters = [
        ("SageMakerProjectName", PROJECT_NAME),
        ("SageMakerProjectId", PROJECT_ID),
        ("GitLabGroupId", group_id.as_str()),
    ];
    let mut stack = Stack::new(&template, REGION, ACCOUNT_ID, &parameters)?;
    stack.set_attribute("ArtifactBucket", "Arn", &format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}"));
    stack.name_iam_resources()?;
    let [(_, checkin_zip), (_, trigger_zip)] = package::LAMBDAS;
    for (function, zip, folder) in
        [("CheckinFunction", checkin_zip, "checkin"), ("TriggerFunction", trigger_zip, "trigger")]
    {
        let architecture = stack.property(function, &["Architectures"])?;
        let wanted = arch.lambda_name();
        ensure!(architecture[0].as_str() == Some(wanted), "{function} is built for {architecture:?}, not {wanted}");
        let bucket = stack.property(function, &["Code", "S3Bucket"])?;
        let code_key = stack.property(function, &["Code", "S3Key"])?;
        let version = stack.property(function, &["Code", "S3ObjectVersion"])?;
        let (bucket, code_key) = (bucket.as_str().unwrap_or_default(), code_key.as_str().unwrap_or_default());
        // Lambda fetches exactly this object version, as CloudFormation passes it on.
        let version = version.as_str().context("the code has no S3ObjectVersion")?;
        let object = world.s3.get_object().bucket(bucket).key(code_key).version_id(version).send().await;
        let object = object.with_context(|| format!("s3://{bucket}/{code_key} version {version}"))?;
        let deployed = object.body.collect().await?.into_bytes().to_vec();
        let packaged = std::fs::read(world.dist.join(zip))?;
        ensure!(deployed == packaged, "s3://{bucket}/{code_key} differs from target/dist/{zip}");
        let bootstrap = zip_entries(&deployed)?.remove("bootstrap").context("the zip has no bootstrap")?;
        let path = world.work.path().join(folder).join("bootstrap");
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, bootstrap)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let summary = format!(
        "{} resolved for {PROJECT_NAME} ({PROJECT_ID}); both Lambdas' code matches target/dist",
        template::PROJECT_TEMPLATE
    );
    Ok((stack, summary))
}

fn lambda_env(stack: &Stack, function: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = stack.lambda_environment(function)?.into_iter().collect();
    env.extend(moto().lambda_env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let caller = if function == "TriggerFunction" { Caller::Trigger } else { Caller::Checkin };
    env.retain(|(key, _)| key != "AWS_ACCESS_KEY_ID");
    env.push(("AWS_ACCESS_KEY_ID".to_owned(), caller.access_key_id().to_owned()));
    // The ResponseSink stands in for S3's pre-signed URL on loopback.
    env.push((seedcode_checkin::config::LOOPBACK_RESPONSE_URL_SETTING.to_owned(), "true".to_owned()));
    Ok(env)
}

/// The checkin's two custom resources in `cfn/project.yml`: (type, logical ID).
const PROJECT_PATHS: (&str, &str) = (seedcode_checkin::PROJECT_PATHS_RESOURCE, "GitLabProjectPaths");
const SEED_CODE: (&str, &str) = ("Custom::SeedCodeCheckin", "SeedCodeCheckin");

fn create_event(sink: &ResponseSink, request_id: &str, (resource_type, logical_id): (&str, &str)) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": sink.url(),
        "ResourceType": resource_type,
        "LogicalResourceId": logical_id,
        "StackId": format!("arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/SC-{ACCOUNT_ID}-pp-e2e/0000"),
        "ServiceToken": format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:sagemaker-{PROJECT_ID}-gitlab-checkin"),
        "ResourceProperties": { "ServiceToken": "checkin" }
    })
}

/// Sends a Create as CloudFormation does and returns the one answer the ResponseURL got.
async fn answer_to(
    api: &RuntimeApi,
    request_id: &str,
    resource: (&str, &str),
    time_limit: Duration,
) -> anyhow::Result<Value> {
    let sink = ResponseSink::start().await;
    let started = Instant::now();
    let event = create_event(&sink, request_id, resource);
    let outcome = api.try_invoke(event, time_limit).await.map_err(anyhow::Error::msg)?;
    ensure!(matches!(outcome, Outcome::Response { .. }), "the invocation ended {outcome:?}");
    let answers = sink.wait(Duration::from_secs(1)).await;
    ensure!(started.elapsed() < time_limit, "answered after the deadline ({:?})", started.elapsed());
    let [answer] = &answers[..] else { bail!("{} answers reached the ResponseURL, not one", answers.len()) };
    Ok(answer.body.clone())
}

fn timeout_of(stack: &Stack, function: &str) -> Duration {
    let seconds = stack.property(function, &["Timeout"]).ok().and_then(|t| t.as_u64()).unwrap_or(60);
    Duration::from_secs(seconds)
}

/// CloudFormation's first request: where the projects go, which the CI role's trust then names.
async fn project_paths(api: &RuntimeApi, stack: &mut Stack) -> anyhow::Result<((), String)> {
    let answer = answer_to(api, "e2e-paths-1", PROJECT_PATHS, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "the checkin answered {answer}");
    let mut paths = Vec::new();
    for key in ["BuildProjectPath", "DeployProjectPath"] {
        let path = answer["Data"][key].as_str().with_context(|| format!("Data has no {key}: {answer}"))?;
        stack.set_attribute(PROJECT_PATHS.1, key, path);
        paths.push(path.to_owned());
    }
    let trust = stack.property("CiRole", &["AssumeRolePolicyDocument"])?;
    let trust = trust.as_str().context("the CI role's trust policy is not JSON text")?;
    for path in &paths {
        let sub = format!("\"project_path:{path}:ref_type:branch:ref:main\"");
        ensure!(trust.contains(&sub), "the CI role does not trust {sub}: {trust}");
    }
    Ok(((), format!("the CI role trusts main of {}", paths.join(" and "))))
}

async fn create(api: &RuntimeApi, stack: &Stack) -> anyhow::Result<(Value, String)> {
    let answer = answer_to(api, "e2e-create-1", SEED_CODE, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "the checkin answered {answer}");
    for key in ["BuildProjectId", "BuildProjectPath", "BuildProjectCloneUrl", "DeployProjectId", "DeployProjectPath"] {
        ensure!(answer["Data"][key].as_str().is_some_and(|v| !v.is_empty()), "Data has no {key}: {answer}");
    }
    // The first pipeline assumes the CI role: the projects must be where its trust says.
    for key in ["BuildProjectPath", "DeployProjectPath"] {
        let trusted = stack.attribute(PROJECT_PATHS.1, key);
        ensure!(
            answer["Data"][key].as_str() == trusted,
            "{key} is {}, but the CI role trusts {trusted:?}",
            answer["Data"][key]
        );
    }
    let summary = format!("SUCCESS, {}; {}", answer["PhysicalResourceId"], answer["Reason"].as_str().unwrap_or(""));
    Ok((answer, summary))
}

/// The GitLab project the checkin reported for `role` (`Build` or `Deploy`) in its Data.
fn seeded_project(world: &World, stack: &Stack, role: &str) -> anyhow::Result<ProjectState> {
    let path = stack
        .attribute("SeedCodeCheckin", &format!("{role}ProjectPath"))
        .with_context(|| format!("the checkin's Data has no {role}ProjectPath"))?;
    world.gitlab.project(path).with_context(|| format!("GitLab has no project {path}"))
}

fn check_projects(world: &World, stack: &Stack) -> anyhow::Result<((), String)> {
    ensure!(world.gitlab.projects().len() == 2, "GitLab holds {} projects, not 2", world.gitlab.projects().len());
    let mut files = 0;
    for ((role, read_by_seed_code), (_, zip)) in READ_BY_SEED_CODE.into_iter().zip(package::SEEDCODE) {
        let project = seeded_project(world, stack, role)?;
        let path = project.full_path();
        let expected = zip_entries(&std::fs::read(world.dist.join(zip))?)?;
        let branch = project.branches.get(&project.default_branch).context("no default branch")?;
        let actual: BTreeMap<String, Vec<u8>> = branch.iter().map(|(k, f)| (k.clone(), f.content.clone())).collect();
        let differing: Vec<&String> = expected.keys().filter(|name| actual.get(*name) != expected.get(*name)).collect();
        let extra: Vec<&String> = actual.keys().filter(|name| !expected.contains_key(*name)).collect();
        ensure!(
            differing.is_empty() && extra.is_empty(),
            "{path}: {differing:?} missing or different, {extra:?} extra, against {zip}"
        );
        files += expected.len();
        let [first_commit, ..] = &project.commits[..] else { bail!("{path} has no commit") };
        for &key in read_by_seed_code {
            let variables = project.variables_for_all_environments();
            let (_, written) = variables.get(key).with_context(|| format!("{path} lacks variable {key}"))?;
            ensure!(*written < first_commit.at, "{path}: {key} was set after the first commit");
        }
    }
    Ok((
        (),
        format!(
            "2 projects in {GROUP_PATH}, {files} files byte-equal to the seed code zips, the variables their code reads set before the first commit"
        ),
    ))
}

/// Registers a package in the project's group, approves it, routes SageMaker's state-change
/// event through the template's rule in moto's EventBridge to a queue, and delivers what
/// arrives to the packaged trigger.
async fn approve_and_trigger(world: &World, stack: &Stack, runner: &Runner) -> anyhow::Result<(Approved, String)> {
    let group = format!("{PROJECT_NAME}-{PROJECT_ID}");
    sagemaker("CreateModelPackageGroup", json!({ "ModelPackageGroupName": group })).await?;
    let created = sagemaker(
        "CreateModelPackage",
        json!({
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [{ "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5" }],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"]
            }
        }),
    )
    .await?;
    let arn = created["ModelPackageArn"].as_str().context("CreateModelPackage returned no ARN")?.to_owned();
    sagemaker("UpdateModelPackage", json!({ "ModelPackageArn": arn, "ModelApprovalStatus": "Approved" })).await?;
    let package = sagemaker("DescribeModelPackage", json!({ "ModelPackageName": arn })).await?;

    let queue = aws_json("sqs", "AmazonSQS.CreateQueue", json!({ "QueueName": "e2e-approvals" })).await?;
    let queue_url = queue["QueueUrl"].as_str().context("CreateQueue returned no URL")?.to_owned();
    let pattern = stack.property("ModelApprovedRule", &["EventPattern"])?;
    let rule = stack.property("ModelApprovedRule", &["Name"])?;
    let rule = rule.as_str().context("the rule has no name")?;
    let events = |action: &str, body: Value| aws_json("events", format!("AWSEvents.{action}"), body);
    events("PutRule", json!({ "Name": rule, "EventPattern": serde_json::to_string(&pattern)? })).await?;
    let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:e2e-approvals");
    events("PutTargets", json!({ "Rule": rule, "Targets": [{ "Id": "trigger", "Arn": queue_arn }] })).await?;
    let detail = json!({
        "ModelPackageGroupName": package["ModelPackageGroupName"],
        "ModelPackageVersion": package["ModelPackageVersion"],
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelApprovalStatus": package["ModelApprovalStatus"],
        "CreationTime": package["CreationTime"],
    });
    events(
        "PutEvents",
        json!({ "Entries": [{
            "Source": "aws.sagemaker",
            "DetailType": "SageMaker Model Package State Change",
            "Detail": detail.to_string(),
            "Resources": [arn],
        }] }),
    )
    .await?;
    let received =
        aws_json("sqs", "AmazonSQS.ReceiveMessage", json!({ "QueueUrl": queue_url, "MaxNumberOfMessages": 10 }))
            .await?;
    let messages = received["Messages"].as_array().cloned().unwrap_or_default();
    let [message] = &messages[..] else { bail!("the rule delivered {} events, not 1", messages.len()) };
    let event: Value = serde_json::from_str(message["Body"].as_str().unwrap_or_default())?;

    let api = RuntimeApi::start().await;
    let _trigger =
        runner.spawn(&api, &world.work.path().join("trigger/bootstrap"), &lambda_env(stack, "TriggerFunction")?);
    let outcome = api.try_invoke(event, timeout_of(stack, "TriggerFunction")).await.map_err(anyhow::Error::msg)?;
    let Outcome::Response { body: answer, .. } = outcome else { bail!("the trigger ended {outcome:?}") };
    let deploy = seeded_project(world, stack, "Deploy")?;
    let deploy_path = deploy.full_path();
    let [pipeline] = &deploy.pipelines[..] else {
        bail!("{deploy_path} has {} pipelines, not 1; the trigger answered {answer}", deploy.pipelines.len())
    };
    ensure!(
        pipeline.variables.get("MODEL_PACKAGE_ARN") == Some(&arn),
        "the pipeline's variables are {:?}",
        pipeline.variables
    );
    ensure!(seeded_project(world, stack, "Build")?.pipelines.is_empty(), "the build project got a pipeline");
    let approved = Approved { package_arn: arn.clone(), pipeline_variables: pipeline.variables.clone() };
    Ok((
        approved,
        format!(
            "{arn} approved; the rule routed 1 event; pipeline {} on {deploy_path}@{}",
            pipeline.id, pipeline.git_ref
        ),
    ))
}

/// The approved package and the variables of the deploy pipeline its approval started.
struct Approved {
    package_arn: String,
    pipeline_variables: BTreeMap<String, String>,
}

/// The model-build repository's `run-pipeline` job, as GitLab would run it on the seeded commit
/// with the project's CI/CD variables, against moto: it creates and starts the SageMaker Pipeline.
/// `PIPELINE_WAIT=false`, a variable the seed code documents: moto does not execute pipelines.
async fn build_job(world: &World, stack: &Stack) -> anyhow::Result<((), String)> {
    // CloudFormation's part: the project's artifact bucket, which the job uploads to.
    let bucket = stack.property("ArtifactBucket", &["BucketName"])?;
    let bucket = bucket.as_str().context("the bucket has no name")?;
    world.s3.create_bucket().bucket(bucket).send().await.context("creating the project's bucket in moto")?;

    let project = seeded_project(world, stack, "Build")?;
    let mut variables = ci_variables(&project);
    variables.insert("PIPELINE_WAIT".into(), "false".into());
    let log = run_ci_job(world, &project, "run-pipeline", &variables, Access::Key(Caller::BuildCi))?;

    let name = format!("{PROJECT_NAME}-{PROJECT_ID}");
    let pipeline = sagemaker("DescribePipeline", json!({ "PipelineName": name })).await?;
    let tags = sagemaker("ListTags", json!({ "ResourceArn": pipeline["PipelineArn"] })).await?;
    let tagged = tags["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["Key"] == "sagemaker:project-id" && t["Value"] == PROJECT_ID);
    ensure!(tagged, "pipeline {name} lacks the sagemaker:project-id tag: {tags}");
    let executions = sagemaker("ListPipelineExecutions", json!({ "PipelineName": name })).await?;
    let runs = executions["PipelineExecutionSummaries"].as_array().map_or(0, Vec::len);
    ensure!(runs == 1, "pipeline {name} has {runs} runs, not 1:\n{log}");
    Ok((
        (),
        format!("pipeline {name} created with the project tags in SageMaker, 1 run started, data in s3://{bucket}"),
    ))
}

/// The model-deploy repository's `build` and `deploy-staging` jobs in the pipeline the approval
/// started, against moto: the approved package ends up behind the staging endpoint.
async fn deploy_jobs(world: &World, stack: &Stack, approved: &Approved) -> anyhow::Result<((), String)> {
    let project = seeded_project(world, stack, "Deploy")?;
    let mut variables = ci_variables(&project);
    variables.extend(approved.pipeline_variables.clone());
    run_ci_job(world, &project, "build", &variables, Access::Key(Caller::DeployCi))?;
    let chosen: Value =
        serde_json::from_slice(&std::fs::read(checkout_dir(world, &project).join("build/model.json"))?)?;
    ensure!(chosen["ModelPackageArn"] == approved.package_arn.as_str(), "the build job chose {chosen}");
    run_ci_job(world, &project, "deploy-staging", &variables, Access::Key(Caller::DeployCi))?;

    let endpoints = sagemaker("ListEndpoints", json!({})).await?;
    let [endpoint] = endpoints["Endpoints"].as_array().map(Vec::as_slice).unwrap_or_default() else {
        bail!("moto holds endpoints {endpoints}, not one")
    };
    let endpoint = sagemaker("DescribeEndpoint", json!({ "EndpointName": endpoint["EndpointName"] })).await?;
    let config =
        sagemaker("DescribeEndpointConfig", json!({ "EndpointConfigName": endpoint["EndpointConfigName"] })).await?;
    let model =
        sagemaker("DescribeModel", json!({ "ModelName": config["ProductionVariants"][0]["ModelName"] })).await?;
    let served = &model["PrimaryContainer"]["ModelPackageName"];
    ensure!(*served == approved.package_arn.as_str(), "the staging model serves {served}");
    Ok((
        (),
        format!(
            "build chose the approved package; deploy-staging made stack sagemaker-{PROJECT_NAME}-{PROJECT_ID}-staging, whose endpoint serves it"
        ),
    ))
}

/// The deploy pipeline with its stages in accounts of their own: `build` picks the package in
/// this account with the project's CI role; `deploy-staging`, then `deploy-production` (the
/// manual step, played), each assume their account's deploy role with the id_token the job's
/// `id_tokens` ask for, minted by the GitLab double, and leave the endpoint stack there, serving
/// the approved package of this account's registry. Nothing is deployed here.
async fn deploy_jobs_to_targets(
    world: &World,
    stack: &Stack,
    approved: &Approved,
    targets: &[accounts::Target],
) -> anyhow::Result<((), String)> {
    let project = seeded_project(world, stack, "Deploy")?;
    let mut variables = ci_variables(&project);
    variables.extend(approved.pipeline_variables.clone());
    for target in targets {
        let prefix = target.stage.to_ascii_uppercase();
        let role = variables.get(&format!("{prefix}_AWS_ROLE_ARN"));
        ensure!(role == Some(&target.deploy_role()?), "the deploy project's {prefix}_AWS_ROLE_ARN is {role:?}");
    }
    run_ci_job(world, &project, "build", &variables, Access::Key(Caller::DeployCi))?;
    let ci: serde_yaml::Value =
        serde_yaml::from_slice(&std::fs::read(checkout_dir(world, &project).join(".gitlab-ci.yml"))?)?;
    let stack_name = |stage: &str| format!("sagemaker-{PROJECT_NAME}-{PROJECT_ID}-{stage}");
    let host = world.gitlab.url().trim_start_matches("https://").to_owned();
    let mut made = Vec::new();
    for target in targets {
        let job_name = format!("deploy-{}", target.stage);
        let job = accounts::resolved_job(&ci, &job_name)?;
        let tokens = accounts::id_tokens(&world.gitlab, &job, &project.full_path())?;
        let stage_token =
            tokens.get("AWS_STAGE_ID_TOKEN").with_context(|| format!("{job_name} asks for no AWS_STAGE_ID_TOKEN"))?;
        let decision = target.trusts(stage_token, &host)?;
        ensure!(
            decision == lambda_testkit::iam::Decision::Allowed,
            "{job_name}'s id_token is {decision:?} by {}",
            target.deploy_role()?
        );
        let job_variables: BTreeMap<String, String> = job
            .get("variables")
            .and_then(serde_yaml::Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
            .collect();
        let mut job_env = variables.clone();
        job_env.extend(job_variables);
        run_ci_job(world, &project, &job_name, &job_env, Access::IdTokens(tokens))?;
        let found = target.endpoint_stack(&stack_name(target.stage)).await?;
        let (status, served) =
            found.with_context(|| format!("no stack {} in account {}", stack_name(target.stage), target.account))?;
        ensure!(served == approved.package_arn, "the {} endpoint in {} serves {served}", target.stage, target.account);
        made.push(format!("{} {status} in {}", stack_name(target.stage), target.account));
    }
    let here = sagemaker("ListEndpoints", json!({})).await?;
    let here = here["Endpoints"].as_array().map_or(0, Vec::len);
    ensure!(here == 0, "{here} endpoints were deployed in the development account");
    Ok((
        (),
        format!(
            "build chose the approved package here; {}, each serving {}; none here",
            made.join(", "),
            approved.package_arn
        ),
    ))
}

/// How a CI job gets AWS credentials in the run.
enum Access {
    /// A fixed key, which moto acts on in the development account and the proof attributes.
    Key(Caller),
    /// The job's id_tokens, exchanged by `ci/aws-credentials.sh` (sourced before each line, as the
    /// job's `before_script` does) for the role the project's variables name.
    IdTokens(BTreeMap<String, String>),
}

/// A project's CI/CD variables as a job sees them.
fn ci_variables(project: &ProjectState) -> BTreeMap<String, String> {
    let variables = project.variables_for_all_environments();
    variables.into_iter().map(|(key, (variable, _))| (key.to_owned(), variable.value.clone())).collect()
}

/// Where `run_ci_job` checks `project` out.
fn checkout_dir(world: &World, project: &ProjectState) -> PathBuf {
    world.work.path().join(format!("{}-checkout", project.path))
}

/// Checks out `project`'s default branch (once) and runs `job`'s `script` lines
/// there as GitLab's shell would. Its `before_script` is left out: AWS credentials come from
/// `access`, the Python packages from the seed code venv.
fn run_ci_job(
    world: &World,
    project: &ProjectState,
    job: &str,
    variables: &BTreeMap<String, String>,
    access: Access,
) -> anyhow::Result<String> {
    let checkout = &checkout_dir(world, project);
    if !checkout.exists() {
        let files = project.branches.get(&project.default_branch).context("no default branch")?;
        for (name, file) in files {
            let path = checkout.join(name);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, &file.content)?;
        }
    }
    let ci: serde_yaml::Value = serde_yaml::from_slice(&std::fs::read(checkout.join(".gitlab-ci.yml"))?)?;
    let script = ci[job]["script"].as_sequence().with_context(|| format!("{}'s CI has no job {job}", project.path))?;
    let python = tools::venv_bin(tools::Requirements::Seedcode);
    let mut log = String::new();
    for line in script {
        let line = line.as_str().context("a script line is not text")?;
        let mut command = std::process::Command::new("bash");
        command
            .current_dir(checkout)
            .env_clear()
            .env("PATH", tools::path_with(&python)?)
            .env("HOME", checkout)
            .env("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
            .envs(variables)
            .envs(moto().lambda_env());
        match &access {
            Access::Key(caller) => {
                command.args(["-ec", line]).env("AWS_ACCESS_KEY_ID", caller.access_key_id());
            }
            Access::IdTokens(tokens) => {
                // No keys: the SDK must take the role from the web identity the script sets up.
                command
                    .args(["-ec", &format!(". ci/aws-credentials.sh && {line}")])
                    .env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY")
                    .envs(tokens)
                    .env("CI_PROJECT_ID", project.id.to_string())
                    .env("CI_JOB_ID", "1");
            }
        }
        let output = command.output()?;
        log.push_str(&String::from_utf8_lossy(&output.stdout));
        log.push_str(&String::from_utf8_lossy(&output.stderr));
        ensure!(output.status.success(), "job {job}: `{line}` failed:\n{log}");
    }
    Ok(log)
}

/// A checkin process with `overrides` on the template's environment, answering one Create.
async fn checkin_with(
    world: &World,
    stack: &Stack,
    runner: &Runner,
    overrides: &[(&str, &str)],
    time_limit: Duration,
) -> anyhow::Result<Value> {
    let mut env = lambda_env(stack, "CheckinFunction")?;
    let fault_run = [("AWS_ACCESS_KEY_ID", Caller::FaultRun.access_key_id())];
    for (key, value) in overrides.iter().chain(&fault_run) {
        env.retain(|(k, _)| k != key);
        env.push(((*key).to_owned(), (*value).to_owned()));
    }
    let api = RuntimeApi::start().await;
    let _checkin = runner.spawn(&api, &world.work.path().join("checkin/bootstrap"), &env);
    answer_to(&api, "e2e-fault", SEED_CODE, time_limit).await
}

async fn unreachable_gitlab(world: &World, stack: &Stack, runner: &Runner) -> anyhow::Result<((), String)> {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("https://{closed}");
    let time_limit = Duration::from_secs(20);
    let started = Instant::now();
    let answer = checkin_with(world, stack, runner, &[("GITLAB_SERVER_URL", &url)], time_limit).await?;
    ensure!(answer["Status"] == "FAILED", "answered {answer}");
    Ok((
        (),
        format!(
            "one FAILED after {:.1} s of a {} s limit: {}",
            started.elapsed().as_secs_f64(),
            time_limit.as_secs(),
            answer["Reason"]
        ),
    ))
}

async fn rejected_token(world: &World, stack: &Stack, runner: &Runner) -> anyhow::Result<((), String)> {
    let revoked = "glpat-revoked-e2e";
    aws_json(
        "secretsmanager",
        "secretsmanager.CreateSecret",
        json!({ "Name": REVOKED_TOKEN_SECRET, "SecretString": revoked }),
    )
    .await?;
    let answer = checkin_with(
        world,
        stack,
        runner,
        &[("GITLAB_TOKEN_SECRET_NAME", REVOKED_TOKEN_SECRET)],
        Duration::from_secs(30),
    )
    .await?;
    let reason = answer["Reason"].as_str().unwrap_or_default();
    ensure!(answer["Status"] == "FAILED", "answered {answer}");
    ensure!(reason.contains(REVOKED_TOKEN_SECRET), "the reason does not name the secret: {reason}");
    ensure!(!reason.contains(revoked), "the reason shows the token");
    Ok(((), format!("FAILED: {reason}")))
}

async fn retried_create(api: &RuntimeApi, stack: &Stack, world: &World) -> anyhow::Result<((), String)> {
    let commits = |w: &World| w.gitlab.projects().iter().map(|p| p.commits.len()).sum::<usize>();
    let before = (world.gitlab.projects().len(), commits(world));
    let answer = answer_to(api, "e2e-create-2", SEED_CODE, timeout_of(stack, "CheckinFunction")).await?;
    ensure!(answer["Status"] == "SUCCESS", "answered {answer}");
    let after = (world.gitlab.projects().len(), commits(world));
    ensure!(before == after, "projects and commits went from {before:?} to {after:?}");
    Ok(((), format!("SUCCESS again, still {} projects and {} commits", after.0, after.1)))
}

/// Every call moto recorded from a component, evaluated against the role that component runs as
/// in AWS: `cfn/bootstrap.yml`'s roles and resource policies, and the project's CI role within
/// its boundary, resolved for this account.
async fn recorded_calls_allowed(project_stack: &Stack) -> anyhow::Result<((), String)> {
    let recording = moto().take_recorded_requests().map_err(anyhow::Error::msg)?;
    let listed = aws_json("secretsmanager", "secretsmanager.ListSecrets", json!({})).await?;
    let secrets: BTreeMap<String, String> = listed["SecretList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["Name"].as_str()?.to_owned(), s["ARN"].as_str()?.to_owned())))
        .collect();
    let iam = aws_sdk_iam::Client::new(&moto().sdk_config());
    let listed = iam.list_roles().send().await.context("listing moto's roles")?;
    let roles = listed.roles().iter().map(|r| (r.role_name().to_owned(), r.arn().to_owned())).collect();
    let account = calls::Account { region: REGION, account: ACCOUNT_ID, secrets, roles };
    let calls = calls::calls(&recording, &account)?;

    let token = account.secrets.get(TOKEN_SECRET).context("moto holds no token secret")?;
    let parameters = [
        ("TemplateProjectPath", "platform/sagemaker-gitlab-template"),
        ("GitLabCaBundleSecretName", CA_BUNDLE_SECRET),
        ("GitLabTokenSecret", token.as_str()),
    ];
    let bootstrap = xtask::cfn::bootstrap(REGION, ACCOUNT_ID, BUCKET, &parameters)?;
    let role_of = |stack: &Stack, role: &str| -> anyhow::Result<(String, Vec<Value>)> {
        let arn = stack.attribute(role, "Arn").with_context(|| format!("{role} has no ARN"))?;
        Ok((arn.to_owned(), stack.inline_policies(role)?))
    };
    let identities: BTreeMap<Caller, (String, Vec<Value>)> = [
        (Caller::Publish, role_of(&bootstrap, "PublisherRole")?),
        (Caller::Checkin, role_of(&bootstrap, "CheckinRole")?),
        (Caller::Trigger, role_of(&bootstrap, "TriggerRole")?),
        (Caller::BuildCi, role_of(project_stack, "CiRole")?),
        (Caller::DeployCi, role_of(project_stack, "CiRole")?),
    ]
    .into_iter()
    .collect();
    let boundary = bootstrap.json_property("CiBoundary", &["PolicyDocument"])?;
    let artifact_bucket = bootstrap.json_property("ArtifactBucketPolicy", &["PolicyDocument"])?;
    let token_policy = bootstrap.json_property("GitLabTokenSecretPolicy", &["ResourcePolicy"])?;
    let project_bucket = project_stack.json_property("ArtifactBucketPolicy", &["PolicyDocument"])?;
    let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
    let project_bucket_arn = format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}");

    let failures = calls::denied(&calls, |caller, resource| {
        let (principal, identity) = &identities[&caller];
        let resource_policy = if resource == bucket_arn || resource.starts_with(&format!("{bucket_arn}/")) {
            Some(&artifact_bucket)
        } else if resource == project_bucket_arn || resource.starts_with(&format!("{project_bucket_arn}/")) {
            Some(&project_bucket)
        } else if resource == token {
            Some(&token_policy)
        } else {
            None
        };
        let ci = matches!(caller, Caller::BuildCi | Caller::DeployCi);
        let policies = lambda_testkit::iam::Policies {
            identity: identity.iter().collect(),
            resource: resource_policy,
            boundary: ci.then_some(&boundary),
        };
        (principal.clone(), policies)
    });
    ensure!(
        failures.is_empty(),
        "{} calls are not allowed to their callers' roles:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let mut per_caller: BTreeMap<Caller, usize> = BTreeMap::new();
    for call in &calls {
        *per_caller.entry(call.caller).or_default() += 1;
    }
    let silent: Vec<Caller> =
        Caller::ALL.into_iter().filter(|c| *c != Caller::FaultRun && !per_caller.contains_key(c)).collect();
    ensure!(silent.is_empty(), "no calls were recorded for {silent:?}: the proof would prove nothing for them");
    let counts: Vec<String> = per_caller.iter().map(|(caller, n)| format!("{caller:?} {n}")).collect();
    Ok(((), format!("{} calls, each allowed to its role ({})", calls.len(), counts.join(", "))))
}

async fn sagemaker(action: &str, body: Value) -> anyhow::Result<Value> {
    aws_json("sagemaker", format!("SageMaker.{action}"), body).await
}

/// `sagemaker` in the account of `access_key` (an assumed role's key acts in the role's account).
async fn sagemaker_as(access_key: &str, action: &str, body: Value) -> anyhow::Result<Value> {
    aws_json_as(access_key, "sagemaker", format!("SageMaker.{action}"), body).await
}

/// One call to an AWS JSON-protocol API in moto, in the development account. moto routes by the
/// credential scope of the Authorization header and does not check signatures.
async fn aws_json(service: &str, target: impl Into<String>, body: Value) -> anyhow::Result<Value> {
    aws_json_as("testing", service, target, body).await
}

async fn aws_json_as(access_key: &str, service: &str, target: impl Into<String>, body: Value) -> anyhow::Result<Value> {
    let target = target.into();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20261126/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let response = lambda_common::http_client()
        .post(moto().endpoint())
        .header("X-Amz-Target", &target)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("Authorization", authorization)
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("{target}: moto unreachable"))?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{target} answered {status}: {text}");
    Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
}

async fn s3_get(world: &World, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let object =
        world.s3.get_object().bucket(bucket).key(key).send().await.with_context(|| format!("s3://{bucket}/{key}"))?;
    Ok(object.body.collect().await?.into_bytes().to_vec())
}

fn zip_entries(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut entries = BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let name = entry.name()?.into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        entries.insert(name, content);
    }
    Ok(entries)
}
