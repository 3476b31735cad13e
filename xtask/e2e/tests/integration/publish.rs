//! `cargo xtask publish` against moto in server mode, with the Service Catalog operations moto
//! lacks added by testkit/src/moto_servicecatalog.py. The artifacts are small stand-ins
//! in a dist folder (`--dist`), so no test cross-compiles.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::repo_root;
use aws_sdk_servicecatalog::types::ProvisioningArtifactGuidance;
use serde_json::Value;
use testkit::moto::{REGION, moto};
use xtask::deterministic_zip::sha256_hex;

const ZIPS: [&str; 4] = [
    "lambda-seedcode-checkin-gitlab.zip",
    "lambda-gitlab-pipeline-trigger.zip",
    "mlops-gitlab-project-seedcode-model-build.zip",
    "mlops-gitlab-project-seedcode-model-deploy.zip",
];

fn head_commit() -> String {
    common::run_ok(Command::new("git").arg("-C").arg(repo_root()).args(["rev-parse", "HEAD"])).trim().to_owned()
}

/// A dist folder as `cargo xtask package` writes it, with `content(zip)` as each zip's bytes.
fn write_dist(dir: &Path, content: impl Fn(&str) -> Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut sums = String::new();
    let mut artifacts = Vec::new();
    for zip in ZIPS {
        let bytes = content(zip);
        let digest = sha256_hex(&bytes);
        std::fs::write(dir.join(zip), &bytes).unwrap();
        sums.push_str(&format!("{digest}  {zip}\n"));
        let architecture = if zip.starts_with("lambda-") { "arm64" } else { "any" };
        artifacts.push(serde_json::json!({ "file": zip, "sha256": digest, "size": bytes.len(), "source": "test",
            "architecture": architecture, "input_sha256": digest }));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    let manifest = serde_json::json!({ "source_commit": head_commit(), "dirty": false, "source_date_epoch": 315532800, "artifacts": artifacts });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

struct Stand {
    bucket: String,
    product: String,
    dist: PathBuf,
    _dir: tempfile::TempDir,
    _products_role: tokio::sync::RwLockReadGuard<'static, ()>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

async fn stand() -> Stand {
    // Before the role is made: the doctor test must not see it come back while it is away.
    let products_role = common::products_role().read().await;
    let n = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let bucket = format!("templates-{n}");
    testkit::moto::create_artifact_bucket(&s3(), &bucket).await.unwrap();
    testkit::moto::enable_sagemaker_projects(&aws_sdk_iam::Client::new(&moto().sdk_config())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    write_dist(&dist, |zip| format!("{zip} v1").into_bytes());
    Stand { bucket, product: format!("MLOps with GitLab {n}"), dist, _dir: dir, _products_role: products_role }
}

fn s3() -> aws_sdk_s3::Client {
    let sdk = moto().sdk_config();
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build())
}

fn catalog() -> aws_sdk_servicecatalog::Client {
    aws_sdk_servicecatalog::Client::new(&moto().sdk_config())
}

impl Stand {
    fn publish(&self, extra: &[&str]) -> Output {
        self.publish_to(&self.bucket, extra)
    }

    fn publish_to(&self, bucket: &str, extra: &[&str]) -> Output {
        let dist = self.dist.to_str().unwrap();
        let mut args =
            vec!["publish", "--bucket", bucket, "--region", REGION, "--product-name", &self.product, "--dist", dist];
        args.extend(extra);
        self.xtask(&args)
    }

    /// The xtask binary with moto's endpoint and test credentials in its environment.
    fn xtask(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"));
        command.args(args);
        for (key, value) in moto().lambda_env() {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    fn publish_ok(&self, extra: &[&str]) -> Value {
        let output = self.publish(extra);
        assert!(output.status.success(), "publish failed:\n{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&std::fs::read(self.dist.join("publish.json")).unwrap()).unwrap()
    }

    async fn keys(&self) -> Vec<String> {
        let listed = s3().list_objects_v2().bucket(&self.bucket).send().await.unwrap();
        let mut keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
        keys.sort();
        keys
    }
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "publish should have failed:\n{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const LAUNCH_ROLE: &str = "arn:aws:iam::123456789012:role/sagemaker-gitlab-project-launch-eu-west-1";

/// A new Service Catalog portfolio's ID; `token` keeps a retried call from making two.
async fn new_portfolio(token: &str) -> String {
    let created = catalog()
        .create_portfolio()
        .display_name("templates")
        .provider_name("platform")
        .idempotency_token(token)
        .send()
        .await
        .unwrap();
    created.portfolio_detail().unwrap().id().unwrap().to_owned()
}

async fn versions(product_id: &str) -> Vec<(String, Option<ProvisioningArtifactGuidance>)> {
    let listed = catalog().list_provisioning_artifacts().product_id(product_id).send().await.unwrap();
    listed
        .provisioning_artifact_details()
        .iter()
        .map(|a| (a.name().unwrap_or_default().to_owned(), a.guidance().cloned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_publish_creates_the_product_and_every_referenced_object_exists() {
    let stand = stand().await;
    let published = stand.publish_ok(&["--gitlab-server-url", "https://gitlab.internal.example/gitlab/"]);
    assert_eq!(published["version_created"], true);
    assert_eq!(published["uploaded"].as_array().unwrap().len(), 5, "{published}");
    assert_eq!(published["source_commit"], head_commit());
    let product_id = published["product_id"].as_str().unwrap();
    assert_eq!(versions(product_id).await.len(), 1);
    let version_name = published["version_name"].as_str().unwrap();
    assert!(version_name.starts_with(env!("CARGO_PKG_VERSION")), "{version_name}");

    // The template in S3 names only objects that exist, and carries this bucket.
    let url = published["template_url"].as_str().unwrap();
    let key = url.split(".amazonaws.com/").nth(1).unwrap();
    let object = s3().get_object().bucket(&stand.bucket).key(key).send().await.unwrap();
    let template: serde_yaml::Value =
        serde_yaml::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    let artifacts = &template["Mappings"]["Publish"]["Artifacts"];
    assert_eq!(artifacts["Bucket"], stand.bucket.as_str());
    // The platform team's GitLab, not a Studio form field.
    assert_eq!(template["Mappings"]["Publish"]["GitLab"]["ServerUrl"], "https://gitlab.internal.example/gitlab");
    // Each project's CI role trusts the IAM OIDC provider named after that server's issuer URL.
    assert_eq!(template["Mappings"]["Publish"]["GitLab"]["OidcProvider"], "gitlab.internal.example/gitlab");
    assert_eq!(template["Mappings"]["Publish"]["Access"]["GitLabCiAccess"], "WebIdentity");
    // Each Lambda's code is pinned to the object version publish uploaded.
    for (key_slot, version_slot) in [("CheckinCodeKey", "CheckinCodeVersion"), ("TriggerCodeKey", "TriggerCodeVersion")]
    {
        let key = artifacts[key_slot].as_str().unwrap();
        let head = s3().head_object().bucket(&stand.bucket).key(key).send().await.unwrap();
        assert_eq!(artifacts[version_slot].as_str(), head.version_id(), "{version_slot}");
    }
    for slot in ["CheckinCodeKey", "TriggerCodeKey", "BuildSeedcodeKey", "DeploySeedcodeKey"] {
        let key = artifacts[slot].as_str().unwrap();
        let head = s3().head_object().bucket(&stand.bucket).key(key).send().await;
        assert!(head.is_ok(), "{slot}: s3://{}/{key} is missing", stand.bucket);
        assert_eq!(head.unwrap().server_side_encryption().map(|e| e.as_str()), Some("AES256"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn republishing_the_same_content_uploads_and_creates_nothing() {
    let stand = stand().await;
    let first = stand.publish_ok(&[]);
    let keys = stand.keys().await;
    let again = stand.publish_ok(&[]);
    assert_eq!(again["version_created"], false);
    assert_eq!(again["bytes_uploaded"], 0);
    assert_eq!(again["uploaded"].as_array().unwrap().len(), 0);
    assert_eq!(again["version_id"], first["version_id"]);
    assert_eq!(stand.keys().await, keys);
    assert_eq!(versions(first["product_id"].as_str().unwrap()).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_seed_code_uploads_it_and_the_template_and_adds_a_version() {
    let stand = stand().await;
    let first = stand.publish_ok(&[]);
    write_dist(&stand.dist, |zip| {
        let version = if zip.contains("model-build") { "v2" } else { "v1" };
        format!("{zip} {version}").into_bytes()
    });
    let dotenv = stand.dist.join("publish.env");
    let second = stand.publish_ok(&["--deprecate-previous", "--dotenv", dotenv.to_str().unwrap()]);
    let expected = format!(
        "PRODUCT_ID={}\nVERSION_ID={}\nVERSION_NAME={}\n",
        second["product_id"].as_str().unwrap(),
        second["version_id"].as_str().unwrap(),
        second["version_name"].as_str().unwrap()
    );
    assert_eq!(std::fs::read_to_string(&dotenv).unwrap(), expected);
    assert_eq!(second["version_created"], true);
    assert_eq!(second["product_id"], first["product_id"]);
    let uploaded: Vec<&str> = second["uploaded"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(uploaded.len(), 2, "{uploaded:?}");
    assert!(uploaded.iter().any(|k| k.ends_with("mlops-gitlab-project-seedcode-model-build.zip")));
    assert!(uploaded.iter().any(|k| k.ends_with("/project.yml")));
    let guidance: Vec<Option<ProvisioningArtifactGuidance>> =
        versions(first["product_id"].as_str().unwrap()).await.into_iter().map(|(_, g)| g).collect();
    assert_eq!(guidance, [Some(ProvisioningArtifactGuidance::Deprecated), Some(ProvisioningArtifactGuidance::Default)]);

    let listing = stand.xtask(&["versions", "--product-name", &stand.product, "--region", REGION]);
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let listing = String::from_utf8_lossy(&listing.stdout);
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains(" pa-")).collect();
    assert_eq!(rows.len(), 2, "{listing}");
    assert!(rows[0].contains("deprecated") && rows[1].contains("active"), "{listing}");
    assert!(listing.contains(second["template_url"].as_str().unwrap()), "{listing}");
    assert!(listing.contains("mlops-gitlab-project-seedcode-model-build.zip"), "{listing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_an_earlier_tree_again_makes_its_version_launchable() {
    let stand = stand().await;
    let first = stand.publish_ok(&[]);
    write_dist(&stand.dist, |zip| format!("{zip} v2").into_bytes());
    stand.publish_ok(&["--deprecate-previous"]);
    // A revert: reproducible builds give the first version's template again.
    write_dist(&stand.dist, |zip| format!("{zip} v1").into_bytes());
    let again = stand.publish_ok(&["--deprecate-previous"]);
    assert_eq!(again["version_created"], false);
    assert_eq!(again["version_id"], first["version_id"]);
    let product = first["product_id"].as_str().unwrap();
    let guidance: Vec<Option<ProvisioningArtifactGuidance>> =
        versions(product).await.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        guidance,
        [Some(ProvisioningArtifactGuidance::Default), Some(ProvisioningArtifactGuidance::Deprecated)],
        "the reverted version serves, the other is deprecated: never none launchable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_description_still_finds_the_version_next_time() {
    let stand = stand().await;
    let first = stand.publish_ok(&["--description", "Release 2026.11 for the ML platform"]);
    let again = stand.publish_ok(&["--description", "Release 2026.11 for the ML platform"]);
    assert_eq!(again["version_created"], false, "a custom description made a duplicate version");
    assert_eq!(again["version_id"], first["version_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_creates_no_version() {
    let stand = stand().await;
    // Someone put other bytes under one of the content-addressed keys.
    let digest = sha256_hex(b"mlops-gitlab-project-seedcode-model-deploy.zip v1");
    let key = format!("sagemaker-gitlab-project/artifacts/{digest}/mlops-gitlab-project-seedcode-model-deploy.zip");
    // Planted ahead of a release (the builds are reproducible, so its digests are known), with
    // metadata claiming the right digest: only S3's own checksum may decide "already uploaded".
    s3().put_object()
        .bucket(&stand.bucket)
        .key(&key)
        .metadata("sha256", &digest)
        .body(b"tampered".to_vec().into())
        .send()
        .await
        .unwrap();
    let stderr = failed(&stand.publish(&[]));
    assert!(stderr.contains("exists with other bytes") && stderr.contains("no version was created"), "{stderr}");
    let search = catalog().search_products_as_admin().send().await.unwrap();
    assert!(
        search
            .product_view_details()
            .iter()
            .all(|d| d.product_view_summary().and_then(|s| s.name()) != Some(stand.product.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing() {
    let stand = stand().await;
    let output = stand.publish(&["--dry-run"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("would upload") && stdout.contains("would create product"), "{stdout}");
    assert!(stand.keys().await.is_empty());
    assert!(!stand.dist.join("publish.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn portfolio_and_launch_constraint_for_a_new_product() {
    let stand = stand().await;
    let portfolio_id = new_portfolio("p1").await;
    let published = stand.publish_ok(&["--portfolio-id", &portfolio_id, "--launch-role-arn", LAUNCH_ROLE]);
    assert_eq!(published["version_created"], true);

    let stderr = failed(&stand.publish(&["--portfolio-id", "port-doesnotexist"]));
    assert!(stderr.contains("portfolio port-doesnotexist does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_product_missing_from_its_portfolio_is_repaired_on_the_next_publish() {
    let stand = stand().await;
    let portfolio_id = new_portfolio(&format!("p-{}", stand.bucket)).await;
    // A first publish without --portfolio-id (CI with PORTFOLIO_ID unset, say).
    let first = stand.publish_ok(&[]);
    let product = first["product_id"].as_str().unwrap();
    let in_portfolio = || async {
        let listed = catalog().list_portfolios_for_product().product_id(product).send().await.unwrap();
        listed.portfolio_details().iter().any(|p| p.id() == Some(portfolio_id.as_str()))
    };
    assert!(!in_portfolio().await);

    let stderr = failed(&stand.publish(&["--portfolio-id", &portfolio_id]));
    assert!(stderr.contains("no launch constraint") && stderr.contains("--launch-role-arn"), "{stderr}");

    let again = stand.publish_ok(&["--portfolio-id", &portfolio_id, "--launch-role-arn", LAUNCH_ROLE]);
    assert_eq!(again["version_created"], false, "the template is unchanged: only the portfolio is repaired");
    assert!(in_portfolio().await, "the product was not added to the portfolio");
    let constraint_types = || async {
        let listed = catalog().list_constraints_for_portfolio().portfolio_id(&portfolio_id).product_id(product);
        let listed = listed.send().await.unwrap();
        listed.constraint_details().iter().filter_map(|c| c.r#type().map(str::to_owned)).collect::<Vec<_>>()
    };
    assert_eq!(constraint_types().await, ["LAUNCH"]);
    // Repaired: later runs need no --launch-role-arn and add nothing twice.
    stand.publish_ok(&["--portfolio-id", &portfolio_id]);
    assert_eq!(constraint_types().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_setups_fail_with_one_clear_line_and_create_nothing() {
    let stand = stand().await;
    let stderr = failed(&stand.publish_to("no-such-bucket-anywhere", &[]));
    assert!(stderr.contains("bucket no-such-bucket-anywhere does not exist"), "{stderr}");

    let stderr = failed(&stand.publish(&["--portfolio-id", "port-missing0000"]));
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stand.keys().await.is_empty(), "nothing is uploaded when a check fails");

    let stderr = failed(&stand.publish(&["--launch-role-arn", "arn:aws:iam::123456789012:role/x"]));
    assert!(stderr.contains("--launch-role-arn needs --portfolio-id"), "{stderr}");

    // Two products with the name.
    for token in ["dup-1", "dup-2"] {
        catalog()
            .create_product()
            .name(&stand.product)
            .owner("someone")
            .product_type(aws_sdk_servicecatalog::types::ProductType::CloudFormationTemplate)
            .idempotency_token(token)
            .send()
            .await
            .unwrap();
    }
    let stderr = failed(&stand.publish(&[]));
    assert!(stderr.contains("2 Service Catalog products are named"), "{stderr}");
    assert!(stand.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_in_another_region_is_named() {
    let stand = stand().await;
    let elsewhere = format!("{}-eu", stand.bucket);
    let location = aws_sdk_s3::types::CreateBucketConfiguration::builder()
        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
        .build();
    s3().create_bucket().bucket(&elsewhere).create_bucket_configuration(location).send().await.unwrap();
    let stderr = failed(&stand.publish_to(&elsewhere, &[]));
    assert!(stderr.contains("is in eu-west-1") && stderr.contains("--region eu-west-1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_without_object_versions_is_refused_before_any_write() {
    let stand = stand().await;
    let unversioned = format!("{}-plain", stand.bucket);
    s3().create_bucket().bucket(&unversioned).send().await.unwrap();
    let stderr = failed(&stand.publish_to(&unversioned, &[]));
    assert!(stderr.contains("does not keep object versions") && stderr.contains("enable versioning"), "{stderr}");
    let listed = s3().list_objects_v2().bucket(&unversioned).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "nothing may be uploaded");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_are_named() {
    let stand = stand().await;
    let output = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"))
        .args(["publish", "--bucket", &stand.bucket, "--region", REGION])
        .arg("--dist")
        .arg(&stand.dist)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", stand.dist.as_os_str())
        .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", moto().endpoint())
        .output()
        .unwrap();
    let stderr = failed(&output);
    assert!(stderr.contains("no AWS credentials") && stderr.contains("--profile"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_with_uncommitted_changes_is_not_published() {
    let stand = stand().await;
    let tmp = tempfile::tempdir().unwrap();
    let checkout = common::clone_head(tmp.path(), "dirty");
    std::fs::write(checkout.join("seedcode/model-build/pipelines/uncommitted.py"), "print('not in any commit')\n")
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"))
        .args(["publish", "--bucket", &stand.bucket, "--region", REGION])
        .env("CARGO_MANIFEST_DIR", checkout.join("xtask"))
        .envs(moto().lambda_env())
        .output()
        .unwrap();
    let stderr = failed(&output);
    assert!(stderr.contains("uncommitted changes") && stderr.contains("--allow-dirty"), "{stderr}");
    assert!(stand.keys().await.is_empty(), "nothing may be uploaded");
}

/// `--dist` artifacts packaged from a dirty tree are refused like the tree itself, and published
/// with `--allow-dirty`, whose version then says so (the benchmark of publish runs on whatever
/// tree a developer has).
#[tokio::test(flavor = "multi_thread")]
async fn a_dist_packaged_from_a_dirty_tree_needs_allow_dirty() {
    let stand = stand().await;
    let manifest = stand.dist.join("manifest.json");
    let dirty = std::fs::read_to_string(&manifest).unwrap().replace("\"dirty\":false", "\"dirty\":true");
    std::fs::write(&manifest, dirty).unwrap();
    let stderr = failed(&stand.publish(&[]));
    assert!(stderr.contains("packaged from a tree with uncommitted changes"), "{stderr}");
    assert!(stand.keys().await.is_empty(), "nothing may be uploaded");
    let published = stand.publish_ok(&["--allow-dirty"]);
    let version = published["version_id"].as_str().unwrap();
    let product = published["product_id"].as_str().unwrap();
    let described = catalog().describe_provisioning_artifact().product_id(product).provisioning_artifact_id(version);
    let described = described.send().await.unwrap();
    let description = described.provisioning_artifact_detail().unwrap().description().unwrap().to_owned();
    assert!(description.contains("with uncommitted changes"), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gitlab_url_that_could_hide_another_host_is_refused() {
    let stand = stand().await;
    for url in ["https://gitlab.com@attacker.example", "http://gitlab.example.com", "https://gitlab.com/?x=1"] {
        let stderr = failed(&stand.publish(&["--gitlab-server-url", url]));
        assert!(stderr.contains("--gitlab-server-url") && stderr.contains("is not valid"), "{url}: {stderr}");
    }
    assert!(stand.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dist_that_does_not_match_its_sums_is_refused() {
    let stand = stand().await;
    std::fs::write(stand.dist.join("lambda-gitlab-pipeline-trigger.zip"), b"changed after packaging").unwrap();
    let stderr = failed(&stand.publish(&[]));
    assert!(stderr.contains("lambda-gitlab-pipeline-trigger.zip does not match manifest.json"), "{stderr}");
    assert!(stand.keys().await.is_empty());
}

/// Studio offers an S3-based template only from a bucket with its CORS rule and a policy that
/// lets its role read object tags: publish checks both before writing anything.
#[tokio::test(flavor = "multi_thread")]
async fn s3_template_needs_cors_and_a_tag_read_grant_then_is_tagged_for_studio() {
    let stand = stand().await;
    let stderr = failed(&stand.publish(&["--s3-template"]));
    assert!(stderr.contains("a CORS rule allowing GET from https://*.sagemaker.aws"), "{stderr}");
    assert!(stderr.contains("s3:GetObjectTagging") && stderr.contains("S3Templates=Enabled"), "{stderr}");
    assert!(stand.keys().await.is_empty(), "nothing is written before the checks pass");

    testkit::moto::allow_studio_cors(&s3(), &stand.bucket).await.unwrap();
    let stderr = failed(&stand.publish(&["--s3-template"]));
    assert!(!stderr.contains("CORS rule") && stderr.contains("s3:GetObjectTagging"), "{stderr}");

    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "StudioReadsS3Templates", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/studio"},
        "Action": ["s3:GetObject", "s3:GetObjectTagging"],
        "Resource": format!("arn:aws:s3:::{}/*/studio-templates/*", stand.bucket)}]});
    s3().put_bucket_policy().bucket(&stand.bucket).policy(policy.to_string()).send().await.unwrap();
    let output = stand.publish(&["--s3-template"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let location = format!(
        "sagemaker:projectS3TemplatesLocation=s3://{}/sagemaker-gitlab-project/studio-templates/",
        stand.bucket
    );
    assert!(stdout.contains(&location), "{stdout}");

    let published: Value = serde_json::from_slice(&std::fs::read(stand.dist.join("publish.json")).unwrap()).unwrap();
    let url = published["s3_template"].as_str().unwrap();
    let key = url.trim_start_matches(&format!("s3://{}/", stand.bucket));
    let tags = s3().get_object_tagging().bucket(&stand.bucket).key(key).send().await.unwrap();
    let tags: Vec<(&str, &str)> = tags.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("sagemaker:studio-visibility", "true")]);
}

/// An account where SageMaker project templates were never enabled lacks the role projects run
/// as: publish refuses before writing anything, rather than a product whose first pipeline fails.
/// The account is another one of moto's, reached through an assumed role as AWS would be.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_without_sagemaker_projects_enabled_is_refused_with_the_fix() {
    let stand = stand().await;
    let sts = aws_sdk_sts::Client::new(&moto().sdk_config());
    let assumed =
        sts.assume_role().role_arn("arn:aws:iam::210987654321:role/publisher").role_session_name("t").send().await;
    let credentials = assumed.unwrap().credentials.unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"));
    let dist = stand.dist.to_str().unwrap();
    command.args([
        "publish",
        "--bucket",
        &stand.bucket,
        "--region",
        REGION,
        "--product-name",
        &stand.product,
        "--dist",
        dist,
    ]);
    for (key, value) in moto().lambda_env() {
        command.env(key, value);
    }
    command
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_SESSION_TOKEN", credentials.session_token());
    let stderr = failed(&command.output().unwrap());
    assert!(
        stderr.contains("AmazonSageMakerServiceCatalogProductsUseRole")
            && stderr.contains("enable SageMaker project templates"),
        "{stderr}"
    );
    assert!(stand.keys().await.is_empty(), "nothing is written");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_accounts_are_rendered_and_bad_ones_refused_before_any_write() {
    let stand = stand().await;
    let stderr = failed(&stand.publish(&["--staging-account-id", "11111111111"]));
    assert!(stderr.contains("\"11111111111\" is not an AWS account ID: twelve digits"), "{stderr}");
    let stderr = failed(&stand.publish(&["--production-account-id", "arn:aws:iam::222222222222:root"]));
    assert!(stderr.contains("is not an AWS account ID"), "{stderr}");
    let stderr = failed(&stand.publish(&["--ci-access", "access-key", "--staging-account-id", "111111111111"]));
    assert!(stderr.contains("need --ci-access web-identity"), "{stderr}");
    assert!(stand.keys().await.is_empty(), "nothing is uploaded when an account is refused");

    let published = stand.publish_ok(&["--production-account-id", "222222222222"]);
    let url = published["template_url"].as_str().unwrap();
    let key = url.split(".amazonaws.com/").nth(1).unwrap();
    let object = s3().get_object().bucket(&stand.bucket).key(key).send().await.unwrap();
    let template: serde_yaml::Value =
        serde_yaml::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    let accounts = &template["Mappings"]["Publish"]["Accounts"];
    assert_eq!(accounts["ProductionAccountId"], "222222222222");
    assert_eq!(accounts["StagingAccountId"], "", "staging stays in this account");
}
