//! Every action the templates grant exists in AWS's Service Authorization Reference (the data
//! iam-simulate is built on), and each is granted on at least one resource of a type it is
//! authorized against: a misspelt action, or one granted only on ARNs IAM never checks it
//! against, matches no request and hides a gap that no evaluation of ours would show.

use testkit::cfn::Stack;
use testkit::iam;

use super::*;

/// Every policy document in `stack`'s resolved properties: written as YAML, or as JSON text.
fn policy_documents(stack: &Stack) -> Vec<(String, Json)> {
    fn collect(at: &str, value: &Json, found: &mut Vec<(String, Json)>) {
        match value {
            Json::Object(map) if map.contains_key("Statement") => found.push((at.to_owned(), value.clone())),
            Json::Object(map) => map.iter().for_each(|(key, v)| collect(&format!("{at}.{key}"), v, found)),
            Json::Array(items) => items.iter().for_each(|v| collect(at, v, found)),
            Json::String(text) if text.contains("\"Statement\"") => {
                collect(at, &serde_json::from_str(text).unwrap_or(Json::Null), found);
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (resource, _) in stack.resources().unwrap() {
        if let Ok(properties) = stack.property(&resource, &[]) {
            collect(&resource, &json(properties), &mut found);
        }
    }
    found
}

fn strings(value: Option<&Json>) -> Vec<&str> {
    match value {
        Some(Json::String(one)) => vec![one.as_str()],
        Some(Json::Array(many)) => many.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether the ARN pattern `granted` names some resource of the Service Authorization
/// Reference's format `format` (`arn:${Partition}:sagemaker:${Region}:${Account}:model/${ModelName}`):
/// whether some ARN matches both, `granted`'s `*` (and its policy variables) taking any run of
/// characters, `format`'s variables any run without a colon.
fn fits(granted: &str, format: &str) -> bool {
    let (a, b) = (symbols(granted, Symbol::Any), symbols(format, Symbol::Field));
    // A walk through both patterns at once, over (i, j) pairs, each visited at most once.
    let mut seen = vec![vec![false; b.len() + 1]; a.len() + 1];
    let mut todo = vec![(0, 0)];
    while let Some((i, j)) = todo.pop() {
        if std::mem::replace(&mut seen[i][j], true) {
            continue;
        }
        let (x, y) = (a.get(i), b.get(j));
        match (x, y) {
            (None, None) => return true,
            (Some(Symbol::Any), _) => {
                todo.push((i + 1, j));
                if let Some(Symbol::Char(_)) = y {
                    todo.push((i, j + 1));
                }
            }
            _ => {}
        }
        if y == Some(&Symbol::Field) {
            todo.push((i, j + 1));
            if matches!(x, Some(Symbol::Char(c)) if *c != ':') || x == Some(&Symbol::One) {
                todo.push((i + 1, j));
            }
        }
        if let (Some(Symbol::One), Some(Symbol::Char(_))) = (x, y) {
            todo.push((i + 1, j + 1));
        }
        if let (Some(Symbol::Char(c)), Some(Symbol::Char(d))) = (x, y)
            && c == d
        {
            todo.push((i + 1, j + 1));
        }
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Symbol {
    Char(char),
    /// `?`: any one character.
    One,
    /// `*`: any run.
    Any,
    /// A format's variable: any run within one field of the ARN.
    Field,
}

/// `pattern` as symbols, each `${...}` read as `variable`.
fn symbols(pattern: &str, variable: Symbol) -> Vec<Symbol> {
    let mut out = Vec::new();
    let mut rest = pattern;
    loop {
        let (text, after) = match rest.find("${") {
            Some(start) => (&rest[..start], rest[start..].split_once('}').map(|(_, after)| after)),
            None => (rest, None),
        };
        out.extend(text.chars().map(|c| match c {
            '*' => Symbol::Any,
            '?' => Symbol::One,
            c => Symbol::Char(c),
        }));
        let Some(after) = after else { return out };
        out.push(variable);
        rest = after;
    }
}

#[test]
fn every_granted_action_exists_and_is_granted_where_iam_checks_it() {
    let target = testkit::cfn::target_account(
        REGION,
        STAGING_ACCOUNT,
        &[("DevelopmentAccountId", ACCOUNT), ("StageName", "staging"), ("GitLabGroupPath", "ml/churn-team")],
    )
    .unwrap();
    let stacks = [
        ("bootstrap", bootstrap()),
        ("bootstrap (access key)", bootstrap_with(&[("GitLabCiAccess", "AccessKey"), ("S3Templates", "Enabled")])),
        ("project", project()),
        ("project (target accounts)", project_with_target_accounts()),
        ("target account", target),
    ];
    let mut offences = Vec::new();
    let mut checked = 0;
    for (name, stack) in &stacks {
        for (at, document) in policy_documents(stack) {
            let statements = match &document["Statement"] {
                Json::Array(list) => list.clone(),
                single => vec![single.clone()],
            };
            for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
                let resources = strings(statement.get("Resource"));
                for action in strings(statement.get("Action")).into_iter().filter(|a| !a.contains('*')) {
                    checked += 1;
                    let Some(types) = iam::action_resource_types(action) else {
                        offences.push(format!("{name} {at}: {action} is no action of AWS's"));
                        continue;
                    };
                    // A trust policy's statement names no resource: the role is it.
                    if resources.is_empty() || resources.contains(&"*") {
                        continue;
                    }
                    if resources.iter().all(|r| iam::authorized_beyond_the_reference(action, r)) {
                        continue;
                    }
                    if types.is_empty() {
                        offences.push(format!(
                            "{name} {at}: {action} is authorized against * only, granted on {resources:?}"
                        ));
                    } else if !resources.iter().any(|r| types.iter().any(|format| fits(r, format))) {
                        offences.push(format!(
                            "{name} {at}: {action} is authorized against {types:?}, granted on {resources:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "the premise: the templates grant more than {checked} actions");
    assert!(offences.is_empty(), "{} grants match no request IAM makes:\n{}", offences.len(), offences.join("\n"));
}

#[test]
fn a_grant_fits_a_resource_type_by_its_shape() {
    let model = "arn:${Partition}:sagemaker:${Region}:${Account}:model/${ModelName}";
    assert!(fits("arn:aws:sagemaker:eu-west-1:123456789012:model/*", model));
    assert!(!fits("arn:aws:sagemaker:eu-west-1:123456789012:endpoint/*-p-1-*", model));
    let object = "arn:${Partition}:s3:::${BucketName}/${ObjectName}";
    assert!(fits("arn:aws:s3:::sagemaker-project-*/*", object));
    assert!(!fits("arn:aws:s3:::sagemaker-project-p-1", object), "a bucket is no object");
    let execution =
        "arn:${Partition}:sagemaker:${Region}:${Account}:pipeline/${PipelineName}/execution/${RandomString}";
    assert!(fits("arn:aws:sagemaker:eu-west-1:123456789012:pipeline/*", execution), "a * spans the path");
    assert!(!fits("arn:aws:sagemaker:eu-west-1:123456789012:pipeline/churn-p-1", execution));
    assert!(!fits("arn:aws:sagemaker:*:*:endpoint/*", execution), "a * stays within the ARN's fields");
}
