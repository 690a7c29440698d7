//! Query benchmark. `load` writes the same node-like history (every series the host-overview
//! dashboard reads, plus fillers) into any remote-write receivers, in time order; `run` times
//! a set of PromQL queries against two Prometheus-compatible query APIs, interleaved so both
//! see the same machine noise, and prints median and p99 latency per query with the ratio.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::Value;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

#[derive(Parser)]
#[command(name = "tocsin-querybench", version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes the history to one remote-write URL.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        /// Series per host (at least the 92 the dashboard reads).
        #[arg(long, default_value_t = 100)]
        series: usize,
        #[arg(long, default_value_t = 24)]
        hours: i64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10)]
        step: i64,
        /// End of the history, Unix seconds.
        #[arg(long)]
        end: i64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Times the queries against `ours` and `theirs`, interleaved.
    Run {
        #[arg(long)]
        ours: String,
        #[arg(long)]
        theirs: String,
        /// End of the history, Unix seconds (queries end here).
        #[arg(long)]
        end: i64,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        /// Repetitions of each query.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// The dashboard whose panels make the "full load" case.
        #[arg(long, default_value = "dashboards/host-overview.json")]
        dashboard: String,
    },
    /// Runs the queries against one API in a loop for `seconds` (load while ingest is measured).
    Loop {
        #[arg(long)]
        base: String,
        #[arg(long)]
        end: i64,
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value = "dashboards/host-overview.json")]
        dashboard: String,
    },
}

const MODES: [&str; 8] = [
    "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
];

/// The series of one host: what the host-overview dashboard reads (but `tocsin_host_up`, which
/// the collector derives itself and refuses from senders), then fillers.
fn host_series(host: usize, series: usize) -> Vec<(Labels, f64, bool)> {
    let h = format!("host-{host:04}");
    let mut out: Vec<(Labels, f64, bool)> = Vec::new();
    let mut add = |pairs: &[(&str, &str)], rate: f64, counter: bool| {
        let mut l = Labels::from_pairs(pairs.iter().copied());
        l.set("host", h.clone());
        out.push((l, rate, counter));
    };
    for cpu in 0..8 {
        for (i, mode) in MODES.iter().enumerate() {
            let c = cpu.to_string();
            add(
                &[
                    (METRIC_NAME, "node_cpu_seconds_total"),
                    ("cpu", &c),
                    ("mode", mode),
                ],
                0.02 + 0.1 * i as f64,
                true,
            );
        }
    }
    for (n, v) in [
        ("node_load1", 1.0),
        ("node_load5", 0.9),
        ("node_load15", 0.8),
    ] {
        add(&[(METRIC_NAME, n)], v, false);
    }
    for (n, v) in [
        ("node_memory_MemTotal_bytes", 16e9),
        ("node_memory_MemAvailable_bytes", 9e9),
        ("node_memory_SwapTotal_bytes", 2e9),
        ("node_memory_SwapFree_bytes", 1.5e9),
    ] {
        add(&[(METRIC_NAME, n)], v, false);
    }
    for (dev, mp) in [
        ("/dev/sda1", "/"),
        ("/dev/sda2", "/var"),
        ("/dev/sdb1", "/data"),
        ("/dev/sdc1", "/backup"),
    ] {
        for (n, v) in [
            ("node_filesystem_size_bytes", 500e9),
            ("node_filesystem_avail_bytes", 200e9),
        ] {
            add(
                &[
                    (METRIC_NAME, n),
                    ("device", dev),
                    ("mountpoint", mp),
                    ("fstype", "ext4"),
                ],
                v,
                false,
            );
        }
    }
    for dev in ["sda", "sdb"] {
        add(
            &[(METRIC_NAME, "node_disk_read_bytes_total"), ("device", dev)],
            2e6,
            true,
        );
        add(
            &[
                (METRIC_NAME, "node_disk_written_bytes_total"),
                ("device", dev),
            ],
            5e6,
            true,
        );
    }
    for dev in ["eth0", "eth1"] {
        add(
            &[
                (METRIC_NAME, "node_network_receive_bytes_total"),
                ("device", dev),
            ],
            1e7,
            true,
        );
        add(
            &[
                (METRIC_NAME, "node_network_transmit_bytes_total"),
                ("device", dev),
            ],
            4e6,
            true,
        );
    }
    for r in ["cpu", "io", "memory"] {
        let n = format!("node_pressure_{r}_waiting_seconds_total");
        add(&[(METRIC_NAME, &n)], 0.01, true);
    }
    add(&[(METRIC_NAME, "node_procs_running")], 3.0, false);
    add(&[(METRIC_NAME, "node_procs_blocked")], 0.2, false);
    let mut i = 0;
    while out.len() < series {
        let n = format!("node_filler_{}", i % 20);
        let d = (i / 20).to_string();
        let mut l = Labels::from_pairs([(METRIC_NAME, n.as_str()), ("idx", d.as_str())]);
        l.set("host", h.clone());
        out.push((l, 1.0 + i as f64, i % 2 == 0));
        i += 1;
    }
    out
}

/// A deterministic value: counters grow by `rate` per second with jitter; gauges wobble
/// around `base`.
fn value(k: i64, idx: usize, host: usize, base: f64, counter: bool, step: i64) -> f64 {
    let j = (((k as u64).wrapping_mul(2654435761) ^ (idx as u64 * 40503) ^ (host as u64 * 97))
        % 1000) as f64
        / 1000.0;
    if counter {
        (base * step as f64 * k as f64 * (1.0 + 0.1 * j) * 100.0).round() / 100.0
    } else {
        (base * (0.9 + 0.2 * j) * 1000.0).round() / 1000.0
    }
}

fn load(
    url: &str,
    hosts: usize,
    series: usize,
    hours: i64,
    step: i64,
    end: i64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let start = end - hours * 3600;
    let per_slice = 600 / step; // ten minutes per request
    let slices = hours * 3600 / (per_slice * step);
    let defs: Vec<Vec<(Labels, f64, bool)>> = (0..hosts).map(|h| host_series(h, series)).collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let t0 = Instant::now();
    let mut samples = 0u64;
    let mut refused = 0u64;
    for slice in 0..slices {
        // Hosts in groups of `concurrency`, sent at once; slices in time order.
        for group in (0..hosts).collect::<Vec<_>>().chunks(concurrency) {
            let bodies: Vec<(Vec<u8>, u64)> = group
                .iter()
                .map(|&h| {
                    let mut batch = Vec::with_capacity(defs[h].len());
                    for (idx, (l, base, counter)) in defs[h].iter().enumerate() {
                        let pts = (0..per_slice)
                            .map(|i| {
                                let k = slice * per_slice + i;
                                Sample::new(
                                    (start + k * step) * 1000,
                                    value(k, idx, h, *base, *counter, step),
                                )
                            })
                            .collect();
                        batch.push(SeriesSamples {
                            labels: l.clone(),
                            samples: pts,
                        });
                    }
                    let n = (batch.len() as i64 * per_slice) as u64;
                    (tocsin_wire::encode(&tocsin_wire::to_request(&batch)), n)
                })
                .collect();
            let results: Vec<anyhow::Result<(bool, u64)>> = std::thread::scope(|s| {
                let handles: Vec<_> = bodies
                    .into_iter()
                    .map(|(body, n)| {
                        let client = client.clone();
                        s.spawn(move || -> anyhow::Result<(bool, u64)> {
                            for _ in 0..20 {
                                let r = client
                                    .post(url)
                                    .header("Content-Type", tocsin_wire::CONTENT_TYPE)
                                    .header("Content-Encoding", tocsin_wire::CONTENT_ENCODING)
                                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                                    .body(body.clone())
                                    .send()?;
                                let st = r.status();
                                if st.is_success() {
                                    return Ok((true, n));
                                }
                                if st.as_u16() == 429 || st.is_server_error() {
                                    std::thread::sleep(Duration::from_millis(200));
                                    continue;
                                }
                                eprintln!("refused: {st} {}", r.text().unwrap_or_default());
                                return Ok((false, n));
                            }
                            Ok((false, n))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("sender"))
                    .collect()
            });
            for r in results {
                let (ok, n) = r?;
                if ok {
                    samples += n;
                } else {
                    refused += n;
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"samples\": {samples}, \"refused\": {refused}, \"seconds\": {secs:.1}, \"samples_per_second\": {:.0}}}",
        samples as f64 / secs
    );
    anyhow::ensure!(refused == 0, "{refused} samples refused");
    Ok(())
}

/// A benchmark query: name, path (or "dashboard": all panels), parameters.
type Query = (String, &'static str, Vec<(String, String)>);

/// The queries.
fn queries(end: i64, hosts: usize, dashboard: &str) -> anyhow::Result<Vec<Query>> {
    let host = format!("host-{:04}", hosts / 2);
    let range = |q: String, hours: i64, step: i64| {
        vec![
            ("query".to_string(), q),
            ("start".into(), (end - hours * 3600).to_string()),
            ("end".into(), end.to_string()),
            ("step".into(), step.to_string()),
        ]
    };
    let mut out = vec![
        (
            "rate(node_cpu_seconds_total{host=\"x\"}[5m]), 24 h at 60 s".to_string(),
            "/api/v1/query_range",
            range(
                format!("rate(node_cpu_seconds_total{{host=\"{host}\"}}[5m])"),
                24,
                60,
            ),
        ),
        (
            "sum by (host) (rate(node_cpu_seconds_total[5m])), all hosts, 6 h at 60 s".to_string(),
            "/api/v1/query_range",
            range(
                "sum by (host) (rate(node_cpu_seconds_total[5m]))".into(),
                6,
                60,
            ),
        ),
        (
            "instant: sum by (host) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))".to_string(),
            "/api/v1/query",
            vec![
                (
                    "query".into(),
                    "sum by (host) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))".into(),
                ),
                ("time".into(), end.to_string()),
            ],
        ),
    ];
    let board: Value = serde_json::from_str(&std::fs::read_to_string(dashboard)?)?;
    let mut panel_queries = Vec::new();
    for p in board["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                panel_queries.push(
                    e.replace("$__rate_interval", "1m")
                        .replace("$__range", "6h")
                        .replace("$host", &host),
                );
            }
        }
    }
    out.push((
        format!(
            "dashboard full load: {} panel queries, 6 h at 30 s",
            panel_queries.len()
        ),
        "dashboard",
        panel_queries
            .into_iter()
            .map(|q| ("query".to_string(), q))
            .chain([
                ("start".to_string(), (end - 6 * 3600).to_string()),
                ("end".to_string(), end.to_string()),
                ("step".to_string(), "30".to_string()),
            ])
            .collect(),
    ));
    Ok(out)
}

/// One timed run of a query (a dashboard: all its panel queries, four at a time, as Grafana
/// sends them); the answer's point count, checked non-empty.
fn time_one(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    params: &[(String, String)],
) -> anyhow::Result<(Duration, usize)> {
    let t0 = Instant::now();
    let points = if path == "dashboard" {
        let common: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "query")
            .cloned()
            .collect();
        let qs: Vec<&String> = params
            .iter()
            .filter(|(k, _)| k == "query")
            .map(|(_, v)| v)
            .collect();
        let mut total = 0;
        for chunk in qs.chunks(4) {
            let got: Vec<anyhow::Result<usize>> = std::thread::scope(|s| {
                let hs: Vec<_> = chunk
                    .iter()
                    .map(|q| {
                        let mut p = common.clone();
                        p.push(("query".into(), (*q).clone()));
                        s.spawn(move || fetch(client, base, "/api/v1/query_range", &p))
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("query thread"))
                    .collect()
            });
            for g in got {
                total += g?;
            }
        }
        total
    } else {
        fetch(client, base, path, params)?
    };
    Ok((t0.elapsed(), points))
}

fn fetch(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    params: &[(String, String)],
) -> anyhow::Result<usize> {
    let v: Value = client
        .post(format!("{base}{path}"))
        .form(params)
        .send()?
        .json()?;
    anyhow::ensure!(v["status"] == "success", "{path} {params:?}: {v}");
    let r = &v["data"]["result"];
    Ok(r.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["values"].as_array().map_or(1, Vec::len))
                .sum()
        })
        .unwrap_or(1))
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Load {
            url,
            hosts,
            series,
            hours,
            step,
            end,
            concurrency,
        } => load(&url, hosts, series, hours, step, end, concurrency),
        Cmd::Run {
            ours,
            theirs,
            end,
            hosts,
            reps,
            dashboard,
        } => {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()?;
            for (name, path, params) in queries(end, hosts, &dashboard)? {
                // One warm-up each, then interleaved repetitions.
                let (_, p1) = time_one(&client, &ours, path, &params)?;
                let (_, p2) = time_one(&client, &theirs, path, &params)?;
                anyhow::ensure!(
                    p1 > 0 && p1 == p2,
                    "{name}: {p1} points from tocsin, {p2} from the peer"
                );
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for _ in 0..reps {
                    a.push(time_one(&client, &ours, path, &params)?.0.as_secs_f64() * 1000.0);
                    b.push(time_one(&client, &theirs, path, &params)?.0.as_secs_f64() * 1000.0);
                }
                let (am, ap) = (quantile(&mut a, 0.5), quantile(&mut a, 0.99));
                let (bm, bp) = (quantile(&mut b, 0.5), quantile(&mut b, 0.99));
                println!(
                    "| {name} | {p1} | {am:.0} | {ap:.0} | {bm:.0} | {bp:.0} | {:.2} |",
                    am / bm
                );
            }
            Ok(())
        }
        Cmd::Loop {
            base,
            end,
            hosts,
            seconds,
            dashboard,
        } => {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()?;
            let qs = queries(end, hosts, &dashboard)?;
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut n = 0;
            while Instant::now() < deadline {
                for (_, path, params) in &qs {
                    time_one(&client, &base, path, params)?;
                    n += 1;
                }
            }
            println!("{{\"queries\": {n}}}");
            Ok(())
        }
    }
}
