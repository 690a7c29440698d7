//! TLS client set-up shared by HTTP and TCP probes, and certificate expiry.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tocsin_config::probes::TlsOptions;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, loaded once per process.
fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn client_config(o: &TlsOptions, alpn_http1: bool) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if o.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(ca) = &o.ca_file {
            for c in read_pem_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => {
            let certs = read_pem_certs(c)?;
            let data = std::fs::read(k).map_err(|e| format!("{}: {e}", k.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
                PemError::NoItemsFound => format!("{}: no private key found", k.display()),
                e => format!("{}: {e}", k.display()),
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    if alpn_http1 {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(cfg))
}

pub(crate) fn server_name(o: &TlsOptions, host: &str) -> Result<ServerName<'static>, String> {
    let name = o.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(
        name.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))
}

/// Expiry (Unix seconds) of each presented certificate, leaf first.
pub(crate) fn expiries(certs: &[CertificateDer<'_>]) -> Vec<i64> {
    certs
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, x)| x.validity().not_after.timestamp())
        .collect()
}

pub(crate) fn expiry_families(certs: &[CertificateDer<'_>]) -> Vec<tocsin_sampling::Family> {
    let e = expiries(certs);
    let mut out = Vec::new();
    if let Some(min) = e.iter().min() {
        out.push(crate::gauge(
            "probe_ssl_earliest_cert_expiry",
            "Earliest expiry of the certificates the server presented, in Unix seconds.",
            *min as f64,
        ));
    }
    if let Some(leaf) = e.first() {
        out.push(crate::gauge(
            "probe_ssl_leaf_cert_expiry",
            "Expiry of the server's own certificate, in Unix seconds.",
            *leaf as f64,
        ));
    }
    out
}

/// Verifies nothing, so that expiry can still be reported for self-signed or expired chains.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
