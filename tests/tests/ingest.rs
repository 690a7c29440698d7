//! The remote-write endpoint against bad and unauthorised requests, on the real binary.

use std::path::Path;

use tocsin_e2e::{serial, Proc};
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};

fn body() -> Vec<u8> {
    let s = vec![SeriesSamples {
        labels: Labels::from_pairs([(METRIC_NAME, "up"), ("host", "h")]),
        samples: vec![Sample::new(tocsin_model::now_ms(), 1.0)],
    }];
    tocsin_wire::encode(&tocsin_wire::to_request(&s))
}

fn post(c: &Proc, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut r = reqwest::blocking::Client::new()
        .post(c.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn bad_requests_get_clear_4xx_and_are_counted() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "ingest:\n  token: s3cret\n  max_body: 64KiB\n",
    )
    .unwrap();
    let d = |r: &str| dir.path().join(r).display().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let c = Proc::start(
        "tocsin-collector",
        &[
            "--config",
            &d("c.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d("data"),
            "--rules",
            &d("rules"),
        ],
        Path::new(&d("c.log")),
    );
    let auth = ("Authorization", "Bearer s3cret");
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            body(),
            vec![],
            401,
            "missing or wrong bearer token",
        ),
        (
            "wrong token",
            body(),
            vec![("Authorization", "Bearer nope")],
            401,
            "missing or wrong bearer token",
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
        ("too large", vec![0u8; 100 * 1024], vec![auth], 413, ""),
        ("good", body(), vec![auth], 204, ""),
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
        "tocsin_ingest_samples_total{result=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    assert!(c.log().contains("remote-write request rejected"));
    let health = reqwest::blocking::get(c.url("/healthz")).unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
