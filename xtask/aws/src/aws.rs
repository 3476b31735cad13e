//! What the AWS tasks share: the clients, built from the standard credential chain, with a count
//! of the requests they send; the Service Catalog look-ups publish, versions and doctor make; and
//! one reading of IAM policy documents.

use anyhow::{Context, bail};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_servicecatalog::types::{ProductViewFilterBy, ProvisioningArtifactDetail};

use xtask::flags;

/// Counts the requests both clients send, for publish's summary and the benchmark.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

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
    pub(crate) requests: RequestCounter,
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
    let region = sdk
        .region()
        .context(
            "no AWS region: pass --region or set AWS_REGION (docs/troubleshooting.md#no-aws-credentials-or-region)",
        )?
        .to_string();
    let credentials = sdk.credentials_provider().context("no AWS credentials provider is configured")?;
    credentials.provide_credentials().await.map_err(|_| {
        anyhow::anyhow!(
            "no AWS credentials: pass --profile, set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or in GitLab CI set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (docs/troubleshooting.md#no-aws-credentials-or-region)"
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

/// A policy's `Allow` statements; IAM accepts `Statement` as one object or a list.
pub(crate) fn allow_statements(policy: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.iter().collect(),
        single => vec![single],
    };
    statements.into_iter().filter(|statement| statement["Effect"] == "Allow")
}

impl RequestCounter {
    pub(crate) fn sent(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
