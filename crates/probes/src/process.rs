//! Process probe: finds processes by name or command line in /proc, reports count, CPU, RSS and
//! restarts (a matching PID that vanished while another appeared). Between runs it holds a pidfd
//! of each match, so a death is noticed within milliseconds instead of at the next interval.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;

use tocsin_config::probes::{ProcessMatch, ProcessProbe};
use tocsin_sampling::Family;
use tokio::io::unix::AsyncFd;

use crate::{gauge, Failure, Reason};

/// Most processes watched through pidfds; beyond this, deaths are seen at the next run.
const MAX_WATCHED: usize = 64;

pub(crate) struct Process {
    spec: ProcessProbe,
    /// PIDs of the last run that found any.
    pids: BTreeSet<i32>,
    restarts: u64,
    watched: Vec<AsyncFd<OwnedFd>>,
    ticks: f64,
    page: f64,
}

impl Process {
    pub(crate) fn new(spec: ProcessProbe) -> Self {
        Self {
            spec,
            pids: BTreeSet::new(),
            restarts: 0,
            watched: Vec::new(),
            ticks: rustix::param::clock_ticks_per_second() as f64,
            page: rustix::param::page_size() as f64,
        }
    }

    pub(crate) async fn run(&mut self, out: &mut Vec<Family>) -> Result<(), Failure> {
        let found = scan(&self.spec.matcher);
        let pids: BTreeSet<i32> = found.iter().map(|p| p.pid).collect();
        if !pids.is_empty() {
            // A PID that went away while another came, even with a gap in between: a restart.
            let gone = self.pids.difference(&pids).count();
            let new = pids.difference(&self.pids).count();
            self.restarts += gone.min(new) as u64;
            self.pids = pids;
        }
        self.watched = found
            .iter()
            .take(MAX_WATCHED)
            .filter_map(|p| {
                let pid = rustix::process::Pid::from_raw(p.pid)?;
                let fd =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
                // The pidfd is owned by the AsyncFd and closed only when it is dropped, which is
                // the I/O-safety condition `register` (unsafe, forbidden here) spells out.
                #[allow(deprecated)]
                AsyncFd::new(fd).ok()
            })
            .collect();
        let count = found.len();
        out.push(gauge(
            "probe_process_count",
            "Processes matching the probe.",
            count as f64,
        ));
        out.push(gauge(
            "probe_process_cpu_seconds_total",
            "CPU time (user + system) of the matching processes.",
            found.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / self.ticks,
        ));
        out.push(gauge(
            "probe_process_resident_memory_bytes",
            "Resident memory of the matching processes.",
            found.iter().map(|p| p.rss_pages).sum::<u64>() as f64 * self.page,
        ));
        out.push(
            Family::counter(
                "probe_process_restarts_total",
                "Restarts seen: a matching PID replaced by a new one.",
            )
            .with([], self.restarts as f64),
        );
        if count < self.spec.min_count as usize {
            return Err(Failure::new(
                Reason::Missing,
                format!(
                    "{count} matching processes, at least {} expected",
                    self.spec.min_count
                ),
            ));
        }
        Ok(())
    }

    /// Resolves when a watched process exits (its pidfd turns readable).
    pub(crate) async fn exited(&mut self) {
        if self.watched.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.watched.iter().map(|fd| Box::pin(fd.readable()));
        let _ = futures_select_all(waits).await;
    }
}

/// Waits for the first of several futures.
async fn futures_select_all<F: std::future::Future + Unpin>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

struct Found {
    pid: i32,
    cpu_ticks: u64,
    rss_pages: u64,
}

fn scan(m: &ProcessMatch) -> Vec<Found> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let matched = match m {
            ProcessMatch::Name(n) => std::fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim_end() == n)
                .unwrap_or(false),
            ProcessMatch::Cmdline(re) => std::fs::read(dir.join("cmdline"))
                .map(|c| {
                    let s: String = String::from_utf8_lossy(&c).replace('\0', " ");
                    !s.is_empty() && re.is_match(s.trim_end())
                })
                .unwrap_or(false),
        };
        if !matched {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name, which may itself hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        // state is f[0]; zombies are dead already.
        if f.first() == Some(&"Z") || f.len() < 22 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        out.push(Found {
            pid,
            cpu_ticks: n(11) + n(12),
            rss_pages: n(21),
        });
    }
    out
}
