//! TCP probe: connect, optionally TLS, optionally send and expect.

use std::sync::Arc;
use std::time::Instant;

use tocsin_config::probes::{IpChoice, TcpProbe};
use tocsin_sampling::Family;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{gauge, tls, Failure, Reason};

const MAX_READ: usize = 64 << 10;

pub(crate) struct Tcp {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Tcp {
    pub(crate) fn new(spec: &TcpProbe) -> Result<Self, String> {
        Ok(Tcp {
            tls: spec
                .tls
                .as_ref()
                .map(|o| tls::client_config(o, false))
                .transpose()?,
        })
    }

    pub(crate) async fn run(
        &mut self,
        spec: &TcpProbe,
        out: &mut Vec<Family>,
    ) -> Result<(), Failure> {
        let stream = connect(&spec.address, out).await?;
        match (&self.tls, &spec.tls) {
            (Some(cfg), Some(opts)) => {
                let host = spec.address.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
                let name =
                    tls::server_name(opts, host).map_err(|e| Failure::new(Reason::Tls, e))?;
                let s = TlsConnector::from(Arc::clone(cfg))
                    .connect(name, stream)
                    .await
                    .map_err(|e| Failure::new(Reason::Tls, format!("TLS handshake: {e}")))?;
                if let Some(certs) = s.get_ref().1.peer_certificates() {
                    out.extend(tls::expiry_families(certs));
                }
                converse(s, spec).await
            }
            _ => converse(stream, spec).await,
        }
    }
}

/// Connects to HOST:PORT, recording the connect time.
pub(crate) async fn connect(address: &str, out: &mut Vec<Family>) -> Result<TcpStream, Failure> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p)))
        .ok_or_else(|| Failure::new(Reason::Error, format!("{address:?} is not HOST:PORT")))?;
    let addr = crate::http::resolve(host, port, IpChoice::Any).await?;
    out.push(crate::http::ip_protocol(&addr));
    let t = Instant::now();
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::new(Reason::of_io(&e), format!("connect {addr}: {e}")))?;
    out.push(gauge(
        "probe_tcp_connect_duration_seconds",
        "Time to establish the TCP connection.",
        t.elapsed().as_secs_f64(),
    ));
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    spec: &TcpProbe,
) -> Result<(), Failure> {
    if let Some(data) = &spec.send {
        s.write_all(data)
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("send: {e}")))?;
        s.flush()
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("send: {e}")))?;
    }
    let Some(re) = &spec.expect else {
        return Ok(());
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("read: {e}")))?;
        if n == 0 {
            return Err(Failure::new(
                Reason::Expect,
                format!("connection closed before {:?} was seen", re.as_str()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if re.is_match(&buf) {
            return Ok(());
        }
        if buf.len() > MAX_READ {
            return Err(Failure::new(
                Reason::Expect,
                format!("{:?} not seen in {MAX_READ} bytes", re.as_str()),
            ));
        }
    }
}
