//! IAM policy evaluation, for proofs that a role may do what a component does with it, decided
//! the way IAM decides ("Policy evaluation logic" and "Cross-account policy evaluation logic" in
//! the IAM user guide):
//!
//! 1. a matching `Deny` in any policy wins;
//! 2. else, within one account, an `Allow` in an identity policy, or in the resource's policy
//!    naming the principal itself; a resource policy that names the principal's account (its
//!    `root`) only delegates to that account, so an identity policy must allow too;
//! 3. across accounts (the principal's account is not the resource's), an `Allow` in an identity
//!    policy and in the resource's policy, both;
//! 4. and, when the principal has a permissions boundary, an `Allow` of the boundary with any
//!    identity policy's;
//! 5. else the request is implicitly denied.
//!
//! A KMS key is the exception within one account: its key policy must allow, by naming the
//! principal or by delegating to the account (then with an identity policy's allow).
//!
//! The resource's account is the one its ARN names, or, for S3 (whose ARNs name none), the
//! request's `s3:ResourceAccount`; when neither says, the principal's own account.
//!
//! A statement matches when its `Action`/`NotAction`, `Resource`/`NotResource`,
//! `Principal`/`NotPrincipal` (resource policies) and every condition match. Actions compare
//! without case, resources and condition values with it (`*` and `?` as wildcards where IAM
//! allows them). Condition operators: the `String*`, `Arn*`, `Bool`, `Null` and `Numeric*`
//! families, with `IfExists` and the `ForAnyValue:`/`ForAllValues:` set qualifiers. A key absent
//! from the request's context fails a condition, except for `...IfExists`, negated operators,
//! `Null: true` and `ForAllValues:`, as IAM documents. Policy variables (`${aws:PrincipalAccount}`
//! in AWS's managed policies) are replaced in condition values and in the resource part of a
//! `Resource` ARN by the request's value of that key (IAM user guide, "IAM policy elements:
//! Variables and tags"); a variable whose key the request lacks makes that value match nothing.

use std::collections::BTreeMap;

use serde_json::Value;

/// One request as IAM sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The principal's ARN (a role's ARN for its sessions: what `aws:PrincipalArn` holds), or
    /// `service:<name>` for an AWS service principal.
    pub principal: String,
    pub action: String,
    pub resource: String,
    /// Condition keys (matched without case) and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// The request with the global keys IAM sets on every request from a principal:
    /// `aws:PrincipalArn`, `aws:PrincipalAccount`, and `aws:ResourceAccount` when the resource's
    /// ARN names its account.
    pub fn new(principal: &str, action: &str, resource: &str) -> Request {
        let mut context = BTreeMap::new();
        if !principal.starts_with("service:") {
            context.insert("aws:principalarn".to_owned(), vec![principal.to_owned()]);
            if let Some(account) = account_of(principal) {
                context.insert("aws:principalaccount".to_owned(), vec![account.to_owned()]);
            }
        }
        if let Some(account) = account_of(resource) {
            context.insert("aws:resourceaccount".to_owned(), vec![account.to_owned()]);
        }
        Request { principal: principal.into(), action: action.into(), resource: resource.into(), context }
    }

    /// The request with condition key `key` set to `values`.
    pub fn with(mut self, key: &str, values: &[&str]) -> Request {
        self.context.insert(key.to_ascii_lowercase(), values.iter().map(|v| (*v).to_owned()).collect());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No statement allows it.
    ImplicitlyDenied,
    /// A `Deny` statement matched; its `Sid`, or its position.
    ExplicitlyDenied(String),
}

/// The policies that decide a request.
#[derive(Debug, Default)]
pub struct Policies<'a> {
    /// The principal's identity policies (inline and managed), as JSON policy documents.
    pub identity: Vec<&'a Value>,
    /// The resource's own policy (a bucket, queue or secret policy), if any.
    pub resource: Option<&'a Value>,
    /// The principal's permissions boundary, if any.
    pub boundary: Option<&'a Value>,
}

/// How IAM decides `request` under `policies`. A malformed policy is a panic: this runs in tests.
pub fn evaluate(policies: &Policies<'_>, request: &Request) -> Decision {
    let all = policies.identity.iter().copied().chain(policies.resource).chain(policies.boundary);
    for policy in all {
        for (index, statement) in statements(policy).enumerate() {
            if effect(statement) == "Deny" && matches(statement, request, policy_is_resource(policies, policy)) {
                let sid =
                    statement.get("Sid").and_then(Value::as_str).map_or_else(|| format!("#{index}"), str::to_owned);
                let decision = Decision::ExplicitlyDenied(sid);
                second_opinion::check(policies, request, &decision);
                return decision;
            }
        }
    }
    let allows = |policy: &Value, resource_policy: bool| {
        statements(policy).any(|s| effect(s) == "Allow" && matches(s, request, resource_policy))
    };
    let by_identity =
        policies.identity.iter().any(|p| allows(p, false)) && policies.boundary.is_none_or(|p| allows(p, false));
    // The resource policy's strongest grant: naming the principal (or everyone, or all but
    // others through NotPrincipal) stands alone in its account; naming only the principal's
    // account root delegates to identity policies.
    let by_resource = policies.resource.and_then(|policy| {
        statements(policy)
            .filter(|s| effect(s) == "Allow" && matches(s, request, true))
            .map(|s| s.get("Principal").and_then(|p| principal_match(p, &request.principal)).unwrap_or(Grantee::Named))
            .max()
    });
    let cross_account = match (account_of(&request.principal), resource_account(request)) {
        (Some(principal), Some(resource)) => principal != resource,
        _ => false,
    };
    // KMS: "no principal has permission to a KMS key unless the key policy allows it" (KMS
    // developer guide, "Key policies"), in its own account too.
    let key_policy_decides =
        request.action.to_ascii_lowercase().starts_with("kms:") && request.resource.contains(":key/");
    let allowed = if cross_account || key_policy_decides {
        by_resource == Some(Grantee::Named) || by_identity && by_resource.is_some()
    } else {
        by_identity || by_resource == Some(Grantee::Named)
    };
    let decision = if allowed { Decision::Allowed } else { Decision::ImplicitlyDenied };
    second_opinion::check(policies, request, &decision);
    decision
}

/// The account of an ARN (`arn:aws:iam::123456789012:role/x`), if it names one.
fn account_of(arn: &str) -> Option<&str> {
    let arn = arn.strip_prefix("federated:").unwrap_or(arn);
    arn.split(':').nth(4).filter(|account| !account.is_empty())
}

fn resource_account(request: &Request) -> Option<&str> {
    account_of(&request.resource)
        .or_else(|| request.context.get("s3:resourceaccount").and_then(|v| v.first()).map(String::as_str))
}

fn policy_is_resource(policies: &Policies<'_>, policy: &Value) -> bool {
    policies.resource.is_some_and(|resource| std::ptr::eq(resource, policy))
}

fn statements(policy: &Value) -> impl Iterator<Item = &Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>().into_iter(),
        Some(single @ Value::Object(_)) => vec![single].into_iter(),
        other => panic!("a policy's Statement is a list or an object, not {other:?}"),
    }
}

fn effect(statement: &Value) -> &str {
    statement.get("Effect").and_then(Value::as_str).expect("every statement has an Effect")
}

/// A string or a list of strings.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().map(|v| v.as_str().expect("a list of strings")).collect(),
        other => panic!("expected a string or a list of strings, not {other}"),
    }
}

fn matches(statement: &Value, request: &Request, resource_policy: bool) -> bool {
    let field = |name: &str| statement.get(name);
    let actions = match (field("Action"), field("NotAction")) {
        (Some(a), None) => {
            strings(a).iter().any(|p| glob(&p.to_ascii_lowercase(), &request.action.to_ascii_lowercase()))
        }
        (None, Some(a)) => {
            !strings(a).iter().any(|p| glob(&p.to_ascii_lowercase(), &request.action.to_ascii_lowercase()))
        }
        _ => panic!("a statement has Action or NotAction: {statement}"),
    };
    let resources = match (field("Resource"), field("NotResource")) {
        (Some(r), None) => strings(r).iter().any(|p| expanded_glob(p, &request.resource, &request.context)),
        (None, Some(r)) => !strings(r).iter().any(|p| expanded_glob(p, &request.resource, &request.context)),
        // A role's trust policy names no resource: the role itself is it.
        (None, None) => true,
        _ => panic!("a statement has Resource or NotResource: {statement}"),
    };
    let principal = match (field("Principal"), field("NotPrincipal")) {
        (Some(p), None) => principal_match(p, &request.principal).is_some(),
        (None, Some(p)) => principal_match(p, &request.principal).is_none(),
        (None, None) => !resource_policy,
        _ => panic!("a statement has Principal or NotPrincipal: {statement}"),
    };
    actions && resources && principal && conditions_hold(field("Condition"), &request.context)
}

/// How a `Principal` element admits a principal, weaker first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grantee {
    /// Through its account's root: a delegation to that account's identity policies.
    AccountRoot,
    /// By name, or as everyone.
    Named,
}

/// Whether, and how, `principal` admits `who`.
fn principal_match(principal: &Value, who: &str) -> Option<Grantee> {
    let root = account_root_of(who);
    let admits = |kind: &str, name: &str| match kind {
        "AWS" if name == "*" || name == who => Some(Grantee::Named),
        "AWS" if root.as_deref() == Some(name) => Some(Grantee::AccountRoot),
        "Service" if who.strip_prefix("service:") == Some(name) => Some(Grantee::Named),
        "Federated" if who.strip_prefix("federated:") == Some(name) => Some(Grantee::Named),
        _ => None,
    };
    match principal {
        Value::String(s) => (s == "*").then_some(Grantee::Named),
        Value::Object(kinds) => kinds
            .iter()
            .flat_map(|(kind, names)| strings(names).into_iter().filter_map(|name| admits(kind, name)))
            .max(),
        other => panic!("a Principal is * or an object, not {other}"),
    }
}

/// `arn:aws:iam::123456789012:root` for a principal of account 123456789012 (also written as
/// the bare account ID): naming the account admits its principals whose own policies allow.
fn account_root_of(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() >= 5 && parts[0] == "arn").then(|| format!("arn:{}:iam::{}:root", parts[1], parts[4]))
}

fn conditions_hold(conditions: Option<&Value>, context: &BTreeMap<String, Vec<String>>) -> bool {
    let Some(conditions) = conditions else { return true };
    let operators = conditions.as_object().expect("a Condition is an object");
    operators.iter().all(|(operator, keys)| {
        keys.as_object().expect("a condition operator maps keys to values").iter().all(|(key, wanted)| {
            let given = context.get(&key.to_ascii_lowercase()).map(Vec::as_slice);
            let wanted: Vec<String> = strings_of(wanted).iter().filter_map(|w| expand(w, context)).collect();
            condition_holds(operator, given, &wanted)
        })
    })
}

fn strings_of(value: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("a condition value is a string, boolean or number, not {other}"),
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        single => vec![one(single)],
    }
}

fn condition_holds(operator: &str, given: Option<&[String]>, wanted: &[String]) -> bool {
    let (set, operator) = match operator.split_once(':') {
        Some((qualifier, rest)) => (Some(qualifier), rest),
        None => (None, operator),
    };
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    if operator == "Null" {
        let absent = given.is_none_or(<[String]>::is_empty);
        return wanted.iter().any(|w| (w == "true") == absent);
    }
    let negated = operator.contains("Not");
    let Some(given) = given.filter(|values| !values.is_empty()) else {
        // IAM: an absent key fails a condition, except as listed in the module's comment.
        return if_exists || negated || set == Some("ForAllValues");
    };
    let positive = operator.replace("Not", "");
    let one_matches = |value: &str| wanted.iter().any(|w| compare(&positive, w, value));
    match set {
        Some("ForAllValues") => given.iter().all(|v| one_matches(v) != negated),
        Some("ForAnyValue") => given.iter().any(|v| one_matches(v) != negated),
        Some(other) => panic!("unknown set qualifier {other}"),
        // A single-valued key: the first value is the value.
        None => one_matches(&given[0]) != negated,
    }
}

fn compare(operator: &str, wanted: &str, value: &str) -> bool {
    match operator {
        "StringEquals" => wanted == value,
        "StringEqualsIgnoreCase" => wanted.eq_ignore_ascii_case(value),
        // IAM: ArnEquals matches wildcards as ArnLike does.
        "StringLike" | "ArnLike" | "ArnEquals" => glob(wanted, value),
        "Bool" => wanted.eq_ignore_ascii_case(value),
        "NumericEquals"
        | "NumericLessThan"
        | "NumericLessThanEquals"
        | "NumericGreaterThan"
        | "NumericGreaterThanEquals" => {
            let (Ok(w), Ok(v)) = (wanted.parse::<f64>(), value.parse::<f64>()) else { return false };
            match operator {
                "NumericEquals" => v == w,
                "NumericLessThan" => v < w,
                "NumericLessThanEquals" => v <= w,
                "NumericGreaterThan" => v > w,
                _ => v >= w,
            }
        }
        other => panic!("condition operator {other} is not one this evaluator knows: add it, as IAM defines it"),
    }
}

/// `text` with each `${key}` replaced by the request's value of `key`, and the escapes `${*}`,
/// `${?}`, `${$}` by the character; `None` when the request lacks a key it names.
fn expand(text: &str, context: &BTreeMap<String, Vec<String>>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end =
            rest[start..].find('}').map(|e| start + e).unwrap_or_else(|| panic!("an unclosed variable in {text}"));
        match &rest[start + 2..end] {
            escaped @ ("*" | "?" | "$") => out.push_str(escaped),
            key => out.push_str(context.get(&key.to_ascii_lowercase())?.first()?),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// `glob` of a `Resource` pattern after its variables are replaced: only in the resource part
/// of the ARN, after the fifth colon, where IAM allows them (IAM user guide, "Where you can use
/// policy variables"); elsewhere a variable stays text, which matches no ARN. An escaped `*`
/// stays a wildcard here: no policy of this project writes one.
fn expanded_glob(pattern: &str, text: &str, context: &BTreeMap<String, Vec<String>>) -> bool {
    let split = pattern.match_indices(':').nth(4).map_or(0, |(at, _)| at + 1);
    let (head, tail) = pattern.split_at(split);
    expand(tail, context).is_some_and(|tail| glob(&format!("{head}{tail}"), text))
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

mod second_opinion;

pub use self::second_opinion::{action_resource_types, authorized_beyond_the_reference};
#[cfg(test)]
mod tests;
