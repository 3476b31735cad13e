//! A certificate authority made for one test run, and a TLS listener for the GitLab double: what a
//! self-managed GitLab behind a company's internal CA looks like to the Lambdas.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and one server certificate it signed for `localhost` and `127.0.0.1`.
pub struct TestCa {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Example Corp Internal Root CA (test)");
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a self-signed CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("valid SANs");
        server_params.distinguished_name.push(DnType::CommonName, "gitlab.internal.example (test)");
        let server_key = KeyPair::generate().expect("a server key");
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("a CA-signed server certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            server_chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    /// The CA certificate, PEM: what a platform team would store as the CA bundle.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default TLS versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("the server certificate matches its key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// Serves `app` over TLS on `listener` until the runtime stops. A handshake that fails (a client
/// that does not trust the CA) ends that connection only.
pub fn serve(listener: tokio::net::TcpListener, ca: &TestCa, app: Router) -> SocketAddr {
    let addr = listener.local_addr().expect("bound socket has an address");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = TowerToHyperService::new(app);
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}
