//! The end-to-end run's multi-account mode (`cargo xtask e2e --target-accounts`): staging and
//! production in moto accounts of their own. moto keeps one world per account and answers a
//! request in the account of the credentials it signs with; an assumed role's keys act in the
//! role's account (moto's STS). So `cfn/target-account.yml` is played in each target account
//! with such keys, and the deploy jobs reach them the way GitLab CI does: the job's id_token,
//! minted by the GitLab double, exchanged by `ci/aws-credentials.sh` for the stage's role.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use serde_json::Value;
use testkit::iam::{self, Decision, Policies, Request};
use testkit::moto::{ACCOUNT_ID, REGION, moto};

use testkit::cfn::Stack;

pub const STAGES: [(&str, &str); 2] = [("staging", "111111111111"), ("production", "222222222222")];

/// A target account as the run set it up: the stack it resolved there, and the access key of
/// an administrator of that account (for the run's own set-up and checks).
pub struct Target {
    pub stage: &'static str,
    pub account: &'static str,
    pub stack: Stack,
    pub admin_key: String,
    sdk: aws_config::SdkConfig,
}

/// Keys of `account` in moto: an assumed role's act in the role's account.
async fn admin_of(account: &str) -> anyhow::Result<(String, aws_config::SdkConfig)> {
    let sts = aws_sdk_sts::Client::new(&moto().sdk_config());
    let assumed = sts.assume_role().role_arn(format!("arn:aws:iam::{account}:role/e2e-admin")).role_session_name("e2e");
    let assumed = assumed.send().await.context("assuming an administrator of a target account in moto")?;
    let keys = assumed.credentials().context("moto's AssumeRole gave no credentials")?;
    let credentials = aws_sdk_iam::config::Credentials::new(
        keys.access_key_id(),
        keys.secret_access_key(),
        Some(keys.session_token().to_owned()),
        None,
        "e2e-target-account",
    );
    let sdk = moto()
        .sdk_config()
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(credentials))
        .build();
    Ok((keys.access_key_id().to_owned(), sdk))
}

/// Plays `cfn/target-account.yml` in each target account, as the platform team deploys it for
/// the run's development account and GitLab group: the OIDC provider, both roles with their
/// policies and boundary, the data bucket.
pub async fn set_up(gitlab_url: &str, group_path: &str) -> anyhow::Result<(Vec<Target>, String)> {
    let host = gitlab_url.trim_start_matches("https://");
    let mut targets = Vec::new();
    for (stage, account) in STAGES {
        let (admin_key, sdk) = admin_of(account).await?;
        let parameters = [
            ("DevelopmentAccountId", ACCOUNT_ID),
            ("StageName", stage),
            ("GitLabHost", host),
            ("GitLabGroupPath", group_path),
        ];
        let stack = testkit::cfn::target_account(REGION, account, &parameters)?;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let provider = iam.create_open_id_connect_provider().url(format!("https://{host}"));
        let audiences = stack.json_property("GitLabOidcProvider", &["ClientIdList"])?;
        let audiences: Vec<String> =
            audiences.as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect();
        provider.set_client_id_list(Some(audiences)).send().await.context("creating the OIDC provider")?;
        let boundary = stack.json_property("Boundary", &["PolicyDocument"])?;
        let boundary_name = stack.property("Boundary", &["ManagedPolicyName"])?;
        let boundary_name = boundary_name.as_str().context("the boundary has no name")?;
        let created =
            iam.create_policy().policy_name(boundary_name).policy_document(boundary.to_string()).send().await?;
        let boundary_arn = created.policy().and_then(|p| p.arn()).context("moto gave the boundary no ARN")?;
        for role in ["DeployRole", "ModelExecutionRole"] {
            let name = stack.property(role, &["RoleName"])?;
            let name = name.as_str().context("a role without a name")?;
            let trust = match stack.property(role, &["AssumeRolePolicyDocument"])? {
                serde_yaml::Value::String(text) => text,
                document => serde_json::to_string(&serde_json::to_value(document)?)?,
            };
            let create = iam.create_role().role_name(name).assume_role_policy_document(trust);
            create.permissions_boundary(boundary_arn).send().await.with_context(|| format!("creating role {name}"))?;
            for (index, policy) in stack.inline_policies(role)?.into_iter().enumerate() {
                let put = iam.put_role_policy().role_name(name).policy_name(format!("policy-{index}"));
                put.policy_document(policy.to_string()).send().await?;
            }
        }
        let bucket = stack.property("DataBucket", &["BucketName"])?;
        let bucket = bucket.as_str().context("the data bucket has no name")?;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        s3.create_bucket().bucket(bucket).send().await.with_context(|| format!("creating bucket {bucket}"))?;
        targets.push(Target { stage, account, stack, admin_key, sdk });
    }
    let summary = STAGES.map(|(stage, account)| format!("{stage} in {account}")).join(", ");
    Ok((targets, format!("cfn/target-account.yml played in moto: {summary}")))
}

impl Target {
    /// The role this stage's deploy jobs assume.
    pub fn deploy_role(&self) -> anyhow::Result<String> {
        Ok(self.stack.attribute("DeployRole", "Arn").context("the deploy role has no ARN")?.to_owned())
    }

    /// Whether the deploy role's trust policy admits a job holding `id_token`, decided from the
    /// token's claims as IAM decides from a GitLab token (its `aud` and `sub`).
    pub fn trusts(&self, id_token: &str, provider_host: &str) -> anyhow::Result<Decision> {
        let claims = claims_of(id_token)?;
        let trust = self.stack.property("DeployRole", &["AssumeRolePolicyDocument"])?;
        let trust: Value = serde_json::from_str(trust.as_str().context("the trust policy is JSON text")?)?;
        let provider = format!("federated:arn:aws:iam::{}:oidc-provider/{provider_host}", self.account);
        let text = |claim: &str| claims[claim].as_str().map(str::to_owned).unwrap_or_default();
        let request = Request::new(&provider, "sts:AssumeRoleWithWebIdentity", &self.deploy_role()?)
            .with(&format!("{provider_host}:aud"), &[&text("aud")])
            .with(&format!("{provider_host}:sub"), &[&text("sub")]);
        Ok(iam::evaluate(&Policies { identity: vec![], resource: Some(&trust), boundary: None }, &request))
    }

    /// The endpoint stack of this stage in this account, if any: (stack name, model package
    /// the endpoint's model serves).
    pub async fn endpoint_stack(&self, stack_name: &str) -> anyhow::Result<Option<(String, String)>> {
        let cloudformation = aws_sdk_cloudformation::Client::new(&self.sdk);
        let Ok(described) = cloudformation.describe_stacks().stack_name(stack_name).send().await else {
            return Ok(None);
        };
        let stack = described.stacks().first().context("DescribeStacks gave no stack")?;
        let status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        let model = crate::sagemaker_as(&self.admin_key, "ListModels", serde_json::json!({})).await?;
        let names: Vec<&str> =
            model["Models"].as_array().into_iter().flatten().filter_map(|m| m["ModelName"].as_str()).collect();
        let [name] = names[..] else { anyhow::bail!("account {} holds models {names:?}, not one", self.account) };
        let described =
            crate::sagemaker_as(&self.admin_key, "DescribeModel", serde_json::json!({ "ModelName": name })).await?;
        let served = described["PrimaryContainer"]["ModelPackageName"].as_str().unwrap_or_default().to_owned();
        ensure!(status.ends_with("_COMPLETE"), "stack {stack_name} in {} is {status}", self.account);
        Ok(Some((status, served)))
    }
}

/// The claims of a JWT (its middle part).
fn claims_of(token: &str) -> anyhow::Result<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).context("an id_token has three parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// A job as GitLab runs it: its own keys over those of the jobs it `extends` (in order, each
/// later one winning), hashes merged deeply and everything else replaced, as GitLab's
/// `extends` does (CI/CD YAML reference, "extends").
pub fn resolved_job(ci: &serde_yaml::Value, job: &str) -> anyhow::Result<serde_yaml::Value> {
    fn merge(base: &mut serde_yaml::Value, over: &serde_yaml::Value) {
        match (base, over) {
            (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(over)) => {
                for (key, value) in over {
                    match base.get_mut(key) {
                        Some(existing) => merge(existing, value),
                        None => {
                            base.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            (base, over) => *base = over.clone(),
        }
    }
    let definition = ci.get(job).with_context(|| format!("no job {job}"))?;
    let parents: Vec<&str> = match definition.get("extends") {
        None => Vec::new(),
        Some(serde_yaml::Value::String(one)) => vec![one.as_str()],
        Some(serde_yaml::Value::Sequence(many)) => many.iter().filter_map(serde_yaml::Value::as_str).collect(),
        Some(other) => anyhow::bail!("{job}: extends is {other:?}"),
    };
    let mut resolved = serde_yaml::Value::Mapping(Default::default());
    for parent in parents {
        merge(&mut resolved, &resolved_job(ci, parent)?);
    }
    merge(&mut resolved, definition);
    if let serde_yaml::Value::Mapping(map) = &mut resolved {
        map.remove("extends");
    }
    Ok(resolved)
}

/// The id_tokens a resolved job asks for, minted by the GitLab double for `project_path` on
/// `main`, with `$CI_SERVER_URL` in an audience expanded as GitLab does.
pub fn id_tokens(
    gitlab: &testkit::gitlab::GitLabDouble,
    job: &serde_yaml::Value,
    project_path: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let environment =
        job.get("environment").and_then(|e| e.get("name").or(Some(e))).and_then(serde_yaml::Value::as_str);
    let mut tokens = BTreeMap::new();
    for (name, spec) in job.get("id_tokens").and_then(serde_yaml::Value::as_mapping).into_iter().flatten() {
        let name = name.as_str().context("an id_tokens name is text")?;
        let aud = spec.get("aud").and_then(serde_yaml::Value::as_str).context("an id_token without aud")?;
        let aud = aud.replace("$CI_SERVER_URL", &gitlab.url());
        tokens.insert(name.to_owned(), gitlab.id_token(project_path, "main", &aud, environment));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_merges_hashes_deeply_and_replaces_the_rest_in_order() {
        let ci: serde_yaml::Value = serde_yaml::from_str(
            "
.aws: { script: [a], id_tokens: { T1: { aud: one } }, variables: { A: '1' } }
.stage: { id_tokens: { T2: { aud: two } }, variables: { B: '2' } }
job: { extends: [.aws, .stage], script: [b] }
",
        )
        .unwrap();
        let job = resolved_job(&ci, "job").unwrap();
        assert_eq!(job["script"][0], "b");
        assert_eq!(job["id_tokens"]["T1"]["aud"], "one");
        assert_eq!(job["id_tokens"]["T2"]["aud"], "two");
        assert_eq!(job["variables"]["A"], "1");
        assert_eq!(job["variables"]["B"], "2");
        assert!(job.get("extends").is_none());
    }
}
