//! Publish's Service Catalog side: the product and its versions, found by the template they hold;
//! the portfolio the product is offered from, with its launch constraint.

use anyhow::{Context, bail};
use aws_sdk_servicecatalog::types::{
    ProductType, ProvisioningArtifactGuidance, ProvisioningArtifactProperties, ProvisioningArtifactType, Tag,
};

use super::{STUDIO_VISIBILITY, idempotency_token, template_marker};
use crate::aws::{Aws, catalog_error, list_versions};
use crate::checks::{PortfolioState, read_portfolio_state};
use xtask::flags;

/// The version publish makes: its name, description (ending in the template's marker) and template.
pub(super) struct Version {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) template_url: String,
    pub(super) template_sha: String,
}

/// What `add_version` left: the product, the version that holds the template, and whether it was
/// made now.
pub(super) struct Added {
    pub(super) product_id: String,
    pub(super) version_id: String,
    pub(super) version_name: String,
    pub(super) created: bool,
}

/// Makes `version` a version of the product: creates the product with it when there is none,
/// adds it, or, when a version already holds exactly this template, makes that one launchable.
pub(super) async fn add_version(
    aws: &Aws,
    args: &flags::Publish,
    product: Option<String>,
    version: &Version,
) -> anyhow::Result<Added> {
    let existing = match &product {
        Some(product) => find_version(aws, product, &version.template_sha).await?,
        None => None,
    };
    let properties = ProvisioningArtifactProperties::builder()
        .name(&version.name)
        .description(&version.description)
        .info("LoadTemplateFromURL", &version.template_url)
        .r#type(ProvisioningArtifactType::CloudFormationTemplate)
        .build();
    let made_now = |product_id: String, version_id: String| Added {
        product_id,
        version_id,
        version_name: version.name.clone(),
        created: true,
    };
    match (product, existing) {
        (Some(product_id), Some(found)) => {
            if !found.launchable {
                make_launchable(aws, &product_id, &found).await?;
            }
            println!("up to date: version {} of product {product_id} holds this template; nothing created", found.name);
            Ok(Added { product_id, version_id: found.id, version_name: found.name, created: false })
        }
        (Some(product_id), None) => {
            let created = aws
                .catalog
                .create_provisioning_artifact()
                .product_id(&product_id)
                .parameters(properties)
                .idempotency_token(idempotency_token("version", &product_id, &version.template_sha))
                .send()
                .await
                .map_err(|err| catalog_error("adding the version", err))?;
            let id = created
                .provisioning_artifact_detail()
                .and_then(|d| d.id())
                .context("CreateProvisioningArtifact returned no ID")?;
            Ok(made_now(product_id, id.to_owned()))
        }
        (None, _) => {
            let (product_id, version_id) = create_product(aws, args, properties, &version.template_sha).await?;
            Ok(made_now(product_id, version_id))
        }
    }
}

/// A version that holds exactly the template being published.
pub(super) struct FoundVersion {
    pub(super) id: String,
    pub(super) name: String,
    /// False when deprecated or inactive: Studio cannot create projects from it.
    pub(super) launchable: bool,
}

pub(super) async fn find_version(aws: &Aws, product: &str, template_sha: &str) -> anyhow::Result<Option<FoundVersion>> {
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

/// Read before anything is written: a portfolio that would end without a launch constraint is
/// refused up front.
pub(super) async fn portfolio_state(
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

/// Adds what the portfolio lacks: the product, its launch constraint. Every run, so a first
/// publish that failed half-way, or one without --portfolio-id, is repaired.
pub(super) async fn converge_portfolio(
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
pub(super) async fn deprecate_others(aws: &Aws, product: &str, keep: &str) -> anyhow::Result<()> {
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
