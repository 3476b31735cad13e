//! `cargo xtask publish`: uploads the artifacts under content-addressed keys and makes the
//! project template a version (provisioning artifact) of the Service Catalog product Studio
//! shows. Every check runs before the first write, no version is created before every object it
//! names is in S3, and a re-run with nothing new uploads nothing and creates nothing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_servicecatalog::types::{
    ProductType, ProductViewFilterBy, ProvisioningArtifactDetail, ProvisioningArtifactGuidance,
    ProvisioningArtifactProperties, ProvisioningArtifactType, Tag,
};
use base64::Engine as _;
use serde::Serialize;
use xshell::Shell;

use xtask::deterministic_zip::sha256_hex;
use xtask::flags::{self, CiAccess};
use xtask::package::{self, Manifest};
use xtask::{project, template};

/// The tag that makes a Service Catalog product (or an S3 template) visible in SageMaker Studio.
const STUDIO_VISIBILITY: (&str, &str) = ("sagemaker:studio-visibility", "true");

/// The origin SageMaker Studio reads S3-based templates from.
const STUDIO_ORIGIN: &str = "https://*.sagemaker.aws";

/// User metadata holding an object's SHA-256 (hex), so a re-run can tell it already has it.
const DIGEST_METADATA: &str = "sha256";

/// What publish did, written to `<dist>/publish.json` for CI.
#[derive(Debug, Serialize)]
pub struct Published {
    pub product_id: String,
    pub product_name: String,
    pub version_id: String,
    pub version_name: String,
    /// False when a version for exactly this template existed already.
    pub version_created: bool,
    pub template_url: String,
    pub uploaded: Vec<String>,
    pub reused: Vec<String>,
    pub bytes_uploaded: u64,
    pub source_commit: Option<String>,
    /// `s3://...` of the S3-based template, with `--s3-template`.
    pub s3_template: Option<String>,
    /// Requests sent to S3 and Service Catalog.
    pub aws_requests: u64,
}

pub fn run(sh: &Shell, args: &flags::Publish) -> anyhow::Result<()> {
    let target_accounts = args.staging_account_id.is_some() || args.production_account_id.is_some();
    if target_accounts && args.ci_access == CiAccess::AccessKey {
        bail!(
            "--staging-account-id and --production-account-id need --ci-access web-identity: the deploy jobs assume the target accounts' roles with their id_tokens"
        );
    }
    // Never publish artifacts that differ from the tree: package (cheap when nothing changed),
    // or check that the given ones were packaged from this commit.
    let (dist, manifest) = match &args.dist {
        Some(dist) => (dist.clone(), verified_dist(sh, dist)?),
        None => {
            if !args.allow_dirty && project::git_state(sh, &project::root()).dirty == Some(true) {
                bail!(
                    "the working tree has uncommitted changes, which no commit records: commit them, or pass --allow-dirty to publish them anyway (the version's description then says so)"
                );
            }
            let dist = project::target_dir().join("dist");
            let manifest = package::run(sh, &flags::Package { arch: args.arch, out: Some(dist.clone()) })?;
            (dist, manifest)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let published = runtime.block_on(publish(args, &dist, &manifest))?;
    if let Some(published) = published {
        let json = serde_json::to_string_pretty(&published)? + "\n";
        std::fs::write(dist.join("publish.json"), json).context("cannot write publish.json")?;
        if let Some(dotenv) = &args.dotenv {
            let lines = format!(
                "PRODUCT_ID={}\nVERSION_ID={}\nVERSION_NAME={}\n",
                published.product_id, published.version_id, published.version_name
            );
            std::fs::write(dotenv, lines).with_context(|| format!("cannot write {}", dotenv.display()))?;
        }
        print_summary(&published);
    }
    Ok(())
}

/// The manifest of packaged artifacts in `dist`, once it lists the four artifacts, agrees with
/// SHA256SUMS, and was packaged from the commit checked out here without uncommitted changes.
fn verified_dist(sh: &Shell, dist: &Path) -> anyhow::Result<Manifest> {
    let read = |name: &str| {
        std::fs::read(dist.join(name))
            .with_context(|| format!("{} has no {name}: run cargo xtask package", dist.display()))
    };
    let manifest: Manifest =
        serde_json::from_slice(&read("manifest.json")?).context("manifest.json is not a package manifest")?;
    let sums = String::from_utf8(read("SHA256SUMS")?).context("SHA256SUMS is not text")?;
    let mut expected: Vec<&str> = package::LAMBDAS.iter().chain(&package::SEEDCODE).map(|(_, zip)| *zip).collect();
    let mut listed: Vec<&str> = manifest.artifacts.iter().map(|a| a.file.as_str()).collect();
    expected.sort();
    listed.sort();
    anyhow::ensure!(listed == expected, "manifest.json lists {listed:?}, not the four artifacts {expected:?}");
    // Each file's bytes are checked against the manifest once, where publish reads them to upload.
    for artifact in &manifest.artifacts {
        let line = format!("{}  {}", artifact.sha256, artifact.file);
        anyhow::ensure!(sums.lines().any(|l| l == line), "{} does not match SHA256SUMS", artifact.file);
    }
    let here = project::git_state(sh, &project::root());
    match (&manifest.source_commit, &here.commit) {
        (Some(packaged), Some(checked_out)) if packaged != checked_out => {
            bail!(
                "{} was packaged from commit {packaged}, but {checked_out} is checked out: package this commit",
                dist.display()
            )
        }
        _ if manifest.dirty == Some(true) => {
            bail!("{} was packaged from a tree with uncommitted changes: commit, then package", dist.display())
        }
        _ => Ok(manifest),
    }
}

/// What the uploads did, for the summary.
#[derive(Default)]
struct Tally {
    uploaded: Vec<String>,
    reused: Vec<String>,
    bytes_uploaded: u64,
}

impl Tally {
    /// `put_once`, counted; returns the object's version ID.
    async fn put(&mut self, aws: &Aws, bucket: &str, upload: &Upload) -> anyhow::Result<Option<String>> {
        let (uploaded, version) = put_once(aws, bucket, upload).await.with_context(|| {
            format!("uploading {} failed; no version was created and the current one stays active: re-run cargo xtask publish (objects already uploaded are reused)", upload.name)
        })?;
        if uploaded {
            self.uploaded.push(upload.key.clone());
            self.bytes_uploaded += upload.bytes.len() as u64;
        } else {
            self.reused.push(upload.key.clone());
        }
        Ok(version)
    }
}

/// One object publish puts in S3.
struct Upload {
    name: String,
    key: String,
    bytes: Vec<u8>,
    sha256_hex: String,
}

/// Counts the requests both clients send, for the summary and the benchmark.
#[derive(Debug, Clone, Default)]
struct RequestCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl aws_sdk_s3::config::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _config: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) struct Aws {
    requests: RequestCounter,
    /// For the other services' clients (doctor).
    pub(crate) sdk: aws_config::SdkConfig,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) catalog: aws_sdk_servicecatalog::Client,
    pub(crate) region: String,
}

/// Credentials and region from the standard chain (environment, profile, web identity in
/// GitLab CI); `AWS_ENDPOINT_URL` points both clients at an emulator.
pub(crate) async fn connect(args: &flags::AwsArgs) -> anyhow::Result<Aws> {
    use aws_sdk_s3::config::ProvideCredentials;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &args.profile {
        // The profile's credentials, not the default chain's first find: with keys in the
        // environment, that chain would never reach the profile asked for.
        let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder().profile_name(profile).build();
        loader = loader.profile_name(profile).credentials_provider(credentials);
    }
    let sdk = loader.load().await;
    let region = sdk.region().context("no AWS region: pass --region or set AWS_REGION")?.to_string();
    let credentials = sdk.credentials_provider().context("no AWS credentials provider is configured")?;
    credentials.provide_credentials().await.map_err(|_| {
        anyhow::anyhow!(
            "no AWS credentials: pass --profile, set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or in GitLab CI set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE"
        )
    })?;
    // Emulators serve buckets by path, not by host name.
    let requests = RequestCounter::default();
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .interceptor(requests.clone())
        .build();
    let catalog = aws_sdk_servicecatalog::config::Builder::from(&sdk).interceptor(requests.clone()).build();
    Ok(Aws {
        requests,
        sdk: sdk.clone(),
        s3: aws_sdk_s3::Client::from_conf(s3),
        catalog: aws_sdk_servicecatalog::Client::from_conf(catalog),
        region,
    })
}

async fn publish(args: &flags::Publish, dist: &Path, manifest: &Manifest) -> anyhow::Result<Option<Published>> {
    let aws = connect(&args.aws).await?;
    if args.launch_role_arn.is_some() && args.portfolio_id.is_none() {
        bail!("--launch-role-arn needs --portfolio-id: a launch constraint belongs to a portfolio");
    }

    // Everything is checked before the first write.
    check_products_use_role(&aws).await?;
    check_bucket(&aws, &args.bucket).await?;
    if let Some(portfolio) = &args.portfolio_id {
        check_portfolio(&aws, portfolio).await?;
    }
    if args.s3_template {
        check_s3_template_route(&aws, &args.bucket).await?;
    }
    let product = find_product(&aws, &args.product_name).await?;
    let in_portfolio = match &args.portfolio_id {
        Some(portfolio) => Some(portfolio_state(&aws, args, portfolio, product.as_deref()).await?),
        None => None,
    };

    let mut uploads = Vec::new();
    for artifact in &manifest.artifacts {
        let bytes =
            std::fs::read(dist.join(&artifact.file)).with_context(|| format!("cannot read {}", artifact.file))?;
        anyhow::ensure!(
            sha256_hex(&bytes) == artifact.sha256,
            "{} does not match manifest.json: re-run cargo xtask package",
            artifact.file
        );
        let key = format!("{}/artifacts/{}/{}", args.prefix, artifact.sha256, artifact.file);
        uploads.push(Upload { name: artifact.file.clone(), key, bytes, sha256_hex: artifact.sha256.clone() });
    }
    let version_name_of = |template_sha: &str| {
        args.version_name.clone().unwrap_or_else(|| format!("{}-{}", env!("CARGO_PKG_VERSION"), &template_sha[..8]))
    };

    if args.dry_run {
        println!("dry run: nothing is uploaded or created");
        let mut versions = BTreeMap::new();
        for upload in &uploads {
            let state = object_state(&aws, &args.bucket, &upload.key, &upload.sha256_hex).await?;
            println!("  s3://{}/{}: {}", args.bucket, upload.key, state.describe());
            if let ObjectState::Same(Some(version)) = state {
                versions.insert(upload.name.clone(), version);
            }
        }
        // The template names the Lambdas' object versions: known only for zips already there.
        let template = render_template(args, manifest, &uploads, &versions).ok();
        let template_sha = template.as_deref().map(|t| sha256_hex(t.as_bytes()));
        let existing = match (&product, &template_sha) {
            (Some(product), Some(sha)) => find_version(&aws, product, sha).await?,
            _ => None,
        };
        match (&product, &existing, &template_sha) {
            (None, _, sha) => {
                let name = sha.as_deref().map(version_name_of).unwrap_or_else(|| "named after the template".into());
                println!("  would create product {:?} with version {name}", args.product_name)
            }
            (Some(product), _, None) => {
                println!("  would add a version to product {product}: the template names the new zips' object versions")
            }
            (Some(_), Some(found), _) if found.launchable => {
                println!("  up to date: version {} holds this template", found.name)
            }
            (Some(_), Some(found), _) => {
                println!("  would make version {} active again: it holds this template but is deprecated", found.name)
            }
            (Some(product), None, Some(sha)) => {
                println!("  would add version {} to product {product}", version_name_of(sha))
            }
        }
        if args.s3_template {
            println!("  would put the S3-based template at s3://{}/{}", args.bucket, s3_template_key(args));
        }
        return Ok(None);
    }

    // The zips go up first: the template pins each Lambda's code to the object version S3 gave it.
    let mut tally = Tally::default();
    let mut versions = BTreeMap::new();
    for upload in &uploads {
        if let Some(version) = tally.put(&aws, &args.bucket, upload).await? {
            versions.insert(upload.name.clone(), version);
        }
    }
    let rendered = render_template(args, manifest, &uploads, &versions)?;
    let template_sha = sha256_hex(rendered.as_bytes());
    let template_key = format!("{}/templates/{template_sha}/project.yml", args.prefix);
    let template_url = format!("https://{}.s3.{}.amazonaws.com/{template_key}", args.bucket, aws.region);
    let template = Upload {
        name: "project.yml".into(),
        key: template_key,
        bytes: rendered.into_bytes(),
        sha256_hex: template_sha.clone(),
    };
    tally.put(&aws, &args.bucket, &template).await?;
    let Tally { uploaded, reused, bytes_uploaded } = tally;

    let version_name = version_name_of(&template_sha);
    // The template's marker always ends the description: it is how a later run knows the version.
    let description = match &args.description {
        Some(text) => format!("{text} ({})", template_marker(&template_sha)),
        None => describe_version(manifest, &template_sha),
    };
    let existing_version = match &product {
        Some(product) => find_version(&aws, product, &template_sha).await?,
        None => None,
    };

    let properties = ProvisioningArtifactProperties::builder()
        .name(&version_name)
        .description(&description)
        .info("LoadTemplateFromURL", &template_url)
        .r#type(ProvisioningArtifactType::CloudFormationTemplate)
        .build();
    let (product_id, version_id, version_name, version_created) = match (product, existing_version) {
        (Some(product_id), Some(found)) => {
            if !found.launchable {
                make_launchable(&aws, &product_id, &found).await?;
            }
            println!("up to date: version {} of product {product_id} holds this template; nothing created", found.name);
            (product_id, found.id, found.name, false)
        }
        (Some(product_id), None) => {
            let created = aws
                .catalog
                .create_provisioning_artifact()
                .product_id(&product_id)
                .parameters(properties)
                .idempotency_token(idempotency_token("version", &product_id, &template_sha))
                .send()
                .await
                .map_err(|err| catalog_error("adding the version", err))?;
            let id = created
                .provisioning_artifact_detail()
                .and_then(|d| d.id())
                .context("CreateProvisioningArtifact returned no ID")?;
            (product_id, id.to_owned(), version_name, true)
        }
        (None, _) => {
            let (product_id, version_id) = create_product(&aws, args, properties, &template_sha).await?;
            (product_id, version_id, version_name, true)
        }
    };
    if let (Some(portfolio), Some(state)) = (&args.portfolio_id, &in_portfolio) {
        converge_portfolio(&aws, args, portfolio, state, &product_id, &template_sha).await?;
    }
    if args.deprecate_previous {
        deprecate_others(&aws, &product_id, &version_id).await?;
    }
    let s3_template = match args.s3_template {
        true => Some(put_s3_template(&aws, args, &template).await?),
        false => None,
    };
    Ok(Some(Published {
        product_id,
        product_name: args.product_name.clone(),
        version_id,
        version_name,
        version_created,
        template_url,
        uploaded,
        reused,
        bytes_uploaded,
        source_commit: manifest.source_commit.clone(),
        s3_template,
        aws_requests: aws.requests.0.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

/// The template with the keys just computed and the access settings of the flags.
fn render_template(
    args: &flags::Publish,
    manifest: &Manifest,
    uploads: &[Upload],
    versions: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let upload_of = |file: &str| uploads.iter().find(|u| u.name == file).context("an artifact is missing");
    let key_of = |file: &str| upload_of(file).map(|u| u.key.as_str());
    let sha256_of = |file: &str| upload_of(file).map(|u| u.sha256_hex.as_str());
    let version_of = |file: &str| {
        versions.get(file).map(String::as_str).with_context(|| {
            format!(
                "S3 gave {file} no object version: enable versioning on bucket {} (cfn/bootstrap.yml does)",
                args.bucket
            )
        })
    };
    let [(_, checkin), (_, trigger)] = package::LAMBDAS;
    let [(_, build), (_, deploy)] = package::SEEDCODE;
    let architecture =
        manifest.artifacts.iter().find(|a| a.file == checkin).map_or("arm64", |a| a.architecture.as_str());
    let (ci_access, ci_secret) = match args.ci_access {
        CiAccess::WebIdentity => ("WebIdentity", ""),
        CiAccess::AccessKey => ("AccessKey", args.ci_access_key_secret_name.as_str()),
    };
    let staging_account = args.staging_account_id.as_deref().unwrap_or_default();
    let production_account = args.production_account_id.as_deref().unwrap_or_default();
    // IAM names an OIDC provider by its issuer URL without the scheme.
    let url = args.gitlab_server_url.as_str();
    let oidc_provider = url.split_once("://").map_or(url, |(_, rest)| rest);
    let settings = [
        ("Artifacts", "Bucket", args.bucket.as_str()),
        ("Artifacts", "CheckinCodeKey", key_of(checkin)?),
        ("Artifacts", "TriggerCodeKey", key_of(trigger)?),
        ("Artifacts", "CheckinCodeVersion", version_of(checkin)?),
        ("Artifacts", "TriggerCodeVersion", version_of(trigger)?),
        ("Artifacts", "BuildSeedcodeKey", key_of(build)?),
        ("Artifacts", "DeploySeedcodeKey", key_of(deploy)?),
        ("Artifacts", "BuildSeedcodeSha256", sha256_of(build)?),
        ("Artifacts", "DeploySeedcodeSha256", sha256_of(deploy)?),
        ("Artifacts", "LambdaArchitecture", architecture),
        ("GitLab", "ServerUrl", url),
        ("Access", "GitLabTokenSecretName", args.token_secret_name.as_str()),
        ("GitLab", "OidcProvider", oidc_provider),
        ("Access", "GitLabCiAccess", ci_access),
        ("Access", "GitLabCiAccessKeySecretName", ci_secret),
        ("Access", "GitLabCaBundleSecretName", args.gitlab_ca_bundle_secret_name.as_str()),
        ("Alarms", "NotificationTopicArn", args.alarm_topic_arn.as_str()),
        ("Accounts", "StagingAccountId", staging_account),
        ("Accounts", "ProductionAccountId", production_account),
    ];
    let source = std::fs::read_to_string(project::root().join(template::PROJECT_TEMPLATE))?;
    template::render(&source, &settings)
}

/// A version's description: where it comes from, so anyone can trace it back.
fn describe_version(manifest: &Manifest, template_sha: &str) -> String {
    let commit = match (&manifest.source_commit, manifest.dirty) {
        (Some(commit), Some(true)) => format!("commit {commit} (with uncommitted changes)"),
        (Some(commit), _) => format!("commit {commit}"),
        (None, _) => "no git commit".to_owned(),
    };
    let artifacts: Vec<String> = manifest.artifacts.iter().map(|a| format!("{} {}", a.file, &a.sha256[..12])).collect();
    format!("{commit}; template sha256 {template_sha}; {}", artifacts.join(", "))
}

/// The marker by which a version is known to hold exactly this template.
fn template_marker(template_sha: &str) -> String {
    format!("template sha256 {template_sha}")
}

/// Stable per product and content, so a retried call never makes a second product or version.
fn idempotency_token(what: &str, scope: &str, template_sha: &str) -> String {
    let scope_hash = sha256_hex(scope.as_bytes());
    format!("{what}-{}-{}", &scope_hash[..16], &template_sha[..32])
}

/// The role SageMaker makes when project templates are enabled for a Studio domain; projects'
/// pipelines and endpoints run as it, so a product published without it fails at the first
/// pipeline, long after Create project.
pub(crate) const PRODUCTS_USE_ROLE: &str = "AmazonSageMakerServiceCatalogProductsUseRole";

pub(crate) fn products_use_role_missing() -> String {
    format!(
        "role service-role/{PRODUCTS_USE_ROLE}, which projects' pipelines and endpoints run as, does not exist: enable SageMaker project templates for the Studio domain (README, \"Set up an account\", step 1)"
    )
}

/// Whether SageMaker's products role exists: `Ok(false)` when IAM says there is none.
pub(crate) async fn products_use_role_exists(
    iam: &aws_sdk_iam::Client,
) -> Result<bool, aws_sdk_iam::error::SdkError<aws_sdk_iam::operation::get_role::GetRoleError>> {
    match iam.get_role().role_name(PRODUCTS_USE_ROLE).send().await {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(false),
        Err(err) => Err(err),
    }
}

async fn check_products_use_role(aws: &Aws) -> anyhow::Result<()> {
    match products_use_role_exists(&aws_sdk_iam::Client::new(&aws.sdk)).await {
        Ok(true) => Ok(()),
        Ok(false) => bail!(products_use_role_missing()),
        // An identity without iam:GetRole (a publisher role of an older bootstrap) can still publish.
        Err(err) => {
            eprintln!(
                "warning: cannot check that role {PRODUCTS_USE_ROLE} exists ({}); `cargo xtask doctor` checks it",
                lambda_common::describe_sdk_error(&err)
            );
            Ok(())
        }
    }
}

async fn check_bucket(aws: &Aws, bucket: &str) -> anyhow::Result<()> {
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(head) => match head.bucket_region() {
            Some(region) if region != aws.region => {
                bail!("bucket {bucket} is in {region}, not {}: pass --region {region}", aws.region)
            }
            _ => {
                // The template pins each Lambda's code to an object version: without versions, a
                // later write to the same key would change what new projects run.
                let versioning = aws.s3.get_bucket_versioning().bucket(bucket).send().await.map_err(|err| {
                    anyhow::anyhow!(
                        "cannot read the versioning of bucket {bucket}: {}",
                        lambda_common::describe_sdk_error(&err)
                    )
                })?;
                if versioning.status() != Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled) {
                    bail!(
                        "bucket {bucket} does not keep object versions, to which the template pins the Lambdas' code: enable versioning on it (cfn/bootstrap.yml's bucket has it)"
                    );
                }
                Ok(())
            }
        },
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let region = err.raw_response().and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_owned);
            match (status, region) {
                (Some(301), Some(region)) => {
                    bail!("bucket {bucket} is in {region}, not {}: pass --region {region}", aws.region)
                }
                (Some(404), _) => bail!(
                    "bucket {bucket} does not exist: deploy cfn/bootstrap.yml (its ArtifactBucketName output) or create the bucket"
                ),
                (Some(403), _) => bail!(
                    "access to bucket {bucket} is denied: the publishing identity needs s3:ListBucket, s3:GetObject and s3:PutObject on it"
                ),
                _ => bail!("cannot reach bucket {bucket}: {}", lambda_common::describe_sdk_error(&err)),
            }
        }
    }
}

async fn check_portfolio(aws: &Aws, portfolio: &str) -> anyhow::Result<()> {
    aws.catalog.describe_portfolio().id(portfolio).send().await.map(drop).map_err(|err| match err.code() {
        Some("ResourceNotFoundException") => {
            anyhow::anyhow!("portfolio {portfolio} does not exist in {}: check --portfolio-id (cfn/bootstrap.yml's PortfolioId output)", aws.region)
        }
        _ => catalog_error("reading the portfolio", err),
    })
}

/// The ID of the one product named `name`, if any.
pub(crate) async fn find_product(aws: &Aws, name: &str) -> anyhow::Result<Option<String>> {
    let mut ids = Vec::new();
    let mut pages = aws
        .catalog
        .search_products_as_admin()
        .filters(ProductViewFilterBy::FullTextSearch, vec![name.to_owned()])
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| catalog_error("searching for the product", err))?;
        for detail in page.product_view_details() {
            if let Some(summary) = detail.product_view_summary().filter(|s| s.name() == Some(name)) {
                ids.push(summary.product_id().unwrap_or_default().to_owned());
            }
        }
    }
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => bail!(
            "{} Service Catalog products are named {name:?} ({}): delete or rename all but one, or choose another --product-name",
            ids.len(),
            ids.join(", ")
        ),
    }
}

/// Every version (provisioning artifact) of `product`.
pub(crate) async fn list_versions(aws: &Aws, product: &str) -> anyhow::Result<Vec<ProvisioningArtifactDetail>> {
    let listed = aws
        .catalog
        .list_provisioning_artifacts()
        .product_id(product)
        .send()
        .await
        .map_err(|err| catalog_error("listing the product's versions", err))?;
    Ok(listed.provisioning_artifact_details().to_vec())
}

/// The version of `product` that holds exactly this template: (ID, name).
/// A version that holds exactly the template being published.
struct FoundVersion {
    id: String,
    name: String,
    /// False when deprecated or inactive: Studio cannot create projects from it.
    launchable: bool,
}

async fn find_version(aws: &Aws, product: &str, template_sha: &str) -> anyhow::Result<Option<FoundVersion>> {
    let marker = template_marker(template_sha);
    let versions = list_versions(aws, product).await?;
    Ok(versions.into_iter().find(|a| a.description().is_some_and(|d| d.contains(&marker))).map(|a| FoundVersion {
        id: a.id().unwrap_or_default().to_owned(),
        name: a.name().unwrap_or_default().to_owned(),
        launchable: a.active() != Some(false) && a.guidance() != Some(&ProvisioningArtifactGuidance::Deprecated),
    }))
}

/// Makes a deprecated or inactive version launchable again: reproducible builds make
/// re-publishing an earlier tree give an earlier version's template, and that version must serve.
async fn make_launchable(aws: &Aws, product: &str, version: &FoundVersion) -> anyhow::Result<()> {
    aws.catalog
        .update_provisioning_artifact()
        .product_id(product)
        .provisioning_artifact_id(&version.id)
        .active(true)
        .guidance(ProvisioningArtifactGuidance::Default)
        .send()
        .await
        .map_err(|err| catalog_error("making the version of this template active again", err))?;
    println!(
        "version {} ({}) holds this template and was deprecated or inactive: active again",
        version.name, version.id
    );
    Ok(())
}

enum ObjectState {
    Absent,
    /// With its version ID (the bucket keeps versions).
    Same(Option<String>),
    Different,
}

impl ObjectState {
    fn describe(&self) -> &'static str {
        match self {
            ObjectState::Absent => "would upload",
            ObjectState::Same(_) => "already there, reused",
            ObjectState::Different => "EXISTS WITH OTHER BYTES: publish would refuse",
        }
    }
}

fn base64_of_hex(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("a hex digest")).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn object_state(aws: &Aws, bucket: &str, key: &str, sha256_hex: &str) -> anyhow::Result<ObjectState> {
    let head = aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await;
    match head {
        Ok(head) => {
            // S3's own checksum, which it verified on upload and which no writer can set apart
            // from the bytes; user metadata could claim any digest.
            let same = head.checksum_sha256() == Some(base64_of_hex(sha256_hex).as_str());
            Ok(if same { ObjectState::Same(head.version_id().map(str::to_owned)) } else { ObjectState::Different })
        }
        Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(ObjectState::Absent),
        Err(err) => bail!("cannot read s3://{bucket}/{key}: {}", lambda_common::describe_sdk_error(&err)),
    }
}

/// Uploads `upload` unless the same bytes are there; refuses to replace different bytes.
/// Returns whether it uploaded, and the object's version ID.
async fn put_once(aws: &Aws, bucket: &str, upload: &Upload) -> anyhow::Result<(bool, Option<String>)> {
    match object_state(aws, bucket, &upload.key, &upload.sha256_hex).await? {
        ObjectState::Same(version) => return Ok((false, version)),
        ObjectState::Different => bail!(
            "s3://{bucket}/{} exists with other bytes; content-addressed keys are never overwritten: remove it if it is corrupt",
            upload.key
        ),
        ObjectState::Absent => {}
    }
    let version =
        put_object(aws, bucket, &upload.key, upload).await.map_err(|err| anyhow::anyhow!("S3 refused it: {err}"))?;
    Ok((true, version))
}

/// Where the S3-based template goes: one stable key per product, replaced by each publish (the
/// bucket keeps older ones as object versions).
fn s3_template_key(args: &flags::Publish) -> String {
    let slug: String = args
        .product_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("{}/studio-templates/{slug}.yml", args.prefix)
}

/// Puts the template where SageMaker's S3-based project templates live, tagged for Studio;
/// reports the bucket's CORS rule and the domain tag Studio needs. Returns its `s3://` URL.
async fn put_s3_template(aws: &Aws, args: &flags::Publish, template: &Upload) -> anyhow::Result<String> {
    use aws_sdk_s3::types::{Tag as S3Tag, Tagging};
    let key = s3_template_key(args);
    put_object(aws, &args.bucket, &key, template)
        .await
        .map_err(|err| anyhow::anyhow!("uploading the S3-based template failed: {err}"))?;
    let tag = S3Tag::builder().key(STUDIO_VISIBILITY.0).value(STUDIO_VISIBILITY.1).build()?;
    aws.s3
        .put_object_tagging()
        .bucket(&args.bucket)
        .key(&key)
        .tagging(Tagging::builder().tag_set(tag).build()?)
        .send()
        .await
        .map_err(|err| {
            anyhow::anyhow!("tagging the S3-based template failed: {}", lambda_common::describe_sdk_error(&err))
        })?;

    let location = format!("s3://{}/{}/studio-templates/", args.bucket, args.prefix);
    println!("S3-based template  s3://{}/{key} (tagged {}={})", args.bucket, STUDIO_VISIBILITY.0, STUDIO_VISIBILITY.1);
    println!("  tag the Studio domain with sagemaker:projectS3TemplatesLocation={location}");
    Ok(format!("s3://{}/{key}", args.bucket))
}

/// What Studio needs of the bucket before it can offer an S3-based template (SageMaker developer
/// guide, S3-based project templates; `cfn/bootstrap.yml` with `S3Templates=Enabled` sets both):
/// a CORS rule letting Studio's pages GET from it, and a bucket policy letting a Studio role read
/// the template's tags. Checked before anything is written; each missing piece is named.
pub(crate) async fn check_s3_template_route(aws: &Aws, bucket: &str) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let cors = aws.s3.get_bucket_cors().bucket(bucket).send().await;
    let studio_may_get = match &cors {
        Ok(cors) => cors.cors_rules().iter().any(|rule| {
            rule.allowed_origins().iter().any(|o| o == STUDIO_ORIGIN)
                && rule.allowed_methods().iter().any(|m| m == "GET")
        }),
        Err(err) if err.code() == Some("NoSuchCORSConfiguration") => false,
        Err(err) => bail!("cannot read the CORS rules of bucket {bucket}: {}", lambda_common::describe_sdk_error(err)),
    };
    if !studio_may_get {
        missing.push(format!("a CORS rule allowing GET from {STUDIO_ORIGIN}"));
    }
    let policy = match aws.s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(policy) => policy.policy.unwrap_or_default(),
        Err(err) if err.code() == Some("NoSuchBucketPolicy") => String::new(),
        Err(err) => bail!("cannot read the policy of bucket {bucket}: {}", lambda_common::describe_sdk_error(&err)),
    };
    if !grants_tag_reads(&policy) {
        missing.push("a bucket policy statement allowing a Studio role s3:GetObjectTagging".to_owned());
    }
    if !missing.is_empty() {
        bail!(
            "bucket {bucket} is not ready for S3-based templates; it lacks {}: deploy cfn/bootstrap.yml with S3Templates=Enabled and StudioExecutionRoleArn",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// A policy's `Allow` statements; IAM accepts `Statement` as one object or a list.
pub(crate) fn allow_statements(policy: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.iter().collect(),
        single => vec![single],
    };
    statements.into_iter().filter(|statement| statement["Effect"] == "Allow")
}

/// Whether a bucket policy has an Allow naming `s3:GetObjectTagging` (or a wildcard covering it).
fn grants_tag_reads(policy: &str) -> bool {
    let Ok(policy) = serde_json::from_str::<serde_json::Value>(policy) else { return false };
    allow_statements(&policy).any(|statement| {
        let actions = match &statement["Action"] {
            serde_json::Value::String(one) => vec![one.clone()],
            serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        actions
            .iter()
            .any(|a| matches!(a.to_ascii_lowercase().as_str(), "s3:getobjecttagging" | "s3:getobject*" | "s3:*" | "*"))
    })
}

/// Puts `upload`'s bytes at `key`, encrypted, with the SHA-256 S3 verifies them against and a
/// copy of it as metadata. Returns the object's version ID.
async fn put_object(aws: &Aws, bucket: &str, key: &str, upload: &Upload) -> Result<Option<String>, String> {
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(upload.bytes.clone()))
        // The algorithm too, not only the value: S3 accepts either, and moto stores (and later
        // returns) a checksum only when the algorithm is named.
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .checksum_sha256(base64_of_hex(&upload.sha256_hex))
        .metadata(DIGEST_METADATA, &upload.sha256_hex)
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .send()
        .await
        .map(|put| put.version_id)
        .map_err(|err| lambda_common::describe_sdk_error(&err))
}

async fn create_product(
    aws: &Aws,
    args: &flags::Publish,
    first_version: ProvisioningArtifactProperties,
    template_sha: &str,
) -> anyhow::Result<(String, String)> {
    let created = aws
        .catalog
        .create_product()
        .name(&args.product_name)
        .owner("Platform team")
        .description("MLOps with GitLab: model build and deploy repositories in GitLab, pipelines in GitLab CI")
        .product_type(ProductType::CloudFormationTemplate)
        .tags(Tag::builder().key(STUDIO_VISIBILITY.0).value(STUDIO_VISIBILITY.1).build()?)
        .provisioning_artifact_parameters(first_version)
        .idempotency_token(idempotency_token("product", &args.product_name, template_sha))
        .send()
        .await
        .map_err(|err| catalog_error("creating the product", err))?;
    let product_id = created
        .product_view_detail()
        .and_then(|d| d.product_view_summary())
        .and_then(|s| s.product_id())
        .context("CreateProduct returned no product ID")?
        .to_owned();
    let version_id = created
        .provisioning_artifact_detail()
        .and_then(|d| d.id())
        .context("CreateProduct returned no version ID")?
        .to_owned();
    Ok((product_id, version_id))
}

/// Whether the product is in the portfolio and launched with a role there. Studio lists only
/// products of portfolios shared with it, and without a LAUNCH constraint a project would be
/// provisioned with the Studio user's own rights.
pub(crate) struct PortfolioState {
    pub(crate) associated: bool,
    pub(crate) launch_constraint: bool,
}

/// Read before anything is written: a portfolio that would end without a launch constraint is
/// refused up front.
async fn portfolio_state(
    aws: &Aws,
    args: &flags::Publish,
    portfolio: &str,
    product: Option<&str>,
) -> anyhow::Result<PortfolioState> {
    let state = match product {
        None => PortfolioState { associated: false, launch_constraint: false },
        Some(product) => read_portfolio_state(aws, portfolio, product).await?,
    };
    if !state.launch_constraint && args.launch_role_arn.is_none() {
        bail!(
            "the product has no launch constraint in portfolio {portfolio}, so projects would be provisioned with each Studio user's own rights: pass --launch-role-arn (cfn/bootstrap.yml's LaunchRoleArn)"
        );
    }
    Ok(state)
}

pub(crate) async fn read_portfolio_state(aws: &Aws, portfolio: &str, product: &str) -> anyhow::Result<PortfolioState> {
    let listed = aws.catalog.list_portfolios_for_product().product_id(product).send().await;
    let listed = listed.map_err(|err| catalog_error("listing the product's portfolios", err))?;
    let constraints =
        aws.catalog.list_constraints_for_portfolio().portfolio_id(portfolio).product_id(product).send().await;
    let constraints = constraints.map_err(|err| catalog_error("listing the portfolio's constraints", err))?;
    Ok(PortfolioState {
        associated: listed.portfolio_details().iter().any(|p| p.id() == Some(portfolio)),
        launch_constraint: constraints.constraint_details().iter().any(|c| c.r#type() == Some("LAUNCH")),
    })
}

/// Adds what the portfolio lacks: the product, its launch constraint. Every run, so a first
/// publish that failed half-way, or one without --portfolio-id, is repaired.
async fn converge_portfolio(
    aws: &Aws,
    args: &flags::Publish,
    portfolio: &str,
    state: &PortfolioState,
    product_id: &str,
    template_sha: &str,
) -> anyhow::Result<()> {
    if !state.associated {
        aws.catalog
            .associate_product_with_portfolio()
            .product_id(product_id)
            .portfolio_id(portfolio)
            .send()
            .await
            .map_err(|err| catalog_error("adding the product to the portfolio", err))?;
        println!("product {product_id} added to portfolio {portfolio}");
    }
    if let (false, Some(role)) = (state.launch_constraint, &args.launch_role_arn) {
        aws.catalog
            .create_constraint()
            .portfolio_id(portfolio)
            .product_id(product_id)
            .r#type("LAUNCH")
            .parameters(serde_json::json!({ "RoleArn": role }).to_string())
            .idempotency_token(idempotency_token("launch", product_id, template_sha))
            .send()
            .await
            .map_err(|err| catalog_error("adding the launch constraint", err))?;
        println!("launch constraint {role} added in portfolio {portfolio}");
    }
    Ok(())
}

/// Marks every other version DEPRECATED: Studio then offers only the new one for new projects.
async fn deprecate_others(aws: &Aws, product: &str, keep: &str) -> anyhow::Result<()> {
    for version in list_versions(aws, product).await? {
        let id = version.id().unwrap_or_default();
        if id == keep || version.guidance() == Some(&ProvisioningArtifactGuidance::Deprecated) {
            continue;
        }
        aws.catalog
            .update_provisioning_artifact()
            .product_id(product)
            .provisioning_artifact_id(id)
            .guidance(ProvisioningArtifactGuidance::Deprecated)
            .send()
            .await
            .map_err(|err| catalog_error("deprecating an older version", err))?;
        println!("deprecated version {} ({id})", version.name().unwrap_or_default());
    }
    Ok(())
}

pub(crate) fn catalog_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    doing: &str,
    err: aws_sdk_servicecatalog::error::SdkError<E, R>,
) -> anyhow::Error {
    match err.code() {
        Some("AccessDeniedException") => anyhow::anyhow!(
            "{doing} was denied: the publishing identity needs Service Catalog admin rights (servicecatalog:*Product*, *ProvisioningArtifact*, *Portfolio*, CreateConstraint)"
        ),
        _ => anyhow::anyhow!("{doing} failed: {}", lambda_common::describe_sdk_error(&err)),
    }
}

fn print_summary(published: &Published) {
    let made = if published.version_created { "created" } else { "up to date" };
    println!("product   {} ({})", published.product_name, published.product_id);
    println!("version   {} ({}), {made}", published.version_name, published.version_id);
    println!("template  {}", published.template_url);
    println!(
        "uploaded  {} objects, {} bytes; reused {}",
        published.uploaded.len(),
        published.bytes_uploaded,
        published.reused.len()
    );
}
