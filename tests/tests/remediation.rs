//! Auto-remediation and incidents with real processes: a local HTTP service run by a script,
//! the agent's probe, allowlisted actions on the agent and on the collector, and the incident
//! timeline, statistics and report that record it all.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::servers::free_port;
use tocsin_e2e::{metric, serial, wait_for, Proc, Stack};

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A directory with a web root and `svc.sh start NAME`, which starts `python3 -m http.server`
/// on the port in `NAME.port`, detached, and records its pid.
struct Services {
    dir: PathBuf,
}

impl Services {
    fn new(dir: &Path) -> Services {
        let dir = dir.join("svc");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/index.html"), "ok\n").unwrap();
        script(
            &dir.join("svc.sh"),
            r#"set -e
dir=$(dirname "$0")
port=$(cat "$dir/$2.port")
echo "$1 $2" >> "$dir/actions.log"
setsid python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dir/www" >/dev/null 2>&1 </dev/null &
echo $! > "$dir/$2.pid"
echo "started $2 on port $port"
"#,
        );
        Services { dir }
    }

    fn start(&self, name: &str, port: u16) {
        std::fs::write(self.dir.join(format!("{name}.port")), port.to_string()).unwrap();
        let st = std::process::Command::new(self.dir.join("svc.sh"))
            .args(["start", name])
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        wait_for(
            &format!("{name} to listen"),
            Duration::from_secs(15),
            || port_open(port).then_some(()),
        );
        // The start itself is not a remediation.
        let _ = std::fs::remove_file(self.dir.join("actions.log"));
    }

    fn kill(&self, name: &str) {
        let pid = std::fs::read_to_string(self.dir.join(format!("{name}.pid"))).unwrap();
        let st = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn actions_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("actions.log")).unwrap_or_default()
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Ok(pid) = std::fs::read_to_string(e.path()) {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", pid.trim()])
                        .status();
                }
            }
        }
    }
}

fn get(c: &Proc, path: &str) -> Value {
    reqwest::blocking::get(c.url(path)).unwrap().json().unwrap()
}

/// The collector with `rules` and `extra` config, the agent with `agent_extra` config.
fn stack(rules: &str, extra: &str, agent_extra: &str) -> (Stack, Proc, Proc) {
    let s = Stack::new(&format!("stale_after: 1m\n{extra}"));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(s.dir.path().join("rules/r.yaml"), rules).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let cfg = s.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: rem-host\ninterval: 1s\nstate_dir: {}\n{agent_extra}",
            s.p("agent-state")
        ),
    )
    .unwrap();
    let a = s.agent(&c, &["--config", &cfg]);
    (s, c, a)
}

fn timeline(c: &Proc, id: &str) -> Vec<(i64, String, String)> {
    let v = get(c, &format!("/api/v1/incidents/{id}"));
    v["data"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["atMs"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `kinds` appear in this order (others may come between).
fn in_order(t: &[(i64, String, String)], kinds: &[&str]) -> bool {
    let mut it = t.iter();
    kinds.iter().all(|k| it.any(|(_, kind, _)| kind == k))
}

fn resolved_incident(c: &Proc, timeout: Duration) -> Value {
    wait_for("the incident to resolve", timeout, || {
        let v = get(c, "/api/v1/incidents?state=resolved");
        v["data"]["incidents"]
            .as_array()
            .and_then(|l| l.first().cloned())
    })
}

#[test]
fn a_killed_service_is_restarted_by_the_agent_and_the_incident_tells_the_story() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let svc = Services::new(tmp.path());
    let port = free_port();
    svc.start("web", port);
    let rules = "rules:
  - name: WebDown
    expr: probe_success{probe=\"web\"}
    for_runs: 2
    levels: { critical: \"< 1\" }
    labels: { category: service, outage: complete }
    annotations: { summary: \"web is down on {{ host }}\" }
    remediation:
      action: restart_web
      params: { service: { label: service, values: [web] } }
      verify_within: 20s
      cooldown: 5s
";
    let agent = format!(
        "probes:
  - {{ name: web, kind: http, target: \"http://127.0.0.1:{port}/\", interval: 1s, timeout: 500ms, labels: {{ service: web }} }}
actions:
  restart_web:
    run: [{}, start, \"{{service}}\"]
    params: {{ service: \"[a-z]+\" }}
    timeout: 10s
",
        svc.path("svc.sh")
    );
    let (s, c, a) = stack(rules, "", &agent);
    wait_for("the probe to pass", Duration::from_secs(20), || {
        let v = get(&c, "/api/v1/hosts");
        (v["data"]["hosts"][0]["up"] == true).then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    let killed = Instant::now();
    svc.kill("web");

    let inc = resolved_incident(&c, Duration::from_secs(45));
    let took = killed.elapsed();
    assert!(port_open(port), "the service is back");
    assert_eq!(
        svc.actions_log(),
        "start web\n",
        "restarted once, by the action"
    );
    let id = inc["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("INC-"), "{id}");
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["category"], "service");
    assert_eq!(inc["outage"], "complete");
    assert_eq!(inc["resolved_by"], "remediation", "{inc}");
    assert_eq!(inc["hosts"], serde_json::json!(["rem-host"]));
    assert_eq!(inc["services"], serde_json::json!(["web"]));
    let ttr = inc["time_to_resolve_seconds"].as_f64().unwrap();
    let ttrem = inc["time_to_remediate_seconds"].as_f64().unwrap();
    assert!(
        ttrem > 0.0 && ttrem <= ttr && ttr < took.as_secs_f64() + 1.0,
        "{ttrem} {ttr} {took:?}"
    );

    let t = timeline(&c, &id);
    assert!(
        in_order(
            &t,
            &[
                "opened",
                "alert_fired",
                "requested",
                "dispatched",
                "succeeded",
                "verified",
                "alert_resolved",
                "resolved"
            ]
        ),
        "{t:#?}"
    );
    assert!(
        t.iter()
            .any(|(_, k, x)| k == "notified" && x.contains("sent to hook")),
        "{t:#?}"
    );
    assert!(t.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
    let ran = t.iter().find(|(_, k, _)| k == "succeeded").unwrap();
    assert!(ran.2.contains("restart_web ran: exit 0"), "{}", ran.2);

    // The webhook heard of the firing and of the resolve.
    let statuses: Vec<String> = s
        .hook
        .all()
        .iter()
        .map(|(_, v)| v["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, vec!["firing", "resolved"]);

    // Statistics and the audit log.
    let st = get(&c, "/api/v1/incidents/stats");
    assert_eq!(st["data"]["count"], 1);
    assert_eq!(st["data"]["auto_remediated_share"], 1.0);
    assert!(st["data"]["mttr_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        st["data"]["mean_time_to_remediate_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(st["data"]["availability_service"]["web"].as_f64().unwrap() < 1.0);
    let audit = get(&c, "/api/v1/audit");
    let events: Vec<&str> = audit["data"]["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in ["requested", "dispatched", "succeeded", "verified"] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    assert_eq!(
        metric(
            &a.url("/metrics"),
            "tocsin_agent_actions_total{result=\"succeeded\"}"
        ),
        1.0
    );

    // Filters, notes, and what a resolved incident refuses.
    let q = |path: &str| get(&c, path)["data"]["incidents"].as_array().unwrap().len();
    assert_eq!(
        q("/api/v1/incidents?state=resolved&host=rem-host&severity=critical"),
        1
    );
    assert_eq!(q("/api/v1/incidents?host=elsewhere"), 0);
    assert_eq!(q("/api/v1/incidents?severity=emergency"), 0);
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(c.url(&format!("/api/v1/incidents/{id}/notes")))
        .json(&serde_json::json!({"by": "alice", "text": "python died of SIGKILL in a test"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(c.url(&format!("/api/v1/incidents/{id}/resolve")))
        .json(&serde_json::json!({"by": "alice"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "resolved already");
    let r = client
        .post(c.url("/api/v1/incidents/INC-19700101-0001/ack"))
        .json(&serde_json::json!({"by": "alice"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let m = c.url("/metrics");
    assert_eq!(
        metric(
            &m,
            "tocsin_incident_duration_seconds_count{severity=\"critical\",to=\"remediate\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "tocsin_incidents_resolved_total{category=\"service\",resolved_by=\"remediation\"}"
        ),
        1.0
    );
    let text = reqwest::blocking::get(&m).unwrap().text().unwrap();
    tocsin_e2e::promtool_check(&text).unwrap();

    // The report, through the CLI.
    let out = s.p("report.md");
    c.cli(&["incidents", "report", &id, "--out", &out], None);
    let md = std::fs::read_to_string(&out).unwrap();
    for want in [
        format!("# {id}: WebDown on rem-host (web)"),
        "## Summary".into(),
        "| Resolved |".into(),
        "| Time to remediate |".into(),
        "## Impact".into(),
        "- Services: web".into(),
        "## Timeline".into(),
        "| requested | restart_web (service=web) requested on host rem-host |".into(),
        "| verified | restart_web worked: the alert resolved |".into(),
        "## Remediation".into(),
        "## Notes".into(),
        "alice: python died of SIGKILL in a test".into(),
        "## Follow-ups".into(),
    ] {
        assert!(md.contains(&want), "{want:?} not in\n{md}");
    }
    let rows = md.lines().filter(|l| l.starts_with("| 20")).count();
    assert_eq!(
        rows,
        t.len() + 1,
        "one table row per timeline event, and the note"
    );
}

#[test]
fn the_collector_fails_over_to_the_standby_when_the_primary_dies() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let svc = Services::new(tmp.path());
    let (p1, p2) = (free_port(), free_port());
    svc.start("primary", p1);
    svc.start("standby", p2);
    // The "load balancer": the port in `active` is where traffic (and the probe) goes.
    std::fs::write(svc.dir.join("active"), p1.to_string()).unwrap();
    script(
        &svc.dir.join("failover.sh"),
        r#"set -e
dir=$(dirname "$0")
cp "$dir/$2.port" "$dir/active.new" && mv "$dir/active.new" "$dir/active"
echo "failover $1 -> $2" >> "$dir/actions.log"
echo "traffic now on $2 (port $(cat "$dir/active"))"
"#,
    );
    let check = format!(
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:' + open('{}').read().strip() + '/', timeout=1)",
        svc.path("active")
    );
    let rules = "rules:
  - name: ShopDown
    expr: probe_success{probe=\"shop\"}
    for_runs: 2
    levels: { critical: \"< 1\" }
    labels: { category: service }
    remediation:
      action: shop_failover
      on: collector
      params:
        primary: { label: primary, values: [primary] }
        standby: { label: standby, values: [standby] }
      verify_within: 20s
";
    let collector = format!(
        "actions:
  shop_failover:
    failover: [{}]
    params: {{ primary: \"[a-z]+\", standby: \"[a-z]+\" }}
    timeout: 10s
",
        svc.path("failover.sh")
    );
    let agent = format!(
        "probes:
  - name: shop
    kind: command
    target: lb
    interval: 1s
    timeout: 2s
    labels: {{ service: shop, primary: primary, standby: standby }}
    command: {{ argv: [python3, -c, {check:?}] }}
"
    );
    let (_s, c, _a) = stack(rules, &collector, &agent);
    wait_for("the host", Duration::from_secs(20), || {
        (get(&c, "/api/v1/hosts")["data"]["hosts"][0]["up"] == true).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    svc.kill("primary");
    let inc = resolved_incident(&c, Duration::from_secs(45));
    assert_eq!(svc.actions_log(), "failover primary -> standby\n");
    assert_eq!(
        std::fs::read_to_string(svc.dir.join("active")).unwrap(),
        p2.to_string()
    );
    assert_eq!(inc["resolved_by"], "remediation");
    let t = timeline(&c, inc["id"].as_str().unwrap());
    assert!(
        in_order(
            &t,
            &[
                "alert_fired",
                "requested",
                "dispatched",
                "succeeded",
                "verified",
                "resolved"
            ]
        ),
        "{t:#?}"
    );
    let req = t.iter().find(|(_, k, _)| k == "requested").unwrap();
    assert_eq!(
        req.2,
        "shop_failover (primary=primary standby=standby) requested on the collector"
    );
    let ran = t.iter().find(|(_, k, _)| k == "succeeded").unwrap();
    assert!(ran.2.contains("traffic now on standby"), "{}", ran.2);
}

#[test]
fn actions_outside_the_allowlist_bad_parameters_and_hanging_scripts_are_refused_or_killed() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let pwned = tmp.path().join("pwned");
    let closed = free_port();
    let evil = format!("web;touch {}", pwned.display());
    // The rule lets the label's value through (a careless list): the agent's own allowlist
    // still refuses it.
    let rules = format!(
        "rules:
  - name: GoneA
    expr: probe_success{{probe=\"a\"}}
    levels: {{ critical: \"< 1\" }}
    remediation: {{ action: wipe_disk, cooldown: 1h }}
  - name: GoneB
    expr: probe_success{{probe=\"b\"}}
    levels: {{ critical: \"< 1\" }}
    remediation: {{ action: restart_web, params: {{ service: {{ label: service, values: [web, {evil:?}] }} }}, cooldown: 1h }}
  - name: GoneC
    expr: probe_success{{probe=\"c\"}}
    levels: {{ critical: \"< 1\" }}
    remediation: {{ action: hang, cooldown: 1h }}
"
    );
    let agent = format!(
        "probes:
  - {{ name: a, kind: tcp, target: \"127.0.0.1:{closed}\", interval: 1s, timeout: 300ms }}
  - {{ name: b, kind: tcp, target: \"127.0.0.1:{closed}\", interval: 1s, timeout: 300ms, labels: {{ service: {evil:?} }} }}
  - {{ name: c, kind: tcp, target: \"127.0.0.1:{closed}\", interval: 1s, timeout: 300ms }}
max_concurrent_actions: 3
actions:
  restart_web:
    run: [/bin/echo, \"{{service}}\"]
    params: {{ service: \"[a-z]+\" }}
  hang:
    run: [/bin/sleep, \"30\"]
    timeout: 1s
"
    );
    let (s, c, a) = stack(&rules, "remediation: { per_host: 3 }\n", &agent);
    let finished = |c: &Proc| {
        let v = get(c, "/api/v1/actions");
        v["data"]["actions"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|r| {
                        (
                            r["action"].as_str().unwrap().to_string(),
                            r["state"].as_str().unwrap().to_string(),
                            r["outcome"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let started = Instant::now();
    let mut got = wait_for("three answered requests", Duration::from_secs(30), || {
        let f = finished(&c);
        (f.len() == 3
            && f.iter()
                .all(|(_, st, _)| st != "dispatched" && st != "pending"))
        .then_some(f)
    });
    got.sort();
    assert_eq!(got[0].0, "hang");
    assert_eq!(got[0].1, "failed");
    assert!(got[0].2.starts_with("timed out after"), "{got:?}");
    assert_eq!(got[1].0, "restart_web");
    assert_eq!(got[1].1, "refused");
    assert!(
        got[1].2.contains("is not one of the allowed pattern"),
        "{got:?}"
    );
    assert_eq!(got[2].0, "wipe_disk");
    assert_eq!(got[2].1, "refused");
    assert!(got[2].2.contains("not in this host's allowlist"), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the hang was cut short"
    );
    assert!(!pwned.exists(), "nothing ran the injected command");
    let m = a.url("/metrics");
    assert_eq!(
        metric(&m, "tocsin_agent_actions_total{result=\"refused\"}"),
        2.0
    );
    assert_eq!(
        metric(&m, "tocsin_agent_actions_total{result=\"timed_out\"}"),
        1.0
    );
    // Each failure went to the next tier: the receivers heard of it again.
    wait_for(
        "remediation_failed notifications",
        Duration::from_secs(10),
        || {
            let n = s
                .hook
                .all()
                .iter()
                .filter(|(_, v)| v["alerts"][0]["tocsin"]["event"] == "remediation_failed")
                .count();
            (n == 3).then_some(())
        },
    );
    // A result sent again for a finished request is refused.
    let id = get(&c, "/api/v1/actions")["data"]["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::blocking::Client::new()
        .post(c.url(&format!("/api/v1/actions/{id}/result")))
        .json(&serde_json::json!({"status": "succeeded"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
}

#[test]
fn a_flapping_service_trips_the_circuit_breaker_and_escalates() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let svc = Services::new(tmp.path());
    let port = free_port();
    svc.start("web", port);
    let rules = "rules:
  - name: WebDown
    expr: probe_success{probe=\"web\"}
    levels: { critical: \"< 1\" }
    flapping: { changes: 0 }
    remediation:
      action: broken_restart
      cooldown: 1s
      breaker_after: 2
      window: 1h
";
    let agent = format!(
        "probes:
  - {{ name: web, kind: http, target: \"http://127.0.0.1:{port}/\", interval: 1s, timeout: 500ms }}
actions:
  broken_restart:
    run: [/bin/sh, -c, \"echo cannot restart >&2; exit 1\"]
",
    );
    let (s, c, _a) = stack(rules, "", &agent);
    wait_for("the host", Duration::from_secs(20), || {
        (get(&c, "/api/v1/hosts")["data"]["hosts"][0]["up"] == true).then_some(())
    });
    let events = |c: &Proc| -> Vec<String> {
        get(c, "/api/v1/audit")["data"]["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    };
    // Down, up, down, up, down: each fall is a new firing of the alert.
    for round in 0..3 {
        svc.kill("web");
        wait_for(&format!("firing {round}"), Duration::from_secs(15), || {
            let a = get(&c, "/api/v1/alerts");
            (a["data"]["alerts"][0]["state"] == "firing").then_some(())
        });
        let want = [1, 2, 3][round];
        wait_for(
            &format!("the action's result {round}"),
            Duration::from_secs(15),
            || {
                let e = events(&c);
                let n = e
                    .iter()
                    .filter(|k| *k == "failed" || *k == "skipped")
                    .count();
                (n >= want).then_some(())
            },
        );
        svc.start("web", port);
        wait_for(
            &format!("resolved {round}"),
            Duration::from_secs(15),
            || {
                let a = get(&c, "/api/v1/alerts");
                (a["data"]["alerts"].as_array().unwrap().is_empty()).then_some(())
            },
        );
        std::thread::sleep(Duration::from_millis(1100)); // past the cooldown
    }
    let e = events(&c);
    let count = |k: &str| e.iter().filter(|x| *x == k).count();
    assert_eq!(count("failed"), 2, "{e:?}");
    assert_eq!(count("breaker_open"), 1, "{e:?}");
    assert_eq!(
        count("skipped"),
        1,
        "the third fall finds the breaker open: {e:?}"
    );
    let inc = get(&c, "/api/v1/incidents");
    let id = inc["data"]["incidents"][0]["id"].as_str().unwrap();
    let t = timeline(&c, id);
    let open = t.iter().find(|(_, k, _)| k == "breaker_open").unwrap();
    assert!(open.2.contains("2 failures in a row"), "{}", open.2);
    assert!(t
        .iter()
        .any(|(_, k, x)| k == "skipped" && x.contains("circuit breaker open")));
    assert!(
        s.hook
            .all()
            .iter()
            .any(|(_, v)| v["alerts"][0]["tocsin"]["event"] == "remediation_failed"),
        "escalated to the receivers"
    );
}

#[test]
fn a_replayed_request_runs_once_even_across_agent_restarts() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    // A collector stand-in that hands out the same request on every poll, as a replay would.
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let r2 = std::sync::Arc::clone(&results);
    let app = axum::Router::new()
        .route(
            "/api/v1/actions/poll",
            axum::routing::get(|| async {
                axum::Json(
                    serde_json::json!({"status": "success", "data": {"actions": [
                        {"id": "act-1-1", "action": "mark", "params": {}}
                    ]}}),
                )
            }),
        )
        .route(
            "/api/v1/actions/{id}/result",
            axum::routing::post(move |body: axum::Json<Value>| {
                let r2 = std::sync::Arc::clone(&r2);
                async move {
                    r2.lock().unwrap().push(body.0);
                    "ok"
                }
            }),
        )
        .route(
            "/api/v1/write",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    let (addr, _rt) = tocsin_e2e::serve(app);
    let cfg = tmp.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: replay-host\ninterval: 1s\nstate_dir: {}\ncollector: {{ url: \"http://{addr}/api/v1/write\" }}\nactions:\n  mark:\n    run: [/bin/sh, -c, \"echo x >> {}\"]\n",
            tmp.path().join("state").display(),
            marker.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("agent.log");
    let start = || {
        Proc::start(
            "tocsin-agent",
            &["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"],
            &log,
        )
    };
    let a = start();
    wait_for("replays refused", Duration::from_secs(15), || {
        (metric(
            &a.url("/metrics"),
            "tocsin_agent_actions_total{result=\"replayed\"}",
        ) >= 3.0)
            .then_some(())
    });
    drop(a);
    let a = start();
    wait_for(
        "replays refused after a restart",
        Duration::from_secs(15),
        || {
            (metric(
                &a.url("/metrics"),
                "tocsin_agent_actions_total{result=\"replayed\"}",
            ) >= 2.0)
                .then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "x\n",
        "ran exactly once"
    );
    let r = results.lock().unwrap().clone();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["status"], "succeeded");
}

#[test]
fn an_action_result_the_collector_cannot_store_is_sent_again_and_lands() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (started, go) = (tmp.path().join("started"), tmp.path().join("go"));
    let closed = free_port();
    let rules = "rules:
  - name: PortDown
    expr: probe_success{probe=\"port\"}
    levels: { critical: \"< 1\" }
    remediation: { action: fix, verify_within: 1m }
";
    // The action holds until the test says go, so the collector's storage can fail meanwhile.
    let agent = format!(
        "probes:
  - {{ name: port, kind: tcp, target: \"127.0.0.1:{closed}\", interval: 1s, timeout: 500ms }}
actions:
  fix:
    run: [/bin/sh, -c, \"touch {s}; for i in $(seq 300); do [ -e {g} ] && echo fixed && exit 0; sleep 0.1; done; exit 1\"]
    timeout: 40s
",
        s = started.display(),
        g = go.display()
    );
    let (s, c, a) = stack(rules, "", &agent);
    wait_for("the action to start", Duration::from_secs(30), || {
        started.exists().then_some(())
    });
    let cm = c.url("/metrics");
    let errors = metric(&cm, "tocsin_storage_errors_total");
    // Another process holds the database's write lock (a backup, an operator's shell): every
    // write of the collector fails after its busy timeout.
    let db = rusqlite::Connection::open(s.dir.path().join("data/tocsin.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::fs::write(&go, "").unwrap();
    // The result arrives while nothing can be written: a 503, so the agent keeps it.
    wait_for("the result refused", Duration::from_secs(30), || {
        a.log().contains("result not taken").then_some(())
    });
    assert!(metric(&cm, "tocsin_storage_errors_total") > errors);
    let action = || get(&c, "/api/v1/actions")["data"]["actions"][0].clone();
    assert_eq!(action()["state"], "dispatched", "{}", action());
    assert!(
        a.log().contains("status=503 Service Unavailable"),
        "{}",
        a.log()
    );
    db.execute_batch("ROLLBACK").unwrap();
    // The agent sends it again (backing off) and it is stored; the collector then waits for
    // the alert to resolve (it will not: the port stays closed).
    wait_for("the result stored", Duration::from_secs(40), || {
        (action()["state"] == "verifying").then_some(())
    });
    assert_eq!(action()["output"], "fixed", "{}", action());
}

/// Scale-out driven by an alert: the agent runs the allowlisted scale command with one more
/// replica each time the load stays high past the cooldown, up to the rule's maximum, then
/// refuses; each step is on the incident's timeline and the load falling resolves it.
#[test]
fn an_overloaded_service_is_scaled_out_step_by_step_up_to_its_maximum() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let scaler = tmp.path().join("scale-shop");
    let log = tmp.path().join("replicas.log");
    script(&scaler, &format!("echo \"$1\" >> {}\n", log.display()));
    let tf = tmp.path().join("tf");
    std::fs::create_dir(&tf).unwrap();
    tocsin_e2e::write_textfile(&tf, "load.prom", "shop_load_ratio 0.95\n");
    let rules = "rules:
  - name: ShopOverloaded
    expr: shop_load_ratio
    levels: { critical: \"> 0.8\" }
    labels: { category: capacity, service: shop }
    remediation:
      action: scale_shop
      params: { replicas: { scale: { start: 2, max: 4 } } }
      verify_within: 2s
      cooldown: 3s
      max_attempts: 10
      breaker_after: 10
";
    let agent = format!(
        "textfile_dir: {}
actions:
  scale_shop:
    scale: [{}, \"{{replicas}}\"]
    params: {{ replicas: [\"2\", \"3\", \"4\"] }}
    timeout: 10s
",
        tf.display(),
        scaler.display()
    );
    let (_s, c, _a) = stack(rules, "", &agent);
    // 2 → 3 → 4, then the maximum.
    let id = wait_for(
        "two scale-outs and a refusal",
        Duration::from_secs(40),
        || {
            let v = get(&c, "/api/v1/incidents");
            let id = v["data"]["incidents"][0]["id"].as_str()?.to_string();
            timeline(&c, &id)
                .iter()
                .any(|(_, k, t)| k == "refused" && t.contains("maximum of 4"))
                .then_some(id)
        },
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "3\n4\n");
    let t = timeline(&c, &id);
    assert!(
        in_order(
            &t,
            &[
                "requested",
                "succeeded",
                "requested",
                "succeeded",
                "refused"
            ]
        ),
        "{t:?}"
    );
    // The load falls: resolved.
    tocsin_e2e::write_textfile(&tf, "load.prom", "shop_load_ratio 0.4\n");
    let inc = resolved_incident(&c, Duration::from_secs(20));
    assert_eq!(inc["id"], id.as_str());
}
