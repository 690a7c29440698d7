//! tocsin in the Prometheus ecosystem: remote-write forwarding into a real Prometheus.

use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::{serial, wait_for, write_textfile, Stack};

fn query(prom: u16, q: &str) -> Value {
    reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn metric(url: &str, series: &str) -> f64 {
    let text = reqwest::blocking::get(url).unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn everything_ingested_is_forwarded_to_a_real_prometheus() {
    let _g = serial();
    let Some(prom) = tocsin_e2e::servers::prometheus("  []\n") else {
        return;
    };
    let s = Stack::new(&format!(
        "remote_write:\n  - {{ name: prom, url: \"http://127.0.0.1:{}/api/v1/write\" }}\n",
        prom.port
    ));
    for d in ["rules", "tf"] {
        std::fs::create_dir(s.dir.path().join(d)).unwrap();
    }
    write_textfile(&s.dir.path().join("tf"), "x.prom", "e2e_forwarded 42\n");
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
    let v = wait_for("the sample in Prometheus", Duration::from_secs(30), || {
        let r = query(prom.port, "e2e_forwarded{host=\"fwd-host\"}");
        r["data"]["result"]
            .as_array()
            .and_then(|l| l.first().cloned())
    });
    assert_eq!(v["value"][1], "42");
    // Host series and the collector's derived liveness series too.
    for q in [
        "node_load1{host=\"fwd-host\"}",
        "node_memory_MemTotal_bytes{host=\"fwd-host\"}",
        "tocsin_host_up{host=\"fwd-host\"}",
    ] {
        wait_for(q, Duration::from_secs(15), || {
            let r = query(prom.port, q);
            r["data"]["result"]
                .as_array()
                .filter(|l| !l.is_empty())
                .map(|_| ())
        });
    }
    let m = c.url("/metrics");
    assert!(
        metric(
            &m,
            "tocsin_forward_samples_total{result=\"sent\",target=\"prom\"}"
        ) > 0.0
    );
    assert_eq!(
        metric(
            &m,
            "tocsin_forward_samples_total{result=\"dropped\",target=\"prom\"}"
        ),
        0.0
    );
}
