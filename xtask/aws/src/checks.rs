//! The checks of an account that publish makes before its first write and doctor reports row by
//! row: SageMaker's products role, the artifact bucket, the portfolio and its launch constraint,
//! and the S3-based template route.

use anyhow::bail;
use aws_sdk_s3::error::ProvideErrorMetadata;

use crate::aws::{Aws, allow_statements, catalog_error};

/// The origin SageMaker Studio reads S3-based templates from.
const STUDIO_ORIGIN: &str = "https://*.sagemaker.aws";

/// The role SageMaker makes when project templates are enabled for a Studio domain; projects'
/// pipelines and endpoints run as it, so a product published without it fails at the first
/// pipeline, long after Create project.
pub(crate) const PRODUCTS_USE_ROLE: &str = "AmazonSageMakerServiceCatalogProductsUseRole";

pub(crate) fn products_use_role_missing() -> String {
    format!(
        "role service-role/{PRODUCTS_USE_ROLE}, which projects' pipelines and endpoints run as, does not exist: enable SageMaker project templates for the Studio domain (docs/operations.md#enable-sagemaker-project-templates)"
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

pub(crate) async fn check_products_use_role(aws: &Aws) -> anyhow::Result<()> {
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

pub(crate) async fn check_bucket(aws: &Aws, bucket: &str) -> anyhow::Result<()> {
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(head) => match head.bucket_region() {
            Some(region) if region != aws.region => {
                bail!(
                    "bucket {bucket} is in {region}, not {}: pass --region {region} (docs/troubleshooting.md#the-bucket-is-in-another-region)",
                    aws.region
                )
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

pub(crate) async fn check_portfolio(aws: &Aws, portfolio: &str) -> anyhow::Result<()> {
    aws.catalog.describe_portfolio().id(portfolio).send().await.map(drop).map_err(|err| match err.code() {
        Some("ResourceNotFoundException") => {
            anyhow::anyhow!("portfolio {portfolio} does not exist in {}: check --portfolio-id (cfn/bootstrap.yml's PortfolioId output)", aws.region)
        }
        _ => catalog_error("reading the portfolio", err),
    })
}

/// Whether the product is in the portfolio and launched with a role there. Studio lists only
/// products of portfolios shared with it, and without a LAUNCH constraint a project would be
/// provisioned with the Studio user's own rights.
pub(crate) struct PortfolioState {
    pub(crate) associated: bool,
    pub(crate) launch_constraint: bool,
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
