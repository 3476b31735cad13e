//! The AWS SDK's HTTP client on reqwest, the client the Lambdas already use for GitLab.
//!
//! The SDK's default client is a second hyper stack with HTTP/2 (h2) and its own rustls set-up;
//! linked beside reqwest it made up a sixth of each binary. The Lambdas send small JSON and XML
//! requests over HTTP/1.1 and read small bodies, so one stack serves both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The client to hand to `SdkConfig`: one reqwest client (and connection pool) per distinct
/// pair of connect and read timeouts, which is what the SDK asks a client to honour.
pub fn sdk_http_client() -> SharedHttpClient {
    SharedHttpClient::new(ReqwestHttpClient::default())
}

type Timeouts = (Option<Duration>, Option<Duration>);

#[derive(Debug, Default)]
struct ReqwestHttpClient {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connectors
            .entry(timeouts)
            .or_insert_with(|| {
                let mut builder = crate::client_builder();
                if let Some(connect) = timeouts.0 {
                    builder = builder.connect_timeout(connect);
                }
                if let Some(read) = timeouts.1 {
                    builder = builder.read_timeout(read);
                }
                let client = builder.build().expect("the TLS backend initialises");
                SharedHttpConnector::new(ReqwestConnector { client: Arc::new(client) })
            })
            .clone()
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    client: Arc<reqwest::Client>,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request)?;
            let response = client.execute(request).await.map_err(connector_error)?;
            from_reqwest(response).await
        })
    }
}

fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request.try_into_http1x().map_err(|err| ConnectorError::user(err.into()))?;
    let (parts, body) = request.into_parts();
    // Every request these Lambdas send has its body in memory (JSON, or none).
    let body = body
        .bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ConnectorError::user("a streaming request body is not supported by this client".into()))?;
    reqwest::Request::try_from(http::Request::from_parts(parts, body)).map_err(|err| ConnectorError::user(err.into()))
}

async fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let mut builder = http::Response::builder().status(response.status()).version(response.version());
    if let Some(headers) = builder.headers_mut() {
        headers.extend(response.headers().iter().map(|(name, value)| (name.clone(), value.clone())));
    }
    // Bodies are read whole: secrets and seed-code zips of a few kilobytes.
    let body = response.bytes().await.map_err(connector_error)?;
    let response = builder.body(SdkBody::from(body)).map_err(|err| ConnectorError::other(err.into(), None))?;
    HttpResponse::try_from(response).map_err(|err| ConnectorError::other(err.into(), None))
}

/// Timeouts and broken connections are transient, which the SDK's retry policy retries.
fn connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        ConnectorError::timeout(err.into())
    } else if err.is_connect() || err.is_request() || err.is_body() {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}
