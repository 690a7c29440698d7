//! Host samplers. Parsers take file contents, so tests feed them fixed text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::family::{Family, MetricKind};
use crate::fs::FsSampler;

/// One sampler's outcome in one cycle.
#[derive(Debug)]
pub struct SamplerRun {
    pub name: &'static str,
    pub duration: Duration,
    pub result: Result<Vec<Family>, String>,
}

/// CPU jiffies by mode, in /proc/stat's order.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub struct HostSampler {
    proc: PathBuf,
    ticks: f64,
    prev_cpu: Option<[u64; 8]>,
    fs: FsSampler,
}

impl HostSampler {
    /// `statfs_timeout` bounds each filesystem's `statfs`, so a hung mount is skipped.
    pub fn new(statfs_timeout: Duration) -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            ticks: rustix::param::clock_ticks_per_second() as f64,
            prev_cpu: None,
            fs: FsSampler::new(statfs_timeout),
        }
    }

    fn read(&self, rel: &str) -> Result<String, String> {
        let p = self.proc.join(rel);
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Runs every sampler once. Blocking: call from a blocking thread.
    pub fn sample(&mut self) -> Vec<SamplerRun> {
        let mut runs = Vec::new();
        let mut run = |name: &'static str, f: &mut dyn FnMut() -> Result<Vec<Family>, String>| {
            let t = Instant::now();
            let result = f();
            runs.push(SamplerRun {
                name,
                duration: t.elapsed(),
                result,
            });
        };
        run("cpu", &mut || {
            let text = self.read("stat")?;
            let (fams, totals) = parse_stat(&text, self.ticks, self.prev_cpu)?;
            self.prev_cpu = Some(totals);
            Ok(fams)
        });
        run("load", &mut || {
            let l = sysinfo::System::load_average().map_err(|e| format!("load average: {e}"))?;
            let boot = sysinfo::System::boot_time().map_err(|e| format!("boot time: {e}"))?;
            let mut f = vec![
                Family::gauge("node_load1", "1m load average.").with([], l.one),
                Family::gauge("node_load5", "5m load average.").with([], l.five),
                Family::gauge("node_load15", "15m load average.").with([], l.fifteen),
                Family::gauge("node_boot_time_seconds", "Node boot time, in unixtime.")
                    .with([], boot as f64),
                Family::gauge(
                    "node_time_seconds",
                    "System time in seconds since epoch (1970).",
                )
                .with([], unix_now()),
            ];
            f.extend(parse_loadavg_threads(&self.read("loadavg")?)?);
            Ok(f)
        });
        run("memory", &mut || parse_meminfo(&self.read("meminfo")?));
        run("pressure", &mut || {
            let mut out = Vec::new();
            for res in ["cpu", "memory", "io"] {
                // Kernels without PSI (or with it disabled) have no such files: not an error.
                if let Ok(t) = self.read(&format!("pressure/{res}")) {
                    out.extend(parse_pressure(res, &t));
                }
            }
            Ok(out)
        });
        run("filesystem", &mut || {
            // The host's mount table (PID 1's, as node_exporter reads it): the agent's own may
            // be a sandbox's view, every mount read-only. Its own when PID 1's is hidden.
            let mounts = self
                .read("1/mounts")
                .or_else(|_| self.read("self/mounts"))?;
            Ok(self.fs.sample(&mounts))
        });
        run("diskstats", &mut || {
            parse_diskstats(&self.read("diskstats")?)
        });
        run("netdev", &mut || parse_netdev(&self.read("net/dev")?));
        run("filefd", &mut || {
            parse_filefd(&self.read("sys/fs/file-nr")?)
        });
        run("vmstat", &mut || parse_vmstat(&self.read("vmstat")?));
        run("netstat", &mut || {
            let mut out = parse_netstat(&self.read("net/snmp")?, "/proc/net/snmp")?;
            // Kernels without the extended counters have no such file: not an error.
            if let Ok(t) = self.read("net/netstat") {
                out.extend(parse_netstat(&t, "/proc/net/netstat")?);
            }
            Ok(out)
        });
        run("conntrack", &mut || {
            // Without connection tracking (no netfilter module loaded) there is nothing to read.
            match (
                self.read("sys/net/netfilter/nf_conntrack_count"),
                self.read("sys/net/netfilter/nf_conntrack_max"),
            ) {
                (Ok(count), Ok(max)) => parse_conntrack(&count, &max),
                _ => Ok(Vec::new()),
            }
        });
        run("processes", &mut || {
            let pids =
                count_pids(&self.proc).map_err(|e| format!("{}: {e}", self.proc.display()))?;
            Ok(vec![Family::gauge(
                "node_processes_pids",
                "Number of PIDs.",
            )
            .with([], pids as f64)])
        });
        runs
    }
}

/// The process directories of `proc`: those named by digits only.
fn count_pids(proc: &std::path::Path) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(proc)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            !name.is_empty() && name.iter().all(u8::is_ascii_digit)
        })
        .count())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: cannot parse {s:?} as a number"))
}

/// Parses /proc/stat. Returns the families and the aggregate jiffies for the next call's
/// utilisation ratio (the first call reports utilisation since boot).
pub(crate) fn parse_stat(
    text: &str,
    ticks: f64,
    prev: Option<[u64; 8]>,
) -> Result<(Vec<Family>, [u64; 8]), String> {
    let mut secs = Family::counter(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    let mut total = None;
    let mut cores = 0usize;
    let mut other = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some(key) = it.next() else { continue };
        if let Some(cpu) = key.strip_prefix("cpu") {
            let mut v = [0u64; 8];
            for (i, f) in it.take(8).enumerate() {
                v[i] = num(f, "/proc/stat")?;
            }
            if cpu.is_empty() {
                total = Some(v);
            } else {
                cores += 1;
                for (i, m) in MODES.iter().enumerate() {
                    secs.push([("cpu", cpu), ("mode", m)], v[i] as f64 / ticks);
                }
            }
        } else {
            let val = |it: &mut std::str::SplitAsciiWhitespace<'_>| -> Result<f64, String> {
                num(it.next().unwrap_or(""), "/proc/stat")
            };
            match key {
                "ctxt" => other.push(
                    Family::counter(
                        "node_context_switches_total",
                        "Total number of context switches.",
                    )
                    .with([], val(&mut it)?),
                ),
                "intr" => other.push(
                    Family::counter("node_intr_total", "Total number of interrupts serviced.")
                        .with([], val(&mut it)?),
                ),
                "procs_running" => other.push(
                    Family::gauge(
                        "node_procs_running",
                        "Number of processes in runnable state.",
                    )
                    .with([], val(&mut it)?),
                ),
                "procs_blocked" => other.push(
                    Family::gauge(
                        "node_procs_blocked",
                        "Number of processes blocked waiting for I/O to complete.",
                    )
                    .with([], val(&mut it)?),
                ),
                "processes" => other.push(
                    Family::counter("node_forks_total", "Total number of forks.")
                        .with([], val(&mut it)?),
                ),
                _ => {}
            }
        }
    }
    let total = total.ok_or("/proc/stat: no aggregate cpu line")?;
    let busy_idle = |v: &[u64; 8]| {
        let idle = v[3] + v[4];
        let all: u64 = v.iter().sum();
        (all.saturating_sub(idle), all)
    };
    let (b1, a1) = busy_idle(&total);
    let (b0, a0) = prev.map(|p| busy_idle(&p)).unwrap_or((0, 0));
    let ratio = if a1 > a0 {
        b1.saturating_sub(b0) as f64 / (a1 - a0) as f64
    } else {
        0.0
    };
    let mut out = vec![
        secs,
        Family::gauge(
            "host_cpu_utilisation_ratio",
            "Share of CPU time not idle or waiting for I/O since the previous sample, all cores.",
        )
        .with([], ratio.clamp(0.0, 1.0)),
        Family::gauge("host_cpus", "Number of online CPUs.").with([], cores as f64),
    ];
    out.extend(other);
    Ok((out, total))
}

pub(crate) fn parse_loadavg_threads(text: &str) -> Result<Vec<Family>, String> {
    let f = text
        .split_ascii_whitespace()
        .nth(3)
        .and_then(|x| x.split_once('/'))
        .ok_or("/proc/loadavg: no running/total field")?;
    Ok(vec![Family::gauge(
        "node_processes_threads",
        "Allocated threads in system.",
    )
    .with([], num(f.1, "/proc/loadavg")?)])
}

pub(crate) fn parse_meminfo(text: &str) -> Result<Vec<Family>, String> {
    let mut out = Vec::new();
    let mut kv = HashMap::new();
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let v: f64 = num(it.next().unwrap_or(""), "/proc/meminfo")?;
        let (v, suffix) = match it.next() {
            Some("kB") => (v * 1024.0, "_bytes"),
            _ => (v, ""),
        };
        let key = k.replace(['(', ')'], "_").trim_end_matches('_').to_string();
        kv.insert(key.clone(), v);
        out.push(
            Family::gauge(
                format!("node_memory_{key}{suffix}"),
                format!("Memory information field {key}{suffix}."),
            )
            .with([], v),
        );
    }
    let total = kv
        .get("MemTotal")
        .copied()
        .ok_or("/proc/meminfo: no MemTotal")?;
    let avail = kv
        .get("MemAvailable")
        .copied()
        .unwrap_or_else(|| kv.get("MemFree").copied().unwrap_or(0.0));
    if total > 0.0 {
        out.push(
            Family::gauge(
                "host_memory_used_ratio",
                "Share of memory not available (1 - MemAvailable/MemTotal).",
            )
            .with([], 1.0 - avail / total),
        );
    }
    if let (Some(&st), Some(&sf)) = (kv.get("SwapTotal"), kv.get("SwapFree")) {
        out.push(
            Family::gauge(
                "host_swap_used_ratio",
                "Share of swap in use; 0 without swap.",
            )
            .with([], if st > 0.0 { 1.0 - sf / st } else { 0.0 }),
        );
    }
    Ok(out)
}

pub(crate) fn parse_pressure(res: &str, text: &str) -> Vec<Family> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let kind = it.next();
        let Some(total) = it.find_map(|f| f.strip_prefix("total=")) else {
            continue;
        };
        let Ok(us) = total.parse::<f64>() else {
            continue;
        };
        let (name, help) = match kind {
            Some("some") => ("waiting", "waiting"),
            Some("full") if res != "cpu" => ("stalled", "stalled"),
            _ => continue,
        };
        out.push(
            Family::counter(
                format!("node_pressure_{res}_{name}_seconds_total"),
                format!("Total time in seconds that processes have {help} for {res}."),
            )
            .with([], us / 1e6),
        );
    }
    out
}

/// Whole disks only, like node_exporter's default device exclusion.
fn skip_disk(name: &str) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let is_partition = base != name
        && (((base.starts_with("sd")
            || base.starts_with("vd")
            || base.starts_with("hd")
            || base.starts_with("xvd"))
            && base.len() >= 3)
            || (name.starts_with("nvme") && base.ends_with('p')));
    name.starts_with("loop")
        || name.starts_with("ram")
        || name.starts_with("zram")
        || name.starts_with("fd")
        || is_partition
}

pub(crate) fn parse_diskstats(text: &str) -> Result<Vec<Family>, String> {
    let mut fams = [
        Family::counter(
            "node_disk_reads_completed_total",
            "The total number of reads completed successfully.",
        ),
        Family::counter(
            "node_disk_read_bytes_total",
            "The total number of bytes read successfully.",
        ),
        Family::counter(
            "node_disk_read_time_seconds_total",
            "The total number of seconds spent by all reads.",
        ),
        Family::counter(
            "node_disk_writes_completed_total",
            "The total number of writes completed successfully.",
        ),
        Family::counter(
            "node_disk_written_bytes_total",
            "The total number of bytes written successfully.",
        ),
        Family::counter(
            "node_disk_write_time_seconds_total",
            "This is the total number of seconds spent by all writes.",
        ),
        Family::gauge(
            "node_disk_io_now",
            "The number of I/Os currently in progress.",
        ),
        Family::counter(
            "node_disk_io_time_seconds_total",
            "Total seconds spent doing I/Os.",
        ),
        Family::counter(
            "node_disk_io_time_weighted_seconds_total",
            "The weighted # of seconds spent doing I/Os.",
        ),
    ];
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let dev = f[2];
        if skip_disk(dev) {
            continue;
        }
        let n = |i: usize| num::<f64>(f[i], "/proc/diskstats");
        let vals = [
            n(3)?,
            n(5)? * 512.0,
            n(6)? / 1000.0,
            n(7)?,
            n(9)? * 512.0,
            n(10)? / 1000.0,
            n(11)?,
            n(12)? / 1000.0,
            n(13)? / 1000.0,
        ];
        for (fam, v) in fams.iter_mut().zip(vals) {
            fam.push([("device", dev)], v);
        }
    }
    Ok(fams.into_iter().collect())
}

pub(crate) fn parse_netdev(text: &str) -> Result<Vec<Family>, String> {
    const COLS: [(usize, &str, &str); 8] = [
        (0, "receive_bytes", "bytes received"),
        (1, "receive_packets", "packets received"),
        (2, "receive_errs", "receive errors"),
        (3, "receive_drop", "received packets dropped"),
        (8, "transmit_bytes", "bytes transmitted"),
        (9, "transmit_packets", "packets transmitted"),
        (10, "transmit_errs", "transmit errors"),
        (11, "transmit_drop", "transmitted packets dropped"),
    ];
    let mut fams: Vec<Family> = COLS
        .iter()
        .map(|(_, n, h)| {
            Family::counter(
                format!("node_network_{n}_total"),
                format!("Network device statistic: {h}."),
            )
        })
        .collect();
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim();
        let v: Vec<&str> = rest.split_ascii_whitespace().collect();
        if v.len() < 16 {
            return Err(format!("/proc/net/dev: short line for {dev}"));
        }
        for (fam, (i, _, _)) in fams.iter_mut().zip(COLS) {
            fam.push([("device", dev)], num(v[i], "/proc/net/dev")?);
        }
    }
    Ok(fams)
}

pub(crate) fn parse_filefd(text: &str) -> Result<Vec<Family>, String> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    if f.len() < 3 {
        return Err("/proc/sys/fs/file-nr: expected three fields".into());
    }
    Ok(vec![
        Family::gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
        )
        .with([], num(f[0], "file-nr")?),
        Family::gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
        )
        .with([], num(f[2], "file-nr")?),
    ])
}

/// The kernel's memory events node_exporter reads by default (`oom_kill`, `pgpg*`, `pswp*`,
/// `pg*fault`): processes the OOM killer ended, pages paged and swapped in and out, faults.
/// Counters, typed and named as node_exporter has them (untyped, `node_vmstat_oom_kill`: no
/// `_total`, which a counter's name would need).
pub(crate) fn parse_vmstat(text: &str) -> Result<Vec<Family>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, v)) = line.split_once(' ') else {
            continue;
        };
        let kept = key == "oom_kill"
            || key.starts_with("pgpg")
            || key.starts_with("pswp")
            || (key.starts_with("pg") && key.ends_with("fault"));
        if kept {
            out.push(
                Family::new(
                    format!("node_vmstat_{key}"),
                    format!("/proc/vmstat information field {key}."),
                    MetricKind::Untyped,
                )
                .with([], num(v.trim(), "/proc/vmstat")?),
            );
        }
    }
    if out.is_empty() {
        return Err("/proc/vmstat: none of oom_kill, pgpg*, pswp*, pg*fault".into());
    }
    Ok(out)
}

/// The protocol counters of /proc/net/snmp and /proc/net/netstat that tell of an overloaded
/// or lossy network stack, named and typed as node_exporter has them
/// (`node_netstat_Tcp_RetransSegs`, untyped): a header line of field names and a line of
/// values per protocol.
const NETSTAT_FIELDS: [(&str, &[&str]); 3] = [
    (
        "Tcp",
        &[
            "ActiveOpens",
            "PassiveOpens",
            "CurrEstab",
            "InSegs",
            "OutSegs",
            "RetransSegs",
            "InErrs",
            "OutRsts",
        ],
    ),
    (
        "TcpExt",
        &[
            "ListenOverflows",
            "ListenDrops",
            "SyncookiesSent",
            "TCPSynRetrans",
            "TCPTimeouts",
        ],
    ),
    (
        "Udp",
        &[
            "InDatagrams",
            "OutDatagrams",
            "NoPorts",
            "InErrors",
            "RcvbufErrors",
            "SndbufErrors",
        ],
    ),
];

pub(crate) fn parse_netstat(text: &str, path: &str) -> Result<Vec<Family>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            return Err(format!(
                "{path}: expected `Proto: names` then `Proto: values`"
            ));
        };
        if proto != proto2 {
            return Err(format!("{path}: {proto} names followed by {proto2} values"));
        }
        // Only the protocols kept are read further (the others' lines are long: IpExt, MPTcpExt).
        let Some((_, kept)) = NETSTAT_FIELDS.iter().find(|(p, _)| *p == proto) else {
            continue;
        };
        let mut values = values.split_ascii_whitespace();
        for field in names.split_ascii_whitespace() {
            let Some(v) = values.next() else {
                return Err(format!("{path}: {proto} has fewer values than names"));
            };
            if !kept.contains(&field) {
                continue;
            }
            out.push(
                Family::new(
                    format!("node_netstat_{proto}_{field}"),
                    format!("Statistic {proto}{field}."),
                    MetricKind::Untyped,
                )
                .with([], num(v, path)?),
            );
        }
    }
    Ok(out)
}

/// Connection tracking's table: entries in use and its size (a full table drops new flows).
pub(crate) fn parse_conntrack(count: &str, max: &str) -> Result<Vec<Family>, String> {
    Ok(vec![
        Family::gauge(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
        )
        .with([], num(count.trim(), "nf_conntrack_count")?),
        Family::gauge(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
        )
        .with([], num(max.trim(), "nf_conntrack_max")?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(fams: &'a [Family], name: &str) -> &'a Family {
        fams.iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn stat_and_utilisation() {
        let t1 = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nctxt 42\nprocs_running 3\n";
        let (f, tot) = parse_stat(t1, 100.0, None).unwrap();
        let secs = get(&f, "node_cpu_seconds_total");
        assert_eq!(secs.samples.len(), 16);
        assert_eq!(secs.samples[0].0.get("mode"), Some("user"));
        assert_eq!(secs.samples[0].1, 0.5);
        assert_eq!(get(&f, "host_cpus").samples[0].1, 2.0);
        assert!((get(&f, "host_cpu_utilisation_ratio").samples[0].1 - 0.2).abs() < 1e-9);
        let t2 = "cpu  190 0 110 800 100 0 0 0 0 0\n";
        let (f, _) = parse_stat(t2, 100.0, Some(tot)).unwrap();
        // +100 busy, +100 idle since the previous sample.
        assert!((get(&f, "host_cpu_utilisation_ratio").samples[0].1 - 0.5).abs() < 1e-9);
        assert!(parse_stat("cpu0 x\n", 100.0, None).is_err());
    }

    #[test]
    fn meminfo() {
        let t = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\nActive(anon):     10 kB\nSwapTotal:         0 kB\nSwapFree:          0 kB\nHugePages_Total:   0\n";
        let f = parse_meminfo(t).unwrap();
        assert_eq!(
            get(&f, "node_memory_MemTotal_bytes").samples[0].1,
            1_024_000.0
        );
        get(&f, "node_memory_Active_anon_bytes");
        get(&f, "node_memory_HugePages_Total");
        assert_eq!(get(&f, "host_memory_used_ratio").samples[0].1, 0.75);
        assert_eq!(get(&f, "host_swap_used_ratio").samples[0].1, 0.0);
    }

    #[test]
    fn pressure() {
        let t = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n";
        let f = parse_pressure("io", t);
        assert_eq!(
            get(&f, "node_pressure_io_waiting_seconds_total").samples[0].1,
            1.5
        );
        assert_eq!(
            get(&f, "node_pressure_io_stalled_seconds_total").samples[0].1,
            0.5
        );
        assert_eq!(
            parse_pressure("cpu", t).len(),
            1,
            "cpu full is not exported"
        );
    }

    #[test]
    fn disks_skip_partitions_and_loops() {
        let t = "   8       0 sda 10 0 8 5 20 0 16 7 0 30 40 0 0 0 0\n   8       1 sda1 1 0 1 1 1 0 1 1 0 1 1 0 0 0 0\n   7       0 loop0 1 0 1 1 1 0 1 1 0 1 1\n 259 0 nvme0n1 1 0 2 3 4 0 6 7 0 9 10\n 259 1 nvme0n1p1 1 0 2 3 4 0 6 7 0 9 10\n";
        let f = parse_diskstats(t).unwrap();
        let r = get(&f, "node_disk_read_bytes_total");
        let devs: Vec<_> = r
            .samples
            .iter()
            .map(|s| s.0.get("device").unwrap())
            .collect();
        assert_eq!(devs, vec!["sda", "nvme0n1"]);
        assert_eq!(r.samples[0].1, 8.0 * 512.0);
        assert_eq!(
            get(&f, "node_disk_io_time_seconds_total").samples[0].1,
            0.03
        );
    }

    #[test]
    fn netdev() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n";
        let f = parse_netdev(t).unwrap();
        let tx = get(&f, "node_network_transmit_drop_total");
        assert_eq!(tx.samples[1].0.get("device"), Some("eth0"));
        assert_eq!(tx.samples[1].1, 4.0);
    }

    #[test]
    fn vmstat_keeps_node_exporters_fields() {
        let t = "nr_free_pages 1000\npgpgin 10\npgpgout 20\npswpin 3\npswpout 4\npgfault 500\npgmajfault 7\npgsteal_kswapd 9\noom_kill 2\n";
        let f = parse_vmstat(t).unwrap();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_vmstat_pgpgin",
                "node_vmstat_pgpgout",
                "node_vmstat_pswpin",
                "node_vmstat_pswpout",
                "node_vmstat_pgfault",
                "node_vmstat_pgmajfault",
                "node_vmstat_oom_kill"
            ]
        );
        assert_eq!(get(&f, "node_vmstat_oom_kill").samples[0].1, 2.0);
        assert!(parse_vmstat("oom_kill x\n").is_err());
        assert!(parse_vmstat("nr_free_pages 1\n").is_err());
    }

    #[test]
    fn netstat_reads_the_named_counters() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoAlgorithm ActiveOpens CurrEstab OutSegs RetransSegs\nTcp: 1 590 4 7287416 276\nUdp: InDatagrams NoPorts InErrors RcvbufErrors\nUdp: 10 2 5 3\n";
        let f = parse_netstat(snmp, "snmp").unwrap();
        assert_eq!(get(&f, "node_netstat_Tcp_RetransSegs").samples[0].1, 276.0);
        assert_eq!(get(&f, "node_netstat_Tcp_CurrEstab").samples[0].1, 4.0);
        assert_eq!(
            get(&f, "node_netstat_Tcp_OutSegs").kind,
            MetricKind::Untyped
        );
        assert_eq!(get(&f, "node_netstat_Udp_RcvbufErrors").samples[0].1, 3.0);
        assert!(f.iter().all(|f| !f.name.contains("Forwarding")));
        let ext = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TW\nTcpExt: 1 12 13 578931\n";
        let f = parse_netstat(ext, "netstat").unwrap();
        assert_eq!(
            get(&f, "node_netstat_TcpExt_ListenOverflows").samples[0].1,
            12.0
        );
        assert_eq!(
            get(&f, "node_netstat_TcpExt_ListenDrops").samples[0].1,
            13.0
        );
        for bad in [
            "Tcp: ActiveOpens\nUdp: 1\n",
            "Tcp: ActiveOpens RetransSegs\nTcp: 1\n",
            "Tcp ActiveOpens\nTcp 1\n",
            "Tcp: RetransSegs\nTcp: many\n",
        ] {
            assert!(parse_netstat(bad, "snmp").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conntrack_table() {
        let f = parse_conntrack("120\n", "262144\n").unwrap();
        assert_eq!(get(&f, "node_nf_conntrack_entries").samples[0].1, 120.0);
        assert_eq!(
            get(&f, "node_nf_conntrack_entries_limit").samples[0].1,
            262144.0
        );
        assert!(parse_conntrack("", "1").is_err());
    }

    #[test]
    fn pids_are_the_directories_named_by_digits_only() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["1", "23", "4096", "self", "net", "12a"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("uptime"), "1 2\n").unwrap();
        assert_eq!(count_pids(dir.path()).unwrap(), 3);
        assert!(count_pids(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn real_host_samples() {
        let mut s = HostSampler::new(Duration::from_secs(2));
        let runs = s.sample();
        for r in &runs {
            assert!(r.result.is_ok(), "{}: {:?}", r.name, r.result);
        }
        let all: Vec<Family> = runs.into_iter().flat_map(|r| r.result.unwrap()).collect();
        for name in [
            "node_cpu_seconds_total",
            "node_load1",
            "node_memory_MemAvailable_bytes",
            "node_filesystem_avail_bytes",
            "node_network_receive_bytes_total",
            "node_filefd_allocated",
            "node_processes_pids",
            "node_vmstat_oom_kill",
            "node_netstat_Tcp_RetransSegs",
        ] {
            assert!(!get(&all, name).samples.is_empty(), "{name}");
        }
    }
}
