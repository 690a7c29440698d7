//! ICMP echo probe: several requests per run; loss ratio, min/avg/max round trip and jitter.
//! Uses an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range` allows it, a raw
//! socket otherwise (root or CAP_NET_RAW), and says clearly when neither is possible.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tocsin_config::probes::IcmpProbe;
use tocsin_sampling::Family;
use tokio::net::UdpSocket;

use crate::{gauge, Failure, Reason};

struct Pinger {
    sock: UdpSocket,
    /// Raw sockets deliver the IPv4 header too.
    raw_v4: bool,
    ident: u16,
}

fn open(v6: bool) -> Result<Pinger, Failure> {
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(dgram) => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => (s, true),
            Err(raw) => {
                return Err(Failure::new(
                    Reason::Error,
                    format!(
                        "cannot open an ICMP socket (datagram: {dgram}; raw: {raw}): allow the agent's group in \
                         net.ipv4.ping_group_range, or grant it CAP_NET_RAW"
                    ),
                ))
            }
        },
    };
    sock.set_nonblocking(true)
        .map_err(|e| Failure::new(Reason::Error, format!("ICMP socket: {e}")))?;
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))
        .map_err(|e| Failure::new(Reason::Error, format!("ICMP socket: {e}")))?;
    Ok(Pinger {
        sock,
        raw_v4: raw && !v6,
        ident: fastrand_u16(),
    })
}

fn fastrand_u16() -> u16 {
    (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x5a5a
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"tocsin-agent-ping");
    if !v6 {
        // ICMPv6 checksums cover a pseudo-header the kernel fills in.
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

impl Pinger {
    /// Sequence number of an echo reply of ours, if `b` is one.
    fn reply_seq(&self, b: &[u8], v6: bool) -> Option<u16> {
        let b = if self.raw_v4 {
            let ihl = usize::from(b.first()? & 0x0f) * 4;
            b.get(ihl..)?
        } else {
            b
        };
        let reply_type = if v6 { 129 } else { 0 };
        if b.len() < 8 || b[0] != reply_type {
            return None;
        }
        // Datagram sockets rewrite the identifier to the socket's own, and only deliver ours.
        if self.raw_v4 && u16::from_be_bytes([b[4], b[5]]) != self.ident {
            return None;
        }
        Some(u16::from_be_bytes([b[6], b[7]]))
    }
}

pub(crate) async fn run(
    spec: &IcmpProbe,
    timeout: Duration,
    out: &mut Vec<Family>,
) -> Result<(), Failure> {
    let addr = crate::http::resolve(&spec.host, 0, spec.ip).await?.ip();
    let v6 = matches!(addr, IpAddr::V6(_));
    let pinger = open(v6)?;
    let dest = SocketAddr::new(addr, 0);
    // Each request gets an equal share of the run's budget, after the spacing between them,
    // so that a silent target still yields loss and round-trip series before the timeout.
    let n = spec.count.max(1);
    let per_wait = (timeout
        .saturating_sub(Duration::from_millis(50))
        .saturating_sub(spec.spacing * (n - 1))
        / n)
        .max(Duration::from_millis(10));
    let mut rtts: Vec<Option<Duration>> = Vec::new();
    let mut buf = [0u8; 1500];
    for seq in 0..spec.count as u16 {
        if seq > 0 {
            tokio::time::sleep(spec.spacing).await;
        }
        let sent = Instant::now();
        pinger
            .sock
            .send_to(&echo_request(v6, pinger.ident, seq), dest)
            .await
            .map_err(|e| Failure::new(Reason::of_io(&e), format!("send to {addr}: {e}")))?;
        let wait_until = sent + per_wait;
        let got = tokio::time::timeout_at(wait_until.into(), async {
            loop {
                let (n, _) = pinger.sock.recv_from(&mut buf).await?;
                if pinger.reply_seq(&buf[..n], v6) == Some(seq) {
                    return Ok::<_, std::io::Error>(sent.elapsed());
                }
            }
        })
        .await;
        rtts.push(match got {
            Ok(Ok(d)) => Some(d),
            Ok(Err(e)) => return Err(Failure::new(Reason::of_io(&e), format!("receive: {e}"))),
            Err(_) => None,
        });
    }
    let ok: Vec<f64> = rtts.iter().flatten().map(Duration::as_secs_f64).collect();
    let loss = 1.0 - ok.len() as f64 / rtts.len() as f64;
    out.push(gauge(
        "probe_icmp_packets_sent",
        "Echo requests sent in the run.",
        rtts.len() as f64,
    ));
    out.push(gauge(
        "probe_icmp_packet_loss_ratio",
        "Share of echo requests without a reply.",
        loss,
    ));
    if !ok.is_empty() {
        let min = ok.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ok.iter().copied().fold(0.0, f64::max);
        let avg = ok.iter().sum::<f64>() / ok.len() as f64;
        let jitter = if ok.len() > 1 {
            ok.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (ok.len() - 1) as f64
        } else {
            0.0
        };
        out.push(gauge(
            "probe_icmp_rtt_min_seconds",
            "Shortest round trip of the run.",
            min,
        ));
        out.push(gauge(
            "probe_icmp_rtt_avg_seconds",
            "Mean round trip of the run.",
            avg,
        ));
        out.push(gauge(
            "probe_icmp_rtt_max_seconds",
            "Longest round trip of the run.",
            max,
        ));
        out.push(gauge(
            "probe_icmp_jitter_seconds",
            "Mean difference between consecutive round trips.",
            jitter,
        ));
    }
    if ok.is_empty() {
        Err(Failure::new(
            Reason::Timeout,
            format!("no reply from {addr} to {} echo requests", rtts.len()),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_packet() {
        // Echo request, id 1, seq 1, no payload: checksum 0xf7fd.
        let p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&p), 0xf7fd);
        let mut q = echo_request(false, 1, 1);
        let c = u16::from_be_bytes([q[2], q[3]]);
        q[2] = 0;
        q[3] = 0;
        assert_eq!(checksum(&q), c);
    }
}
