//! Page weight and speed of the console's overview with 1,000 hosts and 200 firing alerts, in
//! a real headless Chromium (the cache off, so every load fetches everything): bytes
//! transferred (page, assets and API answers) and the time from navigation start until the
//! overview has rendered its data (`tocsin-ready`), over N loads (default 20); prints medians.
//! (No side-by-side peer: Debian's prometheus-alertmanager ships without its web UI.)
//!
//!   cargo build --release -p tocsin-collector
//!   cargo bench -p tocsin-e2e --bench console_load [-- LOADS]

use std::time::Duration;

use serde_json::{json, Value};
use tocsin_e2e::browser::Browser;
use tocsin_e2e::{wait_for, Stack};
use tocsin_model::{Labels, Sample, SeriesSamples};

const ADMIN: &str = "bench-admin";
const HOSTS: usize = 1000;
const FIRING: usize = 200;

fn main() {
    let loads: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    // The collector as the tests start it (its notifications to a local webhook).
    let s = Stack::new(&format!("admin_token: {ADMIN}\n"));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(
        s.dir.path().join("rules/bench.yaml"),
        "rules:\n  - name: BenchDiskFull\n    expr: bench_disk_used_ratio * 100\n    levels:\n      warning: { when: \"> 80\" }\n      critical: { when: \"> 90\" }\n    labels: { category: disk }\n    annotations: { summary: \"Disk {{ value|round(1) }}% full on {{ host }}\" }\n",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    // 1,000 hosts, each with a few series; 200 of them over the threshold.
    let now = tocsin_model::now_ms();
    let mut batch = Vec::new();
    for h in 0..HOSTS {
        let host = format!("host-{h:04}");
        let used = if h < FIRING {
            0.85 + (h % 10) as f64 / 100.0
        } else {
            0.4
        };
        for (name, v) in [
            ("bench_disk_used_ratio", used),
            ("host_cpu_utilisation_ratio", 0.3),
            ("node_memory_MemAvailable_bytes", 4e9),
            ("node_memory_MemTotal_bytes", 8e9),
        ] {
            batch.push(SeriesSamples {
                labels: Labels::from_pairs([("__name__", name), ("host", host.as_str())]),
                samples: vec![Sample {
                    timestamp_ms: now,
                    value: v,
                }],
            });
        }
    }
    let auth = format!("Bearer {ADMIN}");
    for chunk in batch.chunks(500) {
        let r = c.remote_write(chunk, &[("Authorization", &auth)]);
        assert!(r.status().is_success(), "{}", r.status());
    }
    let client = reqwest::blocking::Client::new();
    wait_for("200 firing alerts", Duration::from_secs(60), || {
        let v: Value = client
            .get(c.url("/api/v1/alerts"))
            .bearer_auth(ADMIN)
            .send()
            .ok()?
            .json()
            .ok()?;
        (v["data"]["alerts"].as_array()?.len() >= FIRING).then_some(())
    });

    let b = Browser::start(1280, 900).expect("chromium and chromedriver");
    b.cdp("Network.enable", json!({}));
    b.cdp("Network.setCacheDisabled", json!({ "cacheDisabled": true }));
    b.goto(&c.url("/#/login"));
    b.ready("login");
    b.wait("[data-test=user]", Duration::from_secs(10))
        .type_text("bench");
    b.wait("[data-test=credential]", Duration::from_secs(10))
        .type_text(ADMIN);
    b.wait(
        "[data-test=login] button[type=submit]",
        Duration::from_secs(10),
    )
    .click();
    b.ready("overview");
    let firing = b.text("[data-test=firing-warning]");
    println!(
        "overview shows: warning {firing}, critical {}",
        b.text("[data-test=firing-critical]")
    );
    let (mut ms, mut kb) = (Vec::new(), Vec::new());
    for i in 0..loads {
        b.goto(&c.url(&format!("/?load={i}#/")));
        b.ready("overview");
        let m = b.eval(
            "const r = performance.getEntriesByName('tocsin-ready')[0].startTime;
             const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
             return [r, all.reduce((s, e) => s + (e.transferSize || 0), 0), all.length];",
            json!([]),
        );
        ms.push(m[0].as_f64().unwrap());
        kb.push(m[1].as_f64().unwrap() / 1024.0);
    }
    println!(
        "tocsin overview ({HOSTS} hosts, {FIRING} firing): ready median {:.0} ms (min {:.0}, max {:.0}); transferred median {:.1} KiB over {loads} loads",
        median(&mut ms), ms[0], ms[ms.len() - 1], median(&mut kb)
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
