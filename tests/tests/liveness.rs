//! Probes and liveness end to end, with the shipped rules: a service stops and starts, an
//! agent dies and comes back, a hanging target does not slow host sampling.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::servers::{HttpServer, Mode};
use tocsin_e2e::{serial, shipped_rules_without_for, wait_for, Proc, Stack};

struct Env(Stack);

impl std::ops::Deref for Env {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(Stack::new(""))
    }

    /// With extra collector configuration (YAML).
    fn with(extra: &str) -> Env {
        Env(Stack::new(extra))
    }

    /// The collector with the shipped rules.
    fn collector(&self, listen: &str) -> Proc {
        self.0
            .collector(listen, concat!(env!("CARGO_MANIFEST_DIR"), "/../rules"))
    }

    fn agent(&self, c: &Proc, probes: &str) -> Proc {
        let cfg = self.p("agent.yaml");
        std::fs::write(
            &cfg,
            format!("host: live-host\ninterval: 1s\nprobes:\n{probes}"),
        )
        .unwrap();
        self.0.agent(c, &["--config", &cfg])
    }
}

fn hosts(c: &Proc) -> Value {
    reqwest::blocking::get(c.url("/api/v1/hosts"))
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn stopped_http_service_alerts_critical_and_resolves_when_back() {
    let _g = serial();
    let env = Env::new();
    let mut svc = HttpServer::start(None);
    let port = svc.port;
    let c = env.collector("127.0.0.1:0");
    let _a = env.agent(&c, &format!("  - {{ name: shop, kind: http, target: \"http://127.0.0.1:{port}/health\", interval: 1s, timeout: 500ms, labels: {{ service: shop }} }}\n"));
    wait_for("the probe to succeed once", Duration::from_secs(15), || {
        let m = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.contains("tocsin_ingest_samples_total{result=\"accepted\"}")
            .then_some(())
    });
    wait_for("host up", Duration::from_secs(10), || {
        (hosts(&c)["data"]["hosts"][0]["up"] == true).then_some(())
    });

    let stopped = Instant::now();
    svc.stop();
    let (at, event, level) = env.wait_event("ServiceDown", 1, Duration::from_secs(10));
    let took = at - stopped;
    eprintln!("ServiceDown after {took:?}");
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));
    assert!(
        took <= Duration::from_secs(2),
        "critical took {took:?}, more than two probe intervals"
    );
    let body = &env
        .hook
        .all()
        .into_iter()
        .find(|(_, v)| v["alerts"][0]["labels"]["alertname"] == "ServiceDown")
        .unwrap()
        .1;
    let labels = &body["alerts"][0]["labels"];
    assert_eq!(labels["category"], "service");
    assert_eq!(labels["service"], "shop");
    assert_eq!(labels["probe"], "shop");
    // All (one) of the service's probes failing: the service-level rule says complete outage.
    let (_, event, level) = env.wait_event("ServiceOutage", 1, Duration::from_secs(10));
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));
    let outage = env
        .hook
        .all()
        .into_iter()
        .find(|(_, v)| v["alerts"][0]["labels"]["alertname"] == "ServiceOutage")
        .unwrap()
        .1;
    assert_eq!(
        outage["alerts"][0]["annotations"]["summary"],
        "shop: 100.0% of its probes failing"
    );
    assert_eq!(
        outage["alerts"][0]["annotations"]["description"],
        "Service shop is completely down: 0.0% of its probes succeed."
    );
    assert_eq!(outage["alerts"][0]["annotations"]["outage"], "complete");

    let started = Instant::now();
    let _svc = HttpServer::start_on(port, None);
    let (at, event, _) = env.wait_event("ServiceDown", 2, Duration::from_secs(10));
    assert_eq!(event, "resolved");
    assert!(
        at - started <= Duration::from_secs(2),
        "resolve took {:?}",
        at - started
    );
}

#[test]
fn killed_agent_fires_host_down_and_resolves_on_return() {
    let _g = serial();
    let env = Env::new();
    let c = env.collector("127.0.0.1:0");
    let mut a = env.agent(&c, "  []\n");
    wait_for("host up with its interval", Duration::from_secs(15), || {
        let h = hosts(&c);
        (h["data"]["hosts"][0]["intervalSeconds"] == 1.0 && h["data"]["hosts"][0]["up"] == true)
            .then_some(())
    });
    let killed = Instant::now();
    a.kill9();
    let (at, event, level) = env.wait_event("HostDown", 1, Duration::from_secs(15));
    let took = at - killed;
    eprintln!("HostDown after {took:?}");
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));
    // Three 1 s intervals, plus up to one collector tick and one agent interval of slack.
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(5500),
        "host_down after {took:?}"
    );
    assert_eq!(hosts(&c)["data"]["hosts"][0]["up"], false);

    let _a = env.agent(&c, "  []\n");
    let (_, event, _) = env.wait_event("HostDown", 2, Duration::from_secs(10));
    assert_eq!(event, "resolved");
    assert_eq!(env.events("HostDown").len(), 2);
}

#[test]
fn a_collector_restart_does_not_page_for_hosts_whose_agents_come_back() {
    let _g = serial();
    // A restored host's interval is learned again from its next samples: until then its
    // down-after time is fixed here, so that the restart finds it overdue.
    let env = Env::with("host_down_after: 3s\n");
    let listen = format!("127.0.0.1:{}", tocsin_e2e::servers::free_port());
    let mut c = env.collector(&listen);
    let _a = env.agent(&c, "  []\n");
    wait_for("host up with its interval", Duration::from_secs(15), || {
        let h = hosts(&c);
        (h["data"]["hosts"][0]["intervalSeconds"] == 1.0 && h["data"]["hosts"][0]["up"] == true)
            .then_some(())
    });
    c.terminate();
    // The outage: longer than the host's down-after time (three 1 s intervals), so that on
    // restart the host's last sample is old and its agent is still backing off.
    std::thread::sleep(Duration::from_secs(6));
    let c = env.collector(&listen);
    wait_for("the agent reports again", Duration::from_secs(30), || {
        let h = hosts(&c);
        (h["data"]["hosts"][0]["lastSeenAgeSeconds"]
            .as_f64()
            .is_some_and(|a| a < 1.5)
            && h["data"]["hosts"][0]["up"] == true)
            .then_some(())
    });
    assert!(
        env.events("HostDown").is_empty(),
        "a restart paged: {:?}",
        env.events("HostDown")
    );
}

#[test]
fn hanging_probe_target_does_not_delay_host_sampling() {
    let _g = serial();
    let env = Env::new();
    let hang = HttpServer::start(None);
    hang.set(Mode::Hang);
    let c = env.collector("127.0.0.1:0");
    let a = env.agent(
        &c,
        &format!("  - {{ name: stuck, kind: tcp, target: \"127.0.0.1:{}\", interval: 1s, timeout: 5s, tcp: {{ send: \"GET / HTTP/1.1\\\\r\\\\n\\\\r\\\\n\", expect: \"200\" }} }}\n", hang.port),
    );
    let metric = |name: &str| -> f64 {
        let t = reqwest::blocking::get(a.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    wait_for("a first cycle", Duration::from_secs(10), || {
        (metric("tocsin_agent_cycles_total") >= 1.0).then_some(())
    });
    let start = Instant::now();
    let base = metric("tocsin_agent_cycles_total");
    wait_for("six more host cycles", Duration::from_secs(12), || {
        (metric("tocsin_agent_cycles_total") >= base + 6.0).then_some(())
    });
    let took = start.elapsed();
    assert!(
        took <= Duration::from_millis(7200),
        "6 cycles at 1s took {took:?}"
    );
    // Meanwhile the probe finished at most one run: it hangs until its 5 s timeout.
    let runs = metric("tocsin_agent_probe_runs_total{probe=\"stuck\",result=\"failure\"}");
    assert!(runs <= 2.0, "{runs} probe runs");
}

#[test]
fn agent_fails_over_to_the_next_collector_and_returns() {
    let _g = serial();
    let a_env = Env::new();
    let b_env = Env::new();
    let mut a = a_env.collector("127.0.0.1:0");
    let a_addr = a.addr.clone();
    let b = b_env.collector("127.0.0.1:0");
    let cfg = a_env.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: fo-host\ninterval: 1s\ncollector:\n  fallback_urls: [\"{}\"]\n  preferred_retry: 1s\n",
            b.url("/api/v1/write")
        ),
    )
    .unwrap();
    let agent = a_env.0.agent(&a, &["--config", &cfg]);
    let accepted = |c: &Proc| -> f64 {
        let t = reqwest::blocking::get(c.url("/metrics"))
            .map(|r| r.text().unwrap_or_default())
            .unwrap_or_default();
        t.lines()
            .find_map(|l| {
                l.strip_prefix("tocsin_ingest_samples_total{result=\"accepted\"}")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    };
    wait_for(
        "data at the preferred collector",
        Duration::from_secs(10),
        || (accepted(&a) > 0.0).then_some(()),
    );
    assert_eq!(
        accepted(&b),
        0.0,
        "the fallback is idle while the preferred one works"
    );

    a.kill9();
    wait_for("data at the fallback", Duration::from_secs(15), || {
        (accepted(&b) > 0.0).then_some(())
    });
    let index = || {
        let t = reqwest::blocking::get(agent.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        t.lines().find_map(|l| {
            l.strip_prefix("tocsin_agent_collector_index ")
                .map(|v| v.trim().to_string())
        })
    };
    assert_eq!(index().as_deref(), Some("1"));

    let a2 = a_env.collector(&a_addr);
    wait_for(
        "data back at the preferred collector",
        Duration::from_secs(15),
        || (accepted(&a2) > 0.0).then_some(()),
    );
    wait_for(
        "the agent back on the preferred collector",
        Duration::from_secs(5),
        || (index().as_deref() == Some("0")).then_some(()),
    );
}

#[test]
fn a_clock_that_ran_ahead_and_came_back_costs_no_page_and_is_reported() {
    let _g = serial();
    let env = Env::with("host_down_after: 3s\n");
    let c = env.collector("127.0.0.1:0");
    let send = |ts: i64| {
        let s = tocsin_model::SeriesSamples {
            labels: tocsin_model::Labels::from_pairs([("__name__", "x"), ("host", "skewed")]),
            samples: vec![tocsin_model::Sample::new(ts, 1.0)],
        };
        let r = c.remote_write(&[s], &[]);
        assert_eq!(r.status().as_u16(), 204);
        r.headers()
            .get(tocsin_wire::NOT_NEWER_HEADER)
            .map_or(0, |v| v.to_str().unwrap().parse::<u64>().unwrap())
    };
    // Samples the collector acknowledged without storing, as it told the sender.
    let every_half_second_for = |d: Duration, ahead_ms: i64| {
        let end = Instant::now() + d;
        let mut not_newer = 0;
        while Instant::now() < end {
            not_newer += send(tocsin_model::now_ms() + ahead_ms);
            std::thread::sleep(Duration::from_millis(500));
        }
        not_newer
    };
    // 300 s fast for 4 s: its samples are stored 5 minutes ahead.
    assert_eq!(every_half_second_for(Duration::from_secs(4), 300_000), 0);
    let ahead = wait_for("the clock measured", Duration::from_secs(10), || {
        hosts(&c)["data"]["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["host"] == "skewed")?["clockAheadSeconds"]
            .as_f64()
    });
    assert!((299.0..=301.0).contains(&ahead), "{ahead}");
    // Then the right clock for 6 s, twice host_down_after: every sample is older than what
    // the series holds and is dropped as out of order, but the host keeps arriving.
    let not_newer = every_half_second_for(Duration::from_secs(6), 0);
    assert!(not_newer >= 10, "told the sender of {not_newer}");
    let h = hosts(&c);
    let host = h["data"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "skewed")
        .unwrap()
        .clone();
    assert_eq!(host["up"], true, "{host}");
    assert_eq!(host["clockAheadSeconds"], 0.0, "{host}");
    assert!(
        env.events("HostDown").is_empty(),
        "paged: {:?}",
        env.events("HostDown")
    );
    assert!(
        tocsin_e2e::metric(
            &c.url("/metrics"),
            "tocsin_ingest_samples_total{result=\"out_of_order\"}"
        ) >= 10.0
    );
}

#[test]
fn a_collector_frozen_for_a_while_does_not_page_its_hosts_when_it_resumes() {
    let _g = serial();
    let env = Env::new();
    let c = env.collector("127.0.0.1:0");
    let a = env.agent(&c, "  []\n");
    wait_for("the host up", Duration::from_secs(20), || {
        hosts(&c)["data"]["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["host"] == "live-host" && h["up"] == true && h["intervalSeconds"] == 1.0)
            .then_some(())
    });
    // Frozen (a paused VM, SIGSTOP) for fifteen of the agent's intervals, then resumed; the
    // agent, backing off while the collector did not answer, sends again two seconds later.
    // Its host never went quiet: the collector did.
    let signal = |s: &str, p: &Proc| {
        assert!(std::process::Command::new("kill")
            .args([s, &p.child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP", &a);
    signal("-STOP", &c);
    std::thread::sleep(Duration::from_secs(15));
    signal("-CONT", &c);
    std::thread::sleep(Duration::from_secs(2));
    signal("-CONT", &a);
    wait_for(
        "samples taken in after the freeze",
        Duration::from_secs(20),
        || {
            hosts(&c)["data"]["hosts"]
                .as_array()?
                .iter()
                .any(|h| {
                    h["host"] == "live-host"
                        && h["lastSeenAgeSeconds"].as_f64().is_some_and(|a| a < 1.0)
                })
                .then_some(())
        },
    );
    let log = c.log();
    assert!(
        !log.contains("alert=HostDown"),
        "HostDown after a freeze:\n{}",
        log.lines()
            .filter(|l| l.contains("HostDown"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_backup_aged_past_its_rpo_fires_and_a_fresh_one_resolves_it() {
    let _g = serial();
    let env = Env::new();
    let backups = env.dir.path().join("backup");
    std::fs::create_dir(&backups).unwrap();
    let dump = backups.join("db-20261101.dump");
    std::fs::write(&dump, vec![7u8; 4096]).unwrap();
    // Written 30 hours ago: past the daily backup's 26 h.
    std::fs::File::options()
        .write(true)
        .open(&dump)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(30 * 3600))
        .unwrap();
    let c = env.collector("127.0.0.1:0");
    let _a = env.agent(
        &c,
        &format!(
            "  - {{ name: db-backup, kind: file, target: \"{}/db-*.dump\", interval: 1s, file: {{ max_age: 26h, min_size: 1KiB }}, labels: {{ service: membership }} }}\n",
            backups.display()
        ),
    );
    let (_, event, level) = env.wait_event("BackupTooOld", 1, Duration::from_secs(15));
    assert_eq!((event.as_str(), level.as_str()), ("firing", "warning"));
    let body = env
        .hook
        .all()
        .into_iter()
        .find(|(_, v)| v["alerts"][0]["labels"]["alertname"] == "BackupTooOld")
        .unwrap()
        .1;
    let summary = body["alerts"][0]["annotations"]["summary"]
        .as_str()
        .unwrap();
    assert!(summary.contains("30.0 h old"), "{summary}");
    assert_eq!(body["alerts"][0]["labels"]["category"], "backup");
    let (_, event, level) = env.wait_event("BackupCheckFailed", 1, Duration::from_secs(15));
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));

    // Tonight's backup lands: both resolve.
    std::fs::write(backups.join("db-20261102.dump"), vec![7u8; 4096]).unwrap();
    let (_, event, _) = env.wait_event("BackupTooOld", 2, Duration::from_secs(15));
    assert_eq!(event, "resolved");
    let (_, event, _) = env.wait_event("BackupCheckFailed", 2, Duration::from_secs(15));
    assert_eq!(event, "resolved");
}

/// `GET /api/v1/query` of `q`: the value of its one series, if any.
fn instant(c: &Proc, q: &str) -> Option<f64> {
    let v: Value =
        reqwest::blocking::get(c.url(&format!("/api/v1/query?query={}", urlencoding::encode(q))))
            .ok()?
            .json()
            .ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_log_written_across_a_rotation_is_counted_exactly_and_alerts() {
    let _g = serial();
    // The shipped error-rate rule, its `for` shortened so the test need not wait two minutes.
    let env = Env::new();
    shipped_rules_without_for(&env.dir.path().join("rules"), &["logs.yaml"]);
    let logs = env.dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("shop.log");
    let write = |path: &std::path::Path, errors: usize, infos: usize| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in 0..errors.max(infos) {
            if i < errors {
                writeln!(f, "2026-12-05T03:22:27Z ERROR order {i} failed").unwrap();
            }
            if i < infos {
                writeln!(f, "2026-12-05T03:22:27Z INFO order {i} ok").unwrap();
            }
        }
    };
    // Before the agent starts: not counted (a new source starts at the end).
    write(&app, 5, 5);
    let c = env.0.collector("127.0.0.1:0", &env.p("rules"));
    let cfg = env.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: log-host\ninterval: 1s\nlogs:\n  - name: shop\n    path: {}/shop.log*\n    patterns: [ {{ name: error, regex: '\\bERROR\\b' }} ]\n    severity: '^\\S+ (?P<severity>[A-Z]+) '\n",
            logs.display()
        ),
    )
    .unwrap();
    let state = env.p("agent-state");
    let mut a = env.0.agent(&c, &["--config", &cfg, "--state-dir", &state]);
    wait_for("the log source followed", Duration::from_secs(15), || {
        (instant(&c, "tocsin_log_matches_total{source=\"shop\"}") == Some(0.0)).then_some(())
    });
    write(&app, 30, 10);
    // Rotated in the middle: the old file gets its last lines after the rename.
    std::fs::rename(&app, logs.join("shop.log.1")).unwrap();
    write(&logs.join("shop.log.1"), 4, 0);
    write(&app, 20, 3);
    wait_for("every error line counted", Duration::from_secs(15), || {
        (instant(
            &c,
            "tocsin_log_matches_total{source=\"shop\",pattern=\"error\"}",
        ) == Some(54.0))
        .then_some(())
    });
    // A restart of the agent in between reads on where it stopped.
    a.terminate();
    write(&app, 6, 0);
    let _a = env.0.agent(&c, &["--config", &cfg, "--state-dir", &state]);
    wait_for(
        "the lines written while it was down",
        Duration::from_secs(15),
        || {
            let v = instant(
                &c,
                "tocsin_log_matches_total{source=\"shop\",pattern=\"error\"}",
            );
            eprintln!("errors counted: {v:?}");
            (v == Some(60.0)).then_some(())
        },
    );
    assert_eq!(
        instant(
            &c,
            "tocsin_log_lines_by_severity_total{source=\"shop\",severity=\"info\"}"
        ),
        Some(13.0)
    );
    assert_eq!(
        instant(&c, "tocsin_log_lines_total{source=\"shop\"}"),
        Some(73.0)
    );
    let (_, event, level) = env.wait_event("LogErrorsHigh", 1, Duration::from_secs(15));
    assert_eq!(event, "firing");
    assert!(matches!(level.as_str(), "warning" | "critical"), "{level}");
}

/// The incident a service's alerts filed, once it has `n` alerts: (its JSON, its report).
fn service_incident(c: &Proc, service: &str, kind: &str) -> (Value, String) {
    let inc = wait_for(
        &format!("a {kind} incident of {service}"),
        Duration::from_secs(30),
        || {
            let v: Value = reqwest::blocking::get(c.url("/api/v1/incidents"))
                .ok()?
                .json()
                .ok()?;
            v["data"]["incidents"]
                .as_array()?
                .iter()
                .find(|i| {
                    i["services"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x == service))
                        && i["outage"] == kind
                })
                .cloned()
        },
    );
    let id = inc["id"].as_str().unwrap();
    let report = reqwest::blocking::get(c.url(&format!("/api/v1/incidents/{id}/report")))
        .unwrap()
        .text()
        .unwrap();
    (inc, report)
}

fn outage_stats(c: &Proc) -> Value {
    let v: Value = reqwest::blocking::get(c.url("/api/v1/incidents/stats"))
        .unwrap()
        .json()
        .unwrap();
    v["data"]["by_outage"].clone()
}

/// The four outage kinds from real failures, as the shipped rules file them: all of a service
/// down is complete; down on one of its two hosts is partial; answering slowly is degraded;
/// failing every third request is intermittent. Each in the incident, its report and the
/// statistics.
#[test]
fn the_four_outage_kinds_are_filed_from_real_failures() {
    let _g = serial();
    // ProbeIntermittent's `for` shortened so the test need not wait two minutes.
    let env = Env::new();
    shipped_rules_without_for(
        &env.dir.path().join("rules"),
        &["probes.yaml", "liveness.yaml"],
    );
    let c = env.0.collector("127.0.0.1:0", &env.p("rules"));
    let agent = |host: &str, probes: &str| {
        let cfg = env.p(&format!("{host}.yaml"));
        std::fs::write(
            &cfg,
            format!("host: {host}\ninterval: 1s\nprobes:\n{probes}"),
        )
        .unwrap();
        let state = env.p(&format!("{host}-state"));
        env.0.agent(&c, &["--config", &cfg, "--state-dir", &state])
    };
    let probe = |name: &str, svc: &HttpServer, service: &str, extra: &str| {
        format!(
            "  - {{ name: {name}, kind: http, target: \"{}\", interval: 1s, timeout: 900ms, labels: {{ service: {service} }}{extra} }}\n",
            svc.url("http")
        )
    };
    // complete: the only server of `billing` stops.
    let mut billing = HttpServer::start(None);
    // partial: `shop` runs on two hosts; one stops.
    let mut shop_a = HttpServer::start(None);
    let shop_b = HttpServer::start(None);
    // degraded: `search` answers in 1.5 s.
    let search = HttpServer::start(None);
    // intermittent: `login` fails every third request.
    let login = HttpServer::start(None);
    let _a = agent(
        "host-a",
        &[
            probe("billing", &billing, "billing", ""),
            probe("shop-a", &shop_a, "shop", ""),
            probe("login", &login, "login", ""),
        ]
        .concat(),
    );
    let _b = agent(
        "host-b",
        &[
            probe("shop-b", &shop_b, "shop", ""),
            format!(
                "  - {{ name: search, kind: http, target: \"{}\", interval: 2s, timeout: 2s, labels: {{ service: search }} }}\n",
                search.url("http")
            ),
        ]
        .concat(),
    );
    wait_for("every probe shipped once", Duration::from_secs(20), || {
        let m = reqwest::blocking::get(c.url("/api/v1/query?query=count(probe_success)"))
            .ok()?
            .json::<Value>()
            .ok()?;
        (m["data"]["result"][0]["value"][1] == "5").then_some(())
    });
    billing.stop();
    shop_a.stop();
    search.set(Mode::Slow);
    login.set(Mode::FailEveryThird);

    let (inc, report) = service_incident(&c, "billing", "complete");
    assert!(report.contains("complete outage"), "{report}");
    assert_eq!(inc["severity"], "critical");
    let (inc, report) = service_incident(&c, "shop", "partial");
    assert!(report.contains("partial outage"), "{report}");
    assert_eq!(
        inc["hosts"],
        serde_json::json!(["host-a"]),
        "one host's probe down, the other fine"
    );
    let (_, report) = service_incident(&c, "search", "degraded");
    assert!(report.contains("ProbeSlow"), "{report}");
    let (_, report) = service_incident(&c, "login", "intermittent");
    assert!(report.contains("ProbeIntermittent"), "{report}");
    let by = outage_stats(&c);
    for kind in ["complete", "partial", "degraded", "intermittent"] {
        assert!(by[kind].as_u64() >= Some(1), "{kind} in {by}");
    }
    // No incident of these four services was filed under a wrong kind.
    let v: Value = reqwest::blocking::get(c.url("/api/v1/incidents"))
        .unwrap()
        .json()
        .unwrap();
    for i in v["data"]["incidents"].as_array().unwrap() {
        let want = match i["services"][0].as_str() {
            Some("billing") => "complete",
            Some("shop") => "partial",
            Some("search") => "degraded",
            Some("login") => "intermittent",
            _ => continue,
        };
        assert_eq!(i["outage"], want, "{i}");
    }
}

#[test]
fn a_series_that_stops_fires_its_absence_rule_across_a_restart_until_it_returns() {
    let _g = serial();
    let env = Env::new();
    let rules = env.dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("absent.yaml"),
        r#"rules:
  - name: NightlyJobSilent
    expr: absent_over_time(job_last_success_timestamp_seconds{job="nightly"}[3s])
    levels:
      critical: "== 1"
    labels: { category: backup }
    annotations:
      summary: "job {{ labels.job }} has not reported for 3 s"
"#,
    )
    .unwrap();
    let mut c = env.0.collector("127.0.0.1:0", &env.p("rules"));
    let send = |c: &Proc, job: &str| {
        let s = tocsin_model::SeriesSamples {
            labels: tocsin_model::Labels::from_pairs([
                ("__name__", "job_last_success_timestamp_seconds"),
                ("job", job),
                ("host", "batch1"),
            ]),
            samples: vec![tocsin_model::Sample::new(tocsin_model::now_ms(), 1.0)],
        };
        assert_eq!(c.remote_write(&[s], &[]).status().as_u16(), 204);
    };
    // Reporting every half second for 4 s, past the range: no alert. Another job's series is
    // not the one the rule asks for.
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        send(&c, "nightly");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(env.events("NightlyJobSilent").is_empty());
    // It stops; another job goes on.
    let stopped = Instant::now();
    let (at, event, level) = wait_for("the absence alert", Duration::from_secs(15), || {
        send(&c, "weekly");
        std::thread::sleep(Duration::from_millis(200));
        env.events("NightlyJobSilent").first().cloned()
    });
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));
    // Presence is timed by the collector's clock when it took the sample's commit group,
    // which may have opened a little before the request came in.
    assert!(
        at - stopped >= Duration::from_millis(2500),
        "fired {:?} after the last sample",
        at - stopped
    );
    let body = env
        .hook
        .all()
        .into_iter()
        .find(|(_, v)| v["alerts"][0]["labels"]["alertname"] == "NightlyJobSilent")
        .unwrap()
        .1;
    assert_eq!(body["alerts"][0]["labels"]["job"], "nightly");
    assert_eq!(
        body["alerts"][0]["annotations"]["summary"],
        "job nightly has not reported for 3 s"
    );
    // A restart neither resolves it nor says it again.
    assert!(c.terminate().success());
    let c = env.0.collector("127.0.0.1:0", &env.p("rules"));
    wait_for("the alert restored", Duration::from_secs(10), || {
        c.alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == "NightlyJobSilent")
            .then_some(())
    });
    // Past the range again: still the one notification, still firing.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        env.events("NightlyJobSilent").len(),
        1,
        "{:?}",
        env.events("NightlyJobSilent")
    );
    assert_eq!(c.alerts().len(), 1);
    // The job reports again: resolved.
    send(&c, "nightly");
    let (_, event, _) = env.wait_event("NightlyJobSilent", 2, Duration::from_secs(10));
    assert_eq!(event, "resolved");
}

/// An agent whose clock runs ten minutes slow (the real agent under libfaketime): its samples
/// arrive dated in the past, older than `stale_after`, and looked like a backlog being
/// replayed — stored, judged by no rule, the host's alerts off while it kept reporting. The
/// agent says when it sent each request: the collector measures the clock from that,
/// `HostClockBehind` pages, and the samples are judged fresh on the agent's own clock.
#[test]
fn an_agent_whose_clock_runs_behind_is_measured_and_paged() {
    let _g = serial();
    if !tocsin_e2e::require_tool("faketime") {
        return;
    }
    let env = Env::new();
    shipped_rules_without_for(&env.dir.path().join("rules"), &["liveness.yaml"]);
    std::fs::write(
        env.dir.path().join("rules/slow.yaml"),
        "rules:\n  - { name: SlowValue, expr: slow_value, levels: { warning: \"> 50\" } }\n",
    )
    .unwrap();
    let tf = env.dir.path().join("tf");
    std::fs::create_dir_all(&tf).unwrap();
    std::fs::write(tf.join("slow.prom"), "slow_value 90\n").unwrap();
    let c = env.0.collector("127.0.0.1:0", &env.p("rules"));
    let log = std::fs::File::create(env.p("agent.log")).unwrap();
    let _agent = tocsin_e2e::Killed(
        std::process::Command::new("faketime")
            .args(["-f", "-10m"])
            .arg(tocsin_e2e::binary("tocsin-agent"))
            .args(["--collector", &c.url("/api/v1/write")])
            .args([
                "--host",
                "slow-host",
                "--interval",
                "1s",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--state-dir", &env.p("agent-state")])
            .args(["--textfile-dir", tf.to_str().unwrap()])
            // Timers run on the real monotonic clock; only the wall clock is ten minutes slow.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            // faketime forks the agent: the group goes when the test ends, the agent with it.
            .process_group(0)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let behind = wait_for("the clock measured", Duration::from_secs(20), || {
        hosts(&c)["data"]["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["host"] == "slow-host")?["clockBehindSeconds"]
            .as_f64()
    });
    assert!((595.0..=605.0).contains(&behind), "{behind}");
    let (_, event, level) = env.wait_event("HostClockBehind", 1, Duration::from_secs(15));
    assert_eq!((event.as_str(), level.as_str()), ("firing", "critical"));
    // Its samples are judged all the same, fresh on its own clock: its alerts are not off.
    let (_, event, level) = env.wait_event("SlowValue", 1, Duration::from_secs(15));
    assert_eq!((event.as_str(), level.as_str()), ("firing", "warning"));
    let a = env
        .hook
        .all()
        .into_iter()
        .map(|(_, v)| v["alerts"][0].clone())
        .find(|a| a["labels"]["alertname"] == "HostClockBehind")
        .unwrap();
    assert_eq!(a["labels"]["host"], "slow-host", "{a}");
    assert!(
        env.events("HostDown").is_empty(),
        "the host keeps reporting"
    );
}

/// A host taken out of service on purpose (decommissioned, renamed) is not down: `hosts
/// forget` resolves its HostDown (reason `host removed`), stops judging it, and it stays
/// forgotten across a restart of the collector.
#[test]
fn a_host_taken_out_of_service_stops_paging_and_stays_forgotten() {
    let _g = serial();
    let env = Env::new();
    let mut c = env.collector("127.0.0.1:0");
    let mut a = env.agent(&c, "  []\n");
    wait_for("host up with its interval", Duration::from_secs(15), || {
        let h = hosts(&c);
        (h["data"]["hosts"][0]["intervalSeconds"] == 1.0 && h["data"]["hosts"][0]["up"] == true)
            .then_some(())
    });
    a.kill9();
    let (_, event, _) = env.wait_event("HostDown", 1, Duration::from_secs(15));
    assert_eq!(event, "firing");
    let forget = |host: &str| {
        std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
            .args(["hosts", "--url", &c.url(""), "forget", host])
            .output()
            .unwrap()
    };
    let unknown = forget("no-such-host");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no host \"no-such-host\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let out = forget("live-host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, event, _) = env.wait_event("HostDown", 2, Duration::from_secs(10));
    assert_eq!(event, "resolved");
    let resolved = env.hook.all()[1].1.clone();
    assert_eq!(
        resolved["alerts"][0]["tocsin"]["reason"], "host removed",
        "{resolved}"
    );
    wait_for(
        "the host gone from the list",
        Duration::from_secs(5),
        || (hosts(&c)["data"]["hosts"] == serde_json::json!([])).then_some(()),
    );
    c.terminate();
    let c = env.collector("127.0.0.1:0");
    // Once another host shows, the list is the collector's whole view: the one taken out of
    // service is not in it (a known host would be, from the stored hosts, up or down).
    let _b = env
        .0
        .agent(&c, &["--host", "other-host", "--interval", "1s"]);
    let listed = wait_for("the other host listed", Duration::from_secs(15), || {
        let h = hosts(&c)["data"]["hosts"].as_array()?.clone();
        h.iter().any(|h| h["host"] == "other-host").then_some(h)
    });
    assert_eq!(listed.len(), 1, "forgotten across the restart: {listed:?}");
    assert_eq!(env.events("HostDown").len(), 2);
}
