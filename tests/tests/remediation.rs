//! Auto-remediation and incidents with real processes: a local HTTP service run by a script,
//! the agent's probe, allowlisted actions on the agent and on the collector, and the incident
//! timeline, statistics and report that record it all.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::servers::free_port;
use tocsin_e2e::{serial, wait_for, Proc, Stack};

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

fn metric(url: &str, series: &str) -> f64 {
    let text = reqwest::blocking::get(url).unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
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
      params: { service: service }
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

    // The report, through the CLI.
    let out = s.p("report.md");
    let r = std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
        .args(["incidents", "report", &id, "--out", &out, "--url"])
        .arg(c.url(""))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
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
        "## Follow-ups".into(),
    ] {
        assert!(md.contains(&want), "{want:?} not in\n{md}");
    }
    let rows = md.lines().filter(|l| l.starts_with("| 20")).count();
    assert_eq!(rows, t.len(), "one table row per timeline event");
}
