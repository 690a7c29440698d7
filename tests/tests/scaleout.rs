//! Several collectors: a fleet split across a pool by host (rendezvous hashing, failover to each
//! host's second choice), and a high-availability pair that forwards to each other and notifies
//! once through a real Alertmanager, whichever of the two is alive.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::servers::free_port;
use tocsin_e2e::{metric, serial, wait_for, Proc, Webhook};

/// Hosts a collector heard from in the last `within` seconds.
fn fresh_hosts(c: &Proc, within: f64) -> Vec<String> {
    let Ok(r) = reqwest::blocking::get(c.url("/api/v1/hosts")) else {
        return Vec::new();
    };
    let v: Value = r.json().unwrap_or_default();
    let mut out: Vec<String> = v["data"]["hosts"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|h| h["lastSeenAgeSeconds"].as_f64().is_some_and(|a| a < within))
        .filter_map(|h| h["host"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

fn collector(dir: &Path, name: &str, port: u16, config: &str, rules: &str) -> Proc {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg, config).expect("write collector config");
    Proc::start(
        "tocsin-collector",
        &[
            "--config",
            &cfg.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &dir.join(format!("{name}-data")).display().to_string(),
            "--rules",
            rules,
        ],
        &dir.join(format!("{name}.log")),
    )
}

fn agent(dir: &Path, host: &str, config: &str) -> Proc {
    let cfg = dir.join(format!("agent-{host}.yaml"));
    std::fs::write(&cfg, format!("host: {host}\ninterval: 1s\n{config}")).expect("write");
    Proc::start(
        "tocsin-agent",
        &[
            "--config",
            &cfg.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ],
        &dir.join(format!("agent-{host}.log")),
    )
}

#[test]
fn a_pool_splits_hosts_by_rendezvous_hash_and_moves_only_a_lost_collectors_hosts() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let pool: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/api/v1/write"))
        .collect();
    let mut collectors: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            collector(
                dir.path(),
                &format!("c{i}"),
                *p,
                "",
                &rules.display().to_string(),
            )
        })
        .collect();
    let hosts: Vec<String> = (0..9).map(|i| format!("node-{i}")).collect();
    let pool_yaml = format!(
        "collector: {{ pool: [{}], preferred_retry: 2s, max_backoff: 1s, timeout: 2s }}\n",
        pool.join(", ")
    );
    let _agents: Vec<Proc> = hosts
        .iter()
        .map(|h| agent(dir.path(), h, &pool_yaml))
        .collect();
    let index = |url: &str| pool.iter().position(|u| u == url).expect("in pool");
    let expected = |h: &str| tocsin_config::agent::rendezvous_order(h, &pool);

    // Every host ships to its first choice, and only there.
    let placement = |collectors: &[Proc]| -> Vec<Vec<String>> {
        collectors.iter().map(|c| fresh_hosts(c, 2.5)).collect()
    };
    let want: Vec<Vec<String>> = (0..3)
        .map(|i| {
            hosts
                .iter()
                .filter(|h| index(&expected(h)[0]) == i)
                .cloned()
                .collect()
        })
        .collect();
    wait_for(
        "every host on its first choice only",
        Duration::from_secs(30),
        || (placement(&collectors) == want).then_some(()),
    );

    // Lose the collector with the most hosts: exactly its hosts move, each to its second choice.
    let lost = (0..3).max_by_key(|i| want[*i].len()).expect("three");
    assert!(!want[lost].is_empty());
    collectors[lost].kill9();
    let mut after: Vec<Vec<String>> = vec![Vec::new(); 3];
    for h in &hosts {
        let order = expected(h);
        let i = index(&order[0]);
        let to = if i == lost { index(&order[1]) } else { i };
        after[to].push(h.clone());
    }
    for a in &mut after {
        a.sort();
    }
    wait_for(
        "the lost collector's hosts on their second choice",
        Duration::from_secs(30),
        || {
            let now = placement(&collectors);
            (0..3)
                .filter(|i| *i != lost)
                .all(|i| now[i] == after[i])
                .then_some(())
        },
    );
}

#[test]
fn an_ha_pair_notifies_once_through_alertmanager_and_either_can_be_lost() {
    let _g = serial();
    let hook = Webhook::start();
    let Some(am) = tocsin_e2e::servers::alertmanager_with(&format!(
        "route:\n  receiver: hook\n  group_by: [alertname, host, probe]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        hook.url
    )) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: ServiceDown\n    expr: probe_success\n    levels: { critical: \"< 1\" }\n",
    )
    .expect("write rules");
    let rules = rules.display().to_string();

    // The watched service: fails while `down` is set.
    let down = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&down);
    let (svc, _rt) = tocsin_e2e::serve(axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let d = Arc::clone(&d);
            async move {
                if d.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }
        }),
    ));

    let (pa, pb) = (free_port(), free_port());
    let pair = |peer: u16| {
        format!(
            "receivers:\n  - name: am\n    alertmanager: {{ url: \"http://127.0.0.1:{}\" }}\n\
             route: {{ receivers: [am], repeat_interval: 1m }}\n\
             remote_write:\n  - {{ name: peer, url: \"http://127.0.0.1:{peer}/api/v1/write\", peer: true }}\n",
            am.port
        )
    };
    let mut a = collector(dir.path(), "a", pa, &pair(pb), &rules);
    let b = collector(dir.path(), "b", pb, &pair(pa), &rules);
    let _agent = agent(
        dir.path(),
        "web-1",
        &format!(
            "collector: {{ url: \"http://127.0.0.1:{pa}/api/v1/write\", fallback_urls: [\"http://127.0.0.1:{pb}/api/v1/write\"], preferred_retry: 2s, max_backoff: 1s, timeout: 2s }}\n\
             probes:\n  - {{ name: shop, kind: http, target: \"http://{svc}/\", interval: 1s }}\n"
        ),
    );
    // The agent writes to A; B has the host through A's forwarding.
    wait_for(
        "both collectors hear of the host",
        Duration::from_secs(30),
        || (fresh_hosts(&a, 3.0) == ["web-1"] && fresh_hosts(&b, 3.0) == ["web-1"]).then_some(()),
    );

    let delivered = |c: &Proc| {
        metric(
            &c.url("/metrics"),
            "tocsin_notifications_total{receiver=\"am\",result=\"delivered\"}",
        )
    };
    let notified = |status: &str| -> usize {
        hook.all()
            .iter()
            .flat_map(|(_, v)| v["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|x| x["labels"]["alertname"] == "ServiceDown" && x["status"] == status)
            .count()
    };
    // One outage, both collectors alert, the receiver hears of it once.
    let outage = |collectors: &[&Proc], round: usize| {
        let before: Vec<f64> = collectors.iter().map(|c| delivered(c)).collect();
        // Every live collector has delivered `more` notifications to Alertmanager since `before`.
        let told = |before: &[f64], more: f64| {
            wait_for(
                "every live collector told Alertmanager",
                Duration::from_secs(20),
                || {
                    collectors
                        .iter()
                        .zip(before)
                        .all(|(c, b)| delivered(c) >= b + more)
                        .then_some(())
                },
            )
        };
        down.store(true, Ordering::SeqCst);
        wait_for("the firing notification", Duration::from_secs(20), || {
            (notified("firing") == round).then_some(())
        });
        told(&before, 1.0);
        down.store(false, Ordering::SeqCst);
        wait_for("the resolved notification", Duration::from_secs(20), || {
            (notified("resolved") == round).then_some(())
        });
        told(&before, 2.0);
    };
    outage(&[&a, &b], 1);

    // Lose A: the agent fails over to B, which alone notifies; still once.
    a.kill9();
    wait_for("the agent ships to B", Duration::from_secs(20), || {
        (fresh_hosts(&b, 1.5) == ["web-1"]).then_some(())
    });
    outage(&[&b], 2);

    // Alertmanager's group_interval is 1s: three more seconds show no duplicate was on its way.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (notified("firing"), notified("resolved")),
        (2, 2),
        "notifications: {:?}",
        hook.all()
            .iter()
            .map(|(_, v)| v["status"].clone())
            .collect::<Vec<_>>()
    );
    let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
