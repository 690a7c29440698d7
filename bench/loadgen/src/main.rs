//! Sends pre-encoded remote-write requests as fast as the receiver acknowledges them, as a set
//! of simulated agents (each its own series, timestamps advancing per round), and reports
//! acknowledged samples per second and request latency. Payloads are built before timing
//! starts, so the generator's own CPU cost during the run is only HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

#[derive(Parser, Clone)]
#[command(name = "tocsin-loadgen", version, about)]
struct Args {
    /// Remote-write URL.
    #[arg(long, default_value = "http://127.0.0.1:9760/api/v1/write")]
    url: String,
    /// Simulated agents (each sends its own series, in order).
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Series per agent.
    #[arg(long, default_value_t = 500)]
    series: usize,
    /// Samples per series in one request (Prometheus sends up to 2000 samples per request).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Requests per agent.
    #[arg(long, default_value_t = 40)]
    rounds: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Bearer token.
    #[arg(long)]
    token: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Paced mode: every agent sends one request (one sample per series, timestamped now) every
    /// this many seconds, spread evenly over the interval, like real agents, for
    /// `--duration` seconds; reports request latency and any sample not acknowledged.
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u64>,
    /// Length of a paced run, in seconds.
    #[arg(long, default_value_t = 600)]
    duration: u64,
}

fn payload(agent: usize, round: usize, a: &Args, t0: i64) -> Vec<u8> {
    payload_at(agent, round, a, |k| t0 + k * 10_000)
}

fn payload_at(agent: usize, round: usize, a: &Args, ts: impl Fn(i64) -> i64) -> Vec<u8> {
    let mut series = Vec::with_capacity(a.series);
    for s in 0..a.series {
        let labels = Labels::from_pairs([
            (METRIC_NAME, format!("loadgen_metric_{}", s % 50)),
            ("host", format!("agent-{agent:05}")),
            (
                "instance",
                format!("10.0.{}.{}:9100", agent / 250, agent % 250),
            ),
            ("device", format!("dev{}", s / 50)),
            ("job", "node".to_string()),
        ]);
        let samples = (0..a.samples)
            .map(|i| {
                let k = (round * a.samples + i) as i64;
                // Counters and gauges with realistic repetition.
                let v = if s % 3 == 0 {
                    (k * 17 + s as i64) as f64
                } else {
                    ((k + s as i64) % 97) as f64 * 0.5
                };
                Sample::new(ts(k), v)
            })
            .collect();
        series.push(SeriesSamples { labels, samples });
    }
    tocsin_wire::encode(&tocsin_wire::to_request(&series))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(interval) = a.interval {
        return paced(Arc::new(a), Duration::from_secs(interval.max(1))).await;
    }
    // Start far enough back that every timestamp is in the past.
    let t0 = tocsin_model::now_ms() - (a.rounds * a.samples) as i64 * 10_000 - 60_000;
    let per_request = a.series * a.samples;
    eprintln!(
        "building {} requests of {} samples…",
        a.agents * a.rounds,
        per_request
    );
    // Each request with its round: the first round creates every series.
    let mut by_worker: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); a.concurrency];
    for round in 0..a.rounds {
        for agent in 0..a.agents {
            by_worker[agent % a.concurrency].push((round, payload(agent, round, &a, t0)));
        }
    }
    let bytes: usize = by_worker.iter().flatten().map(|p| p.1.len()).sum();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let url = Arc::new(a.url.clone());
    let token = Arc::new(a.token.clone());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for reqs in by_worker {
        let client = client.clone();
        let url = Arc::clone(&url);
        let token = Arc::clone(&token);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(reqs.len());
            let mut failed = 0usize;
            for (round, body) in reqs {
                loop {
                    let t = Instant::now();
                    let mut r = client
                        .post(url.as_str())
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone());
                    if let Some(t) = token.as_ref() {
                        r = r.bearer_auth(t);
                    }
                    match r.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            lat.push((round == 0, t.elapsed()));
                            break;
                        }
                        Ok(resp) if resp.status().as_u16() == 429 => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(resp) => {
                            failed += 1;
                            eprintln!(
                                "HTTP {}: {}",
                                resp.status(),
                                resp.text().await.unwrap_or_default()
                            );
                            break;
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("request failed: {e}");
                            break;
                        }
                    }
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    let secs = start.elapsed().as_secs_f64();
    let quantile = |lat: &[Duration], p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    let mut first: Vec<Duration> = lat.iter().filter(|l| l.0).map(|l| l.1).collect();
    first.sort();
    let first_p99 = quantile(&first, 0.99);
    let mut lat: Vec<Duration> = lat.into_iter().map(|l| l.1).collect();
    lat.sort();
    let q = |p: f64| quantile(&lat, p);
    let samples = lat.len() * per_request;
    let rate = samples as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "samples": samples, "seconds": secs, "samples_per_second": rate,
                "requests": lat.len(), "failed": failed, "bytes": bytes,
                "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99),
                "first_round_latency_ms_p99": first_p99,
            })
        );
    } else {
        println!(
            "{samples} samples in {secs:.2}s = {rate:.0} samples/s; {} requests ({failed} failed), {:.1} bytes/sample on the wire, latency p50 {:.1} ms p99 {:.1} ms (first round, new series: p99 {first_p99:.1} ms)",
            lat.len(),
            bytes as f64 / (a.agents * a.rounds * per_request) as f64,
            q(0.5),
            q(0.99)
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} requests failed");
    }
    Ok(())
}

/// What one simulated agent saw in a paced run.
#[derive(Default)]
struct AgentRun {
    /// Latency of each acknowledged request.
    latency: Vec<Duration>,
    acked_samples: usize,
    /// Samples given up (a 4xx other than 429, or still failing after a minute of retries).
    dropped_samples: usize,
    /// Attempts answered 429/5xx or not answered, retried.
    retries: usize,
}

async fn paced(a: Arc<Args>, interval: Duration) -> anyhow::Result<()> {
    let rounds = (a.duration / interval.as_secs()).max(1) as usize;
    let expected = a.agents * rounds * a.series;
    eprintln!(
        "{} agents x {} series every {}s for {} rounds: {:.0} samples/s offered",
        a.agents,
        a.series,
        interval.as_secs(),
        rounds,
        (a.agents * a.series) as f64 / interval.as_secs_f64()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let start = tokio::time::Instant::now();
    let wall0 = tocsin_model::now_ms();
    let mut tasks = Vec::new();
    for agent in 0..a.agents {
        let (a, client) = (Arc::clone(&a), client.clone());
        // Agents start spread evenly over the first interval.
        let offset = interval.mul_f64(agent as f64 / a.agents as f64);
        tasks.push(tokio::spawn(async move {
            let mut run = AgentRun::default();
            for round in 0..rounds {
                let due = start + offset + interval * round as u32;
                tokio::time::sleep_until(due).await;
                let ts = wall0 + (offset + interval * round as u32).as_millis() as i64;
                let one = Args {
                    samples: 1,
                    ..(*a).clone()
                };
                let body = payload_at(agent, round, &one, |_| ts);
                let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let t = Instant::now();
                    let mut r = client
                        .post(a.url.as_str())
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone());
                    if let Some(t) = &a.token {
                        r = r.bearer_auth(t);
                    }
                    let retry = match r.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            run.latency.push(t.elapsed());
                            run.acked_samples += a.series;
                            break;
                        }
                        Ok(resp)
                            if resp.status().as_u16() == 429 || resp.status().is_server_error() =>
                        {
                            true
                        }
                        Ok(resp) => {
                            eprintln!("agent {agent}: HTTP {}", resp.status());
                            false
                        }
                        Err(_) => true,
                    };
                    if !retry || tokio::time::Instant::now() > give_up {
                        run.dropped_samples += a.series;
                        break;
                    }
                    run.retries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            run
        }));
    }
    let mut all = AgentRun::default();
    for t in tasks {
        let r = t.await?;
        all.latency.extend(r.latency);
        all.acked_samples += r.acked_samples;
        all.dropped_samples += r.dropped_samples;
        all.retries += r.retries;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut lat = all.latency;
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "agents": a.agents, "series": a.series, "interval_s": interval.as_secs(),
            "rounds": rounds, "seconds": secs,
            "expected_samples": expected, "acked_samples": all.acked_samples,
            "dropped_samples": all.dropped_samples, "retries": all.retries,
            "requests": lat.len(),
            "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99), "latency_ms_max": q(1.0),
        })
    );
    if all.acked_samples != expected {
        anyhow::bail!(
            "{} of {expected} samples not acknowledged",
            expected - all.acked_samples
        );
    }
    Ok(())
}
