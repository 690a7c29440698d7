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
        Some(0x00) => Ok(()),
        Some(0xff) => Err(error_packet(&p)),
        _ => Err(Failure::new(
            Reason::Protocol,
            "unexpected answer to COM_PING",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
