//! Redis probe over RESP: optional AUTH, PING, then role and replication lag from INFO.

use tocsin_config::probes::RedisProbe;
use tocsin_sampling::Family;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{gauge, tcp, Failure, Reason};

fn command(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// Reads one reply: simple string, error, integer or bulk string.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Result<String, String>, Failure> {
    let io = |e: std::io::Error| Failure::new(Reason::of_io(&e), format!("read: {e}"));
    let mut line = String::new();
    if r.read_line(&mut line).await.map_err(io)? == 0 {
        return Err(Failure::new(Reason::Protocol, "connection closed"));
    }
    let line = line.trim_end().to_string();
    match line.chars().next() {
        Some('+') | Some(':') => Ok(Ok(line[1..].to_string())),
        Some('-') => Ok(Err(line[1..].to_string())),
        Some('$') => {
            let n: i64 = line[1..]
                .parse()
                .map_err(|_| Failure::new(Reason::Protocol, format!("bad reply {line:?}")))?;
            if n < 0 {
                return Ok(Ok(String::new()));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).await.map_err(io)?;
            buf.truncate(n as usize);
            Ok(Ok(String::from_utf8_lossy(&buf).to_string()))
        }
        _ => Err(Failure::new(
            Reason::Protocol,
            format!("not a Redis reply: {line:?}"),
        )),
    }
}

async fn send(s: &mut BufReader<tokio::net::TcpStream>, args: &[&str]) -> Result<(), Failure> {
    s.get_mut()
        .write_all(&command(args))
        .await
        .map_err(|e| Failure::new(Reason::of_io(&e), format!("send: {e}")))
}

pub(crate) async fn run(spec: &RedisProbe, out: &mut Vec<Family>) -> Result<(), Failure> {
    let s = tcp::connect(&spec.address, out).await?;
    let mut s = BufReader::new(s);
    if let Some(pw) = &spec.password {
        let mut args = vec!["AUTH"];
        if let Some(u) = &spec.username {
            args.push(u);
        }
        args.push(pw.expose());
        send(&mut s, &args).await?;
        if let Err(e) = reply(&mut s).await? {
            return Err(Failure::new(Reason::Auth, format!("AUTH refused: {e}")));
        }
    }
    send(&mut s, &["PING"]).await?;
    match reply(&mut s).await? {
        Ok(p) if p == "PONG" => {}
        Ok(p) => {
            return Err(Failure::new(
                Reason::Protocol,
                format!("PING answered {p:?}"),
            ))
        }
        Err(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
            return Err(Failure::new(Reason::Auth, e))
        }
        Err(e) => return Err(Failure::new(Reason::Protocol, format!("PING: {e}"))),
    }
    send(&mut s, &["INFO", "replication"]).await?;
    let info = reply(&mut s)
        .await?
        .map_err(|e| Failure::new(Reason::Protocol, format!("INFO: {e}")))?;
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_string())
    };
    let replica = field("role").as_deref() == Some("slave");
    out.push(gauge(
        "probe_redis_replica",
        "1 when the server is a replica, 0 when a master.",
        if replica { 1.0 } else { 0.0 },
    ));
    if replica {
        let up = field("master_link_status").as_deref() == Some("up");
        out.push(gauge(
            "probe_redis_master_link_up",
            "1 when the replica's link to its master is up.",
            if up { 1.0 } else { 0.0 },
        ));
        if let Some(age) = field("master_last_io_seconds_ago").and_then(|v| v.parse::<f64>().ok()) {
            out.push(gauge(
                "probe_redis_replication_lag_seconds",
                "Seconds since the replica last heard from its master.",
                age,
            ));
        }
    }
    Ok(())
}
