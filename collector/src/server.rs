//! The collector's connections: HTTP, or HTTPS with rustls and the configured certificate,
//! optionally requiring client certificates (mutual TLS). Both hold the same limits: a cap on
//! open connections, and a deadline for each request head (and handshake), so a silent or
//! trickling client cannot hold a connection. Handshake failures are counted and logged.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tocsin_config::collector::ServerTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::Telemetry;

fn certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .context("unreadable certificate PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the PEM");
    Ok(certs)
}

/// The acceptor for `cfg`.
pub fn acceptor(cfg: &ServerTls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = match PrivateKeyDer::from_pem_slice(&cfg.key_pem) {
        Ok(k) => k,
        Err(PemError::NoItemsFound) => anyhow::bail!("no private key in tls.key_file"),
        Err(e) => return Err(e).context("unreadable key PEM"),
    };
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

/// How connections are held: the same for HTTP and HTTPS.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// Closes a connection that sends no complete request head for this long (silent,
    /// trickling or idle keep-alive).
    pub idle_timeout: Duration,
}

/// Serves `app` until `cancel`, over TLS when `acceptor` is given, then lets open connections
/// finish (10 s at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    tel: Telemetry,
    cancel: CancellationToken,
) {
    let conns = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        // A slot first: at the cap, connections wait in the kernel's backlog, costing nothing.
        let slot = tokio::select! {
            _ = cancel.cancelled() => break,
            s = Arc::clone(&slots).acquire_owned() => match s { Ok(s) => s, Err(_) => break },
        };
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
            let _slot = slot;
            match acceptor {
                None => serve_connection(tcp, app, limits, cancel).await,
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(limits.idle_timeout, acceptor.accept(tcp))
                        .await
                    {
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
                    serve_connection(tls, app, limits, cancel).await
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), conns.wait()).await;
}

async fn serve_connection<S>(io: S, app: Router, limits: ConnLimits, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
