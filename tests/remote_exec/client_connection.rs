//! The REAPI client's connection to the cluster: an action that outlives a server restart
//! (WaitExecution picks it up again), and `grpcs://` with the certificate checked against a
//! given root.

use std::time::Duration;

use taskrun::reapi::{
    BlobSource, Client, ClientOptions, Digest, RunOptions, UploadBlob, run_action,
};

use crate::client::{client_of, nonce, spec};
use crate::cluster::Cluster;

#[tokio::test]
async fn an_action_survives_a_server_restart_through_wait_execution() {
    // Its own cluster: this test stops the server.
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    let n = nonce();
    let s = spec(ws.path(), &format!("sleep 6; echo {n} > o"), &[], &["o"]);
    let c = client_of(&cluster).await;
    let cluster = std::sync::Arc::new(cluster);
    let bouncer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            // Wait until a bot runs the action, then restart the server under it.
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::task::spawn_blocking(move || {
                cluster.stop_server();
                cluster.start_server();
            })
            .await
            .unwrap();
        })
    };
    let o = run_action(
        &c,
        &s,
        ws.path(),
        &RunOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
    bouncer.await.unwrap();
    assert_eq!(o.exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("o")).unwrap(),
        format!("{n}\n")
    );
}

/// A TLS-terminating proxy (the self-signed certificate of `tests/fixtures/tls`, for
/// `127.0.0.1`, offering HTTP/2 by ALPN) in front of the cluster's plain port; returns its
/// port. It runs on the test's runtime and stops with it.
async fn tls_proxy(backend: u16) -> u16 {
    use std::sync::Arc;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::ring;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/tls/key.pem")).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

const CERT: &[u8] = include_bytes!("../fixtures/tls/cert.pem");

#[tokio::test]
async fn grpcs_verifies_the_certificate_and_trusts_a_given_root() {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let port = tls_proxy(cluster.port()).await;
    let url = format!("grpcs://127.0.0.1:{port}");
    // The built-in roots do not know the self-signed certificate: a configuration error,
    // not a cluster failure to retry.
    let err = Client::connect(&url, &ClientOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), taskrun::reapi::ErrorKind::Config, "{err:?}");
    // Trusted as a root (what SSL_CERT_FILE does), the same server answers.
    let options = ClientOptions {
        tls_roots: Some(vec![CertificateDer::from_pem_slice(CERT).unwrap()]),
        ..ClientOptions::default()
    };
    let c = Client::connect(&url, &options).await.unwrap();
    assert!(c.capabilities().await.unwrap().exec_enabled);
    let data = format!("over tls {}", nonce()).into_bytes();
    let d = Digest::of_bytes(&data);
    c.upload_missing(&[UploadBlob {
        digest: d,
        source: BlobSource::Bytes(data.clone()),
    }])
    .await
    .unwrap();
    assert_eq!(c.fetch_blob(&d).await.unwrap(), data);
}
