//! The whole path with real binaries: textfile → agent → remote-write → collector → rule →
//! outbox → webhook.

use std::path::Path;
use std::time::{Duration, Instant};

use tocsin_e2e::{promtool_check, require_tool, serial, wait_for, write_textfile, Proc, Stack};

const INTERVAL: Duration = Duration::from_secs(1);

const RULES: &str = r#"
rules:
  - name: E2eValue
    expr: e2e_value
    levels:
      warning: "> 50"
      critical: { when: "> 80", recover: "< 75" }
    labels: { category: service }
    annotations:
      summary: "e2e value {{ value }} on {{ host }} ({{ level }})"
"#;

struct Setup(Stack);

impl std::ops::Deref for Setup {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.0
    }
}

impl Setup {
    fn new() -> Setup {
        let s = Stack::new("stale_after: 1m\n");
        for d in ["rules", "tf", "data"] {
            std::fs::create_dir(s.dir.path().join(d)).unwrap();
        }
        std::fs::write(s.dir.path().join("rules/e2e.yaml"), RULES).unwrap();
        Setup(s)
    }

    fn set_value(&self, v: f64) {
        write_textfile(
            &self.dir.path().join("tf"),
            "e2e.prom",
            &format!("e2e_value {v}\n"),
        );
    }

    fn collector(&self, listen: &str) -> Proc {
        self.0.collector(listen, &self.p("rules"))
    }

    fn agent(&self, collector: &Proc) -> Proc {
        self.0.agent(
            collector,
            &[
                "--interval",
                "1s",
                "--textfile-dir",
                &self.p("tf"),
                "--host",
                "e2e-host",
            ],
        )
    }
}

fn get_json(url: &str) -> serde_json::Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

/// Value of a counter in a collector's /metrics, 0 when absent.
fn metric(p: &Proc, series: &str) -> f64 {
    let text = reqwest::blocking::get(p.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Waits until the collector has acknowledged `n` more write requests than now.
fn wait_writes(c: &Proc, n: f64) {
    let base = metric(c, "tocsin_ingest_requests_total{code=\"204\"}");
    wait_for("agent writes", Duration::from_secs(15), || {
        (metric(c, "tocsin_ingest_requests_total{code=\"204\"}") >= base + n).then_some(())
    });
}

fn wait_host(c: &Proc) {
    wait_for(
        "the agent's host in /api/v1/hosts",
        Duration::from_secs(15),
        || {
            let v = get_json(&c.url("/api/v1/hosts"));
            (v["data"]["hosts"][0]["host"] == "e2e-host").then_some(())
        },
    );
}

fn ev(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn two_level_rule_fires_escalates_and_resolves() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    let limit = INTERVAL * 2;

    let t = Instant::now();
    s.set_value(60.0);
    let (at, body) = s.hook.wait_nth(1, Duration::from_secs(10));
    let latency = at - t;
    assert!(
        latency <= limit,
        "warning took {latency:?}, limit {limit:?}"
    );
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    let alert = &body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "E2eValue");
    assert_eq!(alert["labels"]["host"], "e2e-host");
    assert_eq!(alert["labels"]["category"], "service");
    assert_eq!(
        alert["annotations"]["summary"],
        "e2e value 60.0 on e2e-host (warning)"
    );
    let api = get_json(&c.url("/api/v1/alerts"));
    assert_eq!(api["data"]["alerts"][0]["level"], "warning");
    assert_eq!(api["data"]["alerts"][0]["state"], "firing");
    // The same alert as a series, like Prometheus' ALERTS, for dashboards.
    let metrics = wait_for("tocsin_alerts", Duration::from_secs(5), || {
        let t = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        t.contains("tocsin_alerts{").then_some(t)
    });
    assert!(
        metrics.contains("tocsin_alerts{alertname=\"E2eValue\",alertstate=\"firing\",category=\"service\",host=\"e2e-host\",level=\"warning\"} 1"),
        "{metrics}"
    );
    if require_tool("promtool") {
        promtool_check(&metrics).unwrap();
    }

    let t = Instant::now();
    s.set_value(90.0);
    let (at, _) = s.hook.wait_nth(2, Duration::from_secs(10));
    assert!(at - t <= limit, "critical took {:?}", at - t);

    let t = Instant::now();
    s.set_value(10.0);
    let (at, body) = s.hook.wait_nth(3, Duration::from_secs(10));
    assert!(at - t <= limit, "resolve took {:?}", at - t);
    assert_eq!(body["status"], "resolved");
    assert_ne!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    // Two more cycles at the resolved value bring nothing new.
    wait_writes(&c, 2.0);
    assert_eq!(
        s.hook.events(),
        vec![
            ev("firing", "warning"),
            ev("level_changed", "critical"),
            ev("resolved", "critical")
        ]
    );
    assert!(get_json(&c.url("/api/v1/alerts"))["data"]["alerts"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn collector_restart_while_firing_neither_repeats_nor_loses_the_resolve() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(60.0);
    let mut c = s.collector("127.0.0.1:0");
    let addr = c.addr.clone();
    let _a = s.agent(&c);
    s.hook.wait_nth(1, Duration::from_secs(10));
    // Delivery is at least once: a kill between the receiver's answer and the outbox update
    // would send it again (receivers can deduplicate on X-Tocsin-Notification-Id). What this
    // test is about is the alert state: wait for the delivery to be recorded.
    wait_for("the delivery recorded", Duration::from_secs(10), || {
        (metric(
            &c,
            "tocsin_notifications_total{receiver=\"hook\",result=\"delivered\"}",
        ) >= 1.0)
            .then_some(())
    });

    c.kill9();
    let c = s.collector(&addr);
    wait_writes(&c, 3.0);
    let api = get_json(&c.url("/api/v1/alerts"));
    assert_eq!(api["data"]["alerts"][0]["state"], "firing", "{api}");
    assert_eq!(
        s.hook.events(),
        vec![ev("firing", "warning")],
        "no duplicate after restart"
    );

    s.set_value(10.0);
    s.hook.wait_nth(2, Duration::from_secs(10));
    wait_writes(&c, 2.0);
    assert_eq!(
        s.hook.events(),
        vec![ev("firing", "warning"), ev("resolved", "warning")]
    );
}

#[test]
fn graceful_restart_keeps_history_and_state() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(90.0);
    let mut c = s.collector("127.0.0.1:0");
    let addr = c.addr.clone();
    let mut a = s.agent(&c);
    s.hook.wait_nth(1, Duration::from_secs(10));
    assert!(a.terminate().success(), "agent exits 0 on SIGTERM");
    assert!(
        c.terminate().success(),
        "collector exits 0 on SIGTERM:\n{}",
        c.log()
    );
    assert!(c.log().contains("final checkpoint written"), "{}", c.log());

    let c = s.collector(&addr);
    let api = get_json(&c.url("/api/v1/alerts"));
    assert_eq!(api["data"]["alerts"][0]["level"], "critical", "{api}");
    let hosts = get_json(&c.url("/api/v1/hosts"));
    assert_eq!(hosts["data"]["hosts"][0]["host"], "e2e-host");
}

#[test]
fn agent_metrics_pass_promtool() {
    let _g = serial();
    if !require_tool("promtool") {
        return;
    }
    let s = Setup::new();
    s.set_value(1.0);
    let c = s.collector("127.0.0.1:0");
    let a = s.agent(&c);
    wait_host(&c);
    for p in [&a, &c] {
        let text = reqwest::blocking::get(p.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        assert!(text.contains("tocsin_"), "{text}");
        // The agent's page carries its latest samples too, node_exporter's names included.
        if let Err(e) = tocsin_e2e::promtool_check_node_names(&text) {
            panic!("promtool rejected {}:\n{e}", p.addr);
        }
    }
    let text = reqwest::blocking::get(a.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for m in [
        "tocsin_agent_sampler_duration_seconds{sampler=\"cpu\"}",
        "tocsin_agent_samples_sent_total",
        "tocsin_agent_cycle_duration_seconds_count",
    ] {
        assert!(text.contains(m), "{m} missing");
    }
}

#[test]
fn default_log_receiver_records_alerts() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(95.0);
    // No config file: the default receiver appends to DATA_DIR/alerts.log.
    let c = Proc::start(
        "tocsin-collector",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &s.p("data"),
            "--rules",
            &s.p("rules"),
        ],
        Path::new(&s.p("collector.log")),
    );
    let _a = s.agent(&c);
    let line = wait_for("alerts.log", Duration::from_secs(10), || {
        std::fs::read_to_string(s.p("data/alerts.log"))
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(v["alerts"][0]["labels"]["level"], "critical");
    assert_eq!(v["receiver"], "log");
}

#[test]
fn rule_files_hot_reload_and_broken_edits_are_rejected() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(40.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);

    // Lower the warning threshold below the current value: the new rule fires.
    std::fs::write(s.p("rules/e2e.yaml"), RULES.replace("\"> 50\"", "\"> 30\"")).unwrap();
    let (_, body) = s.hook.wait_nth(1, Duration::from_secs(15));
    assert_eq!(body["alerts"][0]["labels"]["level"], "warning");

    // A broken edit is rejected and counted; the previous rules keep working.
    std::fs::write(
        s.p("rules/e2e.yaml"),
        "rules:\n  - name: E2eValue\n    expr: rate(\n    levels: { warning: \"> 1\" }\n",
    )
    .unwrap();
    wait_for("a rejected reload", Duration::from_secs(15), || {
        (metric(&c, "tocsin_rule_reloads_total{result=\"failure\"}") >= 1.0).then_some(())
    });
    assert!(c
        .log()
        .contains("rule reload rejected; previous rules stay active"));
    assert!(
        c.log().contains("e2e.yaml:3: rule \"E2eValue\": expr:"),
        "{}",
        c.log()
    );
    wait_writes(&c, 2.0);
    assert_eq!(s.hook.events(), vec![ev("firing", "warning")]);
    s.set_value(10.0);
    let (_, body) = s.hook.wait_nth(2, Duration::from_secs(15));
    assert_eq!(body["status"], "resolved");
}

#[test]
fn dynamic_rule_bands_are_exported_as_series() {
    let _g = serial();
    let s = Setup::new();
    std::fs::write(
        s.p("rules/dyn.yaml"),
        "rules:\n  - name: E2eDyn\n    expr: e2e_value\n    dynamic: { min_history: 3 }\n",
    )
    .unwrap();
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    let text = wait_for("tocsin_baseline_expected", Duration::from_secs(15), || {
        let t = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        t.contains("tocsin_baseline_expected{").then_some(t)
    });
    let line = text
        .lines()
        .find(|l| l.starts_with("tocsin_baseline_expected{"))
        .unwrap();
    assert!(
        line.contains("rule=\"E2eDyn\"") && line.contains("host=\"e2e-host\""),
        "{line}"
    );
    assert!(text.contains("tocsin_baseline_lower{") && text.contains("tocsin_baseline_upper{"));
    if require_tool("promtool") {
        promtool_check(&text).unwrap();
    }
}

#[test]
fn route_tree_sends_each_level_to_its_receivers() {
    let _g = serial();
    let s = Setup::new();
    let chat = tocsin_e2e::Webhook::start();
    let pager = tocsin_e2e::Webhook::start();
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "receivers:
  - name: chat
    webhook: {{ url: \"{}\" }}
  - name: pager
    webhook: {{ url: \"{}\" }}
route:
  receivers: [chat]
  routes:
    - level: critical
      receivers: [chat, pager]
",
            chat.url, pager.url
        ),
    )
    .unwrap();
    s.set_value(60.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    chat.wait_nth(1, Duration::from_secs(10));
    s.set_value(90.0);
    chat.wait_nth(2, Duration::from_secs(10));
    pager.wait_nth(1, Duration::from_secs(10));
    s.set_value(10.0);
    chat.wait_nth(3, Duration::from_secs(10));
    pager.wait_nth(2, Duration::from_secs(10));
    wait_writes(&c, 2.0);
    assert_eq!(
        chat.events(),
        vec![
            ev("firing", "warning"),
            ev("level_changed", "critical"),
            ev("resolved", "critical")
        ]
    );
    assert_eq!(
        pager.events(),
        vec![ev("level_changed", "critical"), ev("resolved", "critical")],
        "the pager hears only of critical"
    );
}

#[test]
fn silences_mute_delivery_but_not_the_record_and_an_alert_firing_when_one_ends_is_told() {
    let _g = serial();
    let s = Setup::new();
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(s.p("collector.yaml"), format!("{cfg}admin_token: adm1n\n")).unwrap();
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    let client = reqwest::blocking::Client::new();
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "E2eValue"}, {"name": "host", "value": "e2e-.*", "isRegex": true}],
        "duration": "1h",
        "createdBy": "alice",
        "comment": "planned maintenance",
    });
    let post = |token: Option<&str>, body: &serde_json::Value| {
        let mut r = client.post(c.url("/api/v1/silences")).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(
        post(None, &silence).0,
        401,
        "the admin API needs the admin token"
    );
    let (code, bad) = post(
        Some("adm1n"),
        &serde_json::json!({"matchers": [], "duration": "1h", "createdBy": "a", "comment": "c"}),
    );
    assert_eq!(code, 400);
    assert_eq!(bad["error"], "a silence needs at least one matcher");
    let (code, created) = post(Some("adm1n"), &silence);
    assert_eq!(code, 200, "{created}");
    let id = created["data"]["silenceId"].as_i64().unwrap();
    let listed = get_json(&c.url("/api/v1/silences"));
    assert_eq!(listed["data"]["silences"][0]["state"], "active");
    assert_eq!(listed["data"]["silences"][0]["createdBy"], "alice");

    // Fires while silenced: recorded (API) but not delivered.
    s.set_value(60.0);
    wait_for(
        "the silenced alert in the API",
        Duration::from_secs(10),
        || {
            (get_json(&c.url("/api/v1/alerts"))["data"]["alerts"][0]["state"] == "firing")
                .then_some(())
        },
    );
    wait_for("the silenced count", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_silenced_total") >= 1.0).then_some(())
    });
    wait_writes(&c, 2.0);
    assert!(
        s.hook.events().is_empty(),
        "nothing delivered while silenced"
    );

    // The silence ends while the alert still fires: receivers hear of it now (as from
    // Alertmanager), once, and of the resolve that follows.
    let r = client
        .delete(c.url(&format!("/api/v1/silences/{id}")))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    s.hook.wait_nth(1, Duration::from_secs(10));
    assert_eq!(s.hook.events(), vec![ev("firing", "warning")]);
    s.set_value(10.0);
    s.hook.wait_nth(2, Duration::from_secs(10));
    assert_eq!(
        s.hook.events(),
        vec![ev("firing", "warning"), ev("resolved", "warning")]
    );
    // A silence that runs out by itself does the same.
    let short = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "E2eValue"}],
        "duration": "4s",
        "createdBy": "alice",
        "comment": "a short window",
    });
    let silenced = metric(&c, "tocsin_notifications_silenced_total");
    assert_eq!(post(Some("adm1n"), &short).0, 200);
    s.set_value(60.0);
    wait_for(
        "the second silenced firing",
        Duration::from_secs(10),
        || (metric(&c, "tocsin_notifications_silenced_total") > silenced).then_some(()),
    );
    assert_eq!(s.hook.events().len(), 2, "nothing while the silence lasts");
    s.hook.wait_nth(3, Duration::from_secs(15));
    assert_eq!(s.hook.events()[2], ev("firing", "warning"));
    let r = client
        .delete(c.url("/api/v1/silences/999"))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn inhibition_holds_back_alerts_covered_by_a_firing_one() {
    let _g = serial();
    let s = Setup::new();
    std::fs::write(
        s.p("rules/e2e.yaml"),
        "rules:
  - name: Outage
    expr: e2e_value
    levels: { critical: \"> 80\" }
  - name: Slow
    expr: e2e_value
    levels: { warning: \"> 50\" }
",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "{cfg}inhibit_rules:\n  - {{ source_match: {{ alertname: Outage }}, equal: [host] }}\n"
        ),
    )
    .unwrap();
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    s.set_value(90.0);
    let (_, body) = s.hook.wait_nth(1, Duration::from_secs(10));
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "Outage");
    wait_for("the inhibited count", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_inhibited_total") >= 1.0).then_some(())
    });
    wait_writes(&c, 2.0);
    assert_eq!(
        s.hook.all().len(),
        1,
        "Slow is inhibited by Outage on the same host"
    );
    let api = get_json(&c.url("/api/v1/alerts"));
    assert_eq!(
        api["data"]["alerts"].as_array().unwrap().len(),
        2,
        "both are recorded"
    );
    // Which alert holds it back, as Alertmanager's API says it.
    let outage = get_json(&c.url("/api/v2/alerts?filter=alertname%3D%22Outage%22"));
    let slow = wait_for("Slow shown inhibited", Duration::from_secs(10), || {
        let v = get_json(&c.url("/api/v2/alerts?filter=alertname%3D%22Slow%22"));
        (v[0]["status"]["state"] == "suppressed").then_some(v)
    });
    assert_eq!(
        slow[0]["status"]["inhibitedBy"],
        serde_json::json!([outage[0]["fingerprint"]]),
        "{slow}"
    );
    // The outage ends while the slowness goes on: now it is told, once.
    s.set_value(60.0);
    s.hook.wait_nth(3, Duration::from_secs(10));
    let mut heard: Vec<(String, String)> = s.hook.all()[1..]
        .iter()
        .map(|(_, b)| {
            (
                b["alerts"][0]["labels"]["alertname"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                b["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    heard.sort();
    assert_eq!(
        heard,
        vec![
            ("Outage".to_string(), "resolved".to_string()),
            ("Slow".to_string(), "firing".to_string())
        ]
    );
    wait_writes(&c, 2.0);
    assert_eq!(s.hook.all().len(), 3, "once");
}

/// Writes collector.yaml with these webhooks as receivers (by name) plus `rest`.
fn configure(s: &Setup, hooks: &[(&str, &tocsin_e2e::Webhook)], rest: &str) {
    let mut cfg = String::from("stale_after: 1m\n");
    if !hooks.is_empty() {
        cfg.push_str("receivers:\n");
    }
    for (name, h) in hooks {
        cfg.push_str(&format!(
            "  - name: {name}\n    webhook: {{ url: \"{}\", timeout: 2s }}\n",
            h.url
        ));
    }
    cfg.push_str(rest);
    std::fs::write(s.p("collector.yaml"), cfg).unwrap();
}

fn escalation_step(v: &serde_json::Value) -> (String, u64, String) {
    (
        v["tocsin"]["kind"].as_str().unwrap_or("").to_string(),
        v["tocsin"]["step"].as_u64().unwrap_or(0),
        v["alerts"][0]["labels"]["level"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

#[test]
fn escalation_steps_stop_when_acknowledged_by_link_api_or_cli() {
    let _g = serial();
    let s = Setup::new();
    let chat = tocsin_e2e::Webhook::start();
    let lead = tocsin_e2e::Webhook::start();
    let boss = tocsin_e2e::Webhook::start();
    configure(
        &s,
        &[("chat", &chat), ("lead", &lead), ("boss", &boss)],
        "admin_token: adm1n
ack: { secret: s3cret, link_ttl: 1h }
dashboard_url: \"http://grafana.test/d/tocsin-host?var-host={{ host }}\"
escalation_policies:
  - name: oncall
    steps:
      - { after: 0s, receivers: [chat] }
      - { after: 2s, receivers: [lead] }
      - { after: 4s, receivers: [boss] }
route:
  escalation: oncall
",
    );
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);

    s.set_value(60.0);
    let (t1, first) = chat.wait_nth(1, Duration::from_secs(10));
    assert_eq!(
        escalation_step(&first),
        ("escalation".into(), 1, "warning".into())
    );
    let (t2, second) = lead.wait_nth(1, Duration::from_secs(10));
    assert_eq!(
        escalation_step(&second),
        ("escalation".into(), 2, "warning".into())
    );
    let gap = t2 - t1;
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_secs(4),
        "step 2 about 2 s after step 1, got {gap:?}"
    );

    // The signed link: a page first (previews must not acknowledge), then the form's POST.
    let url = second["alerts"][0]["tocsin"]["ackUrl"].as_str().unwrap();
    let token = url.split("/ack?t=").nth(1).unwrap().to_string();
    let client = reqwest::blocking::Client::new();
    let page = client
        .get(c.url(&format!("/ack?t={token}")))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("<form method=\"post\""));
    let forged = token.replacen("warning", "critical", 1);
    let r = client
        .get(c.url(&format!("/ack?t={forged}")))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "a token edited to another level is refused"
    );
    assert!(metric(&c, "tocsin_ack_links_refused_total") >= 1.0);
    let r = client
        .post(c.url("/ack"))
        .form(&[("t", token.as_str()), ("by", "alice"), ("comment", "on it")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().unwrap().contains("alice"));
    let alerts = get_json(&c.url("/api/v1/alerts"));
    let a = &alerts["data"]["alerts"][0];
    assert_eq!(a["ack"]["by"], "alice");
    assert_eq!(a["ack"]["comment"], "on it");
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(id, second["alerts"][0]["fingerprint"]);

    // Step 3 was due 4 s after the firing: it never comes.
    wait_writes(&c, 5.0);
    assert!(boss.all().is_empty(), "acknowledged before step 3");
    assert_eq!(lead.all().len(), 1);

    // The API: wrong token, unknown alert.
    let r = client
        .post(c.url("/api/v1/alerts/0000000000000000/ack"))
        .bearer_auth("adm1n")
        .json(&serde_json::json!({"by": "bob"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .post(c.url(&format!("/api/v1/alerts/{id}/ack")))
        .json(&serde_json::json!({"by": "bob"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // A rise to critical re-opens it: the steps start over at the new level.
    s.set_value(90.0);
    let (_, again) = chat.wait_nth(2, Duration::from_secs(10));
    assert_eq!(
        escalation_step(&again),
        ("escalation".into(), 1, "critical".into())
    );
    // The old warning link no longer acknowledges.
    let r = client
        .post(c.url("/ack"))
        .form(&[("t", token.as_str()), ("by", "alice")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "{}", r.text().unwrap());
    // The CLI acknowledges the critical level.
    c.cli(
        &["ack", &id, "--by", "bob", "--comment", "failing over"],
        Some("adm1n"),
    );
    let alerts = get_json(&c.url("/api/v1/alerts"));
    assert_eq!(alerts["data"]["alerts"][0]["ack"]["by"], "bob");
    assert_eq!(alerts["data"]["alerts"][0]["ack"]["level"], "critical");
    wait_writes(&c, 5.0);
    assert!(boss.all().is_empty(), "no step 3 at critical either");

    // The resolve reaches everyone who heard of the alert.
    s.set_value(10.0);
    wait_for("resolves", Duration::from_secs(10), || {
        let last = |h: &tocsin_e2e::Webhook| h.all().last().map(|(_, v)| v["status"] == "resolved");
        (last(&chat) == Some(true) && last(&lead) == Some(true)).then_some(())
    });
    assert!(boss.all().is_empty());
}

#[test]
fn alerts_of_one_group_arrive_in_one_message() {
    let _g = serial();
    let s = Setup::new();
    std::fs::write(
        s.p("rules/e2e.yaml"),
        "rules:
  - { name: CpuHot, expr: e2e_value, levels: { warning: \"> 50\" } }
  - { name: MemHot, expr: e2e_value, levels: { warning: \"> 50\" } }
  - { name: DiskHot, expr: e2e_value, levels: { warning: \"> 50\" } }
",
    )
    .unwrap();
    configure(
        &s,
        &[("hook", &s.hook)],
        "route:
  receivers: [hook]
  group_by: [host]
  group_wait: 2s
  group_interval: 1s
",
    );
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    s.set_value(60.0);
    let (_, body) = s.hook.wait_nth(1, Duration::from_secs(10));
    let names: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["CpuHot", "DiskHot", "MemHot"]);
    assert_eq!(body["groupLabels"], serde_json::json!({"host": "e2e-host"}));
    assert_eq!(body["commonLabels"]["host"], "e2e-host");
    s.set_value(10.0);
    let (_, resolved) = s.hook.wait_nth(2, Duration::from_secs(10));
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"].as_array().unwrap().len(), 3);
    wait_writes(&c, 3.0);
    assert_eq!(s.hook.all().len(), 2, "one message per change of the group");
}

#[test]
fn a_maintenance_window_mutes_only_while_it_is_open() {
    let _g = serial();
    let s = Setup::new();
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    let now_min = tocsin_model::now_ms() / 60_000;
    let hhmm = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(60));
    let day = |m: i64| {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            [(m.div_euclid(1440) + 3).rem_euclid(7) as usize]
    };
    // `zone`: the CLI flag and value the window's times are given in, and its offset from UTC
    // in minutes (the times below are computed in UTC, then written on that clock).
    let add = |from: i64, to: i64, zone: [&str; 2], offset: i64| {
        let window = format!("{}-{}", hhmm(from + offset), hhmm(to + offset));
        c.cli(
            &[
                "silence",
                "add",
                "host=~e2e-.*",
                "--author",
                "ops",
                "--comment",
                "db upgrade",
                "--window",
                &window,
                "--days",
                day(from + offset),
                zone[0],
                zone[1],
            ],
            None,
        );
    };
    // Later today (or tomorrow): not open now.
    add(now_min + 120, now_min + 180, ["--utc-offset", "+00:00"], 0);
    s.set_value(60.0);
    s.hook.wait_nth(1, Duration::from_secs(10));
    // Open now, written in India's time (UTC+5:30): the rise to critical stays quiet.
    add(
        now_min - 1,
        now_min + 30,
        ["--timezone", "Asia/Kolkata"],
        330,
    );
    let listed = get_json(&c.url("/api/v1/silences"));
    let schedule = &listed["data"]["silences"][1]["schedule"];
    assert_eq!(schedule["days"][0], day(now_min - 1 + 330));
    assert_eq!(schedule["timezone"], "Asia/Kolkata");
    s.set_value(90.0);
    wait_for("the silenced count", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_silenced_total") >= 1.0).then_some(())
    });
    wait_writes(&c, 2.0);
    assert_eq!(s.hook.events(), vec![ev("firing", "warning")]);
    assert_eq!(
        get_json(&c.url("/api/v1/alerts"))["data"]["alerts"][0]["level"],
        "critical",
        "recorded all the same"
    );
}

/// `n` rules (Check1…) warning on `e2e_value` above 50, every alert to the test's webhook
/// under `rate_limit` (YAML).
fn checks_to_a_limited_hook(s: &Setup, n: usize, rate_limit: &str) {
    let rules: String = (1..=n)
        .map(|i| {
            format!("  - {{ name: Check{i}, expr: e2e_value, levels: {{ warning: \"> 50\" }} }}\n")
        })
        .collect();
    std::fs::write(s.p("rules/e2e.yaml"), format!("rules:\n{rules}")).unwrap();
    configure(
        s,
        &[],
        &format!(
            "receivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n    rate_limit: {rate_limit}\n",
            s.hook.url
        ),
    );
}

#[test]
fn over_the_rate_limit_waiting_notifications_merge_into_one_digest() {
    let _g = serial();
    let s = Setup::new();
    checks_to_a_limited_hook(&s, 5, "{ count: 2, per: 1m }");
    s.set_value(10.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    s.set_value(60.0);
    let (_, digest) = s.hook.wait_nth(2, Duration::from_secs(10));
    let first = &s.hook.all()[0].1;
    assert_eq!(first["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(digest["tocsin"]["kind"], "digest");
    assert_eq!(digest["tocsin"]["merged"], 4);
    let mut names: Vec<String> = s
        .hook
        .all()
        .iter()
        .flat_map(|(_, v)| v["alerts"].as_array().unwrap().clone())
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["Check1", "Check2", "Check3", "Check4", "Check5"],
        "none dropped"
    );
    // Counted once the delivery is recorded, a moment after the receiver has it.
    wait_for("the digest counted", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_digested_total{receiver=\"hook\"}") == 4.0).then_some(())
    });
    // The minute's budget is spent: the resolves wait in the outbox, not on the floor.
    s.set_value(10.0);
    wait_for("resolves queued", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_pending{receiver=\"hook\"}") >= 5.0).then_some(())
    });
    assert_eq!(s.hook.all().len(), 2);
}

/// A collector restarting in a loop through an outage must not start each receiver's budget
/// afresh (an hour's texts, a day's): the sends of its windows are kept in the database.
#[test]
fn a_restart_does_not_give_a_receiver_its_rate_limit_afresh() {
    let _g = serial();
    let s = Setup::new();
    checks_to_a_limited_hook(&s, 3, "[{ count: 2, per: 1h }, { count: 5, per: 1d }]");
    s.set_value(10.0);
    let mut c = s.collector("127.0.0.1:0");
    let mut a = s.agent(&c);
    wait_host(&c);
    s.set_value(60.0);
    let (_, digest) = s.hook.wait_nth(2, Duration::from_secs(10));
    assert_eq!(digest["tocsin"]["merged"], 2);
    s.set_value(10.0);
    let held = "tocsin_notifications_rate_limited{receiver=\"hook\"}";
    wait_for(
        "resolves held by the hour's window",
        Duration::from_secs(10),
        || {
            (metric(&c, "tocsin_notifications_pending{receiver=\"hook\"}") >= 3.0
                && metric(&c, held) == 1.0)
                .then_some(())
        },
    );
    a.kill9();
    c.kill9();
    let c = s.collector("127.0.0.1:0");
    wait_for(
        "the restarted worker holding them",
        Duration::from_secs(10),
        || {
            (metric(&c, "tocsin_notifications_pending{receiver=\"hook\"}") == 3.0
                && metric(&c, held) == 1.0)
                .then_some(())
        },
    );
    assert_eq!(
        s.hook.all().len(),
        2,
        "nothing sent past the limit after the restart"
    );
}

/// Failed attempts do not spend a rate limit: a provider that errs for a while must not use up
/// the texts of the hour (or the day) on retries, and then hold the message back.
#[test]
fn failed_attempts_do_not_spend_the_rate_limit() {
    let _g = serial();
    let s = Setup::new();
    let port = tocsin_e2e::servers::free_port();
    let rules: String = (1..=2)
        .map(|i| {
            format!(
                "  - {{ name: Check{i}, expr: e2e_value, levels: {{ warning: \"> {i}0\" }} }}\n"
            )
        })
        .collect();
    std::fs::write(s.p("rules/e2e.yaml"), format!("rules:\n{rules}")).unwrap();
    configure(
        &s,
        &[],
        &format!(
            "receivers:\n  - name: down\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", timeout: 1s }}\n    rate_limit: {{ count: 2, per: 1h }}\n"
        ),
    );
    s.set_value(0.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    s.set_value(15.0);
    wait_for("two failed attempts", Duration::from_secs(15), || {
        (metric(
            &c,
            "tocsin_notifications_total{receiver=\"down\",result=\"failed\"}",
        ) >= 2.0)
            .then_some(())
    });
    let hook = tocsin_e2e::Webhook::start_on(port);
    let (_, first) = hook.wait_nth(1, Duration::from_secs(20));
    assert_eq!(first["alerts"][0]["labels"]["alertname"], "Check1");
    // One of the hour's two went out: the next alert is sent as it comes, not held for an hour.
    s.set_value(25.0);
    let (_, second) = hook.wait_nth(2, Duration::from_secs(10));
    assert_eq!(second["alerts"][0]["labels"]["alertname"], "Check2");
    assert_eq!(
        metric(&c, "tocsin_notifications_rate_limited{receiver=\"down\"}"),
        0.0
    );
}

#[test]
fn sigkill_while_the_receiver_is_down_delivers_each_notification_exactly_once() {
    let _g = serial();
    let s = Setup::new();
    let port = tocsin_e2e::servers::free_port();
    configure(
        &s,
        &[],
        &format!("receivers:\n  - name: down\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", timeout: 1s }}\n"),
    );
    s.set_value(10.0);
    let mut c = s.collector("127.0.0.1:0");
    let mut a = s.agent(&c);
    wait_host(&c);
    s.set_value(60.0);
    wait_for("a failed delivery", Duration::from_secs(15), || {
        (metric(
            &c,
            "tocsin_notifications_total{receiver=\"down\",result=\"failed\"}",
        ) >= 1.0)
            .then_some(())
    });
    s.set_value(10.0);
    wait_for("both queued", Duration::from_secs(15), || {
        (metric(&c, "tocsin_notifications_pending{receiver=\"down\"}") >= 2.0).then_some(())
    });
    a.kill9();
    c.kill9();
    let c = s.collector("127.0.0.1:0");
    let hook = tocsin_e2e::Webhook::start_on(port);
    hook.wait_nth(2, Duration::from_secs(40));
    wait_for("the outbox drained", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_pending{receiver=\"down\"}") == 0.0).then_some(())
    });
    let delivered = metric(
        &c,
        "tocsin_notifications_total{receiver=\"down\",result=\"delivered\"}",
    );
    assert_eq!(delivered, 2.0);
    assert_eq!(
        hook.events(),
        vec![ev("firing", "warning"), ev("resolved", "warning")]
    );
    let ids = hook.ids();
    assert!(
        ids.iter().all(|i| i.parse::<i64>().is_ok()) && ids[0] != ids[1],
        "each notification carries its own id: {ids:?}"
    );
}

#[test]
fn dead_letters_are_listed_and_can_be_put_back_in_line() {
    let _g = serial();
    let s = Setup::new();
    let port = tocsin_e2e::servers::free_port();
    configure(
        &s,
        &[],
        &format!("admin_token: adm1n\nreceivers:\n  - name: down\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", timeout: 1s, max_attempts: 1 }}\n"),
    );
    s.set_value(60.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    let dead = wait_for("a dead letter", Duration::from_secs(15), || {
        let v = get_json(&c.url("/api/v1/notifications?status=dead"));
        v["data"]["notifications"]
            .as_array()
            .and_then(|l| l.first().cloned())
    });
    assert_eq!(dead["receiver"], "down");
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["alerts"][0]["alertname"], "E2eValue");
    assert!(
        dead["lastError"].as_str().unwrap().contains("error"),
        "{dead}"
    );
    assert_eq!(
        metric(
            &c,
            "tocsin_notifications_total{receiver=\"down\",result=\"dead\"}"
        ),
        1.0
    );
    let r = reqwest::blocking::get(c.url("/api/v1/notifications?status=lost")).unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Back in line once the receiver is up again.
    let hook = tocsin_e2e::Webhook::start_on(port);
    let client = reqwest::blocking::Client::new();
    let id = dead["id"].as_i64().unwrap();
    let r = client
        .post(c.url(&format!("/api/v1/notifications/{id}/retry")))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, body) = hook.wait_nth(1, Duration::from_secs(15));
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "E2eValue");
    let r = client
        .post(c.url(&format!("/api/v1/notifications/{id}/retry")))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "delivered now, not dead");
}

/// Runs the real `amtool` against the collector; its standard output.
fn amtool(c: &Proc, http_config: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", c.url("")))
        .arg(format!("--http.config.file={}", http_config.display()))
        .args(args)
        .output()
        .expect("run amtool");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Alertmanager's own command-line client works against the collector: it lists the firing
/// alerts, adds a silence that mutes delivery (with the admin token; without it, refused),
/// finds it, shows the alert suppressed by it, and expires it; an alert it raises is told.
#[test]
fn amtool_lists_alerts_and_manages_silences() {
    if !require_tool("amtool") {
        return;
    }
    let _g = serial();
    let s = Setup::new();
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(s.p("collector.yaml"), format!("{cfg}admin_token: adm1n\n")).unwrap();
    let admin = s.dir.path().join("amtool-admin.yml");
    std::fs::write(
        &admin,
        "authorization: { type: Bearer, credentials: adm1n }\n",
    )
    .unwrap();
    let nobody = s.dir.path().join("amtool-none.yml");
    std::fs::write(&nobody, "{}\n").unwrap();
    s.set_value(60.0);
    let c = s.collector("127.0.0.1:0");
    let _a = s.agent(&c);
    wait_host(&c);
    s.hook.wait_nth(1, Duration::from_secs(15));

    let listed = wait_for("amtool lists the alert", Duration::from_secs(10), || {
        amtool(
            &c,
            &admin,
            &["-o", "json", "alert", "query", "alertname=E2eValue"],
        )
        .ok()
        .filter(|t| t.contains("E2eValue"))
    });
    let alerts: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(alerts[0]["labels"]["host"], "e2e-host", "{alerts}");
    assert_eq!(alerts[0]["labels"]["level"], "warning", "{alerts}");
    assert_eq!(alerts[0]["status"]["state"], "active", "{alerts}");
    assert_eq!(alerts[0]["receivers"][0]["name"], "hook", "{alerts}");
    let none = amtool(
        &c,
        &admin,
        &["-o", "json", "alert", "query", "alertname=Other"],
    )
    .unwrap();
    assert_eq!(none.trim(), "[]");

    // A silence: refused without a credential, made with the admin token.
    let add = [
        "silence",
        "add",
        "alertname=E2eValue",
        "host=~e2e-.*",
        "--duration=1h",
        "--author=alice",
        "--comment=planned maintenance",
    ];
    let refused = amtool(&c, &nobody, &add).unwrap_err();
    assert!(
        refused.contains("401") || refused.to_lowercase().contains("unauthorized"),
        "{refused}"
    );
    let id = amtool(&c, &admin, &add).unwrap().trim().to_string();
    assert!(id.starts_with("00000000-0000-4000-8000-"), "{id}");
    let found = amtool(
        &c,
        &admin,
        &["-o", "json", "silence", "query", "alertname=E2eValue"],
    )
    .unwrap();
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found[0]["id"], id.as_str(), "{found}");
    assert_eq!(found[0]["createdBy"], "alice", "{found}");
    assert_eq!(found[0]["matchers"][1]["isRegex"], true, "{found}");
    // The silence mutes the next change; amtool shows the alert suppressed by it.
    let suppressed = wait_for("the alert suppressed", Duration::from_secs(10), || {
        let t = amtool(
            &c,
            &admin,
            &[
                "-o",
                "json",
                "alert",
                "query",
                "--silenced",
                "alertname=E2eValue",
            ],
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&t).ok()?;
        (v[0]["status"]["state"] == "suppressed").then_some(v)
    });
    assert_eq!(suppressed[0]["status"]["silencedBy"][0], id.as_str());
    s.set_value(90.0);
    wait_for("the silenced level change", Duration::from_secs(10), || {
        (metric(&c, "tocsin_notifications_silenced_total") >= 1.0).then_some(())
    });
    assert_eq!(s.hook.events().len(), 1, "nothing delivered while silenced");
    // Expired through amtool: the level change is told now.
    amtool(&c, &admin, &["silence", "expire", &id]).unwrap();
    s.hook.wait_nth(2, Duration::from_secs(10));
    let left = amtool(&c, &admin, &["-o", "json", "silence", "query"]).unwrap();
    assert_eq!(
        left.trim(),
        "[]",
        "an expired silence is not listed as in force"
    );
    let expired = amtool(&c, &admin, &["-o", "json", "silence", "query", "--expired"]).unwrap();
    let expired: serde_json::Value = serde_json::from_str(&expired).unwrap();
    assert_eq!(
        expired[0]["id"],
        id.as_str(),
        "listed as expired: {expired}"
    );
    assert_eq!(expired[0]["status"]["state"], "expired", "{expired}");
    // An alert raised by hand, as amtool posts it to an Alertmanager: told, and listed.
    let raise = [
        "alert",
        "add",
        "alertname=RaisedByHand",
        "severity=critical",
        "host=e2e-host",
        "--annotation=summary=checking the pager",
    ];
    let refused = amtool(&c, &nobody, &raise).unwrap_err();
    assert!(
        refused.contains("401") || refused.to_lowercase().contains("unauthorized"),
        "{refused}"
    );
    amtool(&c, &admin, &raise).unwrap();
    let (_, told) = s.hook.wait_nth(3, Duration::from_secs(10));
    assert_eq!(
        told["alerts"][0]["labels"]["alertname"], "RaisedByHand",
        "{told}"
    );
    assert_eq!(told["alerts"][0]["labels"]["level"], "critical", "{told}");
    assert_eq!(
        told["alerts"][0]["annotations"]["summary"],
        "checking the pager"
    );
    let listed = amtool(
        &c,
        &admin,
        &["-o", "json", "alert", "query", "alertname=RaisedByHand"],
    )
    .unwrap();
    assert!(listed.contains("RaisedByHand"), "{listed}");
}

/// The alert names of every notification a webhook got, with their event: `Disk:firing`.
fn told(hook: &tocsin_e2e::Webhook) -> Vec<String> {
    hook.all()
        .iter()
        .flat_map(|(_, v)| {
            let event = v["tocsin"]["event"].as_str().unwrap_or("").to_string();
            v["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| {
                    format!(
                        "{}:{event}",
                        a["labels"]["alertname"].as_str().unwrap_or("")
                    )
                })
        })
        .collect()
}

#[test]
fn a_reload_takes_new_receivers_and_routes_and_refuses_a_broken_file_whole() {
    let _g = serial();
    let b = tocsin_e2e::Webhook::start();
    let common = "admin_token: adm1n\nread_token: r3ad\nexternal_alerts: { token: s3nder }\n";
    let (s, c) = Stack::with_collector(&format!(
        "route: {{ receivers: [hook], group_wait: 0s, repeat_interval: 0s }}\n{common}"
    ));
    let client = reqwest::blocking::Client::new();
    let post_alert = |name: &str, resolved: bool| {
        let mut a = serde_json::json!({ "labels": { "alertname": name, "host": "web-1" } });
        if resolved {
            a["endsAt"] = "2020-01-01T00:00:00Z".into();
        }
        let r = client
            .post(c.url("/api/v2/alerts"))
            .bearer_auth("s3nder")
            .json(&[a])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let reload = |token: Option<&str>| {
        let mut r = client.post(c.url("/-/reload"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        let code = r.status().as_u16();
        (code, r.text().unwrap())
    };
    let metric = |m: &str| tocsin_e2e::metric(&c.url("/metrics"), m);
    assert_eq!(metric("tocsin_config_last_reload_successful "), 1.0);
    post_alert("Disk", false);
    s.hook.wait_nth(1, Duration::from_secs(20));

    // b joins the route; the retention (read at start) changes too.
    let hook_receiver = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    let hook_receiver = hook_receiver.lines().take(3).collect::<Vec<_>>().join("\n");
    let receivers = format!(
        "{hook_receiver}\n  - name: b\n    webhook: {{ url: \"{}\", timeout: 2s }}\n",
        b.url
    );
    std::fs::write(
        s.p("collector.yaml"),
        format!("{receivers}route: {{ receivers: [hook, b], group_wait: 0s, repeat_interval: 0s }}\nretention: 3d\n{common}"),
    )
    .unwrap();
    assert_eq!(reload(None).0, 401, "a reload needs a credential");
    assert_eq!(reload(Some("r3ad")).0, 401, "...the admin one");
    let (code, body) = reload(Some("adm1n"));
    assert_eq!(code, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["receivers"], 2, "{out}");
    assert_eq!(
        out["restart_needed"],
        serde_json::json!(["retention"]),
        "{out}"
    );
    // b is told what fires; hook, which was told, is not told again: its next message is
    // the next alert.
    b.wait_nth(1, Duration::from_secs(20));
    assert_eq!(told(&b), ["Disk:firing"]);
    post_alert("Load", false);
    s.hook.wait_nth(2, Duration::from_secs(20));
    b.wait_nth(2, Duration::from_secs(20));
    assert_eq!(told(&s.hook), ["Disk:firing", "Load:firing"]);

    // A broken file is refused whole, with where and why, and the running one stays.
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "{receivers}route: {{ receivers: [nobody], group_wait: 0s }}\nretention: 3d\n{common}"
        ),
    )
    .unwrap();
    let (code, body) = reload(Some("adm1n"));
    assert_eq!(code, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    let e = e["error"].as_str().unwrap();
    assert!(
        e.contains("collector.yaml:6: route.receivers: no receiver named \"nobody\""),
        "{e}"
    );
    for secret in ["adm1n", "r3ad", "s3nder"] {
        assert!(!body.contains(secret), "a credential in the answer: {body}");
    }
    assert_eq!(metric("tocsin_config_last_reload_successful "), 0.0);
    assert_eq!(
        metric("tocsin_config_reloads_total{result=\"failure\"} "),
        1.0
    );
    let status: serde_json::Value = client
        .get(c.url("/api/v1/status/collector"))
        .bearer_auth("r3ad")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["data"]["reloadConfigSuccess"], false, "{status}");
    post_alert("Disk", true);
    b.wait_nth(3, Duration::from_secs(20));
    assert_eq!(told(&b), ["Disk:firing", "Load:firing", "Disk:resolved"]);

    // SIGHUP, as Prometheus and Alertmanager take it: hook leaves the route and the file.
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "receivers:\n  - name: b\n    webhook: {{ url: \"{}\", timeout: 2s }}\nroute: {{ receivers: [b], group_wait: 0s, repeat_interval: 0s }}\nretention: 3d\n{common}",
            b.url
        ),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        (metric("tocsin_config_reloads_total{result=\"success\"} ") == 2.0).then_some(())
    });
    assert_eq!(metric("tocsin_config_last_reload_successful "), 1.0);
    post_alert("Load", true);
    post_alert("Swap", false);
    b.wait_nth(5, Duration::from_secs(20));
    let hook_told = told(&s.hook);
    assert_eq!(
        told(&b)[3..],
        ["Load:resolved".to_string(), "Swap:firing".to_string()],
        "{:?}",
        told(&b)
    );
    assert_eq!(
        hook_told,
        ["Disk:firing", "Load:firing", "Disk:resolved"],
        "hook is gone: it hears nothing more"
    );
    // hook's delivery gauges go with it.
    wait_for("hook's gauges gone", Duration::from_secs(20), || {
        let text = reqwest::blocking::get(c.url("/metrics"))
            .and_then(|r| r.text())
            .unwrap_or_default();
        (!text.contains("tocsin_notifications_pending{receiver=\"hook\"}")
            && text.contains("tocsin_notifications_pending{receiver=\"b\"}"))
        .then_some(())
    });
    // The command line asks the same; the file unchanged, nothing is dropped.
    let out: serde_json::Value = serde_json::from_str(&c.cli(&["reload"], Some("adm1n"))).unwrap();
    assert_eq!(out["receivers"], 1, "{out}");
    assert_eq!(out["groups_dropped"], 0, "{out}");
    assert_eq!(
        metric("tocsin_config_reloads_total{result=\"success\"} "),
        3.0
    );
    drop(s);
}

/// The collector alerts on its own health with the shipped rules/collector.yaml: a receiver
/// that keeps refusing is reported through the others, and so is a reload that refused the
/// file, until one takes.
#[test]
fn the_collector_reports_a_failing_receiver_and_a_refused_reload_through_the_others() {
    let _g = serial();
    let port = tocsin_e2e::servers::free_port();
    let down = format!(
        "  - name: down\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", timeout: 1s, max_attempts: 10 }}\n"
    );
    let rest = "route: { receivers: [hook, down], group_wait: 0s, repeat_interval: 0s }\n\
                self_metrics: { interval: 1s }\nadmin_token: adm1n\n";
    let s = Stack::new(&format!("{down}{rest}"));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/collector.yaml"),
        s.dir.path().join("rules/collector.yaml"),
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(c.url("/api/v2/alerts"))
        .bearer_auth("adm1n")
        .json(&serde_json::json!([{ "labels": { "alertname": "Disk", "host": "web-1" } }]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let firing = |name: &'static str| {
        move |v: &serde_json::Value| {
            v["tocsin"]["event"] == "firing" && v["alerts"][0]["labels"]["alertname"] == name
        }
    };
    let wait_told = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        wait_for(what, Duration::from_secs(30), || {
            s.hook.all().into_iter().map(|(_, v)| v).find(|v| f(v))
        })
    };
    let failing = wait_told(
        "the failing receiver reported",
        &firing("TocsinReceiverFailing"),
    );
    assert_eq!(
        failing["alerts"][0]["labels"]["receiver"], "down",
        "{failing}"
    );
    let summary = failing["alerts"][0]["annotations"]["summary"]
        .as_str()
        .unwrap();
    assert!(
        summary.starts_with("Receiver down refuses notifications: 3"),
        "{summary}"
    );
    // A broken file: refused, and said so through the receivers that work (and not before:
    // the start is no refused reload).
    assert!(
        !s.hook
            .all()
            .iter()
            .any(|(_, v)| firing("TocsinConfigReloadFailed")(v)),
        "{:?}",
        s.hook.all()
    );
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(s.p("collector.yaml"), format!("{cfg}retention: soon\n")).unwrap();
    let refused = client
        .post(c.url("/-/reload"))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    wait_told(
        "the refused reload reported",
        &firing("TocsinConfigReloadFailed"),
    );
    std::fs::write(s.p("collector.yaml"), cfg).unwrap();
    let taken = client
        .post(c.url("/-/reload"))
        .bearer_auth("adm1n")
        .send()
        .unwrap();
    assert_eq!(taken.status().as_u16(), 200);
    wait_told("the reload's alert resolved", &|v| {
        v["tocsin"]["event"] == "resolved"
            && v["alerts"][0]["labels"]["alertname"] == "TocsinConfigReloadFailed"
    });
}

/// A rule over a fleet: three real agents report whether their web service is healthy, and a
/// rule that averages it per service fires one alert for the service — not one per host —
/// when two of the three fail, and resolves when they recover.
#[test]
fn a_rule_over_several_hosts_fires_once_for_their_group() {
    let _g = serial();
    let s = Stack::new("");
    for d in ["rules", "data"] {
        std::fs::create_dir(s.dir.path().join(d)).unwrap();
    }
    std::fs::write(
        s.p("rules/fleet.yaml"),
        r#"rules:
  - name: WebMostlyDown
    expr: avg by (service) (app_healthy) * 100
    interval: 1s
    levels: { critical: "< 50" }
    annotations:
      summary: "{{ labels.service }}: {{ value|round(0) }}% of hosts healthy"
"#,
    )
    .unwrap();
    let set = |host: &str, v: u8| {
        write_textfile(
            &s.dir.path().join(format!("tf-{host}")),
            "app.prom",
            &format!("app_healthy{{service=\"web\"}} {v}\n"),
        );
    };
    for host in ["web-1", "web-2", "web-3"] {
        std::fs::create_dir(s.dir.path().join(format!("tf-{host}"))).unwrap();
        set(host, 1);
    }
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let _agents: Vec<Proc> = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|host| {
            let tf = s.p(&format!("tf-{host}"));
            s.agent(
                &c,
                &["--interval", "1s", "--textfile-dir", &tf, "--host", host],
            )
        })
        .collect();
    wait_for("three hosts", Duration::from_secs(20), || {
        let v = get_json(&c.url("/api/v1/hosts"));
        (v["data"]["hosts"].as_array()?.len() == 3).then_some(())
    });
    set("web-2", 0);
    set("web-3", 0);
    let (_, fired) = s.hook.wait_nth(1, Duration::from_secs(20));
    assert_eq!(fired["status"], "firing", "{fired}");
    let alerts = fired["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{fired}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "WebMostlyDown");
    assert_eq!(labels["service"], "web");
    assert!(
        labels.get("host").is_none(),
        "a group, not a host: {labels}"
    );
    assert_eq!(
        alerts[0]["annotations"]["summary"],
        "web: 33.0% of hosts healthy"
    );
    set("web-2", 1);
    set("web-3", 1);
    let (_, resolved) = s.hook.wait_nth(2, Duration::from_secs(20));
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    let alerts = c.alerts();
    assert!(
        alerts
            .iter()
            .all(|a| a["labels"]["alertname"] != "WebMostlyDown"),
        "{alerts:?}"
    );
    assert_eq!(s.hook.all().len(), 2, "one firing, one resolve");
    // The rules' step on the clock, fleet rules included, is timed.
    assert!(metric(&c, "tocsin_rule_tick_duration_seconds_count") > 0.0);
}
