//! Command probe: runs a program (argv, no shell) in its own process group; exit 0 is success.
//! On timeout the whole group is killed.

use std::process::Stdio;
use std::time::Duration;

use tocsin_config::probes::CommandProbe;
use tocsin_sampling::Family;
use tokio::io::AsyncReadExt;

use crate::{gauge, Failure, Reason};

/// Output kept for messages: the last bytes of stdout and stderr together.
const TAIL: usize = 2048;

pub(crate) async fn run(
    spec: &CommandProbe,
    timeout: Duration,
    out: &mut Vec<Family>,
) -> Result<(), Failure> {
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        Failure::new(
            Reason::Error,
            format!("cannot start {:?}: {e}", spec.argv[0]),
        )
    })?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = async {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let ra = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut a).await;
            }
        };
        let rb = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut b).await;
            }
        };
        tokio::join!(ra, rb);
        a.extend_from_slice(&b);
        a
    };
    // Leave a little of the probe's budget to kill and reap.
    let budget = timeout
        .saturating_sub(Duration::from_millis(50))
        .max(Duration::from_millis(10));
    let waited = tokio::time::timeout(budget, async {
        let (output, status) = tokio::join!(read, child.wait());
        (output, status)
    })
    .await;
    match waited {
        Ok((output, Ok(status))) => {
            let code = status.code().unwrap_or(-1);
            out.push(gauge(
                "probe_command_exit_code",
                "Exit code of the command (-1 when killed by a signal).",
                f64::from(code),
            ));
            if status.success() {
                Ok(())
            } else {
                Err(Failure::new(
                    Reason::Exit,
                    format!("exit {code}: {}", tail(&output)),
                ))
            }
        }
        Ok((_, Err(e))) => Err(Failure::new(Reason::Error, format!("wait: {e}"))),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            Err(Failure::new(
                Reason::Timeout,
                format!("still running after {budget:?}; killed"),
            ))
        }
    }
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[b.len().saturating_sub(TAIL)..]);
    s.trim().to_string()
}
