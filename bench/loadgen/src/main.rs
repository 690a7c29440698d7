//! Sends pre-encoded remote-write requests as fast as the receiver acknowledges them, as a set
//! of simulated agents (each its own series, timestamps advancing per round), and reports
//! acknowledged samples per second and request latency. Payloads are built before timing
//! starts, so the generator's own CPU cost during the run is only HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

#[derive(Parser)]
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
}

fn payload(agent: usize, round: usize, a: &Args, t0: i64) -> Vec<u8> {
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
                Sample::new(t0 + k * 10_000, v)
            })
            .collect();
        series.push(SeriesSamples { labels, samples });
    }
    tocsin_wire::encode(&tocsin_wire::to_request(&series))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // Start far enough back that every timestamp is in the past.
    let t0 = tocsin_model::now_ms() - (a.rounds * a.samples) as i64 * 10_000 - 60_000;
    let per_request = a.series * a.samples;
    eprintln!(
        "building {} requests of {} samples…",
        a.agents * a.rounds,
        per_request
    );
    let mut by_worker: Vec<Vec<Vec<u8>>> = vec![Vec::new(); a.concurrency];
    for round in 0..a.rounds {
        for agent in 0..a.agents {
            by_worker[agent % a.concurrency].push(payload(agent, round, &a, t0));
        }
    }
    let bytes: usize = by_worker.iter().flatten().map(|p| p.len()).sum();
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
            for body in reqs {
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
                            lat.push(t.elapsed());
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
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    let samples = lat.len() * per_request;
    let rate = samples as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "samples": samples, "seconds": secs, "samples_per_second": rate,
                "requests": lat.len(), "failed": failed, "bytes": bytes,
                "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99),
            })
        );
    } else {
        println!(
            "{samples} samples in {secs:.2}s = {rate:.0} samples/s; {} requests ({failed} failed), {:.1} bytes/sample on the wire, latency p50 {:.1} ms p99 {:.1} ms",
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
