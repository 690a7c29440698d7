//! Command probe: runs a program (argv, no shell) in its own process group; exit 0 is success.
//! On timeout the whole group is killed.

use std::time::Duration;

use tocsin_config::probes::CommandProbe;
use tocsin_exec::Status;
use tocsin_sampling::Family;

use crate::{gauge, Failure, Reason};

/// Output kept for messages: the last bytes of stdout and stderr together.
const TAIL: usize = 2048;

pub(crate) async fn run(
    spec: &CommandProbe,
    timeout: Duration,
    out: &mut Vec<Family>,
) -> Result<(), Failure> {
    // Leave a little of the probe's budget to kill and reap.
    let budget = timeout
        .saturating_sub(Duration::from_millis(50))
        .max(Duration::from_millis(10));
    let o = tocsin_exec::run(&spec.argv, &[], budget, TAIL).await;
    match o.status {
        Status::Exited(code) => {
            out.push(gauge(
                "probe_command_exit_code",
                "Exit code of the command (-1 when killed by a signal).",
                f64::from(code),
            ));
            if code == 0 {
                Ok(())
            } else {
                Err(Failure::new(Reason::Exit, o.summary()))
            }
        }
        Status::SpawnFailed(e) if e.starts_with("wait:") => Err(Failure::new(Reason::Error, e)),
        Status::SpawnFailed(_) => Err(Failure::new(
            Reason::Error,
            format!("cannot start {:?}: {}", spec.argv[0], o.summary()),
        )),
        Status::TimedOut => Err(Failure::new(
            Reason::Timeout,
            format!("still running after {budget:?}; killed"),
        )),
    }
}
