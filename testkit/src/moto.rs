//! moto in server mode: real AWS wire protocols (S3, Secrets Manager, SageMaker, ...) on loopback.
//!
//! One server per test binary, started on first use from the venv `cargo xtask test` installs
//! (`xtask/requirements/test.txt`). It stops when the test process ends: it serves until its
//! stdin, held by this process, closes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context as _;
use aws_sdk_secretsmanager::config::{Credentials, Region, SharedCredentialsProvider};

pub struct Moto {
    endpoint: String,
    /// Where moto's recorder writes each request it serves, once recording is started.
    recording: PathBuf,
    _server: Child,
}

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// The shared server, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// The Python of the test tools' venv.
pub fn tools_python() -> PathBuf {
    let python = crate::tools_dir().join("test-venv/bin/python");
    assert!(python.exists(), "{} is missing: run `cargo xtask test`, which installs the test tools", python.display());
    python
}

impl Moto {
    fn start() -> Moto {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/moto_server.py");
        let recording = std::env::temp_dir().join(format!("moto-recording-{}.jsonl", std::process::id()));
        let mut server = Command::new(tools_python())
            .arg(script)
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .envs(xtask::tools::python_bytecode_env())
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
        Moto { endpoint: format!("http://127.0.0.1:{port}"), recording, _server: server }
    }

    /// Starts moto's recorder (its `/moto-api/recorder/` API): from now on every request, with
    /// its headers and body, is kept for `take_recorded_requests`.
    pub fn start_recording(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.recording);
        let url = format!("{}/moto-api/recorder/start-recording", self.endpoint);
        let status = post_empty(&url)?;
        anyhow::ensure!(status == 200, "moto's recorder answered {status}");
        Ok(())
    }

    /// The requests recorded since `start_recording`, one JSON object each (method, url, headers,
    /// body: base64 when `body_encoded`). Recording stops, and its file (tens of MB with uploads) is removed.
    pub fn take_recorded_requests(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        // Stopped first, or the next request would write the file again.
        let status = post_empty(&format!("{}/moto-api/recorder/stop-recording", self.endpoint))?;
        anyhow::ensure!(status == 200, "moto's recorder answered {status} to stop");
        let text = std::fs::read_to_string(&self.recording)
            .with_context(|| format!("cannot read moto's recording {}", self.recording.display()))?;
        let _ = std::fs::remove_file(&self.recording);
        text.lines().map(|line| serde_json::from_str(line).context("a recorded request")).collect()
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

/// An HTTP/1.1 POST without a body to a loopback `http://` URL; its status code.
fn post_empty(url: &str) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("not an http URL")?;
    let (host, path) = rest.split_once('/').context("no path")?;
    let mut stream = std::net::TcpStream::connect(host).with_context(|| url.to_owned())?;
    let request = format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).with_context(|| url.to_owned())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).with_context(|| url.to_owned())?;
    let status = answer.split_whitespace().nth(1).and_then(|code| code.parse().ok());
    status.with_context(|| format!("{url} answered {answer:?}"))
}

/// Creates `bucket` as cfn/bootstrap.yml's artifact bucket is: keeping object versions, to which
/// the project template pins the Lambdas' code.
pub async fn create_artifact_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.create_bucket().bucket(bucket).send().await.with_context(|| format!("creating bucket {bucket}"))?;
    let versioning = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(versioning)
        .send()
        .await
        .with_context(|| format!("enabling versioning on bucket {bucket}"))?;
    Ok(())
}

/// The role SageMaker makes in an account when project templates are enabled for a Studio domain
/// (`service-role/AmazonSageMakerServiceCatalogProductsUseRole`), as that account has it; made
/// once per moto server.
pub async fn enable_sagemaker_projects(iam: &aws_sdk_iam::Client) -> anyhow::Result<()> {
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
        Err(err) => Err(anyhow::Error::new(err).context("creating SageMaker's products role")),
    }
}

/// Gives `bucket` the CORS rule Studio's pages need to read S3-based project templates (what
/// cfn/bootstrap.yml sets with S3Templates=Enabled: GET from https://*.sagemaker.aws).
pub async fn allow_studio_cors(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let rule = CorsRule::builder().allowed_origins("https://*.sagemaker.aws").allowed_methods("GET").build()?;
    let cors = CorsConfiguration::builder().cors_rules(rule).build()?;
    s3.put_bucket_cors().bucket(bucket).cors_configuration(cors).send().await.context("putting the CORS rule")?;
    Ok(())
}

/// One call to an AWS JSON-protocol API in moto (SageMaker, EventBridge, SQS, Secrets Manager,
/// Service Catalog), as the caller with `access_key`: moto acts in that key's account (an
/// assumed role's key acts in the role's account), routes by the Authorization header's
/// credential scope and checks no signature. For calls the SDK clients linked here do not cover.
pub async fn json_call(
    access_key: &str,
    service: &str,
    target: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let date = time::OffsetDateTime::now_utc().date();
    let scope =
        format!("{:04}{:02}{:02}/{REGION}/{service}/aws4_request", date.year(), u8::from(date.month()), date.day());
    let authorization = format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host, Signature=0");
    let response = reqwest::Client::new()
        .post(moto().endpoint())
        .header("X-Amz-Target", target)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("Authorization", authorization)
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("{target}: moto unreachable"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{target} answered {status}: {text}");
    Ok(if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text)? })
}
