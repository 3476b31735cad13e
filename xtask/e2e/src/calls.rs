//! The permission proof for what the components send: every AWS request publish, the two
//! Lambdas and the seed repositories' CI jobs made during the run, as moto recorded it, is
//! evaluated against the role that component runs as in AWS (`testkit::iam`). A call
//! without a grant, or one this module cannot map to an IAM action and resource, fails the step,
//! naming caller, action, resource and role.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use serde_json::{Value, json};
use testkit::cfn::Stack;
use testkit::iam::{self, Decision, Policies, Request};
use testkit::moto::{ACCOUNT_ID, REGION, moto};

use crate::{BUCKET, CA_BUNDLE_SECRET, PROJECT_ID, TOKEN_SECRET, aws_json};

/// Who made a call, told apart by the access key each is given in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caller {
    Publish,
    Checkin,
    Trigger,
    BuildCi,
    DeployCi,
    /// The fault runs point the checkin at a secret its role does not name, on purpose: what
    /// they call is no shipped configuration, so it is left out of the proof.
    FaultRun,
}

impl Caller {
    pub const ALL: [Caller; 6] =
        [Caller::Publish, Caller::Checkin, Caller::Trigger, Caller::BuildCi, Caller::DeployCi, Caller::FaultRun];

    /// moto accepts any key; each caller gets its own, so the recording tells them apart.
    pub fn access_key_id(self) -> &'static str {
        match self {
            Caller::Publish => "AKIAE2EPUBLISH000001",
            Caller::Checkin => "AKIAE2ECHECKIN000001",
            Caller::Trigger => "AKIAE2ETRIGGER000001",
            Caller::BuildCi => "AKIAE2EBUILDCI000001",
            Caller::DeployCi => "AKIAE2EDEPLOYCI00001",
            Caller::FaultRun => "AKIAE2EFAULTRUN00001",
        }
    }

    fn of(access_key_id: &str) -> Option<Caller> {
        Caller::ALL.into_iter().find(|caller| caller.access_key_id() == access_key_id)
    }
}

/// One call as IAM authorizes it.
#[derive(Debug)]
pub struct Call {
    pub caller: Caller,
    pub action: String,
    pub resource: String,
    /// Condition keys the request carries (the role passed to a service, say).
    pub context: Vec<(&'static str, String)>,
}

/// Actions IAM does not authorize (STS API reference, GetCallerIdentity: "No permissions are
/// required to perform this operation").
const NEEDS_NO_PERMISSION: &[&str] = &["sts:GetCallerIdentity"];

/// What the run knows of the account that moto's requests leave implicit.
pub struct Account<'a> {
    pub region: &'a str,
    pub account: &'a str,
    /// Secret name → ARN (Secrets Manager requests may name a secret by name).
    pub secrets: BTreeMap<String, String>,
    /// Role name → ARN (with its path).
    pub roles: BTreeMap<String, String>,
}

impl Account<'_> {
    fn arn(&self, service: &str, rest: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{rest}", self.region, self.account)
    }
}

/// The calls of a recording, each attributed to its caller; requests of the run's own harness
/// (moto's default key) are not the product's and are left out.
pub fn calls(recording: &[Value], account: &Account<'_>) -> anyhow::Result<Vec<Call>> {
    let mut calls = Vec::new();
    for entry in recording {
        let headers: BTreeMap<String, String> = entry["headers"]
            .as_object()
            .context("a recorded request without headers")?
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let Some((key, service)) = credential(&headers) else { continue };
        let Some(caller) = Caller::of(&key) else { continue };
        if caller == Caller::FaultRun {
            continue;
        }
        let body = body_of(entry)?;
        let method = entry["method"].as_str().unwrap_or_default();
        let url = entry["url"].as_str().unwrap_or_default();
        for (action, resource, context) in authorize(account, &service, &headers, method, url, &body)
            .with_context(|| format!("{caller:?}: {method} {url}"))?
        {
            calls.push(Call { caller, action, resource, context });
        }
    }
    Ok(calls)
}

/// Evaluates every call against `policies_of` its caller; returns the lines of those denied.
pub fn denied<'p>(calls: &[Call], policies_of: impl Fn(Caller, &str) -> (String, Policies<'p>)) -> Vec<String> {
    let mut failures = Vec::new();
    for call in calls {
        if NEEDS_NO_PERMISSION.contains(&call.action.as_str()) {
            continue;
        }
        let (role, policies) = policies_of(call.caller, &call.resource);
        // The Service Authorization Reference gives these no resource type: IAM authorizes them on `*`.
        let wildcard_only = iam::action_resource_types(&call.action).is_some_and(|types| types.is_empty());
        let resource = if wildcard_only { "*" } else { call.resource.as_str() };
        let mut request = Request::new(&role, &call.action, resource).with("aws:SecureTransport", &["true"]);
        for (key, value) in &call.context {
            request = request.with(key, &[value]);
        }
        let decision = iam::evaluate(&policies, &request);
        if decision != Decision::Allowed {
            failures.push(format!(
                "{:?}: {} on {} is {decision:?} for role {role}",
                call.caller, call.action, call.resource
            ));
        }
    }
    failures.sort();
    failures.dedup();
    failures
}

/// The access key and the service of SigV4's credential scope.
fn credential(headers: &BTreeMap<String, String>) -> Option<(String, String)> {
    let authorization = headers.get("authorization")?;
    let scope = authorization.split("Credential=").nth(1)?.split(',').next()?;
    let parts: Vec<&str> = scope.split('/').collect();
    (parts.len() == 5).then(|| (parts[0].to_owned(), parts[3].to_owned()))
}

fn body_of(entry: &Value) -> anyhow::Result<Vec<u8>> {
    let body = entry["body"].as_str().unwrap_or_default();
    if entry["body_encoded"].as_bool() == Some(true) {
        Ok(base64::engine::general_purpose::STANDARD.decode(body).context("a recorded body is not base64")?)
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// An IAM action, the resource it is authorized on, and the condition keys the request carries.
type Authorization = (String, String, Vec<(&'static str, String)>);
type Authorized = Vec<Authorization>;

/// The IAM action(s) and resource a request is authorized as (each service's "Actions,
/// resources, and condition keys" page of the Service Authorization Reference).
fn authorize(
    account: &Account<'_>,
    service: &str,
    headers: &BTreeMap<String, String>,
    method: &str,
    url: &str,
    body: &[u8],
) -> anyhow::Result<Authorized> {
    let path_and_query = url.split_once("://").map_or(url, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    if service == "s3" {
        return Ok(vec![s3(method, path, query)?]);
    }
    if let Some(target) = headers.get("x-amz-target") {
        let (prefix, operation) = target.split_once('.').context("an X-Amz-Target without an operation")?;
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let service = match prefix {
            "secretsmanager" => "secretsmanager",
            "SageMaker" => "sagemaker",
            "AWS242ServiceCatalogService" => "servicecatalog",
            other => bail!("the proof does not know the JSON service {other}: add it"),
        };
        return json_operation(account, service, operation, &request);
    }
    if service == "sagemaker" && path.starts_with("/endpoints/") {
        // SageMaker Runtime: POST /endpoints/<name>/invocations.
        let name = path.trim_start_matches("/endpoints/").split('/').next().unwrap_or_default();
        let resource = account.arn("sagemaker", &format!("endpoint/{}", name.to_ascii_lowercase()));
        return Ok(vec![("sagemaker:InvokeEndpoint".into(), resource, vec![])]);
    }
    // The query protocol: Action=... in the form body.
    let form: BTreeMap<String, String> = url_form(body);
    let operation = form.get("Action").with_context(|| format!("a {service} request with no Action"))?;
    query_operation(account, service, operation, &form)
}

fn url_form(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(&v.replace('+', " "))))
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// S3's REST operations, path-style: `/bucket[/key][?subresource]`.
fn s3(method: &str, path: &str, query: &str) -> anyhow::Result<Authorization> {
    let path = path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').map_or((path, ""), |(b, k)| (b, k));
    let has = |name: &str| query.split('&').any(|pair| pair == name || pair.starts_with(&format!("{name}=")));
    let action = match (method, key.is_empty()) {
        ("PUT", false) if has("tagging") => "s3:PutObjectTagging",
        ("PUT", false) => "s3:PutObject",
        ("GET" | "HEAD", false) if has("tagging") => "s3:GetObjectTagging",
        ("GET" | "HEAD", false) if has("versionId") => "s3:GetObjectVersion",
        ("GET" | "HEAD", false) => "s3:GetObject",
        // GET / names no bucket: ListBuckets.
        ("GET", true) if bucket.is_empty() => return Ok(("s3:ListAllMyBuckets".into(), "*".into(), vec![])),
        ("HEAD", true) => "s3:ListBucket",
        ("GET", true) if has("versioning") => "s3:GetBucketVersioning",
        ("GET", true) if has("cors") => "s3:GetBucketCORS",
        ("GET", true) if has("policy") => "s3:GetBucketPolicy",
        ("GET", true) if has("location") => "s3:GetBucketLocation",
        ("GET", true) => "s3:ListBucket",
        _ => bail!("the proof does not know S3's {method} /{path}?{query}: add it"),
    };
    let resource = match key.is_empty() {
        true => format!("arn:aws:s3:::{bucket}"),
        false => format!("arn:aws:s3:::{bucket}/{}", decode(key)),
    };
    Ok((action.into(), resource, vec![]))
}

fn field<'v>(request: &'v Value, name: &str) -> Option<&'v str> {
    request.get(name).and_then(Value::as_str)
}

fn json_operation(
    account: &Account<'_>,
    service: &str,
    operation: &str,
    request: &Value,
) -> anyhow::Result<Authorized> {
    let action = format!("{service}:{operation}");
    let one = |resource: String| Ok(vec![(action.clone(), resource, vec![])]);
    let sagemaker = |kind: &str, name: Option<&str>| -> anyhow::Result<String> {
        let name = name.with_context(|| format!("{operation} names no {kind}"))?;
        // SageMaker writes names into ARNs in lower case; an ARN given is used as it is.
        Ok(match name.starts_with("arn:") {
            true => name.to_owned(),
            false => account.arn("sagemaker", &format!("{kind}/{}", name.to_ascii_lowercase())),
        })
    };
    match (service, operation) {
        ("secretsmanager", "GetSecretValue" | "DescribeSecret") => {
            let id = field(request, "SecretId").context("no SecretId")?;
            let arn = if id.starts_with("arn:") { Some(id.to_owned()) } else { account.secrets.get(id).cloned() };
            one(arn.with_context(|| format!("secret {id} is not in this account"))?)
        }
        (
            "sagemaker",
            "CreatePipeline"
            | "UpdatePipeline"
            | "DescribePipeline"
            | "StartPipelineExecution"
            | "ListPipelineExecutions",
        ) => {
            let mut calls = vec![(action.clone(), sagemaker("pipeline", field(request, "PipelineName"))?, vec![])];
            // A role in the request is passed to SageMaker: IAM checks iam:PassRole on it too.
            if let Some(role) = field(request, "RoleArn") {
                calls.push((
                    "iam:PassRole".into(),
                    role.to_owned(),
                    vec![("iam:PassedToService", "sagemaker.amazonaws.com".into())],
                ));
            }
            Ok(calls)
        }
        ("sagemaker", "DescribePipelineExecution" | "ListPipelineExecutionSteps") => {
            one(field(request, "PipelineExecutionArn").context("no PipelineExecutionArn")?.to_owned())
        }
        ("sagemaker", "AddTags" | "ListTags" | "DeleteTags") => {
            one(field(request, "ResourceArn").context("no ResourceArn")?.to_owned())
        }
        ("sagemaker", "ListModelPackages" | "DescribeModelPackageGroup") => {
            one(sagemaker("model-package-group", field(request, "ModelPackageGroupName"))?)
        }
        ("sagemaker", "DescribeModelPackage") => one(sagemaker("model-package", field(request, "ModelPackageName"))?),
        ("sagemaker", "DescribeEndpoint") => one(sagemaker("endpoint", field(request, "EndpointName"))?),
        ("servicecatalog", _) => {
            // Named by the product or portfolio the request is about; one that names neither
            // (CreateProduct, SearchProductsAsAdmin without a portfolio) is authorized on "*".
            let product = field(request, "ProductId")
                .or_else(|| (operation.ends_with("ProductAsAdmin")).then(|| field(request, "Id")).flatten());
            let portfolio = field(request, "PortfolioId")
                .or_else(|| (operation == "DescribePortfolio").then(|| field(request, "Id")).flatten());
            let resource = match (product, portfolio) {
                (Some(id), _) => format!("arn:aws:catalog:{}:{}:product/{id}", account.region, account.account),
                (None, Some(id)) => format!("arn:aws:catalog:{}:{}:portfolio/{id}", account.region, account.account),
                (None, None) => "*".into(),
            };
            // Tags in the request are what aws:RequestTag conditions see.
            let tags = request.get("Tags").and_then(Value::as_array).into_iter().flatten();
            let context: Vec<(&'static str, String)> = tags
                .filter_map(|tag| {
                    Some((request_tag_key(tag.get("Key")?.as_str()?), tag.get("Value")?.as_str()?.to_owned()))
                })
                .collect();
            let mut calls = vec![(action.clone(), resource, context)];
            // A LAUNCH constraint's role is passed to Service Catalog.
            if operation == "CreateConstraint" {
                let parameters: Value = serde_json::from_str(field(request, "Parameters").unwrap_or("{}"))?;
                if let Some(role) = field(&parameters, "RoleArn") {
                    calls.push((
                        "iam:PassRole".into(),
                        role.to_owned(),
                        vec![("iam:PassedToService", "servicecatalog.amazonaws.com".into())],
                    ));
                }
            }
            Ok(calls)
        }
        _ => bail!("the proof does not know how IAM authorizes {action}: add it"),
    }
}

/// `aws:RequestTag/<key>` as a condition key; the few tag keys this product sets, so the key can
/// live as long as the call.
fn request_tag_key(key: &str) -> &'static str {
    match key {
        "sagemaker:studio-visibility" => "aws:RequestTag/sagemaker:studio-visibility",
        "sagemaker:project-name" => "aws:RequestTag/sagemaker:project-name",
        "sagemaker:project-id" => "aws:RequestTag/sagemaker:project-id",
        _ => "aws:RequestTag/other",
    }
}

fn query_operation(
    account: &Account<'_>,
    service: &str,
    operation: &str,
    form: &BTreeMap<String, String>,
) -> anyhow::Result<Authorized> {
    let action = format!("{service}:{operation}");
    let resource = match (service, operation) {
        ("sts", "GetCallerIdentity") => "*".to_owned(),
        ("iam", "GetRole") => {
            let name = form.get("RoleName").context("no RoleName")?;
            account.roles.get(name).cloned().with_context(|| format!("role {name} is not in this account"))?
        }
        ("cloudformation", _) => match form.get("StackName") {
            Some(arn) if arn.starts_with("arn:") => arn.clone(),
            // A stack's ARN ends in an ID CloudFormation makes; policies name it with a wildcard.
            Some(name) => account.arn("cloudformation", &format!("stack/{name}/e2e")),
            None => bail!("{action} without a StackName: it is authorized on every stack, which no role here grants"),
        },
        _ => bail!("the proof does not know how IAM authorizes {action}: add it"),
    };
    Ok(vec![(action, resource, vec![])])
}

/// Every call moto recorded from a component, evaluated against the role that component runs as
/// in AWS: `cfn/bootstrap.yml`'s roles and resource policies, and the project's CI role within
/// its boundary, resolved for this account.
pub(crate) async fn recorded_calls_allowed(project_stack: &Stack) -> anyhow::Result<((), String)> {
    let recording = moto().take_recorded_requests()?;
    let listed = aws_json("secretsmanager", "secretsmanager.ListSecrets", json!({})).await?;
    let secrets: BTreeMap<String, String> = listed["SecretList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["Name"].as_str()?.to_owned(), s["ARN"].as_str()?.to_owned())))
        .collect();
    let iam = aws_sdk_iam::Client::new(&moto().sdk_config());
    let listed = iam.list_roles().send().await.context("listing moto's roles")?;
    let roles = listed.roles().iter().map(|r| (r.role_name().to_owned(), r.arn().to_owned())).collect();
    let account = Account { region: REGION, account: ACCOUNT_ID, secrets, roles };
    let mut calls = calls(&recording, &account)?;
    // Lambda names the function whose code calls in the credentials' context; the Lambda roles
    // read the token only with their project's function named there.
    for call in &mut calls {
        let function = match call.caller {
            Caller::Checkin => "CheckinFunction",
            Caller::Trigger => "TriggerFunction",
            _ => continue,
        };
        let name = project_stack.property(function, &["FunctionName"])?;
        let name = name.as_str().with_context(|| format!("{function} has no FunctionName"))?;
        call.context.push(("lambda:SourceFunctionArn", account.arn("lambda", &format!("function:{name}"))));
    }

    let token = account.secrets.get(TOKEN_SECRET).context("moto holds no token secret")?;
    let parameters = [
        ("TemplateProjectPath", "platform/sagemaker-gitlab-template"),
        ("GitLabCaBundleSecretName", CA_BUNDLE_SECRET),
        ("GitLabTokenSecret", token.as_str()),
    ];
    let bootstrap = testkit::cfn::bootstrap(REGION, ACCOUNT_ID, BUCKET, &parameters)?;
    let role_of = |stack: &Stack, role: &str| -> anyhow::Result<(String, Vec<Value>)> {
        let arn = stack.attribute(role, "Arn").with_context(|| format!("{role} has no ARN"))?;
        Ok((arn.to_owned(), stack.inline_policies(role)?))
    };
    let identities: BTreeMap<Caller, (String, Vec<Value>)> = [
        (Caller::Publish, role_of(&bootstrap, "PublisherRole")?),
        (Caller::Checkin, role_of(&bootstrap, "CheckinRole")?),
        (Caller::Trigger, role_of(&bootstrap, "TriggerRole")?),
        (Caller::BuildCi, role_of(project_stack, "CiRole")?),
        (Caller::DeployCi, role_of(project_stack, "CiRole")?),
    ]
    .into_iter()
    .collect();
    let boundary = bootstrap.json_property("CiBoundary", &["PolicyDocument"])?;
    let artifact_bucket = bootstrap.json_property("ArtifactBucketPolicy", &["PolicyDocument"])?;
    let token_policy = bootstrap.json_property("GitLabTokenSecretPolicy", &["ResourcePolicy"])?;
    let project_bucket = project_stack.json_property("ArtifactBucketPolicy", &["PolicyDocument"])?;
    let bucket_arn = format!("arn:aws:s3:::{BUCKET}");
    let project_bucket_arn = format!("arn:aws:s3:::sagemaker-project-{PROJECT_ID}");

    let failures = denied(&calls, |caller, resource| {
        let (principal, identity) = &identities[&caller];
        let resource_policy = if resource == bucket_arn || resource.starts_with(&format!("{bucket_arn}/")) {
            Some(&artifact_bucket)
        } else if resource == project_bucket_arn || resource.starts_with(&format!("{project_bucket_arn}/")) {
            Some(&project_bucket)
        } else if resource == token {
            Some(&token_policy)
        } else {
            None
        };
        let ci = matches!(caller, Caller::BuildCi | Caller::DeployCi);
        let policies = testkit::iam::Policies {
            identity: identity.iter().collect(),
            resource: resource_policy,
            boundary: ci.then_some(&boundary),
        };
        (principal.clone(), policies)
    });
    ensure!(
        failures.is_empty(),
        "{} calls are not allowed to their callers' roles:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let mut per_caller: BTreeMap<Caller, usize> = BTreeMap::new();
    for call in &calls {
        *per_caller.entry(call.caller).or_default() += 1;
    }
    let silent: Vec<Caller> =
        Caller::ALL.into_iter().filter(|c| *c != Caller::FaultRun && !per_caller.contains_key(c)).collect();
    ensure!(silent.is_empty(), "no calls were recorded for {silent:?}: the proof would prove nothing for them");
    let counts: Vec<String> = per_caller.iter().map(|(caller, n)| format!("{caller:?} {n}")).collect();
    Ok(((), format!("{} calls, each allowed to its role ({})", calls.len(), counts.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account<'static> {
        Account { region: "us-east-1", account: "123456789012", secrets: BTreeMap::new(), roles: BTreeMap::new() }
    }

    #[test]
    fn s3_requests_map_to_their_actions() {
        assert_eq!(s3("HEAD", "/b/k%2Fx.zip", "").unwrap().0, "s3:GetObject");
        assert_eq!(s3("GET", "/b/k", "versionId=3").unwrap().0, "s3:GetObjectVersion");
        assert_eq!(s3("PUT", "/b/k", "tagging").unwrap().0, "s3:PutObjectTagging");
        assert_eq!(
            s3("GET", "/b", "versioning").unwrap(),
            ("s3:GetBucketVersioning".into(), "arn:aws:s3:::b".into(), vec![])
        );
        assert_eq!(s3("GET", "/b/k%2Fx.zip", "").unwrap().1, "arn:aws:s3:::b/k/x.zip");
        assert_eq!(s3("GET", "/", "").unwrap(), ("s3:ListAllMyBuckets".into(), "*".into(), vec![]));
        assert!(s3("DELETE", "/b/k", "").is_err(), "an unknown request is an error, never a pass");
    }

    #[test]
    fn a_pipeline_with_a_role_also_passes_it() {
        let request = serde_json::json!({ "PipelineName": "Churn-p-1", "RoleArn": "arn:aws:iam::123456789012:role/r" });
        let calls = json_operation(&account(), "sagemaker", "CreatePipeline", &request).unwrap();
        assert_eq!(calls[0].1, "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn-p-1");
        assert_eq!(calls[1].0, "iam:PassRole");
        assert!(json_operation(&account(), "sagemaker", "DeletePipeline", &request).is_err());
    }
}
