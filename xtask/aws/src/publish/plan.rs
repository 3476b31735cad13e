//! `cargo xtask publish --dry-run`: what a publish would upload and create, from the same reads
//! a publish makes, with nothing written.

use std::collections::BTreeMap;

use super::upload::{ObjectState, Upload, object_state, s3_template_key};
use super::{catalog, render_template, version_name};
use crate::aws::Aws;
use xtask::deterministic_zip::sha256_hex;
use xtask::flags;
use xtask::package::Manifest;

pub(super) async fn print(
    aws: &Aws,
    args: &flags::Publish,
    manifest: &Manifest,
    uploads: &[Upload],
    product: Option<&str>,
) -> anyhow::Result<()> {
    println!("dry run: nothing is uploaded or created");
    let mut versions = BTreeMap::new();
    for upload in uploads {
        let state = object_state(aws, &args.bucket, &upload.key, &upload.sha256_hex).await?;
        println!("  s3://{}/{}: {}", args.bucket, upload.key, state.describe());
        if let ObjectState::Same(Some(version)) = state {
            versions.insert(upload.name.clone(), version);
        }
    }
    // The template names the Lambdas' object versions: known only for zips already there.
    let template = render_template(args, manifest, uploads, &versions).ok();
    let template_sha = template.as_deref().map(|t| sha256_hex(t.as_bytes()));
    let existing = match (product, &template_sha) {
        (Some(product), Some(sha)) => catalog::find_version(aws, product, sha).await?,
        _ => None,
    };
    match (product, &existing, &template_sha) {
        (None, _, sha) => {
            let name =
                sha.as_deref().map(|sha| version_name(args, sha)).unwrap_or_else(|| "named after the template".into());
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
            println!("  would add version {} to product {product}", version_name(args, sha))
        }
    }
    if args.s3_template {
        println!("  would put the S3-based template at s3://{}/{}", args.bucket, s3_template_key(args));
    }
    Ok(())
}
