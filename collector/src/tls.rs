//! HTTPS for the collector: rustls with the configured certificate, optionally requiring client
//! certificates (mutual TLS), serving the same router as plain HTTP. Handshakes have a deadline;
//! failures are counted and logged, never fatal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tocsin_config::collector::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::Telemetry;

fn certs(pem: &[u8]) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .context("unreadable certificate PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the PEM");
    Ok(certs)
}

/// The acceptor for `cfg`.
pub fn acceptor(cfg: &ServerTls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls_pemfile::private_key(&mut &cfg.key_pem[..])
        .context("unreadable key PEM")?
        .context("no private key in tls.key_file")?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match &cfg.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca).context("tls.client_ca_file")? {
                roots.add(c).context("tls.client_ca_file")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&cfg.cert_pem).context("tls.cert_file")?, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS until `cancel`, then lets open connections finish (10 s at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    tel: Telemetry,
    cancel: CancellationToken,
) {
    let conns = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, cancel, tel) =
            (acceptor.clone(), app.clone(), cancel.clone(), tel.clone());
        conns.spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tel.tls_handshake_failures.inc();
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tel.tls_handshake_failures.inc();
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), conns.wait()).await;
}
