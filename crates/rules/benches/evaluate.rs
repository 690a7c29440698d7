//! Rule evaluation cost over 100,000 series: static levels, a rate() rule and a dynamic
//! (learned baseline) rule, each evaluated on every sample as the collector does, and rules over
//! the fleet (aggregations), evaluated on the clock. Samples come in requests of 300 series (one
//! agent's cycle); every series gets one sample per 10 s round, then the clock ticks once.
//! Reports ns per sample (median of the measured rounds), the tick's time, and the CPU share
//! both cost at a 10 s interval.
//!   cargo bench -p tocsin-rules --bench evaluate
use std::time::Instant;

use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
use tocsin_rules::{Engine, EngineOptions};

const HOSTS: usize = 1000;
const PER_HOST: usize = 100;
const ROUNDS: usize = 12;
const INTERVAL_MS: i64 = 10_000;

fn requests(round: usize, t0: i64) -> Vec<Vec<SeriesSamples>> {
    let ts = t0 + round as i64 * INTERVAL_MS;
    (0..HOSTS / 3)
        .map(|r| {
            (0..3 * PER_HOST)
                .map(|i| {
                    let host = r * 3 + i / PER_HOST;
                    let core = i % PER_HOST;
                    let labels = Labels::from_pairs([
                        (METRIC_NAME, "bench_value".to_string()),
                        ("host", format!("host-{host:04}")),
                        ("core", core.to_string()),
                    ]);
                    // A busy counter-like gauge with noise; a few series run hot.
                    let base = if (host + core).is_multiple_of(97) {
                        95.0
                    } else {
                        40.0
                    };
                    let noise = ((host * 31 + core * 7 + round * 13) % 100) as f64 / 10.0;
                    SeriesSamples {
                        labels,
                        samples: vec![Sample::new(ts, base + noise + round as f64)],
                    }
                })
                .collect()
        })
        .collect()
}

fn run(name: &str, rules_yaml: &str) {
    let rules = tocsin_rules::parse_file("bench.yaml", rules_yaml).expect("valid rules");
    let mut engine = Engine::new(rules, EngineOptions::default());
    let t0 = tocsin_model::now_ms() - ROUNDS as i64 * INTERVAL_MS;
    let mut per_sample = Vec::new();
    let mut ticks = Vec::new();
    let mut transitions = 0usize;
    for round in 0..ROUNDS {
        let reqs = requests(round, t0);
        let samples: usize = reqs.iter().flatten().map(|s| s.samples.len()).sum();
        let now = t0 + round as i64 * INTERVAL_MS + 500;
        let t = Instant::now();
        for r in &reqs {
            transitions += engine.ingest(r, now).len();
        }
        let ns = t.elapsed().as_nanos() as f64 / samples as f64;
        let t = Instant::now();
        transitions += engine.tick(now).len();
        let tick_ms = t.elapsed().as_secs_f64() * 1e3;
        // The first rounds create the per-series state (and fill rate windows).
        if round >= 2 {
            per_sample.push(ns);
            ticks.push(tick_ms);
        }
    }
    per_sample.sort_by(f64::total_cmp);
    ticks.sort_by(f64::total_cmp);
    let median = per_sample[per_sample.len() / 2];
    let tick = ticks[ticks.len() / 2];
    let series = HOSTS * PER_HOST;
    let round_ms = median * series as f64 / 1e6 + tick;
    println!(
        "{name}: {series} series, median {median:.0} ns/sample and {tick:.1} ms/tick over {} rounds; one 10 s round costs {round_ms:.1} ms = {:.2}% of one core ({transitions} transitions)",
        per_sample.len(),
        round_ms / INTERVAL_MS as f64 * 100.0
    );
}

fn main() {
    run(
        "static levels",
        "rules:\n  - name: Hot\n    expr: bench_value\n    levels: { warning: \"> 80\", critical: { when: \"> 90\", recover: \"< 85\" } }\n    for: 30s\n",
    );
    run(
        "rate over 1m",
        "rules:\n  - name: Fast\n    expr: rate(bench_value[1m])\n    levels: { warning: \"> 5\" }\n",
    );
    run(
        "dynamic baseline",
        "rules:\n  - name: Unusual\n    expr: bench_value\n    dynamic: { sensitivity: medium }\n",
    );
    run(
        "sum by (host) (rate(x[1m])), every 10 s",
        "rules:\n  - name: HostRate\n    expr: sum by (host) (rate(bench_value[1m]))\n    interval: 10s\n    levels: { warning: \"> 500\" }\n",
    );
    run(
        "count(x > 90) / count(x), fleet-wide, every 10 s",
        "rules:\n  - name: ShareHot\n    expr: count(bench_value > 90) / count(bench_value)\n    interval: 10s\n    levels: { warning: \"> 0.5\" }\n",
    );
    run(
        "dynamic + static emergency",
        "rules:\n  - name: Both\n    expr: bench_value\n    dynamic: { sensitivity: medium }\n    levels: { emergency: \"> 98\" }\n",
    );
}
