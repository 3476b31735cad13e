//! The AWS managed policies a Studio user's execution role holds: the adversary of the permission
//! proofs. `data/aws-managed-policies/README.md` says where each document was taken from and which
//! version it is.

use serde_json::Value;

pub struct ManagedPolicy {
    pub name: &'static str,
    /// The policy version AWS made default, e.g. `v27`.
    pub version: String,
    /// The policy document, as IAM evaluates it.
    pub document: Value,
}

/// `AmazonSageMakerFullAccess` (Studio's domain set-up attaches it), with
/// `AmazonSageMakerPipelinesIntegrations` (added by the same set-up for pipelines),
/// `AmazonSageMakerCanvasFullAccess` and `AmazonSageMakerModelRegistryFullAccess` (a domain's
/// Canvas and registry settings add them).
pub fn studio_execution_role() -> Vec<ManagedPolicy> {
    [
        ("AmazonSageMakerFullAccess", include_str!("../data/aws-managed-policies/AmazonSageMakerFullAccess.json")),
        (
            "AmazonSageMakerPipelinesIntegrations",
            include_str!("../data/aws-managed-policies/AmazonSageMakerPipelinesIntegrations.json"),
        ),
        (
            "AmazonSageMakerCanvasFullAccess",
            include_str!("../data/aws-managed-policies/AmazonSageMakerCanvasFullAccess.json"),
        ),
        (
            "AmazonSageMakerModelRegistryFullAccess",
            include_str!("../data/aws-managed-policies/AmazonSageMakerModelRegistryFullAccess.json"),
        ),
    ]
    .into_iter()
    .map(|(name, text)| {
        let mut file: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version =
            file["PolicyVersion"]["VersionId"].as_str().unwrap_or_else(|| panic!("{name}: no VersionId")).to_owned();
        ManagedPolicy { name, version, document: file["PolicyVersion"]["Document"].take() }
    })
    .collect()
}
