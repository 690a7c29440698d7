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

fn probe(c: &Proc, ok: bool, t_ms: i64) {
    let s = tocsin_model::SeriesSamples {
        labels: tocsin_model::Labels::from_pairs([
            ("__name__", "probe_success"),
            ("host", "app-1"),
            ("probe", "members-web"),
            ("kind", "http"),
            ("service", "members"),
        ]),
        samples: vec![tocsin_model::Sample::new(t_ms, if ok { 1.0 } else { 0.0 })],
    };
    assert_eq!(c.remote_write(&[s], &[]).status().as_u16(), 204);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `tocsin-collector ARGS --url …`: (success, stdout, stderr).
fn cli(c: &Proc, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
        .args(args)
        .args(["--url", &c.url("")])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_change_shows_on_the_next_incident_a_freeze_refuses_one_and_feedback_is_counted() {
    let _g = serial();
    let env = Stack::new(
        "services:\n  - { name: members, objective: 99.9% }\n\
         change_freezes:\n  - { name: billing-release, services: [billing], start: \"2020-01-01 00:00:00\", end: \"2099-01-01 00:00:00\" }\n",
    );
    let c = env.collector("127.0.0.1:0", RULES);

    // A deploy of members, from CI.
    let (ok, out, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "members",
            "--summary",
            "deploy v2.4.1",
            "--by",
            "ci",
            "--host",
            "app-1",
            "--link",
            "https://ci.example/run/42",
        ],
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    // The freeze on billing refuses a change, and lets one through with a reason.
    let (ok, _, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "billing",
            "--summary",
            "new tariffs",
            "--by",
            "bob",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "change freeze \"billing-release\" holds for billing until 2099-01-01T00:00:00Z"
        ),
        "{err}"
    );
    let (ok, _, err) = cli(
        &c,
        &[
            "change",
            "add",
            "--service",
            "billing",
            "--summary",
            "hotfix",
            "--by",
            "bob",
            "--kind",
            "config",
            "--override",
            "payment outage fix",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: inside change freeze \"billing-release\""),
        "{err}"
    );
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_change_requests_total{result=\"refused\"}"
        ),
        1.0
    );
    let listed = get(&c, "/api/v1/changes?service=billing").unwrap();
    assert_eq!(
        listed["data"]["changes"][0]["freeze"],
        "billing-release (overridden: payment outage fix)"
    );
    // The change marker, for dashboards.
    wait_for("the change marker stored", Duration::from_secs(10), || {
        newest(&c, "tocsin_change{service=\"members\",kind=\"deploy\"}")
            .filter(|(v, _)| *v == id as f64)
    });

    // Then members goes down: its incident shows the deploy before it.
    let t = now_ms();
    probe(&c, true, t - 3000);
    probe(&c, false, t - 2000);
    probe(&c, false, t - 1000);
    let inc = wait_for("the members incident", Duration::from_secs(20), || {
        incident_of(&c, "members")
    });
    assert_eq!(inc["changes"][0]["summary"], "deploy v2.4.1", "{inc}");
    assert_eq!(inc["changes"][0]["link"], "https://ci.example/run/42");
    let timeline = inc["timeline"].as_array().unwrap();
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let change_at = kinds
        .iter()
        .position(|k| *k == "change")
        .expect("change on the timeline");
    let opened_at = kinds.iter().position(|k| *k == "opened").unwrap();
    assert!(change_at < opened_at, "{kinds:?}");
    assert_eq!(
        timeline[change_at]["text"],
        "deploy of members by ci: deploy v2.4.1"
    );
    let inc_id = inc["id"].as_str().unwrap().to_string();
    let report = reqwest::blocking::get(c.url(&format!("/api/v1/incidents/{inc_id}/report")))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        report.contains("## Changes before it\n\n- ")
            && report
                .contains("deploy of members by ci: deploy v2.4.1 (https://ci.example/run/42)"),
        "{report}"
    );
    assert!(
        !report.contains("hotfix"),
        "billing's change is not members': {report}"
    );

    // Feedback: a bad verdict is told, a good one counted per rule.
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "feedback",
            &inc_id,
            "--by",
            "alice",
            "--verdict",
            "meh",
        ],
    );
    assert!(
        !ok && err.contains("verdict \"meh\" is not one of useful, noise, wrong_level, duplicate"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &c,
        &[
            "incidents",
            "feedback",
            &inc_id,
            "--by",
            "alice",
            "--verdict",
            "noise",
            "--rule",
            "ServiceDown",
            "--comment",
            "the deploy restarts it",
        ],
    );
    assert!(ok, "{err}");
    let stats = get(&c, "/api/v1/incidents/stats").unwrap();
    let rule = stats["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "ServiceDown")
        .cloned()
        .unwrap();
    assert_eq!(rule["fired"], 1, "{rule}");
    assert_eq!(rule["feedback"]["noise"], 1, "{rule}");
    assert_eq!(rule["noise_share"], 1.0, "{rule}");
    assert_eq!(
        stats["data"]["rules_to_review"][0]["review"], "1 of 1 said noise",
        "{stats}"
    );
    assert_eq!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_alert_feedback_total{verdict=\"noise\"}"
        ),
        1.0
    );
    let inc = incident_of(&c, "members").unwrap();
    assert_eq!(inc["feedback"][0]["comment"], "the deploy restarts it");
}
