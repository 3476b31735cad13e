//! The second opinion on every decision `evaluate` makes: the same request and policies asked of
//! `@cloud-copilot/iam-simulate`, a maintained evaluator built on AWS's Service Authorization
//! Reference (pinned in `xtask/requirements/npm.txt`), through one long-lived node process
//! (`second_opinion.cjs`). A disagreement panics with both answers, unless `known_disagreement`
//! explains it; so does a context key iam-simulate drops as not belonging to the request,
//! since a proof that sends such a key models a request AWS never makes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::{Decision, Policies, Request, account_of, resource_account};

struct Engine {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

/// Panics when iam-simulate decides `request` otherwise than `ours`, naming both.
pub(super) fn check(policies: &Policies<'_>, request: &Request, ours: &Decision) {
    let answer = ask(&json!({ "simulation": simulation(policies, request) }));
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        if known_refusal(request, error) {
            return;
        }
        panic!("iam-simulate refused {}: {error}", describe(request));
    }
    let theirs = answer["result"].as_str().unwrap_or_default();
    let ignored: Vec<&str> = answer["ignored"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let dropped: Vec<&&str> = ignored.iter().filter(|key| !provider_claim(request, key)).collect();
    assert!(
        dropped.is_empty(),
        "{}: iam-simulate says AWS sends no {dropped:?} with this action; the proof models a request AWS never makes",
        describe(request)
    );
    let ours_name = match ours {
        Decision::Allowed => "Allowed",
        Decision::ImplicitlyDenied => "ImplicitlyDenied",
        Decision::ExplicitlyDenied(_) => "ExplicitlyDenied",
    };
    if ours_name != theirs && !known_disagreement(request, &ignored) {
        panic!("{}: testkit::iam says {ours:?}, iam-simulate says {theirs}", describe(request));
    }
}

/// The disagreements resolved, each with the engine that is wrong:
///
/// - iam-simulate, on a web-identity trust: it knows no condition keys of a custom OIDC
///   provider and drops them (`gitlab.com:sub`, `gitlab.com:aud`), so every GitLab trust policy
///   denies for it. AWS documents `<provider>:aud` and `<provider>:sub` for every OIDC provider
///   (IAM user guide, "Available keys for AWS OIDC federation"); these decisions are this
///   evaluator's alone, and the trust tests play them with GitLab's claims.
fn known_disagreement(request: &Request, ignored: &[&str]) -> bool {
    request.action.eq_ignore_ascii_case("sts:AssumeRoleWithWebIdentity")
        && ignored.iter().any(|key| provider_claim(request, key))
}

/// The requests iam-simulate refuses to evaluate although AWS makes them: those of
/// `authorized_beyond_the_reference`.
fn known_refusal(request: &Request, error: &str) -> bool {
    authorized_beyond_the_reference(&request.action, &request.resource) && error.contains("no.resource.types")
}

/// The authorizations AWS makes that the Service Authorization Reference (iam-simulate's data)
/// does not list, so that its data is incomplete there and the decision is this evaluator's
/// alone:
///
/// - `sagemaker:CreateModel` on another account's model package: the reference lists only
///   `model` for CreateModel, yet SageMaker checks the package's group policy for it when a
///   model names another account's package (AWS's multi-account samples,
///   `aws-samples/mlops-multi-account-cdk`, grant CreateModel on `model-package/<group>/*` for it).
pub fn authorized_beyond_the_reference(action: &str, resource: &str) -> bool {
    action.eq_ignore_ascii_case("sagemaker:CreateModel") && resource.contains(":model-package/")
}

/// A claim of the OIDC provider a web-identity request comes from: `<provider>:<claim>`, the
/// provider being its IAM name (`oidc-provider/<host[:port][/path]>`).
fn provider_claim(request: &Request, key: &str) -> bool {
    let provider = request.principal.split_once(":oidc-provider/").map(|(_, provider)| provider);
    provider.is_some_and(|provider| key.strip_prefix(provider).is_some_and(|claim| claim.starts_with(':')))
}

fn describe(request: &Request) -> String {
    format!("{} {} on {} ({:?})", request.principal, request.action, request.resource, request.context)
}

/// `request` and `policies` as iam-simulate's `Simulation`.
fn simulation(policies: &Policies<'_>, request: &Request) -> Value {
    let principal = request
        .principal
        .strip_prefix("service:")
        .or_else(|| request.principal.strip_prefix("federated:"))
        .unwrap_or(&request.principal);
    let account = resource_account(request).or_else(|| account_of(&request.principal)).unwrap_or_default();
    let named = |prefix: &str, documents: &[&Value]| -> Vec<Value> {
        documents
            .iter()
            .enumerate()
            .map(|(i, policy)| json!({ "name": format!("{prefix}{i}"), "policy": policy }))
            .collect()
    };
    // One value is a single-valued key's value; iam-simulate wants a multi-valued key as a list
    // even with one value.
    let context: Map<String, Value> = request
        .context
        .iter()
        .map(|(key, values)| {
            let value = match values.as_slice() {
                [one] if !multi_valued(key) => json!(one),
                many => json!(many),
            };
            (key.clone(), value)
        })
        .collect();
    let mut simulation = json!({
        "request": {
            "principal": principal,
            "action": request.action,
            "resource": { "resource": request.resource, "accountId": account },
            "contextVariables": context,
        },
        "identityPolicies": named("identity", &policies.identity),
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
    });
    if let Some(resource) = policies.resource {
        simulation["resourcePolicy"] = resource.clone();
    }
    if let Some(boundary) = policies.boundary {
        simulation["permissionBoundaryPolicies"] = json!(named("boundary", &[boundary]));
    }
    simulation
}

/// The multi-valued keys the proofs send (Service Authorization Reference: `ArrayOfString`).
fn multi_valued(key: &str) -> bool {
    key.eq_ignore_ascii_case("aws:TagKeys")
}

/// What AWS's Service Authorization Reference says of `action`: `None` when no such action
/// exists, else the ARN format of each resource type it authorizes against (none: only `*`).
pub fn action_resource_types(action: &str) -> Option<Vec<String>> {
    let answer = ask(&json!({ "action": action }));
    let arns = answer["arns"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned);
    answer["exists"].as_bool().unwrap_or(false).then(|| arns.collect())
}

fn ask(question: &Value) -> Value {
    let mut engine = ENGINE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let engine = engine.get_or_insert_with(start);
    let line = question.to_string();
    writeln!(engine.stdin, "{line}").expect("iam-simulate's node process takes requests");
    engine.stdin.flush().expect("iam-simulate's node process takes requests");
    let mut answer = String::new();
    engine.stdout.read_line(&mut answer).expect("iam-simulate's node process answers");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("iam-simulate's answer {answer:?} is not JSON: {e}"))
}

fn start() -> Engine {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/iam/second_opinion.cjs");
    let modules = crate::tools_dir().join("npm/node_modules");
    let mut child = Command::new("node")
        .arg(script)
        .arg(&modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node for iam-simulate (cargo xtask test installs both): {e}"));
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    Engine { _child: child, stdin, stdout }
}
