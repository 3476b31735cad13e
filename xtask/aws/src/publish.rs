//! `cargo xtask publish`: uploads the artifacts under content-addressed keys and makes the
//! project template a version (provisioning artifact) of the Service Catalog product Studio
//! shows. Every check runs before the first write, no version is created before every object it
//! names is in S3, and a re-run with nothing new uploads nothing and creates nothing. The uploads
//! are in `upload`, the product and portfolio in `catalog`, the dry run's plan in `plan`.

mod catalog;
mod plan;
mod upload;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::Shell;

use self::upload::{Tally, Upload};
use crate::aws::{connect, find_product};
use crate::checks;
use xtask::deterministic_zip::sha256_hex;
use xtask::flags::{self, CiAccess};
use xtask::package::{self, Manifest};
use xtask::{project, template};

/// The tag that makes a Service Catalog product (or an S3 template) visible in SageMaker Studio.
const STUDIO_VISIBILITY: (&str, &str) = ("sagemaker:studio-visibility", "true");

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
            "--staging-account-id and --production-account-id need --ci-access web-identity: the deploy jobs assume the target accounts' roles with their id_tokens (docs/troubleshooting.md#target-accounts-need-web-identity)"
        );
    }
    // Never publish artifacts that differ from the tree: package (cheap when nothing changed),
    // or check that the given ones were packaged from this commit.
    let (dist, manifest) = match &args.dist {
        Some(dist) => (dist.clone(), verified_dist(sh, dist, args.allow_dirty)?),
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
/// SHA256SUMS, and was packaged from the commit checked out here without uncommitted changes
/// (unless `allow_dirty`: the version's description then says so).
fn verified_dist(sh: &Shell, dist: &Path, allow_dirty: bool) -> anyhow::Result<Manifest> {
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
        _ if manifest.dirty == Some(true) && !allow_dirty => {
            bail!(
                "{} was packaged from a tree with uncommitted changes: commit, then package, or pass --allow-dirty (docs/troubleshooting.md#artifacts-from-a-dirty-tree)",
                dist.display()
            )
        }
        _ => Ok(manifest),
    }
}

async fn publish(args: &flags::Publish, dist: &Path, manifest: &Manifest) -> anyhow::Result<Option<Published>> {
    let aws = connect(&args.aws).await?;
    if args.launch_role_arn.is_some() && args.portfolio_id.is_none() {
        bail!("--launch-role-arn needs --portfolio-id: a launch constraint belongs to a portfolio");
    }

    // Everything is checked before the first write.
    checks::check_products_use_role(&aws).await?;
    checks::check_bucket(&aws, &args.bucket).await?;
    if let Some(portfolio) = &args.portfolio_id {
        checks::check_portfolio(&aws, portfolio).await?;
    }
    if args.s3_template {
        checks::check_s3_template_route(&aws, &args.bucket).await?;
    }
    let product = find_product(&aws, &args.product_name).await?;
    let in_portfolio = match &args.portfolio_id {
        Some(portfolio) => Some(catalog::portfolio_state(&aws, args, portfolio, product.as_deref()).await?),
        None => None,
    };
    let uploads = artifact_uploads(args, dist, manifest)?;
    if args.dry_run {
        plan::print(&aws, args, manifest, &uploads, product.as_deref()).await?;
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

    // The template's marker always ends the description: it is how a later run knows the version.
    let description = match &args.description {
        Some(text) => format!("{text} ({})", template_marker(&template_sha)),
        None => describe_version(manifest, &template_sha),
    };
    let version = catalog::Version { name: version_name(args, &template_sha), description, template_url, template_sha };
    let added = catalog::add_version(&aws, args, product, &version).await?;
    if let (Some(portfolio), Some(state)) = (&args.portfolio_id, &in_portfolio) {
        catalog::converge_portfolio(&aws, args, portfolio, state, &added.product_id, &version.template_sha).await?;
    }
    if args.deprecate_previous {
        catalog::deprecate_others(&aws, &added.product_id, &added.version_id).await?;
    }
    let s3_template = match args.s3_template {
        true => Some(upload::put_s3_template(&aws, args, &template).await?),
        false => None,
    };
    Ok(Some(Published {
        product_id: added.product_id,
        product_name: args.product_name.clone(),
        version_id: added.version_id,
        version_name: added.version_name,
        version_created: added.created,
        template_url: version.template_url,
        uploaded,
        reused,
        bytes_uploaded,
        source_commit: manifest.source_commit.clone(),
        s3_template,
        aws_requests: aws.requests.sent(),
    }))
}

/// The four artifacts as content-addressed uploads, each checked against the manifest as it is read.
fn artifact_uploads(args: &flags::Publish, dist: &Path, manifest: &Manifest) -> anyhow::Result<Vec<Upload>> {
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
    Ok(uploads)
}

/// `--version-name`, else `<crate version>-<template sha256 prefix>`.
fn version_name(args: &flags::Publish, template_sha: &str) -> String {
    args.version_name.clone().unwrap_or_else(|| format!("{}-{}", env!("CARGO_PKG_VERSION"), &template_sha[..8]))
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
