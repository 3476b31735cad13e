//! moto in server mode: real AWS wire protocols (S3, Secrets Manager, SageMaker, ...) on loopback.
//!
//! One server per test binary, started on first use from the venv `cargo xtask test` installs
//! (`xtask/requirements/test.txt`). It stops when the test process ends: it serves until its
//! stdin, held by this process, closes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use aws_sdk_secretsmanager::config::{Credentials, Region, SharedCredentialsProvider};

pub struct Moto {
    endpoint: String,
    _server: Child,
}

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// The shared server, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// The Python of the test tools' venv: `$XTASK_TOOLS_DIR/test-venv` or
/// `<workspace>/target/tools/test-venv`.
pub fn tools_python() -> PathBuf {
    let tools = std::env::var_os("XTASK_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/tools")));
    let python = tools.join("test-venv/bin/python");
    assert!(python.exists(), "{} is missing: run `cargo xtask test`, which installs the test tools", python.display());
    python
}

impl Moto {
    fn start() -> Moto {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/moto_server.py");
        let mut server = Command::new(tools_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut first_line = String::new();
        BufReader::new(server.stdout.take().expect("piped stdout"))
            .read_line(&mut first_line)
            .expect("read moto's port");
        let port: u16 = first_line.trim().parse().unwrap_or_else(|_| panic!("moto did not start: {first_line:?}"));
        Moto { endpoint: format!("http://127.0.0.1:{port}"), _server: server }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for clients in the test process.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "moto",
            )))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    /// The environment a Lambda process needs to reach this server through the standard chain.
    pub fn lambda_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            // No instance metadata service here: the SDKs would wait on it for a region or role.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// Creates `bucket` as cfn/bootstrap.yml's artifact bucket is: keeping object versions, to which
/// the project template pins the Lambdas' code.
pub async fn create_artifact_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.create_bucket().bucket(bucket).send().await.map_err(|err| format!("creating bucket {bucket}: {err:?}"))?;
    let versioning = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(versioning)
        .send()
        .await
        .map_err(|err| format!("enabling versioning on bucket {bucket}: {err:?}"))?;
    Ok(())
}

/// The role SageMaker makes in an account when project templates are enabled for a Studio domain
/// (`service-role/AmazonSageMakerServiceCatalogProductsUseRole`), as that account has it; made
/// once per moto server.
pub async fn enable_sagemaker_projects(iam: &aws_sdk_iam::Client) -> Result<(), String> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let created = iam
        .create_role()
        .role_name("AmazonSageMakerServiceCatalogProductsUseRole")
        .path("/service-role/")
        .assume_role_policy_document(trust)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_entity_already_exists_exception()) => Ok(()),
        Err(err) => Err(format!("creating SageMaker's products role: {err:?}")),
    }
}
