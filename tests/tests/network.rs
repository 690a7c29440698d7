//! Network latency and loss rules against a real target: in a network namespace the test
//! makes, a TUN device answered by a userspace responder (`tests/fixtures/tun_responder.py`)
//! that the test slows down and makes lose packets (this kernel has no netem qdisc). A
//! collector and an agent run in the namespace with the shipped network rules; the alerts log
//! says what fired and what resolved.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::{binary, serial, shipped_rules_without_for, wait_for, Killed, Netns};

fn in_ns(ns: &str, program: &Path, args: &[&str], log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start in the namespace"),
    )
}

/// (alertname, status, level) of every notification in the alerts log.
fn notified(log: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| {
            v["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        a["status"].as_str().unwrap_or("").to_string(),
                        a["labels"]["level"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
        .collect()
}

fn wait_notified(log: &Path, alert: &str, status: &str) -> Vec<(String, String, String)> {
    wait_for(
        &format!("{alert} {status} in the alerts log"),
        Duration::from_secs(30),
        || {
            let all = notified(log);
            all.iter()
                .any(|(a, s, _)| a == alert && s == status)
                .then_some(all)
        },
    )
}

#[test]
fn latency_and_loss_rules_fire_against_a_real_target_and_resolve_when_it_recovers() {
    let _g = serial();
    let Some(netns) = Netns::create("tocsin-net") else {
        return;
    };
    let ns = netns.0.clone();
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r);
    let control = p("control");
    std::fs::write(&control, "0 0").unwrap();
    let mut responder = Killed(
        Command::new("ip")
            .args(["netns", "exec", &ns, "python3"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/tun_responder.py"
            ))
            .arg("tun0")
            .arg(&control)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut ready = String::new();
    std::io::BufReader::new(responder.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    assert!(netns.sh("ip addr add 10.77.0.1/24 dev tun0 && ip link set tun0 up"));

    // The shipped network rules, their `for` shortened so the test need not wait minutes.
    shipped_rules_without_for(&p("rules"), &["network.yaml"]);
    let alerts = p("alerts.log");
    std::fs::write(
        p("collector.yaml"),
        format!(
            "receivers:\n  - name: log\n    log: {{ path: {} }}\n",
            alerts.display()
        ),
    )
    .unwrap();
    let _c = in_ns(
        &ns,
        &binary("tocsin-collector"),
        &[
            "--config",
            p("collector.yaml").to_str().unwrap(),
            "--listen",
            "127.0.0.1:19760",
            "--data-dir",
            p("data").to_str().unwrap(),
            "--rules",
            p("rules").to_str().unwrap(),
        ],
        &p("collector.log"),
    );
    std::fs::write(
        p("agent.yaml"),
        "host: net-host\ninterval: 1s\nprobes:\n  - { name: gw, kind: icmp, target: 10.77.0.2, interval: 2s, timeout: 2s, icmp: { count: 3, spacing: 20ms } }\n",
    )
    .unwrap();
    let _a = in_ns(
        &ns,
        &binary("tocsin-agent"),
        &[
            "--config",
            p("agent.yaml").to_str().unwrap(),
            "--collector",
            "http://127.0.0.1:19760/api/v1/write",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            p("agent-state").to_str().unwrap(),
        ],
        &p("agent.log"),
    );

    // 300 ms round trips: above the 200 ms warning, under the 500 ms critical. (Pings go one
    // after another, each waiting its share of the timeout: 636 ms here.)
    std::fs::write(&control, "300 0").unwrap();
    let all = wait_notified(&alerts, "NetworkLatencyHigh", "firing");
    assert!(
        all.iter()
            .any(|(a, s, l)| a == "NetworkLatencyHigh" && s == "firing" && l == "warning"),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|(a, _, _)| a == "NetworkPacketLoss"),
        "slow is not lossy: {all:?}"
    );
    std::fs::write(&control, "0 0").unwrap();
    wait_notified(&alerts, "NetworkLatencyHigh", "resolved");

    // Every second ping lost: a run of three loses one or two, past the 20 % critical.
    std::fs::write(&control, "0 2").unwrap();
    let all = wait_notified(&alerts, "NetworkPacketLoss", "firing");
    assert!(
        all.iter()
            .any(|(a, s, l)| a == "NetworkPacketLoss" && s == "firing" && l == "critical"),
        "{all:?}"
    );
    std::fs::write(&control, "0 0").unwrap();
    wait_notified(&alerts, "NetworkPacketLoss", "resolved");
    let log = std::fs::read_to_string(p("collector.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
