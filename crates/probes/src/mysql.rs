//! MySQL / MariaDB probe: the real handshake with `mysql_native_password` authentication, then
//! COM_PING.

use sha1::{Digest, Sha1};
use tocsin_config::probes::MysqlProbe;
use tocsin_sampling::Family;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{tcp, Failure, Reason};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const NATIVE: &str = "mysql_native_password";

fn io(e: std::io::Error) -> Failure {
    Failure::new(Reason::of_io(&e), format!("{e}"))
}

async fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), Failure> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.map_err(io)?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    if len > 1 << 20 {
        return Err(Failure::new(Reason::Protocol, "oversized packet"));
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.map_err(io)?;
    Ok((h[3], p))
}

async fn write_packet(s: &mut TcpStream, seq: u8, p: &[u8]) -> Result<(), Failure> {
    let len = p.len() as u32;
    let mut out = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
    out.extend_from_slice(p);
    s.write_all(&out).await.map_err(io)
}

/// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
fn native_password(password: &str, scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha1::digest(password.as_bytes());
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn error_packet(p: &[u8]) -> Failure {
    let code = p
        .get(1..3)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .unwrap_or(0);
    // Skip the SQL state marker and state when present.
    let msg = match p.get(3) {
        Some(b'#') => p.get(9..).unwrap_or(&[]),
        _ => p.get(3..).unwrap_or(&[]),
    };
    let msg = String::from_utf8_lossy(msg).to_string();
    let reason = match code {
        1045 | 1044 | 1130 | 1698 => Reason::Auth,
        _ => Reason::Protocol,
    };
    Failure::new(reason, format!("error {code}: {msg}"))
}

/// The server's first packet; only its scramble matters here (a server preferring another
/// plugin asks to switch after our answer).
struct Greeting {
    scramble: Vec<u8>,
}

fn parse_greeting(p: &[u8]) -> Result<Greeting, Failure> {
    let bad = || Failure::new(Reason::Protocol, "not a MySQL handshake");
    match p.first() {
        Some(0xff) => return Err(error_packet(p)),
        Some(10) => {}
        _ => return Err(bad()),
    }
    let ver_end = p.iter().skip(1).position(|&b| b == 0).ok_or_else(bad)? + 1;
    let mut i = ver_end + 1 + 4; // NUL, connection id
    let mut scramble = p.get(i..i + 8).ok_or_else(bad)?.to_vec();
    i += 8 + 1; // part 1, filler
    let caps_lo = u16::from_le_bytes(
        p.get(i..i + 2)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    i += 2 + 1 + 2; // caps, charset, status
    let caps_hi = p
        .get(i..i + 2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .unwrap_or(0);
    let caps = u32::from(caps_lo) | u32::from(caps_hi) << 16;
    i += 2;
    let auth_len = usize::from(*p.get(i).unwrap_or(&0));
    i += 1 + 10;
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = auth_len.saturating_sub(8).max(13);
        let part2 = p.get(i..(i + n).min(p.len())).ok_or_else(bad)?;
        // The second part ends in a NUL that is not part of the scramble.
        scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
    }
    Ok(Greeting { scramble })
}

pub(crate) async fn run(spec: &MysqlProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let mut s = tcp::connect(&spec.address, out).await?;
    let (_, p) = read_packet(&mut s).await?;
    let g = parse_greeting(&p)?;
    let password = spec.password.as_ref().map(|p| p.expose()).unwrap_or("");
    let auth = native_password(password, &g.scramble);
    let caps =
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    let mut resp = Vec::new();
    resp.extend_from_slice(&caps.to_le_bytes());
    resp.extend_from_slice(&(16u32 << 20).to_le_bytes());
    resp.push(33); // utf8_general_ci
    resp.extend_from_slice(&[0u8; 23]);
    resp.extend_from_slice(spec.user.as_bytes());
    resp.push(0);
    resp.push(auth.len() as u8);
    resp.extend_from_slice(&auth);
    resp.extend_from_slice(NATIVE.as_bytes());
    resp.push(0);
    write_packet(&mut s, 1, &resp).await?;

    loop {
        let (seq, p) = read_packet(&mut s).await?;
        match p.first() {
            Some(0x00) => break,
            Some(0xff) => return Err(error_packet(&p)),
            Some(0xfe) => {
                // Auth switch: the server wants another plugin, possibly with a new scramble.
                let rest = &p[1..];
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let plugin = String::from_utf8_lossy(&rest[..end]).to_string();
                if plugin != NATIVE {
                    return Err(Failure::new(
                        Reason::Auth,
                        format!(
                            "server asks for auth plugin {plugin:?}; only {NATIVE} is supported"
                        ),
                    ));
                }
                let data = rest.get(end + 1..).unwrap_or(&[]);
                let scramble = data.strip_suffix(&[0]).unwrap_or(data);
                write_packet(
                    &mut s,
                    seq.wrapping_add(1),
                    &native_password(password, scramble),
                )
                .await?;
            }
            _ => {
                return Err(Failure::new(
                    Reason::Protocol,
                    "unexpected authentication reply",
                ))
            }
        }
    }
    write_packet(&mut s, 0, &[0x0e]).await?; // COM_PING
    let (_, p) = read_packet(&mut s).await?;
    match p.first() {
        Some(0x00) => {}
        Some(0xff) => return Err(error_packet(&p)),
        _ => {
            return Err(Failure::new(
                Reason::Protocol,
                "unexpected answer to COM_PING",
            ))
        }
    }
    replication(&mut s, out).await;
    Ok(())
}

/// Replication state, where the probe's user may read it (REPLICA MONITOR / REPLICATION
/// CLIENT): `SHOW REPLICA STATUS` (MariaDB 10.5+, MySQL 8.0.22+), else `SHOW SLAVE STATUS`.
/// Without the privilege, or on a protocol surprise, no replication series (the probe's
/// success is about reaching the server).
async fn replication(s: &mut TcpStream, out: &mut Vec<Family>) {
    for q in ["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"] {
        match query(s, q).await {
            Ok(Some((cols, rows))) => {
                let row = rows.first();
                out.push(crate::gauge(
                    "probe_mysql_replica",
                    "1 when the server replicates from a primary.",
                    if row.is_some() { 1.0 } else { 0.0 },
                ));
                let Some(row) = row else { return };
                let get = |names: &[&str]| {
                    names.iter().find_map(|n| {
                        cols.iter()
                            .position(|c| c == n)
                            .and_then(|i| row.get(i).cloned().flatten())
                    })
                };
                let yes = |names: &[&str]| get(names).is_some_and(|v| v == "Yes");
                let running = yes(&["Replica_IO_Running", "Slave_IO_Running"])
                    && yes(&["Replica_SQL_Running", "Slave_SQL_Running"]);
                out.push(crate::gauge(
                    "probe_mysql_replica_running",
                    "1 when both replication threads (I/O and SQL) run.",
                    if running { 1.0 } else { 0.0 },
                ));
                if let Some(lag) = get(&["Seconds_Behind_Source", "Seconds_Behind_Master"])
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    out.push(crate::gauge(
                        "probe_mysql_replication_lag_seconds",
                        "Seconds the replica's SQL thread is behind its primary.",
                        lag,
                    ));
                }
                return;
            }
            Ok(None) => continue,
            Err(_) => return,
        }
    }
}

type ResultSet = (Vec<String>, Vec<Vec<Option<String>>>);

/// A text-protocol query: its columns and rows; `None` when the server refuses it.
async fn query(s: &mut TcpStream, q: &str) -> Result<Option<ResultSet>, Failure> {
    let mut p = vec![0x03];
    p.extend_from_slice(q.as_bytes());
    write_packet(s, 0, &p).await?;
    let (_, first) = read_packet(s).await?;
    match first.first() {
        Some(0xff) => return Ok(None),
        Some(0x00) => return Ok(Some((Vec::new(), Vec::new()))),
        _ => {}
    }
    let n = lenenc_int(&first, &mut 0).ok_or_else(bad)? as usize;
    if n > 512 {
        return Err(bad());
    }
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, c) = read_packet(s).await?;
        let mut at = 0;
        // catalog, schema, table, org_table, then name.
        for _ in 0..4 {
            lenenc_str(&c, &mut at).ok_or_else(bad)?;
        }
        cols.push(lenenc_str(&c, &mut at).flatten().ok_or_else(bad)?);
    }
    let (_, eof) = read_packet(s).await?;
    if eof.first() != Some(&0xfe) {
        return Err(bad());
    }
    let mut rows = Vec::new();
    loop {
        let (_, r) = read_packet(s).await?;
        match r.first() {
            Some(0xfe) if r.len() < 9 => break,
            Some(0xff) => return Ok(None),
            _ => {}
        }
        let mut at = 0;
        let row = (0..n)
            .map(|_| lenenc_str(&r, &mut at).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
        if rows.len() > 64 {
            return Err(bad());
        }
    }
    Ok(Some((cols, rows)))
}

fn bad() -> Failure {
    Failure::new(Reason::Protocol, "malformed result set")
}

/// A length-encoded integer at `*at`, advancing past it.
fn lenenc_int(p: &[u8], at: &mut usize) -> Option<u64> {
    let b = *p.get(*at)?;
    let len = match b {
        0..=0xfa => {
            *at += 1;
            return Some(u64::from(b));
        }
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = p.get(*at + 1..*at + 1 + len)?;
    *at += 1 + len;
    Some(bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)))
}

/// A length-encoded string at `*at` (`Some(None)`: SQL NULL), advancing past it.
fn lenenc_str(p: &[u8], at: &mut usize) -> Option<Option<String>> {
    if p.get(*at) == Some(&0xfb) {
        *at += 1;
        return Some(None);
    }
    let len = lenenc_int(p, at)? as usize;
    let bytes = p.get(*at..*at + len)?;
    *at += len;
    Some(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoded_values() {
        let mut at = 0;
        assert_eq!(lenenc_int(&[0x05], &mut at), Some(5));
        let mut at = 0;
        assert_eq!(lenenc_int(&[0xfc, 0x10, 0x27], &mut at), Some(10_000));
        assert_eq!(at, 3);
        let p = [0x03, b'Y', b'e', b's', 0xfb, 0x01, b'0'];
        let mut at = 0;
        assert_eq!(lenenc_str(&p, &mut at), Some(Some("Yes".into())));
        assert_eq!(lenenc_str(&p, &mut at), Some(None), "NULL");
        assert_eq!(lenenc_str(&p, &mut at), Some(Some("0".into())));
        assert_eq!(lenenc_str(&p, &mut at), None, "past the end");
        assert_eq!(lenenc_int(&[0xfd, 1], &mut 0), None, "truncated");
    }

    #[test]
    fn native_password_vector() {
        // Computed independently: python3 -c "import hashlib;
        //   h1=hashlib.sha1(b'secret').digest(); h2=hashlib.sha1(h1).digest();
        //   h3=hashlib.sha1(bytes(range(20))+h2).digest();
        //   print(bytes(a^b for a,b in zip(h1,h3)).hex())"
        let scramble: Vec<u8> = (0..20).collect();
        let got: String = native_password("secret", &scramble)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, NATIVE_VECTOR);
        assert!(native_password("", &scramble).is_empty());
    }

    const NATIVE_VECTOR: &str = "21b3ff405f32cbe4aafff291396046ea29fa3a4d";
}
