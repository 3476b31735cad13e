//! The run's first steps: the stand-ins, the real `cargo xtask publish` against moto, and
//! CloudFormation's part, played: the published template resolved for a sample project and the
//! Lambdas' code fetched from where it points.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use testkit::cfn::Stack;
use testkit::gitlab::GitLabDouble;
use testkit::gitlab::tls::TestCa;
use testkit::moto::{ACCOUNT_ID, REGION, moto};
use xtask::flags::{self, Arch};
use xtask::{package, project, template};

use crate::calls::Caller;
use crate::{BUCKET, CA_BUNDLE_SECRET, GROUP_PATH, PROJECT_ID, PROJECT_NAME, TOKEN_SECRET, World, accounts, aws_json};

pub(crate) async fn start_stand_ins() -> anyhow::Result<(World, String)> {
    let token = format!("glpat-e2e-{}", std::process::id());
    let endpoint = moto().endpoint().to_owned();
    let ca = TestCa::new();
    let gitlab = GitLabDouble::start_tls(&token, &ca).await;
    let group_id = gitlab.add_group(GROUP_PATH);
    let s3 = aws_sdk_s3::Client::new(&moto().sdk_config());
    testkit::moto::create_artifact_bucket(&s3, BUCKET).await?;
    let iam = aws_sdk_iam::Client::new(&moto().sdk_config());
    testkit::moto::enable_sagemaker_projects(&iam).await?;
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
pub(crate) fn publish(args: &flags::E2e, world: &World) -> anyhow::Result<(String, String)> {
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
pub(crate) async fn provision(world: &World, template_url: &str, arch: Arch) -> anyhow::Result<(Stack, String)> {
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

pub(crate) fn lambda_env(stack: &Stack, function: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = stack.lambda_environment(function)?.into_iter().collect();
    env.extend(moto().lambda_env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let caller = if function == "TriggerFunction" { Caller::Trigger } else { Caller::Checkin };
    env.retain(|(key, _)| key != "AWS_ACCESS_KEY_ID");
    env.push(("AWS_ACCESS_KEY_ID".to_owned(), caller.access_key_id().to_owned()));
    // The ResponseSink stands in for S3's pre-signed URL on loopback.
    env.push((seedcode_checkin::config::LOOPBACK_RESPONSE_URL_SETTING.to_owned(), "true".to_owned()));
    Ok(env)
}

pub(crate) async fn s3_get(world: &World, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let object =
        world.s3.get_object().bucket(bucket).key(key).send().await.with_context(|| format!("s3://{bucket}/{key}"))?;
    Ok(object.body.collect().await?.into_bytes().to_vec())
}

pub(crate) fn zip_entries(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
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
