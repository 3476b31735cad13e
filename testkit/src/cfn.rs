//! CloudFormation's part where the tests play it: the intrinsic functions the templates use
//! (`Ref`, `Fn::Sub`, `Fn::FindInMap`, `Fn::If`, `Fn::Equals`, `Fn::Not`, `Fn::GetAtt`),
//! resolved for one sample stack, so the end-to-end run gives the Lambdas the environment a real
//! stack gives them and the permission proof sees the policies and names a real stack has.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_yaml::Value;

/// `cfn/bootstrap.yml` resolved as a stack in `account` and `region` with the artifact bucket
/// `bucket` and `parameters`: its roles, the CI boundary and the OIDC provider carry the ARNs IAM
/// gives them, as the e2e run and the permission proof evaluate them.
pub fn bootstrap(region: &str, account: &str, bucket: &str, parameters: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let path = xtask::project::root().join(xtask::template::BOOTSTRAP_TEMPLATE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut given = vec![("ArtifactBucket", bucket)];
    given.extend_from_slice(parameters);
    let mut stack = Stack::new(&text, region, account, &given)?;
    stack.set_attribute("ArtifactBucket", "Arn", &format!("arn:aws:s3:::{bucket}"));
    stack.name_iam_resources()?;
    Ok(stack)
}

/// `cfn/target-account.yml` resolved as a stack in `account` and `region` with `parameters`:
/// its bucket and IAM resources carry the names and ARNs AWS gives them.
pub fn target_account(region: &str, account: &str, parameters: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let path = xtask::project::root().join(xtask::template::TARGET_ACCOUNT_TEMPLATE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut stack = Stack::new(&text, region, account, parameters)?;
    let bucket = scalar(&stack.property("DataBucket", &["BucketName"])?)?;
    stack.set_attribute("DataBucket", "Arn", &format!("arn:aws:s3:::{bucket}"));
    stack.parameters.insert("DataBucket".to_owned(), bucket);
    stack.name_iam_resources()?;
    Ok(stack)
}

pub struct Stack {
    template: Value,
    parameters: BTreeMap<String, String>,
    /// `Resource.Attribute` values, e.g. the custom resource's Data after it answered.
    attributes: BTreeMap<String, String>,
}

impl Stack {
    /// `parameters` as the caller gives them; the template's defaults fill the rest.
    pub fn new(template: &str, region: &str, account: &str, given: &[(&str, &str)]) -> anyhow::Result<Stack> {
        let template: Value = serde_yaml::from_str(template).context("the published template is not YAML")?;
        let mut parameters: BTreeMap<String, String> = [
            ("AWS::Region", region),
            ("AWS::AccountId", account),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(declared) = template.get("Parameters").and_then(Value::as_mapping) {
            for (name, spec) in declared {
                if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                    parameters.insert(name.to_owned(), scalar(default)?);
                }
            }
        }
        parameters.extend(given.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        // As CloudFormation does before it creates anything. `given` also holds the values of
        // resources' `Ref`s, so names the template does not declare are not refused here, nor
        // are declared ones left out (moto_cloudformation.py refuses both, as CloudFormation does).
        if let Some(declared) = template.get("Parameters").and_then(Value::as_mapping) {
            for (name, spec) in declared {
                let name = scalar(name)?;
                if let Some(value) = parameters.get(&name) {
                    check_parameter(&name, spec, value)?;
                }
            }
        }
        Ok(Stack { template, parameters, attributes: BTreeMap::new() })
    }

    /// The resources a stack of this template has: logical ID and type, in template order,
    /// leaving out those whose `Condition` is false.
    pub fn resources(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        let resources =
            self.template.get("Resources").and_then(Value::as_mapping).context("the template has no Resources")?;
        for (name, resource) in resources {
            let name = scalar(name)?;
            if let Some(condition) = resource.get("Condition")
                && !self.condition(&scalar(condition)?)?
            {
                continue;
            }
            let kind = resource.get("Type").map(scalar).transpose()?.with_context(|| format!("{name} has no Type"))?;
            found.push((name, kind));
        }
        Ok(found)
    }

    /// A resource's attribute outside `Properties` (`DeletionPolicy`, say), as written.
    pub fn resource_field(&self, resource: &str, field: &str) -> Option<String> {
        let value = self.template.get("Resources")?.get(resource)?.get(field)?;
        scalar(value).ok()
    }

    pub fn attribute(&self, resource: &str, attribute: &str) -> Option<&str> {
        self.attributes.get(&format!("{resource}.{attribute}")).map(String::as_str)
    }

    pub fn set_attribute(&mut self, resource: &str, attribute: &str, value: &str) {
        self.attributes.insert(format!("{resource}.{attribute}"), value.to_owned());
    }

    /// A resource's property, resolved, as JSON: the form policies are evaluated in.
    pub fn json_property(&self, resource: &str, path: &[&str]) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(self.property(resource, path)?)?)
    }

    /// The policy documents of a role's inline `Policies`.
    pub fn inline_policies(&self, role: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let policies = self.json_property(role, &["Policies"])?;
        Ok(policies.as_array().into_iter().flatten().map(|policy| policy["PolicyDocument"].clone()).collect())
    }

    /// Gives the stack's IAM roles, managed policies and OIDC providers the ARNs IAM derives from
    /// their names, as `!GetAtt Role.Arn` and `!Ref` resolve in a real stack.
    pub fn name_iam_resources(&mut self) -> anyhow::Result<()> {
        let account = self.parameters["AWS::AccountId"].clone();
        let mut named = Vec::new();
        for (resource, kind) in self.resources()? {
            let (field, arn_of): (&str, fn(&str, &str) -> String) = match kind.as_str() {
                "AWS::IAM::Role" => ("RoleName", |account, name| format!("arn:aws:iam::{account}:role/{name}")),
                "AWS::IAM::ManagedPolicy" => {
                    ("ManagedPolicyName", |account, name| format!("arn:aws:iam::{account}:policy/{name}"))
                }
                // IAM names a provider by its issuer URL without the scheme.
                "AWS::IAM::OIDCProvider" => ("Url", |account, url| {
                    format!("arn:aws:iam::{account}:oidc-provider/{}", url.trim_start_matches("https://"))
                }),
                _ => continue,
            };
            let name = scalar(&self.property(&resource, &[field])?)?;
            named.push((resource, kind, arn_of(&account, &name)));
        }
        for (resource, kind, arn) in named {
            match kind.as_str() {
                "AWS::IAM::Role" => self.set_attribute(&resource, "Arn", &arn),
                // `Ref` gives a managed policy's and a provider's ARN.
                _ => {
                    self.parameters.insert(resource, arn);
                }
            }
        }
        Ok(())
    }

    /// A resource's property, resolved.
    pub fn property(&self, resource: &str, path: &[&str]) -> anyhow::Result<Value> {
        let mut value = self.template.get("Resources").and_then(|r| r.get(resource)).and_then(|r| r.get("Properties"));
        for key in path {
            value = value.and_then(|v| v.get(*key));
        }
        let missing = || format!("the template has no {resource}.Properties.{}", path.join("."));
        let resolved = self.resolve(value.with_context(missing)?)?;
        // A property that resolves to `AWS::NoValue` is left out, as CloudFormation leaves it.
        if is_no_value(&resolved) {
            bail!("{} (it resolves to AWS::NoValue)", missing());
        }
        Ok(resolved)
    }

    /// A Lambda function's environment variables, resolved to strings.
    pub fn lambda_environment(&self, function: &str) -> anyhow::Result<BTreeMap<String, String>> {
        string_map(&self.property(function, &["Environment", "Variables"])?, &format!("{function}'s environment"))
    }

    fn resolve(&self, value: &Value) -> anyhow::Result<Value> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let name = if name == "Ref" || name == "Condition" { name.to_owned() } else { format!("Fn::{name}") };
                self.intrinsic(&name, &tagged.value)
            }
            Value::Mapping(mapping) => {
                if let [(Value::String(key), argument)] = mapping.iter().collect::<Vec<_>>()[..]
                    && (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                {
                    return self.intrinsic(key, argument);
                }
                let resolved = mapping.iter().map(|(k, v)| Ok((k.clone(), self.resolve(v)?)));
                let resolved: Vec<(Value, Value)> = resolved.collect::<anyhow::Result<_>>()?;
                Ok(Value::Mapping(resolved.into_iter().filter(|(_, v)| !is_no_value(v)).collect()))
            }
            Value::Sequence(items) => {
                let resolved: Vec<Value> = items.iter().map(|v| self.resolve(v)).collect::<anyhow::Result<_>>()?;
                Ok(Value::Sequence(resolved.into_iter().filter(|v| !is_no_value(v)).collect()))
            }
            other => Ok(other.clone()),
        }
    }

    fn intrinsic(&self, name: &str, argument: &Value) -> anyhow::Result<Value> {
        let arguments = || -> anyhow::Result<Vec<Value>> {
            let items = argument.as_sequence().with_context(|| format!("{name} takes a list"))?;
            items.iter().map(|v| self.resolve(v)).collect()
        };
        match name {
            "Ref" if scalar(argument)? == "AWS::NoValue" => Ok(no_value()),
            "Ref" => self.reference(&scalar(argument)?).map(Value::String),
            "Fn::GetAtt" => {
                let path = match argument {
                    Value::Sequence(parts) => parts.iter().map(scalar).collect::<anyhow::Result<Vec<_>>>()?.join("."),
                    other => scalar(other)?,
                };
                let value = self.attributes.get(&path).with_context(|| format!("no value for GetAtt {path} yet"))?;
                Ok(Value::String(value.clone()))
            }
            "Fn::FindInMap" => {
                let keys = arguments()?.iter().map(scalar).collect::<anyhow::Result<Vec<_>>>()?;
                let [map, first, second] = &keys[..] else { bail!("FindInMap takes three keys: {keys:?}") };
                let found = self.template.get("Mappings").and_then(|m| m.get(map)).and_then(|m| m.get(first));
                found
                    .and_then(|m| m.get(second))
                    .cloned()
                    .with_context(|| format!("Mappings has no {map}.{first}.{second}"))
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Value::Sequence(parts) if parts.len() == 2 => {
                        (scalar(&parts[0])?, string_map(&self.resolve(&parts[1])?, "Sub's variables")?)
                    }
                    other => (scalar(other)?, BTreeMap::new()),
                };
                self.substitute(&text, &variables).map(Value::String)
            }
            "Fn::If" => {
                let [condition, then, otherwise] = argument.as_sequence().map(Vec::as_slice).unwrap_or_default() else {
                    bail!("If takes [condition, value, value]")
                };
                let chosen = if self.condition(&scalar(condition)?)? { then } else { otherwise };
                self.resolve(chosen)
            }
            "Fn::Equals" => {
                let values = arguments()?;
                let [a, b] = &values[..] else { bail!("Equals takes two values") };
                Ok(Value::Bool(scalar(a)? == scalar(b)?))
            }
            "Fn::Not" => {
                let values = arguments()?;
                let [Value::Bool(value)] = &values[..] else { bail!("Not takes one condition") };
                Ok(Value::Bool(!value))
            }
            "Fn::And" | "Fn::Or" => {
                let values = arguments()?;
                let flags: Vec<bool> = values
                    .iter()
                    .map(|v| v.as_bool().context("And/Or take conditions"))
                    .collect::<anyhow::Result<_>>()?;
                Ok(Value::Bool(if name == "Fn::And" { flags.iter().all(|f| *f) } else { flags.iter().any(|f| *f) }))
            }
            "Condition" => self.condition(&scalar(argument)?).map(Value::Bool),
            other => bail!("this resolver does not know {other}"),
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        self.parameters.get(name).cloned().with_context(|| format!("Ref {name}: not a parameter of this run"))
    }

    fn condition(&self, name: &str) -> anyhow::Result<bool> {
        let definition = self.template.get("Conditions").and_then(|c| c.get(name));
        let resolved = self.resolve(definition.with_context(|| format!("no condition {name}"))?)?;
        resolved.as_bool().with_context(|| format!("condition {name} is not true or false"))
    }

    fn substitute(&self, text: &str, variables: &BTreeMap<String, String>) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').with_context(|| format!("unclosed ${{ in {text:?}"))? + start;
            let name = &rest[start + 2..end];
            let value = match variables.get(name) {
                Some(value) => value.clone(),
                None if name.contains('.') && !name.starts_with("AWS::") => {
                    self.attributes.get(name).cloned().with_context(|| format!("no value for ${{{name}}} yet"))?
                }
                None => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// What `Ref AWS::NoValue` resolves to: the property or list item it stands in is left out.
fn no_value() -> Value {
    Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
        tag: serde_yaml::value::Tag::new("AWS::NoValue"),
        value: Value::Null,
    }))
}

fn is_no_value(value: &Value) -> bool {
    matches!(value, Value::Tagged(tagged) if tagged.tag == "AWS::NoValue")
}

fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => bail!("expected a plain value, found {other:?}"),
    }
}

/// CloudFormation's check of a parameter's value against its declaration (CloudFormation User
/// Guide, "Parameters" section structure), with CloudFormation's message: the one
/// `moto_cloudformation.py` gives moto, where its sources are cited.
fn check_parameter(name: &str, spec: &Value, value: &str) -> anyhow::Result<()> {
    let Some(reason) = refusal(spec, value)? else { return Ok(()) };
    match spec.get("ConstraintDescription").map(scalar).transpose()? {
        Some(described) => bail!("Parameter {name} failed to satisfy constraint: {described}"),
        None => bail!("Parameter '{name}' {reason}"),
    }
}

/// Why `value` does not satisfy the parameter declared as `spec`: `AllowedPattern` matches the
/// whole value (each member of a list), `AllowedValues` lists them, lengths bound a `String`,
/// `MinValue`/`MaxValue` a `Number` (each member of a `List<Number>`).
fn refusal(spec: &Value, value: &str) -> anyhow::Result<Option<String>> {
    let setting = |key: &str| spec.get(key).map(scalar).transpose();
    let kind = setting("Type")?.unwrap_or_else(|| "String".to_owned());
    let members: Vec<&str> = match kind == "CommaDelimitedList" || kind.starts_with("List<") {
        true => value.split(',').map(str::trim).collect(),
        false => vec![value],
    };
    for member in members {
        if kind == "Number" || kind == "List<Number>" {
            let Ok(number) = member.parse::<f64>() else { return Ok(Some("must be a number".into())) };
            if let Some(min) = setting("MinValue")?
                && number < min.parse::<f64>()?
            {
                return Ok(Some(format!("must be a number not less than {min}")));
            }
            if let Some(max) = setting("MaxValue")?
                && number > max.parse::<f64>()?
            {
                return Ok(Some(format!("must be a number not greater than {max}")));
            }
        }
        if let Some(pattern) = setting("AllowedPattern")?
            && !regex_lite::Regex::new(&format!("^(?:{pattern})$"))?.is_match(member)
        {
            return Ok(Some(format!("must match pattern {pattern}")));
        }
        if let Some(allowed) = spec.get("AllowedValues").and_then(Value::as_sequence)
            && !allowed.iter().any(|item| scalar(item).is_ok_and(|item| item == member))
        {
            return Ok(Some("must be one of AllowedValues".into()));
        }
    }
    if kind == "String" {
        let length = value.chars().count();
        if let Some(min) = setting("MinLength")?
            && length < min.parse()?
        {
            return Ok(Some(format!("must contain at least {min} characters")));
        }
        if let Some(max) = setting("MaxLength")?
            && length > max.parse()?
        {
            return Ok(Some(format!("must contain at most {max} characters")));
        }
    }
    Ok(None)
}

/// A mapping of plain values, as strings; `what` names it in the error.
fn string_map(value: &Value, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mapping = value.as_mapping().with_context(|| format!("{what} is not a mapping"))?;
    mapping.iter().map(|(k, v)| Ok((scalar(k)?, scalar(v)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Name: { Type: String }
  Group: { Type: String, Default: None }
Mappings:
  Publish:
    Access: { Role: ci-role, Secret: "" }
Conditions:
  HasRole: !Not [!Equals [!FindInMap [Publish, Access, Role], ""]]
Resources:
  Fn:
    Properties:
      Environment:
        Variables:
          NAME: !Ref Name
          GROUP: { Ref: Group }
          ARN: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${Name}
          ROLE: !If [HasRole, !Sub ["x-${R}", { R: !FindInMap [Publish, Access, Role] }], ""]
          DEPLOY: !GetAtt Checkin.DeployProjectId
"#;

    #[test]
    fn resolves_short_and_long_forms_conditions_and_attributes() {
        let mut stack = Stack::new(TEMPLATE, "eu-west-1", "111122223333", &[("Name", "churn")]).unwrap();
        assert!(stack.lambda_environment("Fn").unwrap_err().to_string().contains("GetAtt Checkin.DeployProjectId"));
        stack.set_attribute("Checkin", "DeployProjectId", "42");
        let env = stack.lambda_environment("Fn").unwrap();
        assert_eq!(env["NAME"], "churn");
        assert_eq!(env["GROUP"], "None");
        assert_eq!(env["ARN"], "arn:aws:iam::111122223333:role/churn");
        assert_eq!(env["ROLE"], "x-ci-role");
        assert_eq!(env["DEPLOY"], "42");
    }

    #[test]
    fn parameter_values_are_checked_as_cloudformation_checks_them() {
        let template = r#"
Parameters:
  Bucket: { Type: String, AllowedPattern: "^sagemaker-project-p-[a-z0-9]{12}$" }
  Stage: { Type: String, AllowedValues: [staging, production], Default: staging }
  Name: { Type: String, MinLength: 3, MaxLength: 8, Default: churn }
  Count: { Type: Number, MinValue: 1, MaxValue: 4, Default: 1 }
  Described: { Type: String, AllowedPattern: "[a-z]+", ConstraintDescription: lower-case letters only, Default: ok }
Resources: {}
"#;
        let bucket = ("Bucket", "sagemaker-project-p-abcdef123456");
        let refused = |extra: (&str, &str)| {
            Stack::new(template, "r", "1", &[bucket, extra]).err().map(|err| err.to_string()).unwrap_or_default()
        };
        assert!(Stack::new(template, "r", "1", &[bucket]).is_ok());
        assert_eq!(
            refused(("Bucket", "sm-gl-eu-west-1-111111111111-123456789012-staging")),
            "Parameter 'Bucket' must match pattern ^sagemaker-project-p-[a-z0-9]{12}$"
        );
        assert_eq!(refused(("Stage", "dev")), "Parameter 'Stage' must be one of AllowedValues");
        assert_eq!(refused(("Name", "ab")), "Parameter 'Name' must contain at least 3 characters");
        assert_eq!(refused(("Name", "abcdefghi")), "Parameter 'Name' must contain at most 8 characters");
        assert_eq!(refused(("Count", "5")), "Parameter 'Count' must be a number not greater than 4");
        assert_eq!(refused(("Count", "two")), "Parameter 'Count' must be a number");
        assert_eq!(
            refused(("Described", "UPPER")),
            "Parameter Described failed to satisfy constraint: lower-case letters only"
        );
    }

    #[test]
    fn unknown_references_are_errors() {
        let stack = Stack::new("Resources: { Fn: { Properties: { A: !Ref Nope } } }", "r", "1", &[]).unwrap();
        assert!(stack.property("Fn", &["A"]).unwrap_err().to_string().contains("Ref Nope"));
    }
}
