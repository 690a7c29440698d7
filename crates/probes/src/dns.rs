//! DNS probe: one query over UDP to a chosen resolver; checks the response code and that every
//! expected answer is present.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use tocsin_config::probes::DnsProbe;
use tocsin_sampling::Family;
use tokio::net::UdpSocket;

use crate::{gauge, Failure, Reason};

fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, Failure> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Failure::new(
                Reason::Error,
                format!("invalid name {name:?}"),
            ));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Reads a possibly compressed name at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        if len == 0 {
            return Some((out.join("."), end.unwrap_or(pos + 1)));
        }
        out.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).to_string());
        pos += 1 + len;
    }
    None
}

struct Answer {
    text: String,
}

fn parse(msg: &[u8], id: u16, qtype: u16) -> Result<(u8, [u16; 3], Vec<Answer>), Failure> {
    let bad = || Failure::new(Reason::Protocol, "malformed DNS response");
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err(bad());
    }
    let rcode = msg[3] & 0x0f;
    let n = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (qd, an, ns, ar) = (n(4), n(6), n(8), n(10));
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos).ok_or_else(bad)?.1 + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..an {
        let (_, p) = read_name(msg, pos).ok_or_else(bad)?;
        let h = msg.get(p..p + 10).ok_or_else(bad)?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[8], h[9]]) as usize;
        let data_at = p + 10;
        let data = msg.get(data_at..data_at + len).ok_or_else(bad)?;
        pos = data_at + len;
        if rtype != qtype {
            continue;
        }
        let text = match rtype {
            1 if len == 4 => Ipv4Addr::new(data[0], data[1], data[2], data[3]).to_string(),
            28 if len == 16 => {
                Ipv6Addr::from(<[u8; 16]>::try_from(data).map_err(|_| bad())?).to_string()
            }
            2 | 5 | 12 => read_name(msg, data_at).ok_or_else(bad)?.0,
            15 => read_name(msg, data_at + 2).ok_or_else(bad)?.0,
            16 => {
                let mut t = String::new();
                let mut i = 0;
                while i < data.len() {
                    let l = data[i] as usize;
                    t.push_str(&String::from_utf8_lossy(
                        data.get(i + 1..i + 1 + l).ok_or_else(bad)?,
                    ));
                    i += 1 + l;
                }
                t
            }
            _ => read_name(msg, data_at).map(|n| n.0).unwrap_or_default(),
        };
        answers.push(Answer { text });
    }
    Ok((rcode, [an, ns, ar], answers))
}

fn rcode_name(r: u8) -> &'static str {
    match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "other",
    }
}

pub(crate) async fn run(spec: &DnsProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let bind = if spec.server.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| Failure::new(Reason::Error, format!("socket: {e}")))?;
    sock.connect(&spec.server)
        .await
        .map_err(|e| Failure::new(Reason::of_io(&e), format!("{}: {e}", spec.server)))?;
    let id = (Instant::now().elapsed().subsec_nanos() as u16) ^ (std::process::id() as u16);
    let q = query(id, &spec.name, spec.qtype)?;
    let t = Instant::now();
    sock.send(&q)
        .await
        .map_err(|e| Failure::new(Reason::of_io(&e), format!("send to {}: {e}", spec.server)))?;
    let mut buf = vec![0u8; 4096];
    let (rcode, counts, answers) = loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("{}: {e}", spec.server)))?;
        // Ignore stray datagrams that are not the answer to our query.
        if let Ok(r) = parse(&buf[..n], id, spec.qtype) {
            break r;
        }
    };
    out.push(gauge(
        "probe_dns_lookup_time_seconds",
        "Time from query to answer.",
        t.elapsed().as_secs_f64(),
    ));
    out.push(gauge(
        "probe_dns_answer_rrs",
        "Records in the answer section.",
        f64::from(counts[0]),
    ));
    out.push(gauge(
        "probe_dns_authority_rrs",
        "Records in the authority section.",
        f64::from(counts[1]),
    ));
    out.push(gauge(
        "probe_dns_additional_rrs",
        "Records in the additional section.",
        f64::from(counts[2]),
    ));
    out.push(gauge(
        "probe_dns_rcode",
        "Response code (0 NOERROR, 3 NXDOMAIN, …).",
        f64::from(rcode),
    ));
    if rcode != 0 {
        return Err(Failure::new(
            Reason::Dns,
            format!("{} answered {}", spec.server, rcode_name(rcode)),
        ));
    }
    let got: Vec<&str> = answers
        .iter()
        .map(|a| a.text.trim_end_matches('.'))
        .collect();
    for want in &spec.expect {
        if !got.contains(&want.trim_end_matches('.')) {
            return Err(Failure::new(
                Reason::Expect,
                format!("{want:?} not among the answers {got:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_compressed_answer() {
        let q = query(0x1234, "svc.example.", 1).unwrap();
        assert_eq!(&q[12..25], b"\x03svc\x07example\x00");
        // Response: header, the question, one A answer whose name points at offset 12.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 8, 7]);
        let (rcode, counts, a) = parse(&r, 0x1234, 1).unwrap();
        assert_eq!((rcode, counts[0]), (0, 1));
        assert_eq!(a[0].text, "10.9.8.7");
        assert!(parse(&r[..20], 0x1234, 1).is_err());
        assert!(parse(&r, 0x9999, 1).is_err());
    }
}
