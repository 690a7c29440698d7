//! The remote-write endpoint against bad and unauthorised requests, on the real binary.

use tocsin_e2e::{serial, Proc, Stack};
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

/// A collector with no rules and `extra` configuration; the stack stays alive with it.
fn collector(extra: &str) -> (Stack, Proc) {
    Stack::with_collector(extra)
}

fn body() -> Vec<u8> {
    let s = vec![SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "h")]),
        samples: vec![Sample::new(tocsin_model::now_ms(), 1.0)],
    }];
    tocsin_wire::encode(&tocsin_wire::to_request(&s))
}

fn at(ts: i64) -> Vec<u8> {
    let s = vec![SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "h")]),
        samples: vec![Sample::new(ts, 1.0)],
    }];
    tocsin_wire::encode(&tocsin_wire::to_request(&s))
}

fn post(c: &Proc, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut r = reqwest::blocking::Client::new()
        .post(c.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .body(body);
    if !headers.iter().any(|(k, _)| *k == "Content-Type") {
        r = r.header("Content-Type", tocsin_wire::CONTENT_TYPE);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().unwrap();
    let accepted = r
        .headers()
        .get(tocsin_wire::ACCEPTED_HEADER)
        .map(|v| format!(" [stored anyway: {}]", v.to_str().unwrap()))
        .unwrap_or_default();
    (r.status().as_u16(), r.text().unwrap() + &accepted)
}

#[test]
fn bad_requests_get_clear_4xx_and_are_counted() {
    let _g = serial();
    let (_s, c) =
        collector("ingest:\n  token: s3cret\n  max_body: 64KiB\n  max_series_per_host: 3\n");
    let many = {
        let s: Vec<SeriesSamples> = (0..5)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([
                    (METRIC_NAME, format!("m{i}").as_str()),
                    ("host", "h"),
                ]),
                samples: vec![Sample::new(tocsin_model::now_ms(), 1.0)],
            })
            .collect();
        tocsin_wire::encode(&tocsin_wire::to_request(&s))
    };
    let auth = ("Authorization", "Bearer s3cret");
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            body(),
            vec![],
            401,
            "missing, wrong or revoked bearer token",
        ),
        (
            "wrong token",
            body(),
            vec![("Authorization", "Bearer nope")],
            401,
            "missing, wrong or revoked bearer token",
        ),
        (
            "not snappy",
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            vec![auth],
            400,
            "body is not a valid snappy block",
        ),
        (
            "snappy, not protobuf",
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff")
                .unwrap(),
            vec![auth],
            400,
            "body is not a valid remote-write protobuf",
        ),
        (
            "gzip",
            body(),
            vec![auth, ("Content-Encoding", "gzip")],
            415,
            "unsupported Content-Encoding",
        ),
        ("too large", vec![0u8; 100 * 1024], vec![auth], 413, "ingest.max_body"),
        (
            "remote-write 2.0 (acknowledged and dropped before)",
            body(),
            vec![
                auth,
                (
                    "Content-Type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                ),
            ],
            415,
            "this collector takes remote-write 1.0",
        ),
        (
            "JSON",
            body(),
            vec![auth, ("Content-Type", "application/json")],
            415,
            "unsupported Content-Type",
        ),
        (
            "timestamp 0",
            at(0),
            vec![auth],
            400,
            "timestamp 0 ms is before the year 2000",
        ),
        (
            "seconds sent as milliseconds",
            at(tocsin_model::now_ms() / 1000),
            vec![auth],
            400,
            "before the year 2000",
        ),
        ("negative", at(-5), vec![auth], 400, "before the year 2000"),
        (
            "a day ahead",
            at(tocsin_model::now_ms() + 86_400_000),
            vec![auth],
            400,
            "too far in the future",
        ),
        ("good", body(), vec![auth], 204, ""),
        (
            "over the host's series limit",
            many,
            vec![auth],
            400,
            "3 new series (3 samples) refused: their host has reached ingest.max_series_per_host, or the collector ingest.max_hosts; 2 samples accepted\",\"status\":\"error\"} [stored anyway: 2]",
        ),
    ];
    for (name, b, h, want, msg) in cases {
        let (code, text) = post(&c, b, &h);
        assert_eq!(code, want, "{name}: {text}");
        assert!(text.contains(msg), "{name}: {text}");
    }
    let metrics = reqwest::blocking::get(c.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "tocsin_ingest_rejected_requests_total{reason=\"unauthorized\"} 2",
        "tocsin_ingest_rejected_requests_total{reason=\"snappy\"} 1",
        "tocsin_ingest_rejected_requests_total{reason=\"protobuf\"} 1",
        "tocsin_ingest_rejected_requests_total{reason=\"encoding\"} 1",
        "tocsin_ingest_rejected_requests_total{reason=\"media_type\"} 2",
        "tocsin_ingest_rejected_requests_total{reason=\"timestamp\"} 4",
        "tocsin_ingest_rejected_requests_total{reason=\"body\"} 1",
        "tocsin_ingest_requests_total{code=\"413\"} 1",
        "tocsin_ingest_requests_total{code=\"415\"} 3",
        "tocsin_ingest_samples_total{result=\"accepted\"} 3",
        "tocsin_ingest_samples_total{result=\"over_series_limit\"} 3",
        "tocsin_ingest_rejected_requests_total{reason=\"cardinality\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    assert!(c.log().contains("remote-write request rejected"));
    let health = reqwest::blocking::get(c.url("/healthz")).unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[test]
fn a_database_locked_by_another_process_answers_503_and_logs_the_reason() {
    let _g = serial();
    let (s, c) = collector("");
    assert_eq!(post(&c, body(), &[]).0, 204);
    // Another process holds the database's write lock (a backup tool, a stray sqlite3 shell):
    // the writer waits its busy timeout, then every request of the group is answered 503; the
    // reason goes to the collector's log, not to the sender (no SQLite text in answers).
    let db = rusqlite::Connection::open(s.dir.path().join("data/tocsin.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let sender = |_| {
        let url = c.url("/api/v1/write");
        std::thread::spawn(move || {
            let r = reqwest::blocking::Client::new()
                .post(url)
                .header("Content-Type", tocsin_wire::CONTENT_TYPE)
                .header("Content-Encoding", "snappy")
                .body(body())
                .send()
                .unwrap();
            let retry = r.headers().get("retry-after").is_some();
            (r.status().as_u16(), retry, r.text().unwrap())
        })
    };
    let senders: Vec<_> = (0..4).map(sender).collect();
    let answers: Vec<_> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    for (code, retry, text) in &answers {
        assert_eq!(*code, 503, "{text}");
        assert!(*retry, "told when to come back: {text}");
        assert!(text.contains("storage temporarily unavailable"), "{text}");
        assert!(!text.contains("database is locked"), "{text}");
    }
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    tocsin_e2e::wait_for(
        "samples accepted again",
        std::time::Duration::from_secs(15),
        || (post(&c, body(), &[]).0 == 204).then_some(()),
    );
    let log = c.log();
    assert!(log.contains("storage transaction failed"), "{log}");
    assert!(log.contains("database is locked"), "{log}");
}

#[test]
fn special_values_and_times_have_defined_outcomes() {
    let _g = serial();
    let (_s, c) = collector("");
    let now = tocsin_model::now_ms();
    let series = |name: &str, pts: &[(i64, f64)]| SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, name), ("host", "h")]),
        samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    };
    let batch = vec![
        // NaN (Prometheus' stale marker) and infinities are stored as they are.
        series(
            "special",
            &[
                (now - 3000, f64::NAN),
                (now - 2000, f64::INFINITY),
                (now - 1000, f64::NEG_INFINITY),
            ],
        ),
        // Older than, or equal to, what the series already has: dropped as out of order.
        series(
            "order",
            &[(now - 1000, 1.0), (now - 2000, 2.0), (now - 1000, 3.0)],
        ),
    ];
    let (code, text) = post(
        &c,
        tocsin_wire::encode(&tocsin_wire::to_request(&batch)),
        &[],
    );
    assert_eq!(code, 204, "{text}");
    // More than 10 minutes ahead: the whole request is refused, naming the sample, so the
    // sender keeps nothing it believes stored.
    let ahead = vec![
        series("ok", &[(now, 1.0)]),
        series("future", &[(now + 3_600_000, 1.0)]),
    ];
    let (code, text) = post(
        &c,
        tocsin_wire::encode(&tocsin_wire::to_request(&ahead)),
        &[],
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("series 1 (future{host="), "{text}");
    assert!(text.contains("too far in the future"), "{text}");
    // Invalid UTF-8 in a label value is a protobuf error (strings must be UTF-8).
    let mut raw = prost_like_series_with_bad_utf8();
    let body = snap::raw::Encoder::new()
        .compress_vec(&std::mem::take(&mut raw))
        .unwrap();
    let (code, text) = post(&c, body, &[]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not a valid remote-write protobuf"), "{text}");

    let m = reqwest::blocking::get(c.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "tocsin_ingest_samples_total{result=\"accepted\"} 4",
        "tocsin_ingest_rejected_requests_total{reason=\"timestamp\"} 1",
        "tocsin_ingest_samples_total{result=\"out_of_order\"} 2",
        "tocsin_ingest_rejected_requests_total{reason=\"protobuf\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}");
    }
}

/// A WriteRequest with one series whose label value is not UTF-8, encoded by hand.
fn prost_like_series_with_bad_utf8() -> Vec<u8> {
    // Label { name: "__name__" (field 1), value: 0xff 0xfe (field 2) }
    let mut label = vec![0x0a, 8];
    label.extend_from_slice(b"__name__");
    label.extend_from_slice(&[0x12, 2, 0xff, 0xfe]);
    // TimeSeries { labels (field 1) }
    let mut ts = vec![0x0a, label.len() as u8];
    ts.extend_from_slice(&label);
    // WriteRequest { timeseries (field 1) }
    let mut req = vec![0x0a, ts.len() as u8];
    req.extend_from_slice(&ts);
    req
}

#[test]
fn a_slow_client_is_cut_off_with_408() {
    use std::io::{Read, Write};
    let _g = serial();
    let (_s, c) = collector("ingest:\n  request_timeout: 1s\n");
    let mut tcp = std::net::TcpStream::connect(&c.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Headers promise 1000 bytes; 10 arrive, then nothing.
    tcp.write_all(
        b"POST /api/v1/write HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let metrics = reqwest::blocking::get(c.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tocsin_ingest_rejected_requests_total{reason=\"timeout\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        reqwest::blocking::get(c.url("/healthz"))
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
