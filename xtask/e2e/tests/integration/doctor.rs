//! `cargo xtask doctor` against moto in server mode: an account set up as docs/operations.md says passes
//! every row; then each piece is broken in turn, and exactly its row fails, with the fix.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use aws_sdk_servicecatalog::types::{ProvisioningArtifactGuidance, ProvisioningArtifactProperties};
use testkit::moto::{ACCOUNT_ID, REGION, moto};

const STACK: &str = "doctor-bootstrap";
const BUCKET: &str = "doctor-artifacts";
const TOKEN_SECRET: &str = "doctor/gitlab-token";
const PRODUCT: &str = "MLOps with GitLab (doctor)";
const GITLAB: &str = "gitlab.doctor.example";
const TRUST_SERVICE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"SERVICE"},"Action":"sts:AssumeRole"}]}"#;

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

fn trust(service: &str) -> String {
    TRUST_SERVICE.replace("SERVICE", service)
}

/// The rows of a report: check → (pass, text).
fn rows(output: &Output) -> BTreeMap<String, (bool, String)> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| {
            let (check, rest, pass) = match (line.split_once("  pass  "), line.split_once("  FAIL  ")) {
                (Some((check, rest)), _) => (check, rest, true),
                (None, Some((check, rest))) => (check, rest, false),
                (None, None) => return None,
            };
            Some((check.trim().to_owned(), (pass, rest.to_owned())))
        })
        .collect()
}

/// Runs doctor on the test's account; a flag in `extra` replaces the test's own value of it.
fn doctor(extra: &[&str]) -> Output {
    doctor_with_env(extra, &[])
}

/// `doctor` with more environment variables (the AWS config files of the target accounts' profiles).
fn doctor_with_env(extra: &[&str], env: &[(&str, &str)]) -> Output {
    let server = format!("https://{GITLAB}");
    let defaults =
        [("--bootstrap-stack", STACK), ("--product-name", PRODUCT), ("--gitlab-server-url", server.as_str())];
    let mut args = vec!["doctor", "--region", REGION];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-e2e"));
    command.args(&args);
    for (key, value) in moto().lambda_env() {
        command.env(key, value);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

/// Runs doctor and asserts that exactly `failing` rows fail, each with `hint` in its text.
fn expect_failures(extra: &[&str], failing: &[(&str, &str)]) -> BTreeMap<String, (bool, String)> {
    expect_failures_with_env(extra, &[], failing)
}

fn expect_failures_with_env(
    extra: &[&str],
    env: &[(&str, &str)],
    failing: &[(&str, &str)],
) -> BTreeMap<String, (bool, String)> {
    let output = doctor_with_env(extra, env);
    let report = rows(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Every other row reads the bootstrap stack's outputs: without the stack, it is the one row.
    let expected_rows = if failing.iter().any(|(check, _)| *check == "bootstrap stack") { 1 } else { 12 };
    assert!(report.len() >= expected_rows, "a row per check:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.success(), failing.is_empty(), "{stdout}");
    for (check, (pass, text)) in &report {
        match failing.iter().find(|(name, _)| name == check) {
            Some((_, hint)) => {
                assert!(!pass, "{check} should fail:\n{stdout}");
                assert!(text.contains(hint), "{check}: {text:?} lacks {hint:?}");
            }
            // Rows that depend on a failed one say so.
            None if text.starts_with("not checked") => {}
            None => assert!(pass, "{check} should pass:\n{stdout}"),
        }
    }
    report
}

struct Account {
    iam: aws_sdk_iam::Client,
    catalog: aws_sdk_servicecatalog::Client,
    s3: aws_sdk_s3::Client,
    secrets: aws_sdk_secretsmanager::Client,
    portfolio: String,
    product: String,
}

/// The account as bootstrap and a first publish leave it, but for the token (still the
/// placeholder) and the portfolio's principal (not shared yet): the first two failures.
async fn account() -> Account {
    let sdk = moto().sdk_config();
    let iam = aws_sdk_iam::Client::new(&sdk);
    let catalog = aws_sdk_servicecatalog::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    testkit::moto::create_artifact_bucket(&s3, BUCKET).await.unwrap();
    for (name, service) in [
        ("doctor-launch", "servicecatalog.amazonaws.com"),
        ("doctor-checkin", "lambda.amazonaws.com"),
        ("doctor-trigger", "lambda.amazonaws.com"),
        ("doctor-publisher", "sts.amazonaws.com"),
    ] {
        iam.create_role().role_name(name).assume_role_policy_document(trust(service)).send().await.unwrap();
    }
    // Shared with the publish tests, which share this moto account: made once, whoever is first.
    testkit::moto::enable_sagemaker_projects(&iam).await.unwrap();
    iam.create_open_id_connect_provider()
        .url(format!("https://{GITLAB}"))
        .client_id_list(format!("https://{GITLAB}"))
        .send()
        .await
        .unwrap();
    secrets.create_secret().name(TOKEN_SECRET).secret_string("placeholder0123456789").send().await.unwrap();
    let portfolio = catalog.create_portfolio().display_name("doctor").provider_name("test").send().await.unwrap();
    let portfolio = portfolio.portfolio_detail().unwrap().id().unwrap().to_owned();

    let outputs = [
        ("ArtifactBucketName", BUCKET.to_owned()),
        ("GitLabTokenSecretName", TOKEN_SECRET.to_owned()),
        ("CheckinRoleName", "doctor-checkin".to_owned()),
        ("TriggerRoleName", "doctor-trigger".to_owned()),
        ("LaunchRoleArn", role_arn("doctor-launch")),
        ("PublisherRoleArn", role_arn("doctor-publisher")),
        ("CiPermissionsBoundaryArn", format!("arn:aws:iam::{ACCOUNT_ID}:policy/doctor-boundary")),
        ("PortfolioId", portfolio.clone()),
    ];
    let outputs: serde_json::Map<String, serde_json::Value> =
        outputs.into_iter().map(|(key, value)| (key.to_owned(), serde_json::json!({ "Value": value }))).collect();
    let template = serde_json::json!({
        "Resources": { "Handle": { "Type": "AWS::CloudFormation::WaitConditionHandle" } },
        "Outputs": outputs,
    });
    cloudformation.create_stack().stack_name(STACK).template_body(template.to_string()).send().await.unwrap();

    let template_key = "doctor/project.yml";
    s3.put_object().bucket(BUCKET).key(template_key).body(b"Resources: {}\n".to_vec().into()).send().await.unwrap();
    let version = ProvisioningArtifactProperties::builder()
        .name("v1")
        .info("LoadTemplateFromURL", format!("https://{BUCKET}.s3.{REGION}.amazonaws.com/{template_key}"))
        .r#type(aws_sdk_servicecatalog::types::ProvisioningArtifactType::CloudFormationTemplate)
        .build();
    let product = catalog
        .create_product()
        .name(PRODUCT)
        .owner("test")
        .product_type(aws_sdk_servicecatalog::types::ProductType::CloudFormationTemplate)
        .provisioning_artifact_parameters(version)
        .idempotency_token("doctor-product")
        .send()
        .await
        .unwrap();
    let product =
        product.product_view_detail().unwrap().product_view_summary().unwrap().product_id().unwrap().to_owned();
    catalog.associate_product_with_portfolio().product_id(&product).portfolio_id(&portfolio).send().await.unwrap();
    Account { iam, catalog, s3, secrets, portfolio, product }
}

impl Account {
    async fn add_launch_constraint(&self) {
        let role = serde_json::json!({ "RoleArn": role_arn("doctor-launch") }).to_string();
        let constraint = self.catalog.create_constraint().portfolio_id(&self.portfolio).product_id(&self.product);
        constraint.r#type("LAUNCH").parameters(role).idempotency_token("doctor-launch").send().await.unwrap();
    }

    async fn set_guidance(&self, guidance: ProvisioningArtifactGuidance) {
        let versions = self.catalog.list_provisioning_artifacts().product_id(&self.product).send().await.unwrap();
        for version in versions.provisioning_artifact_details() {
            let update = self.catalog.update_provisioning_artifact().product_id(&self.product);
            update.provisioning_artifact_id(version.id().unwrap()).guidance(guidance.clone()).send().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_missing_piece_fails_its_own_row_with_the_fix() {
    let account = account().await;
    let studio = role_arn("studio-execution");

    // As bootstrap left it: the token not stored, the portfolio shared with nobody, no launch constraint.
    expect_failures(
        &[],
        &[
            ("GitLab token", "still holds the placeholder"),
            ("portfolio shared with Studio", "associate-principal-with-portfolio"),
            ("launch constraint", "--launch-role-arn"),
        ],
    );
    account.secrets.put_secret_value().secret_id(TOKEN_SECRET).secret_string("glpat-stored").send().await.unwrap();
    let share = account.catalog.associate_principal_with_portfolio().portfolio_id(&account.portfolio);
    share.principal_arn(&studio).principal_type("IAM".into()).send().await.unwrap();
    account.add_launch_constraint().await;

    // Set up as docs/operations.md says: every row passes, and the token's value is never printed.
    let output = doctor(&[]);
    let report = expect_failures(&[], &[]);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("glpat-stored"));
    assert!(report["portfolio shared with Studio"].1.contains(&studio));

    // One piece broken at a time.
    expect_failures(&["--bootstrap-stack", "no-such-stack"], &[("bootstrap stack", "deploy cfn/bootstrap.yml")]);
    expect_failures(
        &["--gitlab-server-url", "https://gitlab.other.example"],
        &[("GitLab OIDC provider", "GitLabHost=gitlab.other.example")],
    );
    expect_failures(&["--product-name", "Nothing by this name"], &[("product", "cargo xtask publish")]);

    let launch = account.iam.update_assume_role_policy().role_name("doctor-launch");
    launch.policy_document(trust("lambda.amazonaws.com")).send().await.unwrap();
    expect_failures(&[], &[("launch role", "servicecatalog.amazonaws.com")]);
    let launch = account.iam.update_assume_role_policy().role_name("doctor-launch");
    launch.policy_document(trust("servicecatalog.amazonaws.com")).send().await.unwrap();

    account.iam.delete_role().role_name("doctor-checkin").send().await.unwrap();
    expect_failures(&[], &[("checkin role", "does not exist")]);
    let checkin = account.iam.create_role().role_name("doctor-checkin");
    checkin.assume_role_policy_document(trust("lambda.amazonaws.com")).send().await.unwrap();

    // No publish test may run while the role is away (common::products_role).
    let role_away = crate::common::products_role().write().await;
    account.iam.delete_role().role_name("AmazonSageMakerServiceCatalogProductsUseRole").send().await.unwrap();
    expect_failures(&[], &[("SageMaker products role", "enable SageMaker project templates")]);
    let products_role = account.iam.create_role().role_name("AmazonSageMakerServiceCatalogProductsUseRole");
    products_role
        .path("/service-role/")
        .assume_role_policy_document(trust("sagemaker.amazonaws.com"))
        .send()
        .await
        .unwrap();
    drop(role_away);

    let other = account.catalog.create_portfolio().display_name("other").provider_name("test").send().await.unwrap();
    let other = other.portfolio_detail().unwrap().id().unwrap().to_owned();
    let share = account.catalog.associate_principal_with_portfolio().portfolio_id(&other);
    share.principal_arn(&studio).principal_type("IAM".into()).send().await.unwrap();
    expect_failures(
        &["--portfolio-id", &other],
        &[("product in portfolio", "is not in portfolio"), ("launch constraint", "no launch constraint")],
    );

    account.set_guidance(ProvisioningArtifactGuidance::Deprecated).await;
    expect_failures(&[], &[("active version", "no active, non-deprecated version")]);
    account.set_guidance(ProvisioningArtifactGuidance::Default).await;

    // The S3-based route: checked only when asked for, and each missing piece named.
    expect_failures(
        &["--s3-template"],
        &[("S3-based templates", "a CORS rule allowing GET from https://*.sagemaker.aws")],
    );
    testkit::moto::allow_studio_cors(&account.s3, BUCKET).await.unwrap();
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": studio}, "Action": ["s3:GetObject", "s3:GetObjectTagging"],
        "Resource": format!("arn:aws:s3:::{BUCKET}/*/studio-templates/*")}]});
    account.s3.put_bucket_policy().bucket(BUCKET).policy(policy.to_string()).send().await.unwrap();
    let report = expect_failures(&["--s3-template"], &[]);
    assert!(report.contains_key("S3-based templates"));

    staging_in_an_account_of_its_own().await;
}

const STAGING: &str = "111111111111";
const STAGING_STACK: &str = "doctor-bootstrap-with-staging";

/// Credentials of `account` in moto: an assumed role's keys act in the role's account.
async fn credentials_in(account: &str) -> aws_sdk_sts::types::Credentials {
    let sts = aws_sdk_sts::Client::new(&moto().sdk_config());
    let assumed =
        sts.assume_role().role_arn(format!("arn:aws:iam::{account}:role/doctor-reader")).role_session_name("doctor");
    assumed.send().await.unwrap().credentials().unwrap().clone()
}

/// The bootstrap stack naming a staging account; doctor reads that account through a profile,
/// and each piece cfn/target-account.yml makes there is checked.
async fn staging_in_an_account_of_its_own() {
    let sdk = moto().sdk_config();
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let [stack] =
        cloudformation.describe_stacks().stack_name(STACK).send().await.unwrap().stacks().to_vec().try_into().unwrap();
    let mut outputs: serde_json::Map<String, serde_json::Value> = stack
        .outputs()
        .iter()
        .map(|o| (o.output_key().unwrap().to_owned(), serde_json::json!({ "Value": o.output_value().unwrap() })))
        .collect();
    outputs.insert("StagingAccountId".into(), serde_json::json!({ "Value": STAGING }));
    let template = serde_json::json!({
        "Resources": { "Handle": { "Type": "AWS::CloudFormation::WaitConditionHandle" } },
        "Outputs": outputs,
    });
    cloudformation.create_stack().stack_name(STAGING_STACK).template_body(template.to_string()).send().await.unwrap();

    // Two profiles: one of the staging account, one of some other account.
    let files = tempfile::tempdir().unwrap();
    let mut credentials_file = String::new();
    for (profile, account) in [("doctor-staging", STAGING), ("doctor-elsewhere", "444444444444")] {
        let keys = credentials_in(account).await;
        credentials_file.push_str(&format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
            keys.access_key_id(),
            keys.secret_access_key(),
            keys.session_token()
        ));
    }
    let credentials_path = files.path().join("credentials");
    std::fs::write(&credentials_path, credentials_file).unwrap();
    let config_path = files.path().join("config");
    std::fs::write(&config_path, "").unwrap();
    let (credentials_path, config_path) = (credentials_path.to_str().unwrap(), config_path.to_str().unwrap());
    let env = [("AWS_SHARED_CREDENTIALS_FILE", credentials_path), ("AWS_CONFIG_FILE", config_path)];
    let with_staging = |profile: &'static str| ["--bootstrap-stack", STAGING_STACK, "--staging-profile", profile];

    // No profile, or one of another account: the account row says what to pass.
    expect_failures_with_env(&["--bootstrap-stack", STAGING_STACK], &env, &[("staging account", "--staging-profile")]);
    expect_failures_with_env(
        &with_staging("doctor-elsewhere"),
        &env,
        &[("staging account", "reads account 444444444444, not the staging account 111111111111")],
    );

    // The target stack not deployed: each of its pieces names the template to run, and where.
    let deploy_it = "deploy cfn/target-account.yml in account 111111111111 with StageName=staging and DevelopmentAccountId=123456789012";
    expect_failures_with_env(
        &with_staging("doctor-staging"),
        &env,
        &[
            ("staging GitLab OIDC provider", deploy_it),
            ("staging deploy role", deploy_it),
            ("staging model role", deploy_it),
            ("staging data bucket", deploy_it),
        ],
    );

    // Made as cfn/target-account.yml makes them, but the deploy role trusting the development
    // account's audience instead of the stage's.
    let keys = credentials_in(STAGING).await;
    let staging_sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto().endpoint())
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            aws_sdk_iam::config::Credentials::new(
                keys.access_key_id(),
                keys.secret_access_key(),
                Some(keys.session_token().to_owned()),
                None,
                "staging",
            ),
        ))
        .build();
    let iam = aws_sdk_iam::Client::new(&staging_sdk);
    let s3 =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&staging_sdk).force_path_style(true).build());
    let provider = iam
        .create_open_id_connect_provider()
        .url(format!("https://{GITLAB}"))
        .client_id_list("sagemaker-deploy-staging")
        .client_id_list("sagemaker-deploy-production")
        .send()
        .await
        .unwrap();
    let provider = provider.open_id_connect_provider_arn().unwrap().to_owned();
    assert!(provider.contains(STAGING), "moto made the provider in {provider}");
    let trust_for = |audience: &str| {
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{GITLAB}:aud"): audience},
                          "StringLike": {format!("{GITLAB}:sub"): "project_path:ml/*:ref_type:branch:ref:main"}}}]})
        .to_string()
    };
    let deploy_role = "sagemaker-gitlab-123456789012-staging-deploy";
    iam.create_role()
        .role_name(deploy_role)
        .assume_role_policy_document(trust_for(&format!("https://{GITLAB}")))
        .send()
        .await
        .unwrap();
    iam.create_role()
        .role_name("sagemaker-gitlab-123456789012-staging-model")
        .assume_role_policy_document(trust("sagemaker.amazonaws.com"))
        .send()
        .await
        .unwrap();
    s3.create_bucket().bucket(format!("sm-gl-{REGION}-{STAGING}-123456789012-staging")).send().await.unwrap();
    expect_failures_with_env(
        &with_staging("doctor-staging"),
        &env,
        &[("staging deploy role", "for audience sagemaker-deploy-staging")],
    );

    iam.update_assume_role_policy()
        .role_name(deploy_role)
        .policy_document(trust_for("sagemaker-deploy-staging"))
        .send()
        .await
        .unwrap();
    let report = expect_failures_with_env(&with_staging("doctor-staging"), &env, &[]);
    assert!(report["staging account"].1.contains("111111111111, through profile doctor-staging"), "{report:?}");
    // The development account's own rows are unchanged by the staging ones.
    assert!(report.contains_key("launch role") && report.contains_key("active version"));
}
