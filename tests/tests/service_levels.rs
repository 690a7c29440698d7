//! Service levels end to end: a service with an objective, a real agent probing a real HTTP
//! server, the shipped rules. An outage burns the budget and fires the fast-burn alert; the
//! incident passes its RTO; the budget survives a restart of the collector.

use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::servers::HttpServer;
use tocsin_e2e::{serial, wait_for, Proc, Stack};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");

fn get(c: &Proc, path: &str) -> Option<Value> {
    reqwest::blocking::get(c.url(path)).ok()?.json().ok()
}

/// The newest value of an instant query's only series, with its sample's time (seconds).
fn newest(c: &Proc, selector: &str) -> Option<(f64, f64)> {
    let q = |e: &str| {
        let v = get(
            c,
            &format!("/api/v1/query?query={}", urlencoding::encode(e)),
        )?;
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    };
    Some((q(selector)?, q(&format!("timestamp({selector})"))?))
}

fn incident_of(c: &Proc, service: &str) -> Option<Value> {
    let v = get(c, "/api/v1/incidents")?;
    let id = v["data"]["incidents"].as_array()?.iter().find(|i| {
        i["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == service))
    })?["id"]
        .as_str()?
        .to_string();
    Some(get(c, &format!("/api/v1/incidents/{id}"))?["data"].clone())
}

#[test]
fn an_outage_burns_the_budget_fires_the_fast_burn_alert_and_breaches_the_rto() {
    let _g = serial();
    let env = Stack::new(
        "services:\n  - { name: members, objective: 99.9%, window: 30d, rto: 4s, owner: members-team }\n",
    );
    let mut svc = HttpServer::start(None);
    // A fixed port, so that the agent finds the collector again after its restart.
    let listen = format!("127.0.0.1:{}", tocsin_e2e::servers::free_port());
    let mut c = env.collector(&listen, RULES);
    let cfg = env.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: app-1\ninterval: 1s\nprobes:\n  - {{ name: members-web, kind: http, target: \"{}\", interval: 1s, timeout: 500ms, labels: {{ service: members }} }}\n",
            svc.url("http")
        ),
    )
    .unwrap();
    let _agent = env.agent(
        &c,
        &["--config", &cfg, "--state-dir", &env.p("agent-state")],
    );

    let budget = "tocsin_slo_error_budget_remaining{service=\"members\"}";
    wait_for(
        "a full budget while the service is up",
        Duration::from_secs(30),
        || newest(&c, budget).filter(|(v, _)| *v == 1.0),
    );
    assert_eq!(
        newest(&c, "tocsin_slo_objective{service=\"members\"}")
            .unwrap()
            .0,
        0.999
    );

    svc.stop();
    let down_at = std::time::Instant::now();
    let fast = wait_for(
        "ErrorBudgetFastBurn firing",
        Duration::from_secs(60),
        || {
            c.alerts()
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "ErrorBudgetFastBurn")
        },
    );
    assert_eq!(fast["labels"]["service"], "members");
    assert_eq!(fast["level"], "critical");
    // Two windows, the probe's confirmation and the 10-second derivation step: well inside
    // a minute of a total outage on a service up only seconds before.
    assert!(
        down_at.elapsed() < Duration::from_secs(45),
        "{:?}",
        down_at.elapsed()
    );
    let burn = newest(
        &c,
        "tocsin_slo_burn_rate{service=\"members\",window=\"5m\"}",
    )
    .unwrap()
    .0;
    assert!(burn > 14.4, "5-minute burn rate {burn}");

    // The service's incident: owned by its team, with the RTO breach on its timeline.
    let inc = wait_for(
        "the RTO breach on the timeline",
        Duration::from_secs(30),
        || {
            let inc = incident_of(&c, "members")?;
            inc["timeline"]
                .as_array()?
                .iter()
                .any(|e| e["kind"] == "rto_breached")
                .then_some(inc)
        },
    );
    assert_eq!(inc["owner"], "members-team");
    let breach = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rto_breached")
        .unwrap();
    assert!(
        breach["text"]
            .as_str()
            .unwrap()
            .contains("past its recovery time objective of 4 s"),
        "{breach}"
    );
    assert!(
        inc["alerts"]
            .as_object()
            .unwrap()
            .values()
            .any(|a| a["rule"] == "ErrorBudgetFastBurn"),
        "the burn alert joins the service's incident: {inc}"
    );
    let stats = get(&c, "/api/v1/incidents/stats").unwrap();
    assert_eq!(stats["data"]["rto_breaches"]["members"], 1, "{stats}");
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_incident_deadline_breaches_total{kind=\"rto\",severity=\"critical\"}"
        ),
        1.0
    );

    // The service comes back: the budget stops falling. It survives a restart of the
    // collector, rebuilt from the stored indicator.
    let port = svc.port;
    let _svc = HttpServer::start_on(port, None);
    wait_for("the service up again", Duration::from_secs(30), || {
        newest(
            &c,
            "tocsin_service_probe_success_ratio{service=\"members\"}",
        )
        .filter(|(v, _)| *v == 1.0)
    });
    let (before, _) = wait_for("the budget settled", Duration::from_secs(40), || {
        let a = newest(&c, budget)?;
        let b = wait_for("the next step", Duration::from_secs(20), || {
            newest(&c, budget).filter(|x| x.1 > a.1)
        });
        (a.0 == b.0).then_some(b)
    });
    assert!(before < 0.999, "some of the budget spent: {before}");
    assert!(c.terminate().success());
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    c = env.collector(&listen, RULES);
    let (after, _) = wait_for(
        "the budget derived after the restart",
        Duration::from_secs(30),
        || newest(&c, budget).filter(|(_, t)| *t >= restarted_at),
    );
    assert!(
        (after - before).abs() < 1e-3,
        "budget before the restart {before}, after {after}"
    );
    assert!(c
        .log()
        .contains("error budgets rebuilt from the stored indicators"));
}
