//! Reading secrets from Secrets Manager. Errors name the secret and the cause, never the value.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use secrecy::{ExposeSecret, SecretString};

use crate::token::{Token, TokenError, token_from_secret};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret {secret} does not exist in this account and region: create it (cfn/bootstrap.yml does) or fix the secret name"
    )]
    NotFound { secret: String },
    #[error(
        "reading secret {secret} was denied ({code}): give the Lambda's role secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)"
    )]
    AccessDenied { secret: String, code: String },
    #[error("secret {secret} has no string value: store the value as a string, not as binary")]
    NotAString { secret: String },
    #[error("reading secret {secret} failed: {reason}")]
    Failed { secret: String, reason: String },
    #[error(transparent)]
    BadToken(#[from] TokenError),
}

/// The string value of `secret` (a name or ARN), wiped from memory when dropped.
pub async fn read_string(client: &Client, secret: &str) -> Result<SecretString, SecretError> {
    let output = client.get_secret_value().secret_id(secret).send().await.map_err(|err| {
        let code = err.code().unwrap_or_default().to_owned();
        match code.as_str() {
            "ResourceNotFoundException" => SecretError::NotFound { secret: secret.into() },
            "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException" | "KMSAccessDeniedException" => {
                SecretError::AccessDenied { secret: secret.into(), code }
            }
            _ => SecretError::Failed { secret: secret.into(), reason: crate::describe_sdk_error(&err) },
        }
    })?;
    output.secret_string.map(SecretString::from).ok_or_else(|| SecretError::NotAString { secret: secret.into() })
}

/// The GitLab token stored in `secret` (see `token::token_from_secret` for the accepted forms).
pub async fn read_gitlab_token(client: &Client, secret: &str) -> Result<Token, SecretError> {
    let value = read_string(client, secret).await?;
    Ok(token_from_secret(secret, value.expose_secret())?)
}
