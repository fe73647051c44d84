//! `wss://` over real loopback sockets, against a TLS server whose self-signed certificate is
//! made in the test.
//!
//! The server side is tokio-tungstenite behind tokio-rustls for now; it moves to this crate's
//! own layer once that lands.

mod support {
    pub(crate) mod peers;
}

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::peers::{bounded, serve_echo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower_ws::{ClientBuilder, CloseCode, ErrorKind, Message};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS echo server with a fresh self-signed certificate for 127.0.0.1; returns its address
/// and the certificate to trust.
async fn tls_echo_server() -> (SocketAddr, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (seen, _) = tokio::sync::mpsc::unbounded_channel();
                    serve_echo(tls, None, seen).await;
                }
            });
        }
    });
    (addr, cert)
}

fn trusting(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn wss_round_trip_with_a_self_signed_certificate() {
    bounded(async {
        let (addr, cert) = tls_echo_server().await;
        let client = ClientBuilder::new().tls_config(trusting(cert));
        let (mut ws, response) = client
            .connect(format!("wss://{addr}/secure"))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert!(ws.get_ref().is_tls());

        ws.send(Message::text("over tls")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over tls"));
        let big = vec![7_u8; 300_000];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(ws.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn refuses_a_certificate_the_default_roots_do_not_trust() {
    bounded(async {
        let (addr, _) = tls_echo_server().await;
        let err = ClientBuilder::new()
            .connect(format!("wss://{addr}/"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Handshake);
        assert_eq!(err.to_string(), "TLS handshake failed");
        let cause = err.source().unwrap().to_string();
        assert!(cause.contains("certificate"), "{cause}");
    })
    .await;
}

#[tokio::test]
async fn runs_the_handshake_over_a_tls_stream_the_caller_opened() {
    // Boxed: the future holds a whole TLS stream.
    bounded(Box::pin(async {
        let (addr, cert) = tls_echo_server().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = TlsConnector::from(trusting(cert))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut ws, _) = ClientBuilder::new()
            .handshake(format!("wss://{addr}/"), tls)
            .await
            .unwrap();
        ws.send(Message::text("mine")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("mine"));
    }))
    .await;
}
