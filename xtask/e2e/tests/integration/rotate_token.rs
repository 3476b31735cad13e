//! `cargo xtask rotate-token` against moto and the GitLab double over TLS from a private CA: the
//! token's successor replaces it in its secret, in the secret's form, and the old one is revoked;
//! a token that does not work rotates nothing.

use std::process::{Command, Output};

use aws_sdk_secretsmanager::Client;
use testkit::gitlab::GitLabDouble;
use testkit::gitlab::tls::TestCa;
use testkit::moto::{REGION, moto};

/// A GitLab double holding `token`, the secrets the task reads, and their names.
struct Stand {
    gitlab: GitLabDouble,
    secrets: Client,
    token_secret: String,
    ca_secret: String,
}

async fn stand(token: &str, stored: &str) -> Stand {
    let ca = TestCa::new();
    let gitlab = GitLabDouble::start_tls(token, &ca).await;
    let secrets = Client::new(&moto().sdk_config());
    let unique = format!("{}-{}", std::process::id(), gitlab.url().rsplit(':').next().unwrap_or_default());
    let (token_secret, ca_secret) = (format!("rotate/{unique}/token"), format!("rotate/{unique}/ca"));
    secrets.create_secret().name(&token_secret).secret_string(stored).send().await.unwrap();
    secrets.create_secret().name(&ca_secret).secret_string(ca.ca_pem()).send().await.unwrap();
    Stand { gitlab, secrets, token_secret, ca_secret }
}

impl Stand {
    /// Runs the task off the runtime's thread, which serves the double meanwhile.
    async fn rotate(&self) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"));
        command.args(["rotate-token", "--region", REGION, "--expires-in-days", "100"]);
        command.args(["--gitlab-server-url", &self.gitlab.url(), "--token-secret-name", &self.token_secret]);
        command.args(["--gitlab-ca-bundle-secret-name", &self.ca_secret]);
        command.envs(moto().lambda_env());
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    async fn stored(&self) -> String {
        let value = self.secrets.get_secret_value().secret_id(&self.token_secret).send().await.unwrap();
        value.secret_string().unwrap().to_owned()
    }
}

#[tokio::test]
async fn the_successor_replaces_the_token_in_its_secret_and_the_old_one_is_revoked() {
    let old = "glpat-rotate-old-0000001";
    let stand = stand(old, &format!(r#"{{"token": "{old}"}}"#)).await;
    let output = stand.rotate().await;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");

    let stored: serde_json::Value = serde_json::from_str(&stand.stored().await).unwrap();
    let new = stored["token"].as_str().expect("the secret keeps its JSON form and key");
    assert_ne!(new, old);
    assert!(!stdout.contains(new) && !stderr.contains(new), "the new token is printed: {stdout}{stderr}");
    let expires = time::OffsetDateTime::now_utc().date() + time::Duration::days(100);
    assert!(stdout.contains(&format!("expires on {expires}")), "{stdout}");
    let tokens = stand.gitlab.tokens();
    assert!(tokens.iter().any(|(value, revoked)| value == old && *revoked), "the old token is revoked");
    assert!(tokens.iter().any(|(value, revoked)| value == new && !*revoked), "GitLab knows the new token");
}

#[tokio::test]
async fn a_token_that_does_not_work_rotates_nothing() {
    let revoked = "glpat-rotate-revoked-01";
    let stand = stand(revoked, revoked).await;
    stand.gitlab.update_token(revoked, |_, _, is_revoked| *is_revoked = true);
    let output = stand.rotate().await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing was rotated"), "{output:?}");
    assert_eq!(stand.stored().await, revoked);
    let rotations = stand.gitlab.requests().into_iter().filter(|r| r.path.ends_with("/rotate")).count();
    assert_eq!(rotations, 0, "GitLab was asked to rotate");
}
