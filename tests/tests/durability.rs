//! Kills with SIGKILL, mid-flight: the agent while it replays a backlog, the collector while
//! several agents write to it. Nothing written to a buffer or acknowledged is lost, nothing is
//! stored twice, and a firing alert still resolves exactly once. And a collector whose disk
//! is full: it refuses, runs on, and stores everything once space returns; a notification it
//! delivered but cannot record is not sent again.

use std::time::{Duration, Instant};

use tocsin_e2e::{metric, serial, set_file_size_limit, wait_for, write_textfile, Proc, Stack};

/// Stored samples of the one series `name{host}` (the collector must be stopped).
fn stored(s: &Stack, name: &str, host: &str) -> Vec<tocsin_model::Sample> {
    let mut series = s.stored(|l| l.metric_name() == Some(name) && l.get("host") == Some(host));
    assert_eq!(series.len(), 1, "{name}{{host={host}}}");
    series.remove(0)
}

/// Gaps between consecutive samples, in ms.
fn gaps(samples: &[tocsin_model::Sample]) -> Vec<i64> {
    samples
        .windows(2)
        .map(|w| w[1].timestamp_ms - w[0].timestamp_ms)
        .collect()
}

#[test]
fn agent_killed_mid_backlog_loses_nothing_and_stores_nothing_twice() {
    let _g = serial();
    let s = Stack::with_textfile("", "backlog_probe 1\n");
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let addr = c.addr.clone();
    // A slow replay, so the agent can be killed while the backlog is still going out.
    let cfg = s.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: backlog-host\ninterval: 1s\ntextfile_dir: {}\nstate_dir: {}\nbuffer: {{ replay_rate: 300, fsync_interval: 0s }}\n",
            s.p("tf"),
            s.p("agent-state")
        ),
    )
    .unwrap();
    let url = format!("http://{addr}/api/v1/write");
    let agent = || {
        Proc::start(
            "tocsin-agent",
            &[
                "--config",
                &cfg,
                "--collector",
                &url,
                "--listen",
                "127.0.0.1:0",
            ],
            std::path::Path::new(&s.p("agent.log")),
        )
    };
    let a = agent();
    let am = a.url("/metrics");
    wait_for("first samples", Duration::from_secs(15), || {
        (metric(&am, "tocsin_agent_samples_sent_total") > 0.0).then_some(())
    });
    c.terminate();
    wait_for("a backlog", Duration::from_secs(60), || {
        (metric(&am, "tocsin_agent_buffer_records") >= 25.0).then_some(())
    });
    let c = s.collector(&addr, &s.p("rules"));
    let cm = c.url("/metrics");
    let before = metric(&am, "tocsin_agent_samples_sent_total");
    wait_for("the replay under way", Duration::from_secs(30), || {
        (metric(&am, "tocsin_agent_samples_sent_total") > before).then_some(())
    });
    let left = metric(&am, "tocsin_agent_buffer_records");
    assert!(left > 5.0, "still a backlog when killed: {left}");
    let mut a = a;
    a.kill9();
    let killed = Instant::now();
    let a = agent();
    let restarted = killed.elapsed();
    let am = a.url("/metrics");
    wait_for("the backlog replayed", Duration::from_secs(90), || {
        (metric(&am, "tocsin_agent_buffer_records") == 0.0
            && metric(&am, "tocsin_agent_samples_sent_total") > 0.0)
            .then_some(())
    });
    // Fresh samples went ahead of the backlog, for evaluation only.
    assert!(metric(&am, "tocsin_agent_live_samples_sent_total") > 0.0);
    assert!(metric(&cm, "tocsin_ingest_samples_total{result=\"live\"}") > 0.0);
    let mut a = a;
    a.terminate();
    let mut c = c;
    c.terminate();
    let samples = stored(&s, "backlog_probe", "backlog-host");
    let g = gaps(&samples);
    assert!(g.iter().all(|g| *g > 0), "strictly increasing");
    // One gap may span the time the agent was dead; every other is one interval.
    let long: Vec<i64> = g.iter().copied().filter(|g| *g >= 1_600).collect();
    assert!(
        long.len() <= 1
            && long
                .iter()
                .all(|l| *l < restarted.as_millis() as i64 + 2_600),
        "one sample a second except while the agent was dead ({restarted:?}): long gaps {long:?}"
    );
    assert!(samples.len() >= 40, "{} samples", samples.len());
}

#[test]
fn collector_killed_under_load_keeps_every_acknowledged_sample_and_resolves_once() {
    let _g = serial();
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(
        s.dir.path().join("rules/kill.yaml"),
        "rules:\n  - { name: KillTest, expr: kill_alert, levels: { critical: \"> 0.5\" } }\n",
    )
    .unwrap();
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let addr = c.addr.clone();
    // Four agents, each with 2,000 series of its own on top of the host's, every second.
    let hosts = ["k-a", "k-b", "k-c", "k-d"];
    let mut agents = Vec::new();
    for h in hosts {
        let tf = s.dir.path().join(format!("tf-{h}"));
        std::fs::create_dir(&tf).unwrap();
        let mut text = String::from("kill_alert 0\n");
        for i in 0..2000 {
            text.push_str(&format!("kill_load{{n=\"{i}\"}} {i}\n"));
        }
        write_textfile(&tf, "x.prom", &text);
        agents.push(s.agent(
            &c,
            &[
                "--interval",
                "1s",
                "--host",
                h,
                "--textfile-dir",
                tf.to_str().unwrap(),
            ],
        ));
    }
    let tf_a = s.dir.path().join("tf-k-a");
    wait_for("agents shipping", Duration::from_secs(20), || {
        agents
            .iter()
            .all(|a| metric(&a.url("/metrics"), "tocsin_agent_samples_sent_total") > 2000.0)
            .then_some(())
    });
    let mut text = std::fs::read_to_string(tf_a.join("x.prom")).unwrap();
    text = text.replacen("kill_alert 0", "kill_alert 1", 1);
    write_textfile(&tf_a, "x.prom", &text);
    s.wait_event("KillTest", 1, Duration::from_secs(20));
    // Let ingest run a little, then kill the collector in the middle of it.
    std::thread::sleep(Duration::from_millis(1500));
    let acked_before: Vec<f64> = agents
        .iter()
        .map(|a| metric(&a.url("/metrics"), "tocsin_agent_samples_sent_total"))
        .collect();
    c.kill9();
    // The alert's condition clears while the collector is dead.
    write_textfile(
        &tf_a,
        "x.prom",
        &text.replacen("kill_alert 1", "kill_alert 0", 1),
    );
    std::thread::sleep(Duration::from_secs(5));
    let c = s.collector(&addr, &s.p("rules"));
    s.wait_event("KillTest", 2, Duration::from_secs(30));
    wait_for("backlogs replayed", Duration::from_secs(60), || {
        agents
            .iter()
            .all(|a| metric(&a.url("/metrics"), "tocsin_agent_buffer_records") == 0.0)
            .then_some(())
    });
    // Anything more would arrive within a second or two.
    std::thread::sleep(Duration::from_secs(3));
    let events: Vec<(String, String)> = s
        .events("KillTest")
        .into_iter()
        .map(|(_, e, l)| (e, l))
        .collect();
    assert_eq!(
        events,
        [
            ("firing".to_string(), "critical".to_string()),
            ("resolved".to_string(), "critical".to_string())
        ],
        "fired once, resolved once"
    );
    for mut a in agents {
        a.terminate();
    }
    let mut c = c;
    c.terminate();
    for (h, acked) in hosts.iter().zip(acked_before) {
        for name in ["kill_alert", "kill_load"] {
            let mut series = s.stored(|l| {
                l.metric_name() == Some(name)
                    && l.get("host") == Some(h)
                    && (name == "kill_alert" || l.get("n") == Some("1234"))
            });
            assert_eq!(series.len(), 1);
            let g = gaps(&series.remove(0));
            assert!(
                g.iter().all(|g| *g > 0 && *g < 1_600),
                "{name}{{host={h}}}: every sample once, none missing: largest gap {:?}",
                g.iter().max()
            );
        }
        // Acknowledged before the kill: each sample of each of the ~2,100 series.
        let all: usize = s
            .stored(|l| l.get("host") == Some(h))
            .iter()
            .map(Vec::len)
            .sum();
        assert!(
            all as f64 >= acked,
            "host {h}: {all} stored, {acked} acknowledged before the kill"
        );
    }
}

/// An agent of `host` on `c`, shipping the stack's textfile every second.
fn agent_every_second(s: &Stack, c: &Proc, host: &str) -> Proc {
    s.agent(
        c,
        &[
            "--interval",
            "1s",
            "--host",
            host,
            "--textfile-dir",
            &s.p("tf"),
        ],
    )
}

/// The stored series `name{host}` (agent and collector stopped) has at least `min` samples,
/// one a second with no gap.
fn assert_every_second(s: &Stack, name: &str, host: &str, min: usize, during: &str) {
    let samples = stored(s, name, host);
    let g = gaps(&samples);
    assert!(g.iter().all(|g| *g > 0), "strictly increasing");
    let long: Vec<i64> = g.iter().copied().filter(|g| *g >= 1_600).collect();
    assert!(
        long.is_empty(),
        "one sample a second{during}: long gaps {long:?}"
    );
    assert!(samples.len() >= min, "{} samples", samples.len());
}

#[test]
fn a_full_disk_refuses_samples_without_losing_any_or_paging_for_the_host() {
    let _g = serial();
    let s = Stack::with_textfile("", "full_probe 1\n");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/liveness.yaml"),
        s.dir.path().join("rules/liveness.yaml"),
    )
    .unwrap();
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let cm = c.url("/metrics");
    let a = agent_every_second(&s, &c, "full-host");
    let am = a.url("/metrics");
    let hosts = || -> serde_json::Value {
        reqwest::blocking::get(c.url("/api/v1/hosts"))
            .unwrap()
            .json()
            .unwrap()
    };
    wait_for("the host known and up", Duration::from_secs(15), || {
        (hosts()["data"]["hosts"][0]["up"] == true).then_some(())
    });
    // From now on every write past the first byte of a file fails, as on a full disk; the
    // collector's database and its log included.
    set_file_size_limit(&c, "1");
    let full = Instant::now();
    wait_for("writes refused", Duration::from_secs(30), || {
        (metric(&cm, "tocsin_storage_errors_total") > 0.0).then_some(())
    });
    // Longer than the three intervals after which a silent host is down.
    let mut judged_down = false;
    while full.elapsed() < Duration::from_secs(8) {
        judged_down |= hosts()["data"]["hosts"][0]["up"] != true;
        std::thread::sleep(Duration::from_millis(200));
    }
    let backlog = metric(&am, "tocsin_agent_buffer_records");
    assert!(
        backlog >= 5.0,
        "the agent keeps what was refused: {backlog}"
    );
    assert!(
        c.child.try_wait().unwrap().is_none(),
        "the collector runs on"
    );
    set_file_size_limit(&c, "unlimited");
    let freed = full.elapsed();
    wait_for("the backlog delivered", Duration::from_secs(60), || {
        (metric(&am, "tocsin_agent_buffer_records") == 0.0).then_some(())
    });
    let sent = metric(&am, "tocsin_agent_samples_sent_total");
    wait_for("shipping as usual", Duration::from_secs(15), || {
        (metric(&am, "tocsin_agent_samples_sent_total") > sent).then_some(())
    });
    assert!(
        !judged_down,
        "a host whose samples could not be stored is not down"
    );
    assert!(
        s.events("HostDown").is_empty(),
        "{:?}",
        s.events("HostDown")
    );
    let mut a = a;
    a.terminate();
    c.terminate();
    let during = format!(", the {freed:?} of full disk included");
    assert_every_second(&s, "full_probe", "full-host", 10, &during);
}

#[test]
fn an_agent_whose_disk_is_full_ships_every_sample_from_memory() {
    let _g = serial();
    let s = Stack::with_textfile("", "agent_full_probe 1\n");
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let a = agent_every_second(&s, &c, "agent-full");
    let am = a.url("/metrics");
    wait_for("first samples sent", Duration::from_secs(15), || {
        (metric(&am, "tocsin_agent_samples_sent_total") > 0.0).then_some(())
    });
    // The agent's buffer (and its log) can no longer be written.
    set_file_size_limit(&a, "1");
    wait_for("buffer writes failing", Duration::from_secs(15), || {
        (metric(&am, "tocsin_agent_buffer_write_errors_total") >= 6.0).then_some(())
    });
    let sent = metric(&am, "tocsin_agent_samples_sent_total");
    wait_for("samples still shipped", Duration::from_secs(15), || {
        (metric(&am, "tocsin_agent_samples_sent_total") > sent).then_some(())
    });
    set_file_size_limit(&a, "unlimited");
    let errors = metric(&am, "tocsin_agent_buffer_write_errors_total");
    let sent = metric(&am, "tocsin_agent_samples_sent_total");
    wait_for(
        "buffered and shipped again",
        Duration::from_secs(15),
        || {
            (metric(&am, "tocsin_agent_samples_sent_total") >= sent + 3.0
                && metric(&am, "tocsin_agent_buffer_memory_samples") == 0.0)
                .then_some(())
        },
    );
    assert!(
        metric(&am, "tocsin_agent_buffer_write_errors_total") <= errors + 1.0,
        "the buffer is written again"
    );
    assert_eq!(
        metric(
            &am,
            "tocsin_agent_buffer_dropped_samples_total{reason=\"write_error\"}"
        ),
        0.0
    );
    let mut a = a;
    a.terminate();
    c.terminate();
    assert_every_second(&s, "agent_full_probe", "agent-full", 6, "");
}

#[test]
fn a_delivered_notification_the_outbox_cannot_record_is_not_sent_again() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let _g = serial();
    // A receiver that holds its first answer until the test opens the gate.
    let (calls, open) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (c2, o2) = (Arc::clone(&calls), Arc::clone(&open));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (calls, open) = (Arc::clone(&c2), Arc::clone(&o2));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                while !open.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                "ok"
            }
        }),
    );
    let (addr, _rt) = tocsin_e2e::serve(app);
    let s = Stack::with_textfile("", "gate_value 90\n");
    std::fs::write(
        s.p("collector.yaml"),
        format!("receivers:\n  - name: gated\n    webhook: {{ url: \"http://{addr}/hook\", timeout: 30s }}\n"),
    )
    .unwrap();
    std::fs::write(
        s.p("rules/gate.yaml"),
        "rules:\n  - name: GateHigh\n    expr: gate_value\n    levels: { critical: \"> 50\" }\n",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let _a = agent_every_second(&s, &c, "gate-host");
    wait_for("the notification sent", Duration::from_secs(20), || {
        (calls.load(Ordering::SeqCst) == 1).then_some(())
    });
    // While the receiver is answering, another process takes the database's write lock: the
    // delivery cannot be recorded.
    let db = rusqlite::Connection::open(s.dir.path().join("data/tocsin.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    open.store(true, Ordering::SeqCst);
    let cm = c.url("/metrics");
    wait_for("the delivery counted", Duration::from_secs(10), || {
        (metric(
            &cm,
            "tocsin_notifications_total{receiver=\"gated\",result=\"delivered\"}",
        ) >= 1.0)
            .then_some(())
    });
    // Several tries to record it later (each waits out the database's 5 s busy timeout).
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(14) {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "sent again while unrecorded"
        );
    }
    assert!(c.log().contains("cannot record a delivery"), "{}", c.log());
    db.execute_batch("ROLLBACK").unwrap();
    wait_for("the delivery recorded", Duration::from_secs(20), || {
        (metric(&cm, "tocsin_notifications_pending{receiver=\"gated\"}") == 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "sent once");
}

#[test]
fn a_collector_whose_database_refuses_writes_pages_about_itself_and_says_when_it_is_back() {
    let _g = serial();
    let s = Stack::with_textfile("storage_alert_after: 2s\n", "self_probe 1\n");
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let cm = c.url("/metrics");
    let _a = agent_every_second(&s, &c, "self-host");
    wait_for("samples stored", Duration::from_secs(15), || {
        (metric(&cm, "tocsin_ingest_samples_total{result=\"accepted\"}") > 0.0).then_some(())
    });
    set_file_size_limit(&c, "1");
    // The outbox is in the database that fails: the page goes out from memory.
    let (_, page) = s.hook.wait_nth(1, Duration::from_secs(30));
    assert_eq!(
        page["alerts"][0]["labels"]["alertname"],
        "TocsinStorageFailing"
    );
    assert_eq!(page["status"], "firing");
    assert_eq!(page["alerts"][0]["labels"]["level"], "critical");
    let text = page["alerts"][0]["annotations"]["description"]
        .as_str()
        .unwrap();
    assert!(text.contains("Samples are refused"), "{text}");
    assert!(metric(&cm, "tocsin_storage_errors_total") > 0.0);
    set_file_size_limit(&c, "unlimited");
    let (_, back) = s.hook.wait_nth(2, Duration::from_secs(40));
    assert_eq!(
        back["alerts"][0]["labels"]["alertname"],
        "TocsinStorageFailing"
    );
    assert_eq!(back["status"], "resolved");
    assert_eq!(
        back["alerts"][0]["fingerprint"], page["alerts"][0]["fingerprint"],
        "the same alert"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.hook.all().len(), 2, "paged once, resolved once");
}

/// The dead man's switch: the collector calls its heartbeat URL while it works; once its
/// database refuses writes the calls stop (counted as skipped), so the service behind the URL
/// pages; they resume when writes work again. The URL's token is never logged.
#[test]
fn the_heartbeat_goes_out_while_the_collector_works_and_stops_when_it_does_not() {
    let _g = serial();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = std::sync::Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/ping/check-token-123",
        axum::routing::get(move || {
            h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "OK" }
        }),
    );
    let (addr, _rt) = tocsin_e2e::serve(app);
    let s = Stack::new(&format!(
        "heartbeat: {{ url: \"http://{addr}/ping/check-token-123\", every: 1s }}\n"
    ));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let cm = c.url("/metrics");
    // An agent, so that each commit grows the database's files (and a size limit fails it).
    std::fs::create_dir_all(s.p("tf")).unwrap();
    let _a = agent_every_second(&s, &c, "beat-host");
    let count = || hits.load(std::sync::atomic::Ordering::SeqCst);
    wait_for("two heartbeats", Duration::from_secs(15), || {
        (count() >= 2).then_some(())
    });
    assert_eq!(
        metric(&cm, "tocsin_heartbeat_total{result=\"sent\"}") as usize,
        count()
    );
    // Writes refused (most of them): no calls while any failed within 15 s.
    set_file_size_limit(&c, "1");
    let skipped = "tocsin_heartbeat_total{result=\"skipped\"}";
    wait_for("a heartbeat held back", Duration::from_secs(40), || {
        (metric(&cm, skipped) >= 1.0).then_some(())
    });
    let during = count();
    let held = metric(&cm, skipped);
    wait_for("two more held back", Duration::from_secs(10), || {
        (metric(&cm, skipped) >= held + 2.0).then_some(())
    });
    assert_eq!(count(), during, "no call while the collector cannot write");
    set_file_size_limit(&c, "unlimited");
    wait_for("calls again", Duration::from_secs(30), || {
        (count() > during).then_some(())
    });
    assert!(
        !c.log().contains("check-token-123"),
        "the URL's token is not logged"
    );
}
