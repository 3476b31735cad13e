//! Publish's uploads: content-addressed objects, each put once with the SHA-256 S3 verifies, and
//! never overwritten with other bytes; the S3-based template, replaced by each publish.

use anyhow::{Context, bail};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;

use super::STUDIO_VISIBILITY;
use crate::aws::Aws;
use xtask::flags;

/// User metadata holding an object's SHA-256 (hex), so a re-run can tell it already has it.
const DIGEST_METADATA: &str = "sha256";

/// One object publish puts in S3.
pub(super) struct Upload {
    pub(super) name: String,
    pub(super) key: String,
    pub(super) bytes: Vec<u8>,
    pub(super) sha256_hex: String,
}

/// What the uploads did, for the summary.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) uploaded: Vec<String>,
    pub(super) reused: Vec<String>,
    pub(super) bytes_uploaded: u64,
}

impl Tally {
    /// `put_once`, counted; returns the object's version ID.
    pub(super) async fn put(&mut self, aws: &Aws, bucket: &str, upload: &Upload) -> anyhow::Result<Option<String>> {
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

pub(super) enum ObjectState {
    Absent,
    /// With its version ID (the bucket keeps versions).
    Same(Option<String>),
    Different,
}

impl ObjectState {
    pub(super) fn describe(&self) -> &'static str {
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

pub(super) async fn object_state(aws: &Aws, bucket: &str, key: &str, sha256_hex: &str) -> anyhow::Result<ObjectState> {
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
            "s3://{bucket}/{} exists with other bytes; content-addressed keys are never overwritten: remove it if it is corrupt (docs/troubleshooting.md#an-object-exists-with-other-bytes)",
            upload.key
        ),
        ObjectState::Absent => {}
    }
    let version =
        put_object(aws, bucket, &upload.key, upload).await.map_err(|err| anyhow::anyhow!("S3 refused it: {err}"))?;
    Ok((true, version))
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

/// Where the S3-based template goes: one stable key per product, replaced by each publish (the
/// bucket keeps older ones as object versions).
pub(super) fn s3_template_key(args: &flags::Publish) -> String {
    let slug: String = args
        .product_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("{}/studio-templates/{slug}.yml", args.prefix)
}

/// Puts the template where SageMaker's S3-based project templates live, tagged for Studio;
/// reports the bucket's CORS rule and the domain tag Studio needs. Returns its `s3://` URL.
pub(super) async fn put_s3_template(aws: &Aws, args: &flags::Publish, template: &Upload) -> anyhow::Result<String> {
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
