//! `cargo xtask doctor`: read-only checks of an account's set-up, before a publish or after a
//! failed "Create project". One row per piece, in the order a platform engineer sets them up;
//! each failed row says what to do. Nothing is written.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_servicecatalog::types::ProvisioningArtifactGuidance;
use serde_json::Value;

use crate::aws::{Aws, allow_statements, connect, find_product, list_versions};
use crate::checks::{
    PRODUCTS_USE_ROLE, check_s3_template_route, products_use_role_exists, products_use_role_missing,
    read_portfolio_state,
};
use crate::report::{self, Row};
use xtask::flags;

pub fn run(args: &flags::Doctor) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rows = runtime.block_on(examine(args))?;
    report::print_table(None, &rows);
    let failed = report::failed(&rows);
    anyhow::ensure!(failed == 0, "{failed} of {} checks failed: fix them from the top", rows.len());
    Ok(())
}

/// The bootstrap stack's outputs this checks against.
struct Bootstrap {
    outputs: std::collections::BTreeMap<String, String>,
}

impl Bootstrap {
    fn get(&self, key: &str) -> Option<&str> {
        self.outputs.get(key).map(String::as_str)
    }
}

/// The outputs every later row reads; the bootstrap row fails without one of them.
const REQUIRED_OUTPUTS: [&str; 7] = [
    "ArtifactBucketName",
    "GitLabTokenSecretName",
    "CheckinRoleName",
    "TriggerRoleName",
    "LaunchRoleArn",
    "PublisherRoleArn",
    "CiPermissionsBoundaryArn",
];

async fn examine(args: &flags::Doctor) -> anyhow::Result<Vec<Row>> {
    let aws = connect(&args.aws).await?;
    let cloudformation = aws_sdk_cloudformation::Client::new(&aws.sdk);
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.sdk);
    let mut rows = Vec::new();
    let mut row = |check: &str, result: Result<String, String>| rows.push(Row { check: check.to_owned(), result });

    let bootstrap = bootstrap_stack(&cloudformation, &args.bootstrap_stack).await;
    row("bootstrap stack", bootstrap.as_ref().map(|(status, _)| status.clone()).map_err(Clone::clone));
    let Ok((_, bootstrap)) = bootstrap else { return Ok(rows) };

    let launch_role = role_name_of(bootstrap.get("LaunchRoleArn").unwrap_or_default());
    let publisher_role = role_name_of(bootstrap.get("PublisherRoleArn").unwrap_or_default());
    let roles = [
        ("launch role", launch_role, Some("servicecatalog.amazonaws.com")),
        ("checkin role", bootstrap.get("CheckinRoleName").unwrap_or_default(), Some("lambda.amazonaws.com")),
        ("trigger role", bootstrap.get("TriggerRoleName").unwrap_or_default(), Some("lambda.amazonaws.com")),
        ("publisher role", publisher_role, None),
    ];
    for (check, name, service) in roles {
        row(check, role_trusted_by(&iam, name, service, "update the bootstrap stack with cfn/bootstrap.yml").await);
    }
    row("SageMaker products role", products_use_role(&iam).await);
    row("GitLab OIDC provider", oidc_provider(&iam, &bootstrap, &args.gitlab_server_url).await);
    let secret = bootstrap.get("GitLabTokenSecretName").unwrap_or_default();
    row("GitLab token", token_stored(&secrets, secret).await);

    let portfolio = args.portfolio_id.as_deref().or(bootstrap.get("PortfolioId"));
    row("portfolio shared with Studio", portfolio_shared(&aws, portfolio).await);
    let product = find_product(&aws, &args.product_name).await?;
    let found = product.as_ref().map(|id| format!("{} ({id})", args.product_name)).ok_or_else(|| {
        format!("no product is named {:?}: run cargo xtask publish (docs/operations.md#publish)", args.product_name)
    });
    row("product", found);
    let (in_portfolio, launch) = product_in_portfolio(&aws, product.as_deref(), portfolio, launch_role).await;
    row("product in portfolio", in_portfolio);
    row("launch constraint", launch);
    row("active version", active_version(&aws, product.as_deref()).await);
    let development_account = bootstrap.get("LaunchRoleArn").and_then(|arn| arn.split(':').nth(4)).unwrap_or_default();
    let stages = [
        ("staging", "StagingAccountId", &args.staging_profile),
        ("production", "ProductionAccountId", &args.production_profile),
    ];
    for (stage, output, profile) in stages {
        if let Some(account) = bootstrap.get(output) {
            let target = Target { stage, account, development_account, profile: profile.as_deref() };
            for Row { check, result } in target_rows(&target, args).await {
                row(&check, result);
            }
        }
    }
    if args.s3_template {
        let bucket = bootstrap.get("ArtifactBucketName").unwrap_or_default();
        let ready = check_s3_template_route(&aws, bucket).await;
        row(
            "S3-based templates",
            ready.map(|()| format!("bucket {bucket} has Studio's CORS rule and read grant")).map_err(|e| e.to_string()),
        );
    }
    Ok(rows)
}

async fn bootstrap_stack(
    cloudformation: &aws_sdk_cloudformation::Client,
    name: &str,
) -> Result<(String, Bootstrap), String> {
    let deploy = format!(
        "deploy cfn/bootstrap.yml as stack {name} (docs/operations.md#deploy-the-bootstrap-stack), or pass --bootstrap-stack"
    );
    let described = cloudformation.describe_stacks().stack_name(name).send().await.map_err(|err| {
        match err.message().is_some_and(|m| m.contains("does not exist")) {
            true => format!("no stack {name}: {deploy}"),
            false => format!("cannot read stack {name}: {}", lambda_common::describe_sdk_error(&err)),
        }
    })?;
    let stack = described.stacks().first().ok_or_else(|| format!("no stack {name}: {deploy}"))?;
    let status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
    // A stack whose update rolled back keeps its previous, working resources.
    let usable =
        status.ends_with("_COMPLETE") && (!status.contains("ROLLBACK") || status == "UPDATE_ROLLBACK_COMPLETE");
    if !usable {
        return Err(format!("stack {name} is {status}: see its events, then {deploy}"));
    }
    let outputs: std::collections::BTreeMap<String, String> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let missing: Vec<&str> = REQUIRED_OUTPUTS.into_iter().filter(|key| !outputs.contains_key(*key)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "stack {name} has no output {}: update it with this repository's cfn/bootstrap.yml",
            missing.join(", ")
        ));
    }
    Ok((format!("{name} {status}"), Bootstrap { outputs }))
}

/// A stage the bootstrap stack names an account for, and the profile that reads that account.
struct Target<'a> {
    stage: &'a str,
    account: &'a str,
    development_account: &'a str,
    profile: Option<&'a str>,
}

impl Target<'_> {
    fn deploy_it(&self) -> String {
        format!(
            "deploy cfn/target-account.yml in account {} with StageName={} and DevelopmentAccountId={} (docs/target-accounts.md#set-up-in-order)",
            self.account, self.stage, self.development_account
        )
    }

    fn role(&self, kind: &str) -> String {
        format!("sagemaker-gitlab-{}-{}-{kind}", self.development_account, self.stage)
    }
}

/// What cfn/target-account.yml makes in a stage's account, read with the stage's profile: the
/// account itself, GitLab's OIDC provider with the stage's audience, the deploy role trusting
/// it for that audience, the model role and the data bucket.
async fn target_rows(target: &Target<'_>, args: &flags::Doctor) -> Vec<Row> {
    let stage = target.stage;
    let row = |check: &str, result: Result<String, String>| Row { check: format!("{stage} {check}"), result };
    let Some(profile) = target.profile else {
        let fix =
            format!("pass --{stage}-profile, an AWS profile that can read account {}, to check it", target.account);
        return vec![row("account", Err(fix))];
    };
    let aws_args = flags::AwsArgs { region: args.aws.region.clone(), profile: Some(profile.to_owned()) };
    let aws = match connect(&aws_args).await {
        Ok(aws) => aws,
        Err(err) => return vec![row("account", Err(format!("profile {profile}: {err:#}")))],
    };
    let identity = aws_sdk_sts::Client::new(&aws.sdk).get_caller_identity().send().await;
    let account = match identity {
        Ok(identity) => identity.account().unwrap_or_default().to_owned(),
        Err(err) => {
            let why = lambda_common::describe_sdk_error(&err);
            return vec![row("account", Err(format!("profile {profile} has no working credentials: {why}")))];
        }
    };
    if account != target.account {
        let fix = format!(
            "profile {profile} reads account {account}, not the {stage} account {}: pass a profile of that account",
            target.account
        );
        return vec![row("account", Err(fix))];
    }
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    let issuer = args.gitlab_server_url.split_once("://").map_or(args.gitlab_server_url.as_str(), |(_, rest)| rest);
    let provider = format!("arn:aws:iam::{account}:oidc-provider/{issuer}");
    let audience = format!("sagemaker-deploy-{stage}");
    let deploy_role = target.role("deploy");
    let model_role = target.role("model");
    let bucket = format!("sm-gl-{}-{account}-{}-{stage}", aws.region, target.development_account);
    vec![
        row("account", Ok(format!("{account}, through profile {profile}"))),
        row("GitLab OIDC provider", target_provider(&iam, &provider, &audience, target).await),
        row("deploy role", deploy_role_trust(&iam, &deploy_role, &provider, &audience, target).await),
        row(
            "model role",
            role_trusted_by(&iam, &model_role, Some("sagemaker.amazonaws.com"), &target.deploy_it()).await,
        ),
        row("data bucket", data_bucket(&aws, &bucket, target).await),
    ]
}

async fn target_provider(
    iam: &aws_sdk_iam::Client,
    arn: &str,
    audience: &str,
    target: &Target<'_>,
) -> Result<String, String> {
    let provider =
        iam.get_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await.map_err(|err| {
            match err.code() {
                Some("NoSuchEntity") => format!("no IAM OIDC provider {arn}: {}", target.deploy_it()),
                _ => format!("cannot read OIDC provider {arn}: {}", lambda_common::describe_sdk_error(&err)),
            }
        })?;
    if provider.client_id_list().iter().any(|id| id == audience) {
        Ok(format!("{arn}, audience {audience}"))
    } else {
        Err(format!(
            "OIDC provider {arn} does not accept audience {audience}, which the {} deploy jobs' id_tokens carry: add it as a client ID",
            target.stage
        ))
    }
}

/// The deploy role exists and trusts GitLab's provider of this account for the stage's audience.
async fn deploy_role_trust(
    iam: &aws_sdk_iam::Client,
    name: &str,
    provider: &str,
    audience: &str,
    target: &Target<'_>,
) -> Result<String, String> {
    let role = iam.get_role().role_name(name).send().await.map_err(|err| match err.code() {
        Some("NoSuchEntity") => format!("no role {name} in account {}: {}", target.account, target.deploy_it()),
        _ => format!("cannot read role {name}: {}", lambda_common::describe_sdk_error(&err)),
    })?;
    let document = role.role().and_then(|r| r.assume_role_policy_document()).unwrap_or_default();
    let trusted = allow_statements(&trust_policy(document)).any(|s| {
        let audiences = s["Condition"]["StringEquals"]
            .as_object()
            .and_then(|keys| keys.iter().find(|(key, _)| key.ends_with(":aud")).map(|(_, value)| value));
        holds(&s["Principal"]["Federated"], provider) && audiences.is_some_and(|aud| holds(aud, audience))
    });
    if trusted {
        Ok(format!("{name}, assumed with {provider} tokens for audience {audience}"))
    } else {
        Err(format!(
            "role {name} does not trust {provider} tokens for audience {audience}, so the {} deploy jobs cannot assume it: update its stack with this repository's cfn/target-account.yml",
            target.stage
        ))
    }
}

async fn data_bucket(aws: &Aws, bucket: &str, target: &Target<'_>) -> Result<String, String> {
    match aws.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(bucket.to_owned()),
        Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            Err(format!("no bucket {bucket}: {}", target.deploy_it()))
        }
        Err(err) => Err(format!("cannot read bucket {bucket}: {}", lambda_common::describe_sdk_error(&err))),
    }
}

fn role_name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The role exists and, when `service` is given, that service may assume it; `fix` says what
/// to do when not.
async fn role_trusted_by(
    iam: &aws_sdk_iam::Client,
    name: &str,
    service: Option<&str>,
    fix: &str,
) -> Result<String, String> {
    let role = iam.get_role().role_name(name).send().await.map_err(|err| match err.code() {
        Some("NoSuchEntity") => format!("role {name} does not exist: {fix}"),
        _ => format!("cannot read role {name}: {}", lambda_common::describe_sdk_error(&err)),
    })?;
    let Some(service) = service else { return Ok(name.to_owned()) };
    let document = role.role().map(|r| r.assume_role_policy_document().unwrap_or_default()).unwrap_or_default();
    if trusts_service(document, service) {
        Ok(format!("{name}, assumed by {service}"))
    } else {
        Err(format!("role {name} does not let {service} assume it: {fix}"))
    }
}

/// A trust policy as IAM returns it, URL-encoded JSON; `Null` (no statements) when not JSON.
fn trust_policy(document: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
    serde_json::from_str(&decoded).unwrap_or_default()
}

/// Whether a policy element, one string or a list of them, holds `wanted`.
fn holds(element: &Value, wanted: &str) -> bool {
    element == wanted || element.as_array().is_some_and(|all| all.iter().any(|v| v == wanted))
}

/// Whether a trust policy (IAM returns it URL-encoded) has an Allow for the service principal.
fn trusts_service(document: &str, service: &str) -> bool {
    allow_statements(&trust_policy(document)).any(|s| holds(&s["Principal"]["Service"], service))
}

async fn products_use_role(iam: &aws_sdk_iam::Client) -> Result<String, String> {
    match products_use_role_exists(iam).await {
        Ok(true) => Ok(format!("service-role/{PRODUCTS_USE_ROLE}")),
        Ok(false) => Err(products_use_role_missing()),
        Err(err) => Err(format!("cannot read role {PRODUCTS_USE_ROLE}: {}", lambda_common::describe_sdk_error(&err))),
    }
}

/// The provider each project's CI role trusts: named after the GitLab server's URL.
async fn oidc_provider(iam: &aws_sdk_iam::Client, bootstrap: &Bootstrap, server_url: &str) -> Result<String, String> {
    if bootstrap.get("GitLabCiAccessKeySecretName").is_some() {
        return Ok("not used: GitLab CI uses the access key (GitLabCiAccess=AccessKey)".into());
    }
    let issuer = server_url.split_once("://").map_or(server_url, |(_, rest)| rest);
    // arn:<partition>:iam::<account>:..., from a role's ARN.
    let launch = bootstrap.get("LaunchRoleArn").unwrap_or_default();
    let prefix = launch.split(":role/").next().unwrap_or_default();
    let arn = format!("{prefix}:oidc-provider/{issuer}");
    let provider = iam.get_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.map_err(|err| {
        match err.code() {
            Some("NoSuchEntity") => format!(
                "no IAM OIDC provider {arn}: deploy the bootstrap stack with GitLabHost={issuer} (or pass the GitLab server publish uses as --gitlab-server-url)"
            ),
            _ => format!("cannot read OIDC provider {arn}: {}", lambda_common::describe_sdk_error(&err)),
        }
    })?;
    let audience = format!("https://{issuer}");
    if provider.client_id_list().contains(&audience) {
        Ok(format!("{arn}, audience {audience}"))
    } else {
        Err(format!(
            "OIDC provider {arn} does not accept audience {audience}, which the seed pipelines' id_tokens carry: add it as a client ID"
        ))
    }
}

/// The token secret holds more than the placeholder bootstrap created. Its value cannot be read
/// here (the secret's policy lets only the Lambdas read it): a second version means someone
/// stored one.
async fn token_stored(secrets: &aws_sdk_secretsmanager::Client, name: &str) -> Result<String, String> {
    let store = "store the GitLab token (docs/operations.md#store-the-token)";
    let versions = secrets.list_secret_version_ids().secret_id(name).include_deprecated(true).send().await.map_err(
        |err| match err.code() {
            Some("ResourceNotFoundException") => format!("no secret {name}: update the bootstrap stack, then {store}"),
            _ => format!("cannot read secret {name}'s versions: {}", lambda_common::describe_sdk_error(&err)),
        },
    )?;
    match versions.versions().len() {
        0 | 1 => Err(format!("secret {name} still holds the placeholder bootstrap made: {store}")),
        n => Ok(format!("{name} has a stored value ({n} versions); the checkin checks the token itself")),
    }
}

async fn portfolio_shared(aws: &Aws, portfolio: Option<&str>) -> Result<String, String> {
    let portfolio = portfolio.ok_or_else(|| {
        "no portfolio: pass --portfolio-id, or deploy the bootstrap stack with StudioExecutionRoleArn (output PortfolioId)".to_owned()
    })?;
    let listed = aws.catalog.list_principals_for_portfolio().portfolio_id(portfolio).send().await.map_err(|err| {
        format!("cannot read portfolio {portfolio}'s principals: {}", lambda_common::describe_sdk_error(&err))
    })?;
    let principals: Vec<&str> = listed.principals().iter().filter_map(|p| p.principal_arn()).collect();
    if principals.is_empty() {
        return Err(format!(
            "portfolio {portfolio} is shared with nobody, so Studio lists none of its products: aws servicecatalog associate-principal-with-portfolio --portfolio-id {portfolio} --principal-type IAM --principal-arn <Studio execution role ARN>"
        ));
    }
    Ok(format!("{portfolio}, shared with {}", principals.join(", ")))
}

/// Two rows: the product is in the portfolio, and launched there with the launch role.
async fn product_in_portfolio(
    aws: &Aws,
    product: Option<&str>,
    portfolio: Option<&str>,
    launch_role: &str,
) -> (Result<String, String>, Result<String, String>) {
    let (Some(product), Some(portfolio)) = (product, portfolio) else {
        let unchecked = Err("not checked: needs the portfolio and the product above".to_owned());
        return (unchecked.clone(), unchecked);
    };
    let publish = format!("cargo xtask publish --portfolio-id {portfolio}");
    match read_portfolio_state(aws, portfolio, product).await {
        Ok(state) => (
            state
                .associated
                .then(|| format!("{product} in {portfolio}"))
                .ok_or_else(|| format!("product {product} is not in portfolio {portfolio}: {publish}")),
            state.launch_constraint.then(|| format!("LAUNCH constraint in {portfolio}")).ok_or_else(|| {
                format!(
                    "product {product} has no launch constraint in {portfolio}, so projects would run with each Studio user's rights: {publish} --launch-role-arn <the bootstrap's LaunchRoleArn, role {launch_role}>"
                )
            }),
        ),
        Err(err) => (Err(format!("{err:#}")), Err("not checked: see the row above".to_owned())),
    }
}

async fn active_version(aws: &Aws, product: Option<&str>) -> Result<String, String> {
    let product = product.ok_or_else(|| "not checked: needs the product above".to_owned())?;
    let versions = list_versions(aws, product).await.map_err(|err| format!("{err:#}"))?;
    let active: Vec<&str> = versions
        .iter()
        .filter(|v| v.active() != Some(false) && v.guidance() != Some(&ProvisioningArtifactGuidance::Deprecated))
        .filter_map(|v| v.name())
        .collect();
    match active.last() {
        Some(name) => Ok(format!("{} offered to Studio, newest {name}", active.len())),
        None => Err(format!(
            "product {product} has no active, non-deprecated version, so Studio offers nothing: run cargo xtask publish"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::trusts_service;

    #[test]
    fn a_trust_policy_is_read_url_encoded_or_plain() {
        let plain = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC).to_string();
        for document in [plain, encoded.as_str()] {
            assert!(trusts_service(document, "lambda.amazonaws.com"));
            assert!(!trusts_service(document, "servicecatalog.amazonaws.com"));
        }
        assert!(!trusts_service(&plain.replace("Allow", "Deny"), "lambda.amazonaws.com"));
    }
}
