//! The project template as `cargo xtask publish` writes it: `cfn/project.yml` with its
//! `Mappings.Publish` section filled in. The source file stays valid CloudFormation; only the
//! mapping's values change, and CloudFormation's short-form tags (`!Sub`, `!GetAtt`, ...) are
//! kept as they are.

use anyhow::{Context, bail};
use serde_yaml::Value;

/// The template Studio provisions, relative to the workspace root.
pub const PROJECT_TEMPLATE: &str = "cfn/project.yml";
/// The one-time account setup, relative to the workspace root.
pub const BOOTSTRAP_TEMPLATE: &str = "cfn/bootstrap.yml";
/// One deployment stage in an account of its own, relative to the workspace root.
pub const TARGET_ACCOUNT_TEMPLATE: &str = "cfn/target-account.yml";

/// One value of `Mappings.Publish`: `(group, key, value)`, e.g. `("Artifacts", "Bucket", "b")`.
pub type Setting<'a> = (&'a str, &'a str, &'a str);

/// `template` with each setting written into `Mappings.Publish.<group>.<key>`. A setting the
/// template has no slot for is an error, so a renamed key never goes unnoticed.
pub fn render(template: &str, settings: &[Setting<'_>]) -> anyhow::Result<String> {
    let mut document: Value = serde_yaml::from_str(template).context("the project template is not valid YAML")?;
    let publish = document
        .get_mut("Mappings")
        .and_then(|mappings| mappings.get_mut("Publish"))
        .context("the project template has no Mappings.Publish section")?;
    for (group, key, value) in settings {
        let Some(slot) = publish.get_mut(*group).and_then(|g| g.get_mut(*key)) else {
            bail!("the project template has no Mappings.Publish.{group}.{key} to set");
        };
        *slot = Value::String((*value).to_owned());
    }
    serde_yaml::to_string(&document).context("cannot write the rendered template")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "Mappings:\n  Publish:\n    Artifacts:\n      Bucket: placeholder\nResources:\n  Fn:\n    Properties:\n      Role: !Sub arn:${AWS::Partition}:iam::role/x\n      Code: { S3Bucket: !FindInMap [Publish, Artifacts, Bucket] }\n";

    #[test]
    fn writes_the_mapping_and_keeps_short_form_tags() {
        let rendered = render(TEMPLATE, &[("Artifacts", "Bucket", "my-bucket")]).unwrap();
        let document: Value = serde_yaml::from_str(&rendered).unwrap();
        assert_eq!(document["Mappings"]["Publish"]["Artifacts"]["Bucket"], "my-bucket");
        assert!(rendered.contains("!Sub arn:${AWS::Partition}:iam::role/x"), "{rendered}");
        assert!(rendered.contains("!FindInMap"), "{rendered}");
    }

    #[test]
    fn unknown_slots_are_errors() {
        let err = render(TEMPLATE, &[("Artifacts", "Bukket", "b")]).unwrap_err();
        assert!(err.to_string().contains("Mappings.Publish.Artifacts.Bukket"), "{err}");
        let err = render("Resources: {}\n", &[("Artifacts", "Bucket", "b")]).unwrap_err();
        assert!(err.to_string().contains("no Mappings.Publish section"), "{err}");
    }
}
