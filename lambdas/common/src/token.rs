//! The GitLab access token as it is stored in Secrets Manager.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A GitLab access token and the secret it came from. Neither `Debug` nor any error shows its
/// value, and its memory is wiped when dropped; errors name the secret, so whoever reads them
/// knows where to store a new one.
#[derive(Clone)]
pub struct Token {
    value: SecretString,
    secret: String,
}

impl Token {
    /// The value, for the one place that needs it: the `PRIVATE-TOKEN` header.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// The Secrets Manager secret holding the token.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("secret {secret} is empty: store the GitLab access token in it")]
    Empty { secret: String },
    #[error(
        "secret {secret} holds JSON with {count} string values: store the token alone, or as {{\"token\": \"...\"}}"
    )]
    AmbiguousJson { secret: String, count: usize },
    #[error("secret {secret} holds a value with white space inside, which no GitLab token has: store the token alone")]
    NotAToken { secret: String },
}

/// Reads the token from a secret's string value: the token itself, or JSON with exactly one
/// string value (such as `{"token": "glpat-..."}`); surrounding white space is ignored.
pub fn token_from_secret(secret: &str, value: &str) -> Result<Token, TokenError> {
    let trimmed = value.trim();
    let candidate = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(map)) => {
            let strings: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            match strings.as_slice() {
                [only] => only.trim().to_owned(),
                _ => {
                    return Err(TokenError::AmbiguousJson { secret: secret.into(), count: strings.len() });
                }
            }
        }
        Ok(serde_json::Value::String(s)) => s.trim().to_owned(),
        _ => trimmed.to_owned(),
    };
    if candidate.is_empty() {
        return Err(TokenError::Empty { secret: secret.into() });
    }
    if candidate.chars().any(char::is_whitespace) {
        return Err(TokenError::NotAToken { secret: secret.into() });
    }
    Ok(Token { value: candidate.into(), secret: secret.into() })
}

/// The value to store for `new_token` in a secret whose value is now `current`: in the same
/// form, the token alone or JSON keeping its one key (`{"token": "..."}`).
pub fn secret_value_for(current: &str, new_token: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(current.trim()) {
        Ok(serde_json::Value::Object(mut map)) => {
            if let Some(value) = map.values_mut().find(|v| v.is_string()) {
                *value = new_token.into();
            }
            serde_json::Value::Object(map).to_string()
        }
        Ok(serde_json::Value::String(_)) => serde_json::Value::from(new_token).to_string(),
        _ => new_token.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "gitlab-token";

    #[test]
    fn a_new_token_is_stored_in_the_form_of_the_old() {
        assert_eq!(secret_value_for("glpat-old\n", "glpat-new"), "glpat-new");
        assert_eq!(
            secret_value_for(r#"{"gitlab": "glpat-old", "n": 1}"#, "glpat-new"),
            r#"{"gitlab":"glpat-new","n":1}"#
        );
        assert_eq!(secret_value_for(r#""glpat-old""#, "glpat-new"), r#""glpat-new""#);
        for stored in ["glpat-old", r#"{"token": "glpat-old"}"#] {
            let token = token_from_secret(SECRET, &secret_value_for(stored, "glpat-new")).unwrap();
            assert_eq!(token.expose(), "glpat-new");
        }
    }

    #[test]
    fn plain_and_json_forms() {
        for value in [
            "glpat-abc123",
            "  glpat-abc123\n",
            r#"{"token": "glpat-abc123"}"#,
            r#"{"t": " glpat-abc123 ", "n": 3}"#,
            r#""glpat-abc123""#,
        ] {
            assert_eq!(token_from_secret(SECRET, value).unwrap().expose(), "glpat-abc123", "{value}");
        }
    }

    #[test]
    fn rejects_what_is_not_one_token_and_never_echoes_it() {
        let cases = [
            ("", TokenError::Empty { secret: SECRET.into() }),
            ("  \n", TokenError::Empty { secret: SECRET.into() }),
            (r#"{"token": ""}"#, TokenError::Empty { secret: SECRET.into() }),
            (r#"{"a": "glpat-one", "b": "glpat-two"}"#, TokenError::AmbiguousJson { secret: SECRET.into(), count: 2 }),
            (r#"{"a": 1}"#, TokenError::AmbiguousJson { secret: SECRET.into(), count: 0 }),
            ("glpat-one glpat-two", TokenError::NotAToken { secret: SECRET.into() }),
        ];
        for (value, expected) in cases {
            let err = token_from_secret(SECRET, value).unwrap_err();
            assert_eq!(err, expected, "{value:?}");
            let message = err.to_string();
            assert!(message.contains(SECRET), "{message}");
            assert!(!message.contains("glpat-"), "the error shows the value: {message}");
        }
    }

    #[test]
    fn debug_redacts() {
        let token = token_from_secret(SECRET, "glpat-abc123").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }
}
