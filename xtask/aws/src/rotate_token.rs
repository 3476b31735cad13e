//! `cargo xtask rotate-token`: GitLab rotates the token the Lambdas use (revoking it as it issues
//! the successor), and the successor replaces it in its secret, in the form the secret had. The
//! Lambdas read the secret on every run, so nothing else changes.
//!
//! The one step that cannot be undone is GitLab's, so everything that could stop the successor
//! reaching the secret is checked before it: the token works, and the secret takes a write (the
//! current value, written as a pending version, which no reader sees). A write that still fails
//! after the rotation is retried; the error says the token must then be made anew.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_secretsmanager::Client;
use secrecy::{ExposeSecret, SecretString};
use xtask::flags;

use crate::aws::connect;

/// The staging label a version gets that no reader (they read AWSCURRENT) sees.
const PENDING: &str = "AWSPENDING";

pub fn run(args: &flags::RotateToken) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(rotate(args))
}

async fn rotate(args: &flags::RotateToken) -> anyhow::Result<()> {
    let aws = connect(&args.aws).await?;
    let secrets = Client::new(&aws.sdk);
    let secret = args.token_secret_name.as_str();
    let ca_bundle = Some(args.gitlab_ca_bundle_secret_name.as_str()).filter(|name| !name.is_empty());
    let reading = "reading the token: nothing was rotated (docs/gitlab.md#rotate-the-token)";
    // Read once: the token to rotate, and the secret's value whose form its successor keeps.
    let current = lambda_common::secrets::read_string(&secrets, secret).await.context(reading)?;
    let token = lambda_common::token::token_from_secret(secret, current.expose_secret()).context(reading)?;
    let gitlab = lambda_common::gitlab_client_with(&secrets, &args.gitlab_server_url, token, ca_bundle)
        .await
        .context(reading)?;
    gitlab.check_token().await.context("the token does not work: nothing was rotated")?;
    put(&secrets, secret, &current, Some(PENDING)).await.with_context(|| {
        format!("secret {secret} takes no write, so the new token could not be stored: nothing was rotated")
    })?;

    let expires_at = time::OffsetDateTime::now_utc().date() + time::Duration::days(args.expires_in_days.into());
    let rotated = gitlab.rotate_token(expires_at).await.context(
        "GitLab did not rotate the token. If the error says its answer was lost, the old token may be revoked: make a new one and store it (docs/operations.md#store-the-token)",
    )?;
    let value: SecretString =
        lambda_common::token::secret_value_for(current.expose_secret(), rotated.token.expose_secret()).into();
    let mut attempt = 0;
    let version = loop {
        attempt += 1;
        match put(&secrets, secret, &value, None).await {
            Ok(version) => break version,
            Err(err) if attempt < 5 => {
                eprintln!("storing the new token failed ({err:#}); trying again");
                tokio::time::sleep(Duration::from_secs(2 * attempt)).await;
            }
            Err(err) => bail!(
                "GitLab rotated the token, but secret {secret} did not take the new one ({err:#}): the old token is revoked and the new one is lost. Make a new token and store it (docs/operations.md#store-the-token)"
            ),
        }
    };
    let expires = rotated.expires_at.as_deref().unwrap_or("(GitLab names no date)");
    println!("token rotated: the new one expires on {expires}; stored in secret {secret} as version {version}");
    Ok(())
}

/// Writes `value` as a new version of `secret`, labelled `stage` (AWSCURRENT without one);
/// returns the version's ID.
async fn put(secrets: &Client, secret: &str, value: &SecretString, stage: Option<&str>) -> anyhow::Result<String> {
    let request = secrets.put_secret_value().secret_id(secret).secret_string(value.expose_secret());
    let request = match stage {
        Some(stage) => request.version_stages(stage),
        None => request,
    };
    let written = request.send().await.map_err(|err| anyhow::anyhow!(lambda_common::describe_sdk_error(&err)))?;
    Ok(written.version_id().unwrap_or_default().to_owned())
}
