//! tocsin in the Prometheus ecosystem: remote-write forwarding into a real Prometheus and a
//! real VictoriaMetrics, a real Prometheus scraping the agent, and the agent side by side with
//! a real node_exporter.

use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::{
    exposition_lines, metric, serial, wait_for, write_textfile, ExpositionLine as Line, Stack,
};

fn query(prom: u16, q: &str) -> Value {
    reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Waits until every query returns at least one series.
fn wait_all_nonempty(prom: u16, queries: &[&str]) {
    for q in queries {
        wait_for(q, Duration::from_secs(30), || {
            let r = query(prom, q);
            r["data"]["result"]
                .as_array()
                .filter(|l| !l.is_empty())
                .map(|_| ())
        });
    }
}

#[test]
fn everything_ingested_is_forwarded_to_a_real_prometheus() {
    let _g = serial();
    let Some(prom) = tocsin_e2e::servers::prometheus("  []\n") else {
        return;
    };
    forwarded_to(prom.port, "prom");
}

/// The same into VictoriaMetrics, the usual long-term store behind a fleet, queried through its
/// Prometheus-compatible API.
#[test]
fn everything_ingested_is_forwarded_to_a_real_victoriametrics() {
    let _g = serial();
    let Some(vm) = tocsin_e2e::servers::victoriametrics() else {
        return;
    };
    forwarded_to(vm.port, "vm");
}

/// Runs a collector forwarding to the TSDB on `port` (as target `name`) and an agent, and
/// checks that a textfile sample, host series and the collector's derived series arrive, with
/// nothing dropped.
fn forwarded_to(port: u16, name: &str) {
    let s = Stack::with_textfile(
        &format!("remote_write:\n  - {{ name: {name}, url: \"http://127.0.0.1:{port}/api/v1/write\", external_labels: {{ collector: c1 }} }}\n"),
        "e2e_forwarded 42\ne2e_own{collector=\"own\"} 1\n",
    );
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let _a = s.agent(
        &c,
        &[
            "--interval",
            "1s",
            "--textfile-dir",
            &s.p("tf"),
            "--host",
            "fwd-host",
        ],
    );
    let v = wait_for("the sample in the TSDB", Duration::from_secs(30), || {
        let r = query(port, "e2e_forwarded{host=\"fwd-host\",collector=\"c1\"}");
        r["data"]["result"]
            .as_array()
            .and_then(|l| l.first().cloned())
    });
    assert_eq!(v["value"][1], "42");
    // Host series and the collector's derived liveness series too, each with the external
    // label — but a series' own value of it kept.
    wait_all_nonempty(
        port,
        &[
            "node_load1{host=\"fwd-host\",collector=\"c1\"}",
            "node_memory_MemTotal_bytes{host=\"fwd-host\",collector=\"c1\"}",
            "tocsin_host_up{host=\"fwd-host\",collector=\"c1\"}",
            "e2e_own{host=\"fwd-host\",collector=\"own\"}",
        ],
    );
    let unlabelled = query(port, "count({host=\"fwd-host\",collector=\"\"})");
    assert_eq!(
        unlabelled["data"]["result"],
        serde_json::json!([]),
        "every forwarded series carries the label"
    );
    let m = c.url("/metrics");
    assert!(
        metric(
            &m,
            &format!("tocsin_forward_samples_total{{result=\"sent\",target=\"{name}\"}}")
        ) > 0.0
    );
    assert_eq!(
        metric(
            &m,
            &format!("tocsin_forward_samples_total{{result=\"dropped\",target=\"{name}\"}}")
        ),
        0.0
    );
}

/// With `federate: true`, one Prometheus scrape of the collector carries the newest sample of
/// every host series, with its timestamp and labels, next to the collector's own metrics.
#[test]
fn a_prometheus_scraping_a_federating_collector_gets_host_series() {
    let _g = serial();
    let s = Stack::new("federate: true\n");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let Some(prom) = tocsin_e2e::servers::prometheus(&format!(
        "  - job_name: tocsin\n    honor_labels: true\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        c.addr
    )) else {
        return;
    };
    let _a = s.agent(&c, &["--interval", "1s", "--host", "fed-host"]);
    wait_all_nonempty(
        prom.port,
        &[
            "node_load1{host=\"fed-host\"}",
            "node_memory_MemTotal_bytes{host=\"fed-host\"}",
            "tocsin_host_up{host=\"fed-host\"}",
            "tocsin_ingest_samples_total",
        ],
    );
    // The whole page is valid exposition, one family per name.
    let text = reqwest::blocking::get(c.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    tocsin_e2e::promtool_check_node_names(&text).unwrap();
    let scrape_failures = query(prom.port, "up{job=\"tocsin\"} == 0");
    assert_eq!(scrape_failures["data"]["result"], serde_json::json!([]));
}

/// Every query of every panel (and every variable) of the shipped dashboards, run through a
/// real Prometheus that scrapes the collector and receives its remote-write forwarding, with
/// an agent sampling the host, probing HTTPS and ICMP, and a remediated, acknowledged incident
/// behind it. A query that fails or returns nothing fails the test.
#[test]
fn every_dashboard_query_returns_data_through_prometheus() {
    let _g = serial();
    let cport = tocsin_e2e::servers::free_port();
    let Some(prom) = tocsin_e2e::servers::prometheus(&format!(
        "  - job_name: tocsin\n    static_configs: [{{ targets: [\"127.0.0.1:{cport}\"] }}]\n"
    )) else {
        return;
    };
    let cert = tocsin_e2e::servers::self_signed(tocsin_model::now_ms() / 1000 + 40 * 86_400);
    let https = tocsin_e2e::servers::HttpServer::start(Some(&cert));
    let s = Stack::new(&format!(
        "remote_write:\n  - {{ name: prom, url: \"http://127.0.0.1:{}/api/v1/write\" }}\n\
         services:\n  - {{ name: shop, objective: 99.9% }}\n",
        prom.port
    ));
    for d in ["rules", "tf"] {
        std::fs::create_dir(s.dir.path().join(d)).unwrap();
    }
    std::fs::write(
        s.dir.path().join("rules/r.yaml"),
        "rules:
  - name: Busy
    expr: e2e_value
    levels: { warning: \"> 50\" }
    remediation: { action: fix, level: warning, verify_within: 1m }
  - name: Dyn
    expr: e2e_flat
    dynamic: { min_history: 3 }
  - name: ShopWatch
    expr: tocsin_service_probe_success_ratio{service=\"shop\"}
    levels: { warning: \"> 0.5\" }
",
    )
    .unwrap();
    let tf = s.dir.path().join("tf");
    write_textfile(&tf, "x.prom", "e2e_value 10\ne2e_flat 5\n");
    let c = s.collector(&format!("127.0.0.1:{cport}"), &s.p("rules"));
    let agent_cfg = s.dashboard_agent_config(
        &https.url("https"),
        "actions:\n  fix: { run: [/bin/true] }\n",
    );
    let _a = s.agent(&c, &["--config", &agent_cfg]);
    // A change to the service, for the service-levels dashboard.
    c.cli(
        &[
            "change",
            "add",
            "--service",
            "shop",
            "--summary",
            "v2",
            "--by",
            "ci",
        ],
        None,
    );
    wait_for("the host", Duration::from_secs(20), || {
        let v: Value = reqwest::blocking::get(c.url("/api/v1/hosts"))
            .unwrap()
            .json()
            .unwrap();
        (v["data"]["hosts"][0]["up"] == true).then_some(())
    });
    // An incident: Busy fires, the fix runs, somebody acknowledges, it resolves.
    write_textfile(&tf, "x.prom", "e2e_value 60\ne2e_flat 5\n");
    let id = wait_for("Busy firing", Duration::from_secs(15), || {
        c.alerts()
            .into_iter()
            .find(|a| a["rule"] == "Busy" && a["state"] == "firing")
            .map(|a| a["id"].as_str().unwrap().to_string())
    });
    wait_for("the fix to run", Duration::from_secs(15), || {
        let m = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.contains("tocsin_remediation_events_total{kind=\"succeeded\"} 1")
            .then_some(())
    });
    let r = reqwest::blocking::Client::new()
        .post(c.url(&format!("/api/v1/alerts/{id}/ack")))
        .json(&serde_json::json!({"by": "ops"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    write_textfile(&tf, "x.prom", "e2e_value 10\ne2e_flat 5\n");
    wait_for("the incident resolved", Duration::from_secs(15), || {
        let m = reqwest::blocking::get(c.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.lines()
            .any(|l| {
                l.starts_with("tocsin_incident_duration_seconds_count{")
                    && l.contains("to=\"ack\"")
                    && l.ends_with(" 1")
            })
            .then_some(())
    });
    // Two scrapes after the last change, so that rates over the collector's counters exist.
    wait_for(
        "Prometheus to scrape it twice",
        Duration::from_secs(20),
        || {
            let r = query(
                prom.port,
                "count_over_time(tocsin_incident_duration_seconds_count{to=\"ack\"}[1m]) >= 2",
            );
            r["data"]["result"]
                .as_array()
                .filter(|l| !l.is_empty())
                .map(|_| ())
        },
    );
    // The service's error budget, derived every 10 s once its indicator has two samples.
    wait_for(
        "the service's burn conditions in Prometheus",
        Duration::from_secs(40),
        || {
            query(prom.port, "tocsin_slo_burn_condition")["data"]["result"]
                .as_array()
                .filter(|l| !l.is_empty())
                .map(|_| ())
        },
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for (what, q) in tocsin_e2e::dashboard_queries("dash-host", "Dyn") {
        checked += 1;
        let r = query(prom.port, &q);
        let empty = r["data"]["result"].as_array().is_none_or(|l| l.is_empty());
        if r["status"] != "success" || empty {
            failures.push(format!("{what}: {q} → {r}"));
        }
    }
    assert!(checked >= 40, "{checked} queries");
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn shipped_rules_export_to_prometheus_rules_that_promtool_accepts() {
    if !tocsin_e2e::require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tocsin.rules.yml");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let r = std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
        .arg("export-rules")
        .arg("--out")
        .arg(&out)
        .arg(root.join("rules"))
        .arg(root.join("examples/rules"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let notes = String::from_utf8_lossy(&r.stderr);
    assert!(
        notes.contains("ServiceDown (critical): for_runs is not exported"),
        "{notes}"
    );
    assert!(
        notes.contains("cluster:memory_available:ratio: interval is not exported"),
        "{notes}"
    );
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(yaml.contains("alert: HostDown"), "{yaml}");
    // Rules over a fleet export as the aggregations they are, recording rules as such.
    assert!(
        yaml.contains("- record: cluster:memory_available:ratio\n    expr: sum by (cluster)"),
        "{yaml}"
    );
    assert!(
        yaml.contains("expr: (100 * avg by (service) (probe_success)) < 50"),
        "{yaml}"
    );
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("SUCCESS"), "{said}");
}

/// Series of a text exposition, as `name{a="b",...}` keys with labels sorted (escapes kept).
fn exposed_series(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        // Split on the commas between pairs (a value may hold commas; its quotes are balanced).
        let mut pairs = Vec::new();
        let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
        for c in labels.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    pairs.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            pairs.push(cur);
        }
        pairs.sort();
        out.insert(format!("{name}{{{}}}", pairs.join(",")));
    }
    out
}

/// The same key for a series the query API lists, leaving out labels a scrape adds.
fn listed_series(v: &Value) -> std::collections::BTreeSet<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let o = m.as_object().unwrap();
            let mut pairs: Vec<String> = o
                .iter()
                .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
                .collect();
            pairs.sort();
            format!("{}{{{}}}", o["__name__"].as_str().unwrap(), pairs.join(","))
        })
        .collect()
}

/// A team that runs Prometheus scrapes the agent where it scraped node_exporter: the agent's
/// `/metrics` carries its latest host, textfile and probe samples (promtool finds nothing to
/// fix), and the series a real Prometheus scrapes from it are the series the collector
/// receives from the same agent.
#[test]
fn a_prometheus_scraping_an_agent_gets_the_series_the_collector_receives() {
    let _g = serial();
    let aport = tocsin_e2e::servers::free_port();
    let Some(prom) = tocsin_e2e::servers::prometheus(&format!(
        "  - job_name: agents\n    static_configs: [{{ targets: [\"127.0.0.1:{aport}\"] }}]\n"
    )) else {
        return;
    };
    let (s, c) = Stack::with_collector("");
    std::fs::create_dir(s.dir.path().join("tf")).unwrap();
    write_textfile(
        &s.dir.path().join("tf"),
        "x.prom",
        "# HELP e2e_backup_age_seconds Age of the newest backup.\n# TYPE e2e_backup_age_seconds gauge\ne2e_backup_age_seconds{db=\"main\"} 3600\n",
    );
    let agent_cfg = s.p("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "host: scrape-host\ninterval: 1s\nlisten: 127.0.0.1:{aport}\ntextfile_dir: {}\nstate_dir: {}\nlabels: {{ dc: bj }}\ncollector: {{ url: \"{}\" }}\nprobes:\n  - {{ name: collector-port, kind: tcp, target: \"{}\", interval: 1s, timeout: 1s }}\n",
            s.p("tf"),
            s.p("agent-state"),
            c.url("/api/v1/write"),
            c.addr,
        ),
    )
    .unwrap();
    let _a = tocsin_e2e::Proc::start(
        "tocsin-agent",
        &["--config", &agent_cfg],
        std::path::Path::new(&s.p("agent.log")),
    );
    let metrics_url = format!("http://127.0.0.1:{aport}/metrics");
    let text = wait_for(
        "host, textfile and probe samples on /metrics",
        Duration::from_secs(20),
        || {
            let t = reqwest::blocking::get(&metrics_url).ok()?.text().ok()?;
            (t.contains("node_load1{")
                && t.contains("e2e_backup_age_seconds{")
                && t.contains("probe_success{"))
            .then_some(t)
        },
    );
    tocsin_e2e::promtool_check_node_names(&text)
        .unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    let exposed: std::collections::BTreeSet<String> = exposed_series(&text)
        .into_iter()
        .filter(|k| {
            !k.starts_with("tocsin_agent_") || k.starts_with("tocsin_agent_interval_seconds")
        })
        .collect();
    assert!(
        exposed
            .iter()
            .all(|k| k.contains("host=\"scrape-host\"") && k.contains("dc=\"bj\"")),
        "{exposed:?}"
    );
    let series_of = |base: &str| {
        let v: Value = reqwest::blocking::Client::new()
            .get(format!("{base}/api/v1/series"))
            .query(&[("match[]", "{host=\"scrape-host\"}")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        listed_series(&v)
    };
    // Everything shown once: stored by the collector, and scraped by Prometheus.
    for (what, base) in [
        ("the collector", c.url("")),
        ("Prometheus", format!("http://127.0.0.1:{}", prom.port)),
    ] {
        wait_for(
            &format!("every exposed series in {what}"),
            Duration::from_secs(30),
            || {
                let got = series_of(&base);
                let missing: Vec<&String> = exposed.difference(&got).collect();
                if !missing.is_empty() {
                    eprintln!(
                        "{what} lacks {} series, e.g. {:?}",
                        missing.len(),
                        missing.first()
                    );
                }
                missing.is_empty().then_some(())
            },
        );
    }
}

/// Dashboards and queries written for node_exporter carry over to the agent: side by side on
/// the same machine, every family both expose has the same label names (the agent adds `host`
/// and its static labels), the families a host dashboard is built on are there, and the same
/// quantities read the same — sizes exactly, counters in the same unit and never ahead of
/// node_exporter's later reading.
#[test]
fn the_agent_exposes_node_exporters_names_labels_and_units() {
    let _g = serial();
    let Some(ne) = tocsin_e2e::servers::node_exporter() else {
        return;
    };
    let (s, c) = Stack::with_collector("");
    let aport = tocsin_e2e::servers::free_port();
    let _a = tocsin_e2e::Proc::start(
        "tocsin-agent",
        &[
            "--collector",
            &c.url(""),
            "--listen",
            &format!("127.0.0.1:{aport}"),
            "--interval",
            "1s",
            "--host",
            "side-by-side",
            "--state-dir",
            &s.p("agent-state"),
        ],
        std::path::Path::new(&s.p("agent.log")),
    );
    let get = |url: String| reqwest::blocking::get(url).ok()?.text().ok();
    let agent = wait_for("the agent's host samples", Duration::from_secs(20), || {
        get(format!("http://127.0.0.1:{aport}/metrics"))
            .filter(|t| t.contains("node_filesystem_size_bytes{") && t.contains("node_cpu_"))
    });
    // node_exporter read after the agent: its counters are at least the agent's.
    let theirs = get(format!("http://127.0.0.1:{}/metrics", ne.port)).unwrap();
    let ours: Vec<Line> = exposition_lines(&agent)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("node_"))
        .map(|(n, mut l, v)| {
            assert_eq!(l.remove("host").as_deref(), Some("side-by-side"), "{n}");
            (n, l, v)
        })
        .collect();
    let theirs = exposition_lines(&theirs);
    let names = |lines: &[Line]| {
        let mut m =
            std::collections::BTreeMap::<String, std::collections::BTreeSet<Vec<String>>>::new();
        for (n, l, _) in lines {
            m.entry(n.clone())
                .or_default()
                .insert(l.keys().cloned().collect());
        }
        m
    };
    let (our_names, their_names) = (names(&ours), names(&theirs));
    for family in [
        "node_cpu_seconds_total",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_SwapTotal_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_files_free",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_boot_time_seconds",
        "node_time_seconds",
        "node_context_switches_total",
        "node_filefd_allocated",
        "node_procs_running",
        "node_vmstat_oom_kill",
        "node_netstat_Tcp_RetransSegs",
        "node_netstat_TcpExt_ListenOverflows",
    ] {
        assert!(
            their_names.contains_key(family),
            "node_exporter lacks {family}"
        );
        assert!(our_names.contains_key(family), "the agent lacks {family}");
    }
    let mut common = 0;
    for (family, label_sets) in &our_names {
        if let Some(theirs) = their_names.get(family) {
            assert_eq!(label_sets, theirs, "{family}: label names");
            common += 1;
        }
    }
    assert!(common >= 60, "{common} families in common");
    let value = |lines: &[Line], n: &str, l: &[(&str, &str)]| {
        lines
            .iter()
            .find(|(name, labels, _)| {
                name == n
                    && labels.len() == l.len()
                    && l.iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|x| x.2)
    };
    for n in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_filefd_maximum",
    ] {
        assert_eq!(value(&ours, n, &[]), value(&theirs, n, &[]), "{n}");
    }
    // Connection tracking where the kernel has it: the same table size.
    let limit = "node_nf_conntrack_entries_limit";
    assert_eq!(
        value(&ours, limit, &[]),
        value(&theirs, limit, &[]),
        "{limit}"
    );
    for n in [
        "node_vmstat_oom_kill",
        "node_netstat_TcpExt_ListenOverflows",
    ] {
        let (a, b) = (
            value(&ours, n, &[]).unwrap(),
            value(&theirs, n, &[]).unwrap(),
        );
        assert!(
            a <= b,
            "{n}: the agent's {a}, node_exporter's {b} read after it"
        );
    }
    let boot = |lines: &[Line]| value(lines, "node_boot_time_seconds", &[]).unwrap();
    assert!((boot(&ours) - boot(&theirs)).abs() <= 1.0);
    // Every filesystem both report has the same size and read-only state; the CPUs and modes
    // are the same.
    let mut filesystems = 0;
    for (n, l, v) in &ours {
        let same = |theirs: &Line| &theirs.0 == n && &theirs.1 == l;
        let Some(t) = theirs.iter().find(|t| same(t)) else {
            continue;
        };
        match n.as_str() {
            "node_filesystem_size_bytes" | "node_filesystem_files" => {
                assert_eq!(*v, t.2, "{n}{l:?}");
                filesystems += 1;
            }
            // Both read the host's mount table (PID 1's) for it.
            "node_filesystem_readonly" => assert_eq!(*v, t.2, "{n}{l:?}"),
            // Counters, read first by the agent: never ahead, and within the seconds between
            // the two readings for the CPU's (a unit off by USER_HZ would be a hundredfold).
            "node_cpu_seconds_total" => {
                assert!(
                    *v <= t.2 + 0.01 && t.2 - v < 30.0,
                    "{n}{l:?}: {v} vs {}",
                    t.2
                );
            }
            "node_network_receive_bytes_total"
            | "node_network_transmit_bytes_total"
            | "node_disk_read_bytes_total"
            | "node_disk_written_bytes_total"
            | "node_context_switches_total" => {
                assert!(*v <= t.2, "{n}{l:?}: {v} vs {}", t.2);
                assert!(*v >= t.2 * 0.5, "{n}{l:?}: {v} vs {}", t.2);
            }
            _ => {}
        }
    }
    assert!(filesystems >= 1, "no filesystem reported by both");
    // The same filesystems: both read the host's mount table (PID 1's) and leave out the same
    // kinds. Debian's package also leaves out mount points under /run, /mnt and /media
    // (upstream's default, which the agent follows, keeps them: data disks live under /mnt).
    let mounts = |lines: &[Line]| -> std::collections::BTreeSet<(String, String)> {
        lines
            .iter()
            .filter(|(n, _, _)| n == "node_filesystem_size_bytes")
            .map(|(_, l, _)| (l["mountpoint"].clone(), l["fstype"].clone()))
            .collect()
    };
    let (our_mounts, their_mounts) = (mounts(&ours), mounts(&theirs));
    assert!(
        their_mounts.is_subset(&our_mounts),
        "node_exporter's {their_mounts:?} not all in the agent's {our_mounts:?}"
    );
    for (mp, _) in our_mounts.difference(&their_mounts) {
        assert!(
            ["/run", "/mnt", "/media"]
                .iter()
                .any(|p| mp == p || mp.starts_with(&format!("{p}/"))),
            "{mp} reported by the agent alone"
        );
    }
    let cpus = |lines: &[Line]| -> std::collections::BTreeSet<(String, String)> {
        lines
            .iter()
            .filter(|(n, _, _)| n == "node_cpu_seconds_total")
            .map(|(_, l, _)| (l["cpu"].clone(), l["mode"].clone()))
            .collect()
    };
    assert_eq!(cpus(&ours), cpus(&theirs));
}

/// A real Prometheus whose `alerting` points at the collector, as at an Alertmanager: the alert
/// of its rule reaches the collector's receiver with its labels, level (from `severity`) and
/// annotations, opens an incident, survives a restart of the collector without being told
/// twice, and resolves when the rule stops firing. A sender without the credential is refused.
#[test]
fn a_prometheus_sends_its_alerts_through_the_collector() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let _g = serial();
    let s = Stack::new("external_alerts: { token: s3nder-t0ken }\n");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let listen = format!("127.0.0.1:{}", tocsin_e2e::servers::free_port());
    let mut c = s.collector(&listen, &s.p("rules"));
    // A target whose value the test sets.
    let flag = Arc::new(AtomicU64::new(1));
    let f = Arc::clone(&flag);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f.load(Ordering::SeqCst);
            async move { format!("# TYPE flag gauge\nflag {v}\n") }
        }),
    );
    let (target, _rt) = tocsin_e2e::serve(app);
    let rules = s.dir.path().join("prometheus-rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: t\n    rules:\n      - alert: FlagRaised\n        expr: flag > 0\n        labels: { severity: critical, team: db }\n        annotations: { summary: \"flag is {{ $value }}\" }\n",
    )
    .unwrap();
    let Some(_prom) = tocsin_e2e::servers::prometheus(&format!(
        "  - job_name: flag\n    static_configs: [{{ targets: [\"{target}\"] }}]\n\
         rule_files: [\"{}\"]\n\
         alerting:\n  alertmanagers:\n    - api_version: v2\n      authorization: {{ credentials: s3nder-t0ken }}\n      static_configs: [{{ targets: [\"{listen}\"] }}]\n",
        rules.display()
    )) else {
        return;
    };

    let (_, first) = s.hook.wait_nth(1, Duration::from_secs(30));
    let a = &first["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "FlagRaised", "{first}");
    assert_eq!(a["labels"]["team"], "db", "{first}");
    assert_eq!(a["labels"]["level"], "critical", "{first}");
    assert_eq!(a["annotations"]["summary"], "flag is 1", "{first}");
    assert_eq!(first["tocsin"]["event"], "firing", "{first}");
    // The link back to the expression in Prometheus, as Alertmanager passes it on.
    assert!(
        a["generatorURL"]
            .as_str()
            .is_some_and(|u| u.contains("/graph?g0.expr=flag")),
        "{first}"
    );
    let get = |c: &tocsin_e2e::Proc, path: &str| -> Value {
        reqwest::blocking::get(c.url(path))
            .and_then(|r| r.json())
            .unwrap()
    };
    let incidents = get(&c, "/api/v1/incidents");
    assert!(
        incidents.to_string().contains("FlagRaised"),
        "an incident opened: {incidents}"
    );
    assert!(
        metric(
            &c.url("/metrics"),
            "tocsin_external_alerts_received_total{result=\"fired\"}"
        ) >= 1.0
    );

    // Without the senders' credential: refused, nothing taken.
    let r = reqwest::blocking::Client::new()
        .post(c.url("/api/v2/alerts"))
        .json(&serde_json::json!([{ "labels": { "alertname": "Forged" } }]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // A restart keeps the alert (Prometheus posts again only a minute on) and tells no one twice.
    c.terminate();
    let c = s.collector(&listen, &s.p("rules"));
    let listed = get(&c, "/api/v2/alerts");
    assert_eq!(listed[0]["labels"]["alertname"], "FlagRaised", "{listed}");
    assert!(!listed.to_string().contains("Forged"), "{listed}");

    // The rule stops firing: Prometheus posts the end, receivers hear it resolved.
    flag.store(0, Ordering::SeqCst);
    let (_, second) = s.hook.wait_nth(2, Duration::from_secs(30));
    assert_eq!(second["tocsin"]["event"], "resolved", "{second}");
    assert_eq!(second["alerts"][0]["labels"]["alertname"], "FlagRaised");
    wait_for(
        "the alert gone from the list",
        Duration::from_secs(10),
        || (get(&c, "/api/v2/alerts") == serde_json::json!([])).then_some(()),
    );
    assert_eq!(
        s.hook.events(),
        [
            ("firing".to_string(), "critical".to_string()),
            ("resolved".to_string(), "critical".to_string())
        ]
    );
}

/// Rules over a fleet, a rule over a recorded series, and `increase` over a range its samples
/// do not span, judge what Prometheus' own rule engine judges: the same series fed to tocsin's
/// engine and, exported with `export-rules`, to `promtool test rules`, which must find exactly
/// the alerts tocsin fires, with the groups' labels and values tocsin computed.
#[test]
fn rules_over_a_fleet_fire_where_prometheus_fires_with_the_same_values() {
    use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
    if !tocsin_e2e::require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"rules:
  - name: ClusterDiskFull
    expr: max without (host, mountpoint) (100 * (1 - avail / size))
    levels: { warning: "> 90" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: FullDisks
    expr: count by (cluster) (100 * (1 - avail / size) > 60)
    levels: { warning: ">= 2" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: ShareFailing
    expr: 100 * avg by (cluster) (probe_success == bool 0)
    levels: { warning: "> 30" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: ErrorRatio
    expr: sum by (cluster) (rate(errors_total[5m])) / sum by (cluster) (rate(requests_total[5m]))
    levels: { warning: "> 0.02" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: FleetFree
    expr: min(avail / size) * 100
    levels: { warning: "< 10" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: RecentErrors
    expr: sum by (cluster) (increase(errors_total[100s]))
    levels: { warning: "> 1" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: HostErrors
    expr: increase(errors_total[100s])
    levels: { warning: "> 2" }
    annotations: { value: "{{ value|round(3) }}" }
  - record: cluster:errors:ratio
    expr: sum by (cluster) (rate(errors_total[5m])) / sum by (cluster) (rate(requests_total[5m]))
  - name: RecordedErrorRatio
    expr: 100 * cluster:errors:ratio
    levels: { warning: "> 2" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: SlowestQuarter
    expr: quantile by (cluster) (0.75, rate(requests_total[1m]))
    levels: { warning: "> 2" }
    annotations: { value: "{{ value|round(3) }}" }
  - name: UnevenLoad
    expr: stddev without (host) (rate(requests_total[1m])) / avg without (host) (rate(requests_total[1m]))
    levels: { warning: "> 0.1" }
    annotations: { value: "{{ value|round(3) }}" }
"#;
    std::fs::write(dir.path().join("fleet.yaml"), rules).unwrap();
    // (labels, value at step i) for 15 s steps from 0 to 10 min.
    type Series = (
        Vec<(&'static str, &'static str)>,
        &'static str,
        Box<dyn Fn(i64) -> f64>,
    );
    let mut series: Vec<Series> = Vec::new();
    for (host, cluster, mp, avail) in [
        ("a", "eu", "/", 50.0),
        ("a", "eu", "/var", 4.0),
        ("b", "eu", "/", 30.0),
        ("c", "us", "/", 20.0),
        ("d", "us", "/", 35.0),
        ("e", "us", "/", 45.0),
    ] {
        let l = vec![("host", host), ("cluster", cluster), ("mountpoint", mp)];
        series.push((l.clone(), "avail", Box::new(move |_| avail)));
        series.push((l, "size", Box::new(|_| 100.0)));
    }
    for (host, cluster, ok, errs, reqs) in [
        ("a", "eu", 1.0, 1.0, 40.0),
        ("b", "eu", 0.0, 3.0, 60.0),
        ("c", "us", 0.0, 0.0, 20.0),
        ("d", "us", 1.0, 0.5, 20.0),
        ("e", "us", 0.0, 0.25, 30.0),
    ] {
        let l = vec![("host", host), ("cluster", cluster)];
        series.push((l.clone(), "probe_success", Box::new(move |_| ok)));
        series.push((
            l.clone(),
            "errors_total",
            Box::new(move |i| errs * i as f64),
        ));
        series.push((l, "requests_total", Box::new(move |i| reqs * i as f64)));
    }
    let steps = 40; // 10 min at 15 s
                    // tocsin's engine, evaluated on the clock every 15 s.
    let parsed = tocsin_rules::parse_file("fleet.yaml", rules).unwrap();
    let mut engine = tocsin_rules::Engine::new(parsed, Default::default());
    for i in 0..=steps {
        let t = i * 15_000;
        let batch: Vec<SeriesSamples> = series
            .iter()
            .map(|(l, name, f)| {
                let mut labels = Labels::from_pairs(l.iter().copied());
                labels.set(METRIC_NAME, *name);
                SeriesSamples {
                    labels,
                    samples: vec![Sample::new(t, f(i))],
                }
            })
            .collect();
        engine.ingest(&batch, t);
        engine.tick(t);
        // As the collector's writer does: recorded values stored and read by the rules.
        let recorded = engine.take_recorded();
        engine.ingest(&recorded, t);
    }
    // What fires after the last evaluation, with the value it was judged on.
    let firing: std::collections::BTreeMap<(String, Labels), f64> = engine
        .alerts()
        .filter(|a| a.level.is_some())
        .map(|a| ((a.rule.clone(), a.labels.clone()), a.value))
        .collect();
    // `[100s]` over samples 15 s apart: the increases are extrapolated to the range's start,
    // as PromQL's are.
    let names = [
        "ClusterDiskFull",
        "FullDisks",
        "ShareFailing",
        "ErrorRatio",
        "FleetFree",
        "RecentErrors",
        "HostErrors",
        "SlowestQuarter",
        "UnevenLoad",
        "RecordedErrorRatio",
    ];
    let fired: std::collections::BTreeSet<&str> = firing.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(fired.len(), names.len(), "every rule fires: {firing:?}");
    // The same through Prometheus: the exported rules and a promtool unit test expecting
    // exactly tocsin's alerts at the last evaluation.
    let out = dir.path().join("fleet.rules.yml");
    let r = std::process::Command::new(tocsin_e2e::binary("tocsin-collector"))
        .arg("export-rules")
        .arg("--out")
        .arg(&out)
        .arg(dir.path().join("fleet.yaml"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let mut test = String::from(
        "rule_files: [fleet.rules.yml]\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n",
    );
    for (l, name, f) in &series {
        let labels: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let values: Vec<String> = (0..=steps).map(|i| f(i).to_string()).collect();
        test += &format!(
            "      - series: '{name}{{{}}}'\n        values: '{}'\n",
            labels.join(","),
            values.join(" ")
        );
    }
    test += "    alert_rule_test:\n";
    for name in names {
        test += &format!(
            "      - eval_time: {}s\n        alertname: {name}\n        exp_alerts:\n",
            steps * 15
        );
        let mine: Vec<_> = firing.iter().filter(|((n, _), _)| n == name).collect();
        if mine.is_empty() {
            test += "          []\n";
        }
        for ((_, labels), value) in mine {
            // Prometheus renders the exported `round(3)` as printf "%.3f".
            let value = format!("{value:.3}");
            let mut l: Vec<String> = labels
                .iter()
                .filter(|l| l.name != "alertname")
                .map(|l| format!("{}: \"{}\"", l.name, l.value))
                .collect();
            l.push("level: warning".into());
            l.push("severity: warning".into());
            test += &format!(
                "          - exp_labels: {{ {} }}\n            exp_annotations: {{ value: \"{value}\" }}\n",
                l.join(", ")
            );
        }
    }
    let test_file = dir.path().join("fleet.test.yml");
    std::fs::write(&test_file, &test).unwrap();
    let check = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool disagrees:\n{}{}\n{test}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
