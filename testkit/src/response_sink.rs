//! Stands in for the pre-signed S3 URL CloudFormation gives a custom resource: records every
//! PUT (its content type and JSON body) so tests can check the one answer a resource sends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The `Content-Type` header as sent (`Some("")` is what S3 pre-signed URLs expect).
    pub content_type: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Sink {
    received: Vec<Received>,
    /// How long each PUT waits before it is answered, like an unreachable S3.
    delay: Duration,
}

type Shared = Arc<Mutex<Sink>>;

pub struct ResponseSink {
    addr: SocketAddr,
    sink: Shared,
}

impl ResponseSink {
    pub async fn start() -> ResponseSink {
        let sink: Shared = Arc::default();
        let app = Router::new().route("/{*path}", put(record)).with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound socket has an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("response sink stopped") });
        ResponseSink { addr, sink }
    }

    /// A ResponseURL shaped like CloudFormation's (a path and a signed-looking query).
    pub fn url(&self) -> String {
        format!("http://{}/cloudformation-custom-resource-response/stack-1?X-Amz-Signature=abc", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.sink.lock().expect("sink lock").received.clone()
    }

    /// Records each PUT at once but answers it only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.sink.lock().expect("sink lock").delay = delay;
    }

    /// Waits up to `timeout` for at least one answer and returns all answers so far.
    pub async fn wait(&self, timeout: Duration) -> Vec<Received> {
        let until = tokio::time::Instant::now() + timeout;
        while self.received().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }
}

async fn record(State(sink): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let content_type = headers.get("content-type").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let delay = {
        let mut sink = sink.lock().expect("sink lock");
        sink.received.push(Received { content_type, body });
        sink.delay
    };
    tokio::time::sleep(delay).await;
    StatusCode::OK
}
