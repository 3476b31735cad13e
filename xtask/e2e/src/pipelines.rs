//! GitLab's side of the run: the projects the checkin made, the approval that starts the deploy
//! pipeline through the template's rule and the packaged trigger, and the seed repositories' CI
//! jobs run with their projects' variables against moto.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use testkit::cfn::Stack;
use testkit::gitlab::ProjectState;
use testkit::moto::{ACCOUNT_ID, REGION, moto};
use testkit::runtime_api::{Outcome, RuntimeApi};
use xtask::{package, tools};

use crate::calls::Caller;
use crate::checkin::timeout_of;
use crate::provision::{lambda_env, zip_entries};
use crate::runner::Runner;
use crate::{GROUP_PATH, PROJECT_ID, PROJECT_NAME, World, accounts, aws_json, sagemaker};

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

/// The GitLab project the checkin reported for `role` (`Build` or `Deploy`) in its Data.
fn seeded_project(world: &World, stack: &Stack, role: &str) -> anyhow::Result<ProjectState> {
    let path = stack
        .attribute("SeedCodeCheckin", &format!("{role}ProjectPath"))
        .with_context(|| format!("the checkin's Data has no {role}ProjectPath"))?;
    world.gitlab.project(path).with_context(|| format!("GitLab has no project {path}"))
}

pub(crate) fn check_projects(world: &World, stack: &Stack) -> anyhow::Result<((), String)> {
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
pub(crate) async fn approve_and_trigger(
    world: &World,
    stack: &Stack,
    runner: &Runner,
) -> anyhow::Result<(Approved, String)> {
    let group = format!("{PROJECT_NAME}-{PROJECT_ID}");
    sagemaker("CreateModelPackageGroup", json!({ "ModelPackageGroupName": group })).await?;
    // The model file the training job would have written into the project bucket, which the
    // deploy jobs check against the bytes selected at approval.
    let (bucket, key) = (format!("sagemaker-project-{PROJECT_ID}"), format!("{group}/models/e2e/output/model.tar.gz"));
    let body = aws_sdk_s3::primitives::ByteStream::from_static(b"a trained model");
    world.s3.put_object().bucket(&bucket).key(&key).body(body).send().await.context("uploading the model file")?;
    let created = sagemaker(
        "CreateModelPackage",
        json!({
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [{
                    "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
                    "ModelDataUrl": format!("s3://{bucket}/{key}"),
                }],
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
    let events = |action: &str, body: Value| {
        let target = format!("AWSEvents.{action}");
        async move { aws_json("events", &target, body).await }
    };
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
    let outcome = api.try_invoke(event, timeout_of(stack, "TriggerFunction")).await?;
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
pub(crate) struct Approved {
    package_arn: String,
    pipeline_variables: BTreeMap<String, String>,
}

/// The model-build repository's `run-pipeline` job, as GitLab would run it on the seeded commit
/// with the project's CI/CD variables, against moto: it creates and starts the SageMaker Pipeline.
/// `PIPELINE_WAIT=false`, a variable the seed code documents: moto does not execute pipelines.
pub(crate) async fn build_job(world: &World, stack: &Stack) -> anyhow::Result<((), String)> {
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
pub(crate) async fn deploy_jobs(world: &World, stack: &Stack, approved: &Approved) -> anyhow::Result<((), String)> {
    let project = seeded_project(world, stack, "Deploy")?;
    let mut variables = ci_variables(&project);
    variables.extend(approved.pipeline_variables.clone());
    run_ci_job(world, &project, "build", &variables, Access::Key(Caller::DeployCi))?;
    let chosen: Value =
        serde_json::from_slice(&std::fs::read(checkout_dir(world, &project).join("build/model.json"))?)?;
    ensure!(chosen["ModelPackageArn"] == approved.package_arn.as_str(), "the build job chose {chosen}");
    ensure!(
        chosen["ModelData"].as_object().is_some_and(|files| files.len() == 1),
        "the build job pinned no model file: {chosen}"
    );
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
pub(crate) async fn deploy_jobs_to_targets(
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
            decision == testkit::iam::Decision::Allowed,
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
/// `access`, the Python packages from the seed code venv. Not gitlab-ci-local (which runs the
/// seed repositories' unit-test jobs in the tests): it would run that `before_script`, which
/// installs from PyPI and exchanges id_tokens with AWS's STS, neither of which the run may reach.
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
            .envs(tools::python_bytecode_env())
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
