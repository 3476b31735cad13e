//! A Lambda Runtime API emulator: serves invocations to a real `bootstrap` process the way
//! Lambda does (`/2018-06-01/runtime/...`) and hands back what the function answered.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

/// How an invocation ended, as the function reported it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`
    Response { request_id: String, body: Value },
    /// `POST /runtime/invocation/{id}/error`
    Error { request_id: String, body: Value },
    /// `POST /runtime/init/error`
    InitError { body: Value },
}

struct Invocation {
    request_id: String,
    deadline: SystemTime,
    payload: Value,
}

#[derive(Clone)]
struct Shared {
    pending: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    first_poll: Arc<OnceLock<Instant>>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    outcomes: Mutex<mpsc::UnboundedReceiver<Outcome>>,
    first_poll: Arc<OnceLock<Instant>>,
    next_request: std::sync::atomic::AtomicU64,
}

impl RuntimeApi {
    /// Starts the emulator on a free loopback port, served by the current tokio runtime.
    pub async fn start() -> RuntimeApi {
        let (invocations, pending) = mpsc::unbounded_channel();
        let (outcome_tx, outcomes) = mpsc::unbounded_channel();
        let first_poll = Arc::new(OnceLock::new());
        let shared =
            Shared { pending: Arc::new(Mutex::new(pending)), outcomes: outcome_tx, first_poll: first_poll.clone() };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound socket has an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("runtime API emulator stopped") });
        RuntimeApi {
            addr,
            invocations,
            outcomes: Mutex::new(outcomes),
            first_poll,
            next_request: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a function served by this emulator.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an invocation: the end of its cold start.
    pub fn first_poll(&self) -> Option<Instant> {
        self.first_poll.get().copied()
    }

    /// Starts `bootstrap` as Lambda would, with the environment Lambda sets plus `extra_env`.
    /// Its stdout (the function's log) is captured; the process dies with the returned handle.
    pub fn spawn_function(&self, bootstrap: &Path, extra_env: &[(&str, &str)]) -> tokio::process::Child {
        self.spawn_command(bootstrap, &[], extra_env)
    }

    /// Like `spawn_function`, for a runtime that needs arguments (an interpreter and its script).
    pub fn spawn_command(&self, program: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> tokio::process::Child {
        tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.host_port())
            .env("AWS_LAMBDA_FUNCTION_NAME", "test-function")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test-function")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()))
    }

    /// Delivers `payload` with `time_limit` until the function's deadline, and waits (at most
    /// the time limit plus a grace second) for what the function reports.
    pub async fn invoke(&self, payload: Value, time_limit: Duration) -> Outcome {
        self.try_invoke(payload, time_limit).await.unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// `invoke`, saying what went wrong instead of panicking, for callers that report it.
    pub async fn try_invoke(&self, payload: Value, time_limit: Duration) -> anyhow::Result<Outcome> {
        let n = self.next_request.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request_id = format!("00000000-0000-4000-8000-{n:012}");
        let invocation = Invocation { request_id, deadline: SystemTime::now() + time_limit, payload };
        self.invocations.send(invocation).map_err(|_| anyhow::anyhow!("the emulator's server task stopped"))?;
        let mut outcomes = self.outcomes.lock().await;
        match tokio::time::timeout(time_limit + Duration::from_secs(1), outcomes.recv()).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => anyhow::bail!("the emulator's server task stopped"),
            Err(_) => anyhow::bail!("the function reported nothing within its {} s time limit", time_limit.as_secs()),
        }
    }
}

async fn next_invocation(State(shared): State<Shared>) -> Result<(HeaderMap, Json<Value>), StatusCode> {
    shared.first_poll.get_or_init(Instant::now);
    // None: the emulator's handle is gone, so no invocation will come; the function is ending.
    let invocation = shared.pending.lock().await.recv().await.ok_or(StatusCode::GONE)?;
    let deadline_ms = invocation.deadline.duration_since(UNIX_EPOCH).expect("deadline after 1970").as_millis();
    let mut headers = HeaderMap::new();
    let header = |value: String| HeaderValue::from_str(&value).expect("header values are ASCII");
    headers.insert("lambda-runtime-aws-request-id", header(invocation.request_id));
    headers.insert("lambda-runtime-deadline-ms", header(deadline_ms.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        // The account and region of the moto stand-in, as a function deployed there would have.
        header(format!("arn:aws:lambda:{}:{}:function:test-function", crate::moto::REGION, crate::moto::ACCOUNT_ID)),
    );
    headers.insert("lambda-runtime-trace-id", header("Root=1-00000000-000000000000000000000000".into()));
    Ok((headers, Json(invocation.payload)))
}

async fn invocation_response(
    State(shared): State<Shared>,
    UrlPath(request_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::Response { request_id, body: parse(&body) });
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(shared): State<Shared>,
    UrlPath(request_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::Error { request_id, body: parse(&body) });
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Shared>, body: String) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::InitError { body: parse(&body) });
    StatusCode::ACCEPTED
}

/// The function's answer as JSON, or as a JSON string when it is not JSON.
fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}
