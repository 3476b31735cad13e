//! A world for the checkin Lambda to run in: moto for Secrets Manager and S3, the GitLab API
//! double, and a sink standing in for CloudFormation's ResponseURL. Shared by the tests and
//! the Create benchmark (`examples/bench_create.rs`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_common::retry::RetryPolicy;
use lambda_runtime::{Context, LambdaEvent};
use seedcode_checkin::config::Config;
use seedcode_checkin::{Deps, handle};
use serde_json::{Value, json};
use testkit::gitlab::GitLabDouble;
use testkit::moto::{ACCOUNT_ID, REGION, moto};
use testkit::response_sink::{Received, ResponseSink};

pub const TOKEN: &str = "glpat-Secret-Token-Value-0123";
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const BINARY: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0xfe, 0x00];

pub fn zip_of(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, mode, content) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default().unix_permissions(*mode)).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// SHA-256 in hex, as publish records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn build_files() -> Vec<(&'static str, u32, &'static [u8])> {
    vec![
        (".gitlab-ci.yml", 0o644, b"stages: [build]\n"),
        ("pipelines/run.py", 0o644, b"print('train')\n"),
        ("scripts/build.sh", 0o755, b"#!/bin/sh\necho build\n"),
        ("data/sample.bin", 0o644, BINARY),
    ]
}

pub fn deploy_files() -> Vec<(&'static str, u32, &'static [u8])> {
    vec![(".gitlab-ci.yml", 0o644, b"stages: [deploy]\n"), ("endpoint-config-template.yml", 0o644, b"Resources: {}\n")]
}

pub struct Stand {
    pub gitlab: GitLabDouble,
    pub sink: ResponseSink,
    pub env: HashMap<String, String>,
    pub project_id: String,
    pub retry: RetryPolicy,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh world: its own bucket, secrets and SageMaker project ID in the shared moto server.
pub async fn stand() -> Stand {
    testkit::logs::capture();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let unique = format!("{}-{n}", std::process::id());
    let sdk = moto().sdk_config();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let bucket = format!("seedcode-{unique}");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut digests = Vec::new();
    for (key, files) in [("v1/build.zip", build_files()), ("v1/deploy.zip", deploy_files())] {
        let zip = zip_of(&files);
        digests.push(sha256_hex(&zip));
        s3.put_object().bucket(&bucket).key(key).body(zip.into()).send().await.unwrap();
    }
    let token_secret = format!("gitlab-token-{unique}");
    secrets
        .create_secret()
        .name(&token_secret)
        .secret_string(format!("{{\"token\": \"{TOKEN}\"}}"))
        .send()
        .await
        .unwrap();
    let keys_secret = format!("ci-keys-{unique}");
    let keys = json!({ "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY });
    secrets.create_secret().name(&keys_secret).secret_string(keys.to_string()).send().await.unwrap();

    let gitlab = GitLabDouble::start(TOKEN).await;
    // SageMaker's form, p- and twelve lower-case letters or digits, unique per stand.
    let project_id = format!("p-{:06}{n:06}", std::process::id() % 1_000_000);
    let env = HashMap::from(
        [
            ("GITLAB_SERVER_URL", gitlab.url()),
            ("GITLAB_TOKEN_SECRET_NAME", token_secret),
            ("GITLAB_GROUP_ID", "None".into()),
            ("BUILD_REPOSITORY_NAME", "churn-build".into()),
            ("DEPLOY_REPOSITORY_NAME", "churn-deploy".into()),
            ("SAGEMAKER_PROJECT_NAME", "churn".into()),
            ("SAGEMAKER_PROJECT_ID", project_id.clone()),
            ("SEEDCODE_BUCKET", bucket),
            ("MODEL_BUILD_SEEDCODE_KEY", "v1/build.zip".into()),
            ("MODEL_DEPLOY_SEEDCODE_KEY", "v1/deploy.zip".into()),
            ("MODEL_BUILD_SEEDCODE_SHA256", digests[0].clone()),
            ("MODEL_DEPLOY_SEEDCODE_SHA256", digests[1].clone()),
            ("SAGEMAKER_PIPELINE_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT_ID}:role/pipeline")),
            ("MODEL_EXECUTION_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT_ID}:role/model")),
            ("GITLAB_CI_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT_ID}:role/gitlab-ci")),
            ("GITLAB_CI_ACCESS_KEY_SECRET_NAME", String::new()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let retry =
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
    Stand { gitlab, sink: ResponseSink::start().await, env, project_id, retry }
}

impl Stand {
    pub fn deps(&self) -> Arc<Deps> {
        let config = Config::from_lookup(|name| self.env.get(name).cloned());
        let mut deps = Deps::new(&moto().sdk_config(), config);
        deps.gitlab_retry = self.retry;
        // The sink stands in for S3's pre-signed URL on loopback.
        deps.allow_loopback_response_url = true;
        Arc::new(deps)
    }

    pub fn build_path(&self) -> String {
        format!("platform-bot/churn-build-{}", self.project_id)
    }

    pub fn deploy_path(&self) -> String {
        format!("platform-bot/churn-deploy-{}", self.project_id)
    }

    pub fn request(&self, request_type: &str, physical_id: Option<&str>) -> Value {
        let mut request = json!({
            "RequestType": request_type,
            "RequestId": format!("req-{}", COUNTER.fetch_add(1, Ordering::Relaxed)),
            "ResponseURL": self.sink.url(),
            "ResourceType": "Custom::SeedCodeCheckin",
            "LogicalResourceId": "SeedCodeCheckin",
            "StackId": format!("arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/SC-{ACCOUNT_ID}-pp-1/0000"),
            "ServiceToken": format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:checkin"),
            "ResourceProperties": { "ServiceToken": format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:checkin") }
        });
        if let Some(id) = physical_id {
            request["PhysicalResourceId"] = json!(id);
        }
        request
    }

    /// Invokes the handler with `time_limit` until the deadline; returns every answer the sink got.
    pub async fn invoke_with(&self, deps: Arc<Deps>, payload: Value, time_limit: Duration) -> Vec<Received> {
        let before = self.sink.received().len();
        let mut context = Context::default();
        context.request_id = "invocation-1".into();
        context.invoked_function_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:checkin");
        let deadline = SystemTime::now() + time_limit;
        context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        handle(deps, LambdaEvent::new(payload, context)).await.expect("the answer was sent");
        assert!(SystemTime::now() < deadline, "answered after the deadline");
        self.sink.received()[before..].to_vec()
    }

    pub async fn invoke(&self, request_type: &str, physical_id: Option<&str>) -> Value {
        let answers =
            self.invoke_with(self.deps(), self.request(request_type, physical_id), Duration::from_secs(30)).await;
        one_answer(answers)
    }

    /// Invokes the handler as the template's `GitLabProjectPaths` resource.
    pub async fn invoke_project_paths(&self, request_type: &str) -> Value {
        let mut request = self.request(request_type, None);
        request["ResourceType"] = seedcode_checkin::PROJECT_PATHS_RESOURCE.into();
        request["LogicalResourceId"] = "GitLabProjectPaths".into();
        one_answer(self.invoke_with(self.deps(), request, Duration::from_secs(30)).await)
    }
}

/// Exactly one answer, sent the way S3 pre-signed URLs want it.
pub fn one_answer(answers: Vec<Received>) -> Value {
    assert_eq!(answers.len(), 1, "expected exactly one answer: {answers:?}");
    assert_eq!(answers[0].content_type.as_deref(), Some(""), "content type must be empty");
    let body = answers[0].body.clone();
    for field in ["Status", "Reason", "PhysicalResourceId", "StackId", "RequestId", "LogicalResourceId"] {
        assert!(body.get(field).is_some(), "{field} missing from {body}");
    }
    assert!(serde_json::to_string(&body).unwrap().len() <= 4096);
    assert_secret_free(&body.to_string());
    body
}

pub fn assert_secret_free(text: &str) {
    for secret in [TOKEN, SECRET_ACCESS_KEY] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

pub fn assert_failed(body: &Value, reason_parts: &[&str]) {
    assert_eq!(body["Status"], "FAILED", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    for part in reason_parts {
        assert!(reason.contains(part), "reason {reason:?} lacks {part:?}");
    }
}

pub fn variables(state: &testkit::gitlab::ProjectState) -> BTreeMap<String, (String, bool)> {
    let variables = state.variables_for_all_environments();
    variables.into_iter().map(|(k, (v, _))| (k.to_owned(), (v.value.clone(), v.masked))).collect()
}
