//! `cargo xtask versions`: the Service Catalog product's versions, which are active or
//! deprecated, and the template and artifacts each one points to.

use anyhow::Context;
use aws_sdk_servicecatalog::types::ProvisioningArtifactGuidance;

use crate::aws::{catalog_error, connect, find_product, list_versions};
use xtask::flags;

pub fn run(args: &flags::Versions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(list(args))
}

async fn list(args: &flags::Versions) -> anyhow::Result<()> {
    let aws = connect(&args.aws).await?;
    let product = find_product(&aws, &args.product_name)
        .await?
        .with_context(|| format!("no Service Catalog product is named {:?} in {}", args.product_name, aws.region))?;
    println!("{} ({product})", args.product_name);
    for version in list_versions(&aws, &product).await? {
        let id = version.id().unwrap_or_default();
        let described = aws
            .catalog
            .describe_provisioning_artifact()
            .product_id(&product)
            .provisioning_artifact_id(id)
            .verbose(true)
            .send()
            .await
            .map_err(|err| catalog_error("reading a version", err))?;
        // `TemplateUrl`: where Service Catalog keeps its copy (LoadTemplateFromURL is input only).
        let template = described.info().and_then(|info| info.get("TemplateUrl")).map_or("?", String::as_str);
        let state = match (version.active(), version.guidance()) {
            (Some(false), _) => "inactive",
            (_, Some(ProvisioningArtifactGuidance::Deprecated)) => "deprecated",
            _ => "active",
        };
        let created = version.created_time().map(|t| t.to_string()).unwrap_or_default();
        println!("  {:<24} {id:<18} {state:<10} {created}", version.name().unwrap_or_default());
        println!("    template  {template}");
        println!("    built from {}", version.description().unwrap_or_default());
    }
    Ok(())
}
