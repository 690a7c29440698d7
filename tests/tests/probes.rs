//! Every probe kind against real servers on 127.0.0.1: a success and each failure reason.

use std::path::Path;
use std::time::Duration;

use tocsin_config::agent::RawAgentConfig;
use tocsin_e2e::servers::{self, free_port, HttpServer, Mode};
use tocsin_probes::{Outcome, Prober};
use tocsin_sampling::Family;

fn prober(yaml: &str) -> Prober {
    let raw: RawAgentConfig = tocsin_config::parse_yaml(&format!("probes:\n{yaml}"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let mut cfg = raw.validate().unwrap_or_else(|e| panic!("{e}"));
    Prober::new(cfg.probes.remove(0)).expect("prober")
}

fn run(p: &mut Prober) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(p.run())
}

fn reason(o: &Outcome) -> &'static str {
    match &o.result {
        Ok(()) => "ok",
        Err(f) => f.reason.as_str(),
    }
}

fn value(fams: &[Family], name: &str) -> Option<f64> {
    fams.iter().find(|f| f.name == name).map(|f| f.samples[0].1)
}

fn http(url: &str, extra: &str) -> Prober {
    prober(&format!(
        "  - name: web\n    kind: http\n    target: \"{url}\"\n    timeout: 1s\n{extra}"
    ))
}

#[test]
fn http_success_and_each_failure() {
    let srv = HttpServer::start(None);
    let url = srv.url("http");
    let mut p = http(
        &url,
        "    http: { body_matches: \"good\", body_not_matches: \"error\" }\n",
    );
    let o = run(&mut p);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    let fams = p.families(&o);
    assert_eq!(value(&fams, "probe_success"), Some(1.0));
    assert_eq!(value(&fams, "probe_http_status_code"), Some(200.0));
    let phases = fams
        .iter()
        .find(|f| f.name == "probe_http_duration_seconds")
        .unwrap();
    let names: Vec<_> = phases
        .samples
        .iter()
        .map(|s| s.0.get("phase").unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["resolve", "connect", "tls", "processing", "transfer"]
    );
    assert_eq!(phases.samples[0].0.get("probe"), Some("web"));
    assert_eq!(phases.samples[0].0.get("kind"), Some("http"));

    srv.set(Mode::Fail);
    let o = run(&mut p);
    assert_eq!(reason(&o), "status");
    let fams = p.families(&o);
    assert_eq!(value(&fams, "probe_success"), Some(0.0));
    let info = fams
        .iter()
        .find(|f| f.name == "probe_failure_info")
        .unwrap();
    assert_eq!(info.samples[0].0.get("reason"), Some("status"));

    let mut p2 = http(
        &url,
        "    http: { expect_status: [500], body_matches: \"good\" }\n",
    );
    assert_eq!(reason(&run(&mut p2)), "body");

    srv.set(Mode::Hang);
    let t = std::time::Instant::now();
    assert_eq!(reason(&run(&mut p)), "timeout");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "timeout enforced"
    );

    srv.set(Mode::Ok);
    let old = url.replace("/health", "/old");
    let mut follow = http(&old, "    http: { follow_redirects: true }\n");
    let o = run(&mut follow);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    assert_eq!(
        value(&follow.families(&o), "probe_http_redirects"),
        Some(1.0)
    );
    let mut stay = http(&old, "");
    let o = run(&mut stay);
    assert_eq!(
        reason(&o),
        "status",
        "a 302 is judged as is without follow_redirects"
    );
    assert_eq!(
        value(&stay.families(&o), "probe_http_status_code"),
        Some(302.0)
    );

    let mut closed = http(&format!("http://127.0.0.1:{}/", free_port()), "");
    assert_eq!(reason(&run(&mut closed)), "refused");

    let mut nowhere = http("http://no-such-host.invalid/", "");
    assert_eq!(reason(&run(&mut nowhere)), "dns");
}

#[test]
fn https_reports_certificate_expiry_and_verifies() {
    let not_after = 1_900_000_000; // 2030-03-17
    let cert = servers::self_signed(not_after);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let srv = HttpServer::start(Some(&cert));
    let url = srv.url("https");

    let mut trusted = http(
        &url,
        &format!("    http: {{ tls: {{ ca_file: \"{}\" }} }}\n", ca.display()),
    );
    let o = run(&mut trusted);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    let fams = trusted.families(&o);
    assert_eq!(
        value(&fams, "probe_ssl_earliest_cert_expiry"),
        Some(not_after as f64)
    );
    assert_eq!(value(&fams, "probe_http_ssl"), Some(1.0));

    let mut untrusted = http(&url, "");
    let o = run(&mut untrusted);
    assert_eq!(reason(&o), "tls", "{:?}", o.result);

    let mut insecure = http(&url, "    http: { tls: { insecure_skip_verify: true } }\n");
    let o = run(&mut insecure);
    assert_eq!(reason(&o), "ok");
    assert_eq!(
        value(&insecure.families(&o), "probe_ssl_earliest_cert_expiry"),
        Some(not_after as f64)
    );

    // TCP with TLS reports the same expiry.
    let mut tcp = prober(&format!(
        "  - name: tls\n    kind: tcp\n    target: 127.0.0.1:{}\n    tcp: {{ tls: true, tls_config: {{ ca_file: \"{}\", server_name: localhost }} }}\n",
        srv.port,
        ca.display()
    ));
    let o = run(&mut tcp);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    assert_eq!(
        value(&tcp.families(&o), "probe_ssl_earliest_cert_expiry"),
        Some(not_after as f64)
    );
}

#[test]
fn tcp_connect_send_expect() {
    let srv = HttpServer::start(None);
    let tcp = |extra: &str, port: u16| {
        prober(&format!(
            "  - name: t\n    kind: tcp\n    target: 127.0.0.1:{port}\n    timeout: 1s\n{extra}"
        ))
    };
    let mut ok = tcp("    tcp: { send: \"GET / HTTP/1.1\\\\r\\\\nHost: x\\\\r\\\\n\\\\r\\\\n\", expect: \"^HTTP/1.1 200\" }\n", srv.port);
    let o = run(&mut ok);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    assert!(value(&ok.families(&o), "probe_tcp_connect_duration_seconds").is_some());

    let mut wrong = tcp("    tcp: { send: \"GET / HTTP/1.1\\\\r\\\\nHost: x\\\\r\\\\n\\\\r\\\\n\", expect: \"^SSH-\" }\n", srv.port);
    assert_eq!(reason(&run(&mut wrong)), "expect");

    srv.set(Mode::Hang);
    let mut hang = tcp(
        "    tcp: { send: \"GET / HTTP/1.1\\\\r\\\\n\\\\r\\\\n\", expect: \"200\" }\n",
        srv.port,
    );
    assert_eq!(reason(&run(&mut hang)), "timeout");

    let mut closed = tcp("", free_port());
    assert_eq!(reason(&run(&mut closed)), "refused");
}

#[test]
fn command_exit_codes_and_timeout_kills_the_group() {
    let cmd = |argv: &str, timeout: &str| {
        prober(&format!("  - name: c\n    kind: command\n    timeout: {timeout}\n    command: {{ argv: {argv} }}\n"))
    };
    assert_eq!(reason(&run(&mut cmd("[\"true\"]", "2s"))), "ok");
    let mut f = cmd("[\"sh\", \"-c\", \"echo broken >&2; exit 3\"]", "2s");
    let o = run(&mut f);
    assert_eq!(reason(&o), "exit");
    assert_eq!(o.result.as_ref().unwrap_err().message, "exit 3: broken");
    assert_eq!(value(&f.families(&o), "probe_command_exit_code"), Some(3.0));

    // A background grandchild would outlive a kill of the command alone; the whole process
    // group must go.
    let tag = format!("tocsin-cmd-grandchild-{}", std::process::id());
    let script = format!("(exec -a {tag} sleep 30) & exec sleep 30");
    let t = std::time::Instant::now();
    assert_eq!(
        reason(&run(&mut cmd(
            &format!("[\"bash\", \"-c\", \"{script}\"]"),
            "500ms"
        ))),
        "timeout"
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    tocsin_e2e::wait_for(
        "the grandchild to be killed with its group",
        Duration::from_secs(3),
        || {
            let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.starts_with(tag.as_bytes()))
            });
            (!alive).then_some(())
        },
    );

    assert_eq!(
        reason(&run(&mut cmd("[\"/nonexistent/program\"]", "1s"))),
        "error"
    );
}

#[test]
fn process_count_restarts_and_missing() {
    let tag = format!("tocsin-probe-test-{}", std::process::id());
    let spawn = || {
        std::process::Command::new("bash")
            .args(["-c", "exec -a \"$0\" sleep 60", &tag])
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let mut p = prober(&format!(
        "  - name: p\n    kind: process\n    process: {{ cmdline: \"^{tag}\" }}\n"
    ));
    wait_until_found(&mut p);
    let o = run(&mut p);
    assert_eq!(value(&p.families(&o), "probe_process_count"), Some(1.0));

    child.kill().unwrap();
    child.wait().unwrap();
    let o = run(&mut p);
    assert_eq!(reason(&o), "missing");
    let mut child2 = spawn();
    wait_until_found(&mut p);
    child2.kill().unwrap();
    child2.wait().unwrap();
    let mut child3 = spawn();
    wait_until_found(&mut p);
    let o = run(&mut p);
    assert_eq!(
        value(&p.families(&o), "probe_process_restarts_total"),
        Some(2.0),
        "child → child2 → child3"
    );
    child3.kill().unwrap();
    child3.wait().unwrap();
}

fn wait_until_found(p: &mut Prober) {
    tocsin_e2e::wait_for("the process to appear", Duration::from_secs(5), || {
        run(p).success().then_some(())
    });
}

#[test]
fn process_death_is_seen_through_the_pidfd() {
    let tag = format!("tocsin-pidfd-test-{}", std::process::id());
    let mut child = std::process::Command::new("bash")
        .args(["-c", "exec -a \"$0\" sleep 60", &tag])
        .spawn()
        .unwrap();
    let mut p = prober(&format!(
        "  - name: p\n    kind: process\n    process: {{ cmdline: \"^{tag}\" }}\n"
    ));
    wait_until_found(&mut p);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let killed = std::time::Instant::now();
    child.kill().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), p.changed())
            .await
            .expect("pidfd wakes on exit")
    });
    assert!(killed.elapsed() < Duration::from_millis(500));
    child.wait().unwrap();
    assert_eq!(reason(&rt.block_on(p.run())), "missing");
}

#[test]
fn redis_ping_auth_and_down() {
    let Some(r) = servers::redis(None) else {
        return;
    };
    let mut p = prober(&format!(
        "  - name: r\n    kind: redis\n    target: {}\n",
        r.addr()
    ));
    let o = run(&mut p);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    assert_eq!(value(&p.families(&o), "probe_redis_replica"), Some(0.0));

    let Some(secured) = servers::redis(Some("pw")) else {
        return;
    };
    let mut noauth = prober(&format!(
        "  - name: r\n    kind: redis\n    target: {}\n",
        secured.addr()
    ));
    assert_eq!(reason(&run(&mut noauth)), "auth");
    let mut wrong = prober(&format!(
        "  - name: r\n    kind: redis\n    target: {}\n    redis: {{ password: nope }}\n",
        secured.addr()
    ));
    assert_eq!(reason(&run(&mut wrong)), "auth");
    let mut right = prober(&format!(
        "  - name: r\n    kind: redis\n    target: {}\n    redis: {{ password: pw }}\n",
        secured.addr()
    ));
    assert_eq!(reason(&run(&mut right)), "ok");

    let addr = r.addr();
    drop(r);
    let mut down = prober(&format!(
        "  - name: r\n    kind: redis\n    target: {addr}\n"
    ));
    assert_eq!(reason(&run(&mut down)), "refused");
}

#[test]
fn postgres_select_auth_and_down() {
    let Some(pg) = servers::postgres() else {
        return;
    };
    let mut p = prober(&format!(
        "  - name: db\n    kind: postgres\n    target: {}\n",
        pg.addr()
    ));
    let o = run(&mut p);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    assert_eq!(
        value(&p.families(&o), "probe_postgres_in_recovery"),
        Some(0.0)
    );

    let mut nouser = prober(&format!(
        "  - name: db\n    kind: postgres\n    target: {}\n    postgres: {{ user: nobody_here }}\n",
        pg.addr()
    ));
    assert_eq!(reason(&run(&mut nouser)), "auth");

    let addr = pg.addr();
    drop(pg);
    assert_eq!(
        reason(&run(&mut prober(&format!(
            "  - name: db\n    kind: postgres\n    target: {addr}\n"
        )))),
        "refused"
    );
}

#[test]
fn probe_config_problems_are_reported_together() {
    let raw: RawAgentConfig = tocsin_config::parse_yaml(
        "probes:\n  - { name: a, kind: http, target: \"ftp://x\" }\n  - { name: a, kind: gopher }\n  - { name: b, kind: tcp, target: nohost, http: {} }\n  - { name: c, kind: process }\n",
    )
    .unwrap();
    let e = raw.validate().unwrap_err().to_string();
    for want in [
        "probes[0] (\"a\"): target \"ftp://x\" must be an http:// or https:// URL",
        "probes[1] (\"a\"): duplicate probe name",
        "probes[1] (\"a\"): unknown kind \"gopher\"",
        "probes[2] (\"b\"): section `http` does not apply to kind \"tcp\"",
        "probes[2] (\"b\"): target \"nohost\" must be HOST:PORT",
        "probes[3] (\"c\"): set exactly one of process.name or process.cmdline",
    ] {
        assert!(e.contains(want), "missing {want:?} in\n{e}");
    }
}

#[test]
fn icmp_echo_to_loopback() {
    let mut p = prober("  - name: ping\n    kind: icmp\n    target: 127.0.0.1\n    timeout: 2s\n    icmp: { count: 3, spacing: 50ms }\n");
    let o = run(&mut p);
    if let Err(f) = &o.result {
        // Neither a ping socket nor a raw socket: only acceptable outside CI, and said clearly.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{}",
            f.message
        );
        assert!(f.message.contains("ping_group_range"), "{}", f.message);
        eprintln!("SKIPPED: {}", f.message);
        return;
    }
    let fams = p.families(&o);
    assert_eq!(value(&fams, "probe_icmp_packets_sent"), Some(3.0));
    assert_eq!(value(&fams, "probe_icmp_packet_loss_ratio"), Some(0.0));
    let (min, avg, max) = (
        value(&fams, "probe_icmp_rtt_min_seconds").unwrap(),
        value(&fams, "probe_icmp_rtt_avg_seconds").unwrap(),
        value(&fams, "probe_icmp_rtt_max_seconds").unwrap(),
    );
    assert!(
        min > 0.0 && min <= avg && avg <= max && max < 0.5,
        "{min} {avg} {max}"
    );
    assert!(value(&fams, "probe_icmp_jitter_seconds").is_some());

    let mut nowhere = prober("  - name: ping\n    kind: icmp\n    target: no-such-host.invalid\n");
    assert_eq!(reason(&run(&mut nowhere)), "dns");
}

#[test]
fn dns_answers_nxdomain_mismatch_and_refused() {
    let Some(d) = servers::dnsmasq() else { return };
    let dns = |name: &str, extra: &str| {
        prober(&format!("  - name: d\n    kind: dns\n    target: {name}\n    timeout: 1s\n    dns: {{ server: \"{}\"{extra} }}\n", d.addr()))
    };
    let mut ok = dns("svc.tocsin.test", ", expect: [10.9.8.7]");
    let o = run(&mut ok);
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    let fams = ok.families(&o);
    assert_eq!(value(&fams, "probe_dns_answer_rrs"), Some(1.0));
    assert!(value(&fams, "probe_dns_lookup_time_seconds").unwrap() < 1.0);

    assert_eq!(
        reason(&run(&mut dns("svc.tocsin.test", ", expect: [10.0.0.1]"))),
        "expect"
    );
    let o = run(&mut dns("missing.tocsin.test", ""));
    assert_eq!(reason(&o), "dns");
    assert!(o.result.unwrap_err().message.contains("NXDOMAIN"));

    let addr = d.addr();
    drop(d);
    let mut gone = prober(&format!("  - name: d\n    kind: dns\n    target: svc.tocsin.test\n    timeout: 1s\n    dns: {{ server: \"{addr}\" }}\n"));
    assert_eq!(reason(&run(&mut gone)), "refused");
}

#[test]
fn mariadb_handshake_auth_ping_and_down() {
    let Some(db) = servers::mariadb() else { return };
    let my = |extra: &str| {
        prober(&format!(
            "  - name: m\n    kind: mysql\n    target: {}\n    timeout: 2s\n{extra}",
            db.addr()
        ))
    };
    let o = run(&mut my(""));
    assert_eq!(reason(&o), "ok", "root without password: {:?}", o.result);
    let o = run(&mut my("    mysql: { user: probe, password: pw }\n"));
    assert_eq!(reason(&o), "ok", "{:?}", o.result);
    let o = run(&mut my("    mysql: { user: probe, password: wrong }\n"));
    assert_eq!(reason(&o), "auth");
    assert!(o.result.unwrap_err().message.starts_with("error 1045"));

    let addr = db.addr();
    drop(db);
    let mut down = prober(&format!(
        "  - name: m\n    kind: mysql\n    target: {addr}\n"
    ));
    assert_eq!(reason(&run(&mut down)), "refused");
}

/// A real MariaDB primary and replica: the probe of the replica reports it replicating, its
/// lag, and its threads stopped; the primary reports no replication.
#[test]
fn mariadb_replication_state_and_lag() {
    let Some(primary) = servers::mariadb_with(&["--log-bin=primary-bin", "--server-id=1"]) else {
        return;
    };
    let Some(replica) = servers::mariadb_with(&["--skip-log-bin", "--server-id=2"]) else {
        return;
    };
    // Users first, then replication from the primary's current position: what came before
    // (each server's own `probe` user) is not replayed.
    servers::mariadb_sql(
        primary.port,
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'rp'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; \
         GRANT REPLICA MONITOR ON *.* TO 'probe'@'%'",
    );
    let status = servers::mariadb_sql(primary.port, "SHOW MASTER STATUS");
    let row: Vec<&str> = status
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no binlog position: {status}"))
        .split('\t')
        .collect();
    servers::mariadb_sql(
        replica.port,
        &format!(
            "GRANT REPLICA MONITOR ON *.* TO 'probe'@'%'; \
             CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
             MASTER_PASSWORD='rp', MASTER_LOG_FILE='{}', MASTER_LOG_POS={}, MASTER_USE_GTID=no; \
             START SLAVE",
            primary.port, row[0], row[1]
        ),
    );
    // A write on the primary reaches the replica.
    servers::mariadb_sql(
        primary.port,
        "CREATE DATABASE shop; CREATE TABLE shop.t (x INT); INSERT INTO shop.t VALUES (1)",
    );
    let my = |db: &servers::Server| {
        prober(&format!(
            "  - name: m\n    kind: mysql\n    target: {}\n    timeout: 2s\n    mysql: {{ user: probe, password: pw }}\n",
            db.addr()
        ))
    };
    let mut rp = my(&replica);
    let running = tocsin_e2e::wait_for("the replica to run", Duration::from_secs(30), || {
        let o = run(&mut rp);
        let f = rp.families(&o);
        (value(&f, "probe_mysql_replica_running") == Some(1.0)).then_some(f)
    });
    assert_eq!(value(&running, "probe_mysql_replica"), Some(1.0));
    tocsin_e2e::wait_for("the write replicated", Duration::from_secs(30), || {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-uroot", "-N", "-B"])
            .arg(format!("-P{}", replica.port))
            .args(["-e", "SELECT count(*) FROM shop.t"])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
    });
    assert_eq!(
        value(&running, "probe_mysql_replication_lag_seconds"),
        Some(0.0)
    );
    // The primary replicates from nobody.
    let mut pp = my(&primary);
    let o = run(&mut pp);
    assert_eq!(reason(&o), "ok");
    let f = pp.families(&o);
    assert_eq!(value(&f, "probe_mysql_replica"), Some(0.0));
    assert_eq!(value(&f, "probe_mysql_replica_running"), None);
    // Its SQL thread stopped: not running, and no lag to tell (NULL).
    servers::mariadb_sql(replica.port, "STOP SLAVE SQL_THREAD");
    let o = run(&mut rp);
    assert_eq!(reason(&o), "ok", "the server answers: the probe succeeds");
    let f = rp.families(&o);
    assert_eq!(value(&f, "probe_mysql_replica_running"), Some(0.0));
    assert_eq!(value(&f, "probe_mysql_replication_lag_seconds"), None);
}

#[test]
fn systemd_unit_state_or_a_clear_error_without_systemd() {
    let mut p = prober("  - name: journald\n    kind: systemd\n    target: systemd-journald.service\n    timeout: 5s\n");
    let o = run(&mut p);
    if Path::new("/run/systemd/system").exists() {
        assert_eq!(reason(&o), "ok", "{:?}", o.result);
        assert_eq!(
            value(&p.families(&o), "probe_systemd_unit_active"),
            Some(1.0)
        );
        let mut missing =
            prober("  - name: x\n    kind: systemd\n    target: tocsin-no-such-unit.service\n");
        assert_eq!(reason(&run(&mut missing)), "missing");
    } else {
        // No systemd as PID 1 here (a container): the probe fails with the reason, not a panic.
        let f = o.result.unwrap_err();
        assert_eq!(f.reason.as_str(), "error");
        assert!(f.message.contains("systemctl"), "{}", f.message);
    }
}

#[test]
fn icmp_to_a_silent_address_times_out_with_full_loss() {
    // A network namespace of our own with a veth whose peer is down: 10.9.9.2 never answers.
    let Some(netns) = tocsin_e2e::Netns::create("tocsin-icmp") else {
        return;
    };
    let ns = netns.0.clone();
    assert!(netns.sh("ip link add v0 type veth peer name v1 && ip addr add 10.9.9.1/24 dev v0 && ip link set v0 up"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.yaml");
    std::fs::write(&cfg, "probes:\n  - { name: gw, kind: icmp, target: 10.9.9.2, timeout: 1s, icmp: { count: 3, spacing: 50ms } }\n").unwrap();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_probe_once"),
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timeout"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("probe_icmp_packet_loss_ratio 1"), "{text}");
    assert!(text.contains("probe_icmp_packets_sent 3"), "{text}");
}

/// Alert rules and dashboards written for blackbox_exporter carry over to the agent's probes:
/// the same target probed by both, side by side, gives the same values under the same names —
/// success, status code, redirects followed, content length, TLS and its certificate's expiry,
/// IP protocol — for a success through a redirect, a server error, HTTPS, and TCP up and down.
#[test]
fn probes_read_as_blackbox_exporter_reads_the_same_targets() {
    let Some(bb) = servers::blackbox_exporter(
        "  http_2xx: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4 } }
  http_no_follow: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4, follow_redirects: false } }
  http_insecure: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4, tls_config: { insecure_skip_verify: true } } }
  tcp: { prober: tcp, timeout: 2s, tcp: { preferred_ip_protocol: ip4 } }
",
    ) else {
        return;
    };
    let blackbox = |module: &str, target: &str| -> Vec<(String, f64)> {
        let text = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}/probe", bb.port))
            .query(&[("module", module), ("target", target)])
            .send()
            .unwrap()
            .text()
            .unwrap();
        tocsin_e2e::exposition_lines(&text)
            .into_iter()
            .filter(|(_, labels, _)| labels.is_empty())
            .map(|(n, _, v)| (n, v))
            .collect()
    };
    let compare = |what: &str, module: &str, target: &str, mut p: Prober, names: &[&str]| {
        let o = run(&mut p);
        let ours = p.families(&o);
        let theirs = blackbox(module, target);
        for n in names {
            let t = theirs.iter().find(|(name, _)| name == n).map(|x| x.1);
            assert!(
                t.is_some(),
                "{what}: blackbox_exporter has no {n}: {theirs:?}"
            );
            assert_eq!(value(&ours, n), t, "{what}: {n}");
        }
    };
    let http_names = [
        "probe_success",
        "probe_http_status_code",
        "probe_http_redirects",
        "probe_http_content_length",
        "probe_http_ssl",
        "probe_ip_protocol",
    ];
    let srv = HttpServer::start(None);
    let old = format!("http://127.0.0.1:{}/old", srv.port);
    // blackbox_exporter follows redirects unless told not to; the agent judges a 3xx as it is
    // unless told to follow (docs/PROBES.md).
    let follow = http(&old, "    http: { follow_redirects: true }\n");
    compare("through a redirect", "http_2xx", &old, follow, &http_names);
    // (Not followed, blackbox_exporter still counts the redirect it was offered; the agent
    // counts redirects followed: 0.)
    let no_follow = http(&old, "");
    let names: Vec<&str> = http_names
        .iter()
        .copied()
        .filter(|&n| n != "probe_http_redirects")
        .collect();
    compare(
        "a redirect not followed",
        "http_no_follow",
        &old,
        no_follow,
        &names,
    );
    srv.set(Mode::Fail);
    let url = srv.url("http");
    compare(
        "a server error",
        "http_2xx",
        &url,
        http(&url, ""),
        &http_names,
    );

    let not_after = 1_900_000_000;
    let cert = servers::self_signed(not_after);
    let tls = HttpServer::start(Some(&cert));
    let url = tls.url("https");
    let insecure = http(&url, "    http: { tls: { insecure_skip_verify: true } }\n");
    let mut names = http_names.to_vec();
    names.push("probe_ssl_earliest_cert_expiry");
    compare("HTTPS", "http_insecure", &url, insecure, &names);

    let tcp = |port: u16| {
        prober(&format!(
            "  - name: t\n    kind: tcp\n    target: 127.0.0.1:{port}\n    timeout: 1s\n"
        ))
    };
    let up = format!("127.0.0.1:{}", srv.port);
    compare(
        "TCP up",
        "tcp",
        &up,
        tcp(srv.port),
        &["probe_success", "probe_ip_protocol"],
    );
    let port = free_port();
    let down = format!("127.0.0.1:{port}");
    compare(
        "TCP down",
        "tcp",
        &down,
        tcp(port),
        &["probe_success", "probe_ip_protocol"],
    );
}
