//! Kill a watched local process N times (default 20) and time each kill until the webhook
//! receiver holds the collector's `ServiceDown` alert; prints median, p99 and max.
//!
//!   cargo build --release -p tocsin-agent -p tocsin-collector
//!   cargo bench -p tocsin-e2e --bench process_kill [-- TRIALS]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tocsin_e2e::{wait_for, Proc, Webhook};

fn main() {
    let trials: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r).display().to_string();
    let hook = Webhook::start();
    std::fs::write(
        p("collector.yaml"),
        format!(
            "receivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n",
            hook.url
        ),
    )
    .unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let c = Proc::start(
        "tocsin-collector",
        &[
            "--config",
            &p("collector.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &p("data"),
            "--rules",
            rules,
        ],
        Path::new(&p("collector.log")),
    );
    let tag = format!("tocsin-bench-target-{}", std::process::id());
    std::fs::write(
        p("agent.yaml"),
        format!("host: bench\ninterval: 10s\nprobes:\n  - {{ name: target, kind: process, interval: 2s, process: {{ cmdline: \"^{tag}\" }} }}\n"),
    )
    .unwrap();
    let spawn = || -> Child {
        Command::new("bash")
            .args(["-c", "exec -a \"$0\" sleep 100000", &tag])
            .spawn()
            .unwrap()
    };
    let mut target = spawn();
    let a = Proc::start(
        "tocsin-agent",
        &[
            "--config",
            &p("agent.yaml"),
            "--collector",
            &c.url("/api/v1/write"),
            "--listen",
            "127.0.0.1:0",
        ],
        Path::new(&p("agent.log")),
    );
    let service_down = |kind: &str| {
        hook.all()
            .iter()
            .filter(|(_, v)| {
                v["alerts"][0]["labels"]["alertname"] == "ServiceDown"
                    && v["tocsin"]["event"] == kind
            })
            .map(|(t, _)| *t)
            .collect::<Vec<Instant>>()
    };
    // Let the agent see the process before the first kill.
    wait_for(
        "the probe to see the process",
        Duration::from_secs(10),
        || {
            let m = reqwest::blocking::get(a.url("/metrics"))
                .ok()?
                .text()
                .ok()?;
            m.contains("tocsin_agent_probe_runs_total{probe=\"target\",result=\"success\"}")
                .then_some(())
        },
    );
    let mut lat = Vec::new();
    for i in 1..=trials {
        let killed = Instant::now();
        target.kill().unwrap();
        let _ = target.wait();
        let fired = wait_for("ServiceDown firing", Duration::from_secs(30), || {
            service_down("firing").get(i - 1).copied()
        });
        lat.push(fired - killed);
        target = spawn();
        wait_for("ServiceDown resolved", Duration::from_secs(30), || {
            service_down("resolved").get(i - 1).copied()
        });
    }
    let _ = target.kill();
    let _ = target.wait();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rank = |q: f64| lat[((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "process kill → ServiceDown webhook, {trials} trials: median {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms",
        ms(rank(0.5)),
        ms(rank(0.99)),
        ms(*lat.last().unwrap()),
        ms(lat[0])
    );
    println!(
        "all (ms): {:?}",
        lat.iter()
            .map(|d| (ms(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
}
