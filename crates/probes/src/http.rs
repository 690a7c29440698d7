//! HTTP(S) probe with the latency split into phases (resolve, connect, tls, processing,
//! transfer), as blackbox_exporter reports them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tocsin_config::probes::{HttpProbe, IpChoice};
use tocsin_sampling::Family;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{gauge, tls, Failure, Reason};

/// Bodies are read up to this size for matching; the rest is discarded.
const MAX_BODY: usize = 1 << 20;
const MAX_REDIRECTS: usize = 10;

pub(crate) struct Http {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Http {
    pub(crate) fn new(spec: &HttpProbe) -> Result<Self, String> {
        let tls = spec
            .url
            .starts_with("https://")
            .then(|| tls::client_config(&spec.tls, true))
            .transpose()?;
        // A redirect from http to https needs TLS too.
        let tls = match (tls, spec.follow_redirects) {
            (None, true) => Some(tls::client_config(&spec.tls, true)?),
            (t, _) => t,
        };
        Ok(Http { tls })
    }

    pub(crate) async fn run(
        &mut self,
        spec: &HttpProbe,
        out: &mut Vec<Family>,
    ) -> Result<(), Failure> {
        let mut url = url::Url::parse(&spec.url)
            .map_err(|e| Failure::new(Reason::Error, format!("invalid URL: {e}")))?;
        let mut phases = Phases::default();
        let mut redirects = 0;
        loop {
            let resp = self.once(spec, &url, &mut phases, out).await?;
            let status = resp.status;
            if spec.follow_redirects && (300..400).contains(&status) && redirects < MAX_REDIRECTS {
                if let Some(loc) = resp.location {
                    url = url.join(&loc).map_err(|e| {
                        Failure::new(Reason::Protocol, format!("bad redirect {loc:?}: {e}"))
                    })?;
                    redirects += 1;
                    continue;
                }
            }
            phases.emit(out);
            out.push(gauge(
                "probe_http_status_code",
                "Response HTTP status code.",
                f64::from(status),
            ));
            out.push(gauge(
                "probe_http_redirects",
                "The number of redirects followed.",
                redirects as f64,
            ));
            out.push(gauge(
                "probe_http_content_length",
                "Length of the response body read, in bytes.",
                resp.body.len() as f64,
            ));
            let ok_status = if spec.expect_status.is_empty() {
                (200..300).contains(&status)
            } else {
                spec.expect_status.contains(&status)
            };
            if !ok_status {
                return Err(Failure::new(Reason::Status, format!("status {status}")));
            }
            let body = String::from_utf8_lossy(&resp.body);
            if let Some(re) = &spec.body_matches {
                if !re.is_match(&body) {
                    return Err(Failure::new(
                        Reason::Body,
                        format!("body does not match {:?}", re.as_str()),
                    ));
                }
            }
            if let Some(re) = &spec.body_not_matches {
                if re.is_match(&body) {
                    return Err(Failure::new(
                        Reason::Body,
                        format!("body matches {:?}", re.as_str()),
                    ));
                }
            }
            if !spec.expect_json.is_empty() {
                check_json(&resp.body, &spec.expect_json)?;
            }
            return Ok(());
        }
    }

    async fn once(
        &self,
        spec: &HttpProbe,
        url: &url::Url,
        ph: &mut Phases,
        out: &mut Vec<Family>,
    ) -> Result<Response, Failure> {
        let host = url
            .host_str()
            .ok_or_else(|| Failure::new(Reason::Error, "URL has no host"))?
            .to_string();
        let https = url.scheme() == "https";
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });

        let t = Instant::now();
        let addr = resolve(&host, port, spec.ip).await?;
        ph.resolve += t.elapsed();
        out.push(ip_protocol(&addr));

        let t = Instant::now();
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        ph.connect += t.elapsed();

        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut req = hyper::Request::builder()
            .method(spec.method.as_str())
            .uri(path)
            .header(hyper::header::HOST, host_header)
            .header(
                hyper::header::USER_AGENT,
                concat!("tocsin-agent/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &spec.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(
                spec.body.clone().unwrap_or_default(),
            )))
            .map_err(|e| Failure::new(Reason::Error, format!("invalid request: {e}")))?;

        if https {
            let cfg = self
                .tls
                .clone()
                .ok_or_else(|| Failure::new(Reason::Error, "TLS is not configured"))?;
            let name =
                tls::server_name(&spec.tls, &host).map_err(|e| Failure::new(Reason::Tls, e))?;
            let t = Instant::now();
            let stream = TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::new(Reason::Tls, format!("TLS handshake: {e}")))?;
            ph.tls += t.elapsed();
            if let Some(certs) = stream.get_ref().1.peer_certificates() {
                out.extend(tls::expiry_families(certs));
            }
            out.push(gauge(
                "probe_http_ssl",
                "Whether the final request used TLS.",
                1.0,
            ));
            exchange(TokioIo::new(stream), req, ph).await
        } else {
            out.push(gauge(
                "probe_http_ssl",
                "Whether the final request used TLS.",
                0.0,
            ));
            exchange(TokioIo::new(tcp), req, ph).await
        }
    }
}

/// Health endpoints answer JSON such as `{"status":"UP","checks":{"db":{"status":"UP"}}}`.
fn check_json(body: &[u8], expect: &[(String, String)]) -> Result<(), Failure> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Failure::new(Reason::Body, format!("body is not JSON: {e}")))?;
    for (path, want) in expect {
        let got = path.split('.').try_fold(&v, |v, k| match v {
            serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => v.get(k),
        });
        let text = match got {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(Failure::new(Reason::Body, format!("JSON has no {path:?}"))),
        };
        if &text != want {
            return Err(Failure::new(
                Reason::Body,
                format!("JSON {path} is {text:?}, expected {want:?}"),
            ));
        }
    }
    Ok(())
}

struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Phases {
    resolve: Duration,
    connect: Duration,
    tls: Duration,
    processing: Duration,
    transfer: Duration,
}

impl Phases {
    fn emit(&self, out: &mut Vec<Family>) {
        let mut f = Family::gauge(
            "probe_http_duration_seconds",
            "Duration of the HTTP request by phase, summed over all redirects.",
        );
        for (p, d) in [
            ("resolve", self.resolve),
            ("connect", self.connect),
            ("tls", self.tls),
            ("processing", self.processing),
            ("transfer", self.transfer),
        ] {
            f.push([("phase", p)], d.as_secs_f64());
        }
        out.push(f);
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
    ph: &mut Phases,
) -> Result<Response, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::new(Reason::Protocol, format!("HTTP handshake: {e}")))?;
    let conn = tokio::spawn(conn);
    let t = Instant::now();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| Failure::new(Reason::Protocol, format!("HTTP request: {e}")))?;
    ph.processing += t.elapsed();
    let t = Instant::now();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let mut b = resp.into_body();
    while let Some(frame) = b.frame().await {
        let frame =
            frame.map_err(|e| Failure::new(Reason::Protocol, format!("reading body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&d[..d.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
    }
    ph.transfer += t.elapsed();
    conn.abort();
    Ok(Response {
        status,
        location,
        body,
    })
}

/// `probe_ip_protocol`: the family of the address resolved (4 or 6), as blackbox_exporter
/// reports it.
pub(crate) fn ip_protocol(addr: &std::net::SocketAddr) -> Family {
    gauge(
        "probe_ip_protocol",
        "Whether the probe used IPv4 (4) or IPv6 (6).",
        if addr.is_ipv4() { 4.0 } else { 6.0 },
    )
}

pub(crate) async fn resolve(host: &str, port: u16, ip: IpChoice) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| Failure::new(Reason::Dns, format!("resolving {host}: {e}")))?
            .collect();
    addrs
        .iter()
        .find(|a| match ip {
            IpChoice::Any => true,
            IpChoice::V4 => a.is_ipv4(),
            IpChoice::V6 => a.is_ipv6(),
        })
        .copied()
        .ok_or_else(|| Failure::new(Reason::Dns, format!("{host} has no {ip:?} address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let body = br#"{"status":"UP","checks":{"db":{"status":"DOWN","latency":3}},"nodes":[{"ok":true}]}"#;
        let e = |p: &str, v: &str| vec![(p.to_string(), v.to_string())];
        assert!(check_json(body, &e("status", "UP")).is_ok());
        assert!(check_json(body, &e("checks.db.latency", "3")).is_ok());
        assert!(check_json(body, &e("nodes.0.ok", "true")).is_ok());
        let f = check_json(body, &e("checks.db.status", "UP")).unwrap_err();
        assert_eq!(
            f.message,
            "JSON checks.db.status is \"DOWN\", expected \"UP\""
        );
        assert_eq!(
            check_json(body, &e("nope", "x")).unwrap_err().message,
            "JSON has no \"nope\""
        );
        assert_eq!(
            check_json(b"<html>", &e("a", "b")).unwrap_err().reason,
            Reason::Body
        );
    }
}
