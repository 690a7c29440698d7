//! Who may write and act: per-agent tokens bound to their host, issued and revoked from the CLI.

use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::{metric, serial, wait_for, Proc, Stack};
use tocsin_model::{Labels, Sample, SeriesSamples};

fn cli(c: &Proc, args: &[&str]) -> Value {
    serde_json::from_str(&c.cli(args, Some("adm1n"))).unwrap()
}

fn write(c: &Proc, token: Option<&str>, host: &str) -> (u16, String) {
    let s = SeriesSamples {
        labels: Labels::from_pairs([("__name__", "sec_test"), ("host", host)]),
        samples: vec![Sample {
            timestamp_ms: tocsin_model::now_ms(),
            value: 1.0,
        }],
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let r = c.remote_write(&[s], &headers);
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn per_agent_tokens_are_bound_to_their_host_and_can_be_revoked() {
    let _g = serial();
    let (s, c) = Stack::with_collector("admin_token: adm1n\n");
    // Open until the first token exists.
    assert_eq!(write(&c, None, "any").0, 204);
    let issued = cli(
        &c,
        &[
            "tokens",
            "issue",
            "--host",
            "tok-host",
            "--comment",
            "rack 7",
        ],
    );
    let token = issued["data"]["token"].as_str().unwrap().to_string();
    let id = issued["data"]["id"].as_i64().unwrap();
    assert!(token.starts_with("tcn_") && token.len() > 40, "{token}");
    let listed = cli(&c, &["tokens", "list"]);
    let text = listed.to_string();
    assert!(
        !text.contains(&token[4..]),
        "the token is never shown again"
    );
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(!text.contains(&hash), "nor its hash");
    assert_eq!(listed["data"]["tokens"][0]["host"], "tok-host");

    assert_eq!(write(&c, None, "tok-host").0, 401, "no token");
    assert_eq!(
        write(&c, Some("tcn_forged"), "tok-host").0,
        401,
        "wrong token"
    );
    assert_eq!(write(&c, Some(&token), "tok-host").0, 204);
    let (code, msg) = write(&c, Some(&token), "other-host");
    assert_eq!(code, 403);
    let msg: Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(
        msg["error"],
        "this token belongs to host \"tok-host\"; series for host \"other-host\" refused"
    );
    assert_eq!(
        metric(
            &c.url("/metrics"),
            "tocsin_ingest_rejected_requests_total{reason=\"wrong_host\"}"
        ),
        1.0
    );
    // The action API: only its own host's requests.
    let poll = |host: &str| {
        reqwest::blocking::Client::new()
            .get(c.url("/api/v1/actions/poll"))
            .query(&[("host", host)])
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(poll("tok-host"), 200);
    assert_eq!(poll("other-host"), 403);

    // A real agent with the token ships; after revocation it is refused.
    let cfg = s.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: tok-host\ninterval: 1s\ncollector: {{ url: \"{}\", token: {token} }}\n",
            c.url("/api/v1/write")
        ),
    )
    .unwrap();
    let a = s.agent(&c, &["--config", &cfg]);
    wait_for("the agent's host", Duration::from_secs(15), || {
        let v: Value = reqwest::blocking::Client::new()
            .get(c.url("/api/v1/hosts"))
            .bearer_auth("adm1n")
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["data"]["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["host"] == "tok-host" && h["up"] == true)
            .then_some(())
    });
    cli(&c, &["tokens", "revoke", &id.to_string()]);
    wait_for("the revoked agent refused", Duration::from_secs(15), || {
        (metric(
            &a.url("/metrics"),
            "tocsin_agent_send_errors_total{reason=\"unauthorized\"}",
        ) >= 1.0)
            .then_some(())
    });
    assert_eq!(write(&c, Some(&token), "tok-host").0, 401);
    assert_eq!(
        write(&c, None, "tok-host").0,
        401,
        "revoking the last token does not open ingest again"
    );
}

#[test]
fn agents_ship_over_tls_and_a_wrong_ca_is_refused() {
    let _g = serial();
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let year = tocsin_model::now_ms() / 1000 + 365 * 86_400;
    let cert = tocsin_e2e::servers::self_signed(year);
    let other = tocsin_e2e::servers::self_signed(year);
    for (f, pem) in [
        ("cert.pem", &cert.cert_pem),
        ("key.pem", &cert.key_pem),
        ("other.pem", &other.cert_pem),
    ] {
        std::fs::write(s.p(f), pem).unwrap();
    }
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "{cfg}tls: {{ cert_file: {}, key_file: {} }}\n",
            s.p("cert.pem"),
            s.p("key.pem")
        ),
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let https = |path: &str| format!("https://{}{path}", c.addr);
    let trusted = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let get = |path: &str| trusted.get(https(path)).send().unwrap().text().unwrap();
    assert!(
        reqwest::blocking::get(https("/healthz")).is_err(),
        "the system roots do not trust a self-signed collector"
    );
    let agent = |host: &str, ca: &str| {
        let cfg = s.p(&format!("{host}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "host: {host}\ninterval: 1s\ncollector: {{ url: \"{}\", ca_file: {} }}\n",
                https("/api/v1/write"),
                s.p(ca)
            ),
        )
        .unwrap();
        let log = s.p(&format!("{host}.log"));
        Proc::start(
            "tocsin-agent",
            &["--config", &cfg, "--listen", "127.0.0.1:0"],
            std::path::Path::new(&log),
        )
    };
    let _good = agent("tls-host", "cert.pem");
    let bad = agent("wrong-ca", "other.pem");
    wait_for("the TLS agent's host", Duration::from_secs(15), || {
        let v: Value = serde_json::from_str(&get("/api/v1/hosts")).unwrap();
        v["data"]["hosts"]
            .as_array()?
            .iter()
            .any(|h| h["host"] == "tls-host" && h["up"] == true)
            .then_some(())
    });
    wait_for(
        "the wrong-CA agent refused",
        Duration::from_secs(15),
        || {
            (metric(
                &bad.url("/metrics"),
                "tocsin_agent_send_errors_total{reason=\"connect\"}",
            ) >= 2.0)
                .then_some(())
        },
    );
    let hosts = get("/api/v1/hosts");
    assert!(!hosts.contains("wrong-ca"), "{hosts}");
    let m = get("/metrics");
    let failures: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("tocsin_tls_handshake_failures_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(
        failures >= 1.0,
        "handshakes refused by the agent are seen: {failures}"
    );
}

/// A CA and a client certificate it signed: (ca_pem, client_cert_pem, client_key_pem).
fn client_ca() -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tocsin test agents CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["mtls-host".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

#[test]
fn mutual_tls_admits_only_agents_with_a_client_certificate_from_the_ca() {
    let _g = serial();
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let server = tocsin_e2e::servers::self_signed(tocsin_model::now_ms() / 1000 + 365 * 86_400);
    let (ca, client_cert, client_key) = client_ca();
    for (f, pem) in [
        ("cert.pem", &server.cert_pem),
        ("key.pem", &server.key_pem),
        ("agents-ca.pem", &ca),
        ("client.pem", &client_cert),
        ("client-key.pem", &client_key),
    ] {
        std::fs::write(s.p(f), pem).unwrap();
    }
    let cfg = std::fs::read_to_string(s.p("collector.yaml")).unwrap();
    std::fs::write(
        s.p("collector.yaml"),
        format!(
            "{cfg}tls: {{ cert_file: {}, key_file: {}, client_ca_file: {} }}\n",
            s.p("cert.pem"),
            s.p("key.pem"),
            s.p("agents-ca.pem")
        ),
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let agent = |host: &str, with_cert: bool| {
        let cfg = s.p(&format!("{host}.yaml"));
        let ident = if with_cert {
            format!(
                ", cert_file: {}, key_file: {}",
                s.p("client.pem"),
                s.p("client-key.pem")
            )
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "host: {host}\ninterval: 1s\ncollector: {{ url: \"https://{}/api/v1/write\", ca_file: {}{ident} }}\n",
                c.addr,
                s.p("cert.pem")
            ),
        )
        .unwrap();
        Proc::start(
            "tocsin-agent",
            &["--config", &cfg, "--listen", "127.0.0.1:0"],
            std::path::Path::new(&s.p(&format!("{host}.log"))),
        )
    };
    let _with = agent("mtls-host", true);
    let without = agent("no-cert", false);
    // The API needs a client certificate too: use the CA-signed one.
    let mut pem = client_cert.clone().into_bytes();
    pem.extend_from_slice(client_key.as_bytes());
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    wait_for(
        "the agent with a certificate",
        Duration::from_secs(15),
        || {
            let v: Value = client
                .get(format!("https://{}/api/v1/hosts", c.addr))
                .send()
                .ok()?
                .json()
                .ok()?;
            v["data"]["hosts"]
                .as_array()?
                .iter()
                .any(|h| h["host"] == "mtls-host")
                .then_some(())
        },
    );
    wait_for(
        "the agent without one refused",
        Duration::from_secs(15),
        || {
            let m = metric(
                &without.url("/metrics"),
                "tocsin_agent_send_errors_total{reason=\"connect\"}",
            );
            (m >= 2.0).then_some(())
        },
    );
    let hosts = client
        .get(format!("https://{}/api/v1/hosts", c.addr))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!hosts.contains("no-cert"), "{hosts}");
}

/// POSTs a remote-write body of one sample per `(series, timestamp)`.
fn write_at(c: &Proc, samples: &[(&str, i64)], headers: &[(&str, &str)]) -> (u16, String) {
    let series: Vec<SeriesSamples> = samples
        .iter()
        .map(|&(name, ts)| SeriesSamples {
            labels: Labels::from_pairs([("__name__", name), ("host", "h1")]),
            samples: vec![Sample {
                timestamp_ms: ts,
                value: 100.0,
            }],
        })
        .collect();
    let r = c.remote_write(&series, headers);
    (r.status().as_u16(), r.text().unwrap())
}

/// `method path` with an optional bearer token: the status.
fn call(c: &Proc, method: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    let client = reqwest::blocking::Client::new();
    let mut r = match method {
        "GET" => client.get(c.url(path)),
        "DELETE" => client.delete(c.url(path)),
        _ => client.post(c.url(path)).body(body.to_string()),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap().status().as_u16()
}

/// A collector bound beyond loopback (every address), reached on 127.0.0.1.
fn on_every_address(s: &Stack) -> Proc {
    let mut c = s.collector("0.0.0.0:0", &s.p("rules"));
    let port = c.addr.rsplit(':').next().unwrap().to_string();
    c.addr = format!("127.0.0.1:{port}");
    c
}

/// The admin and read routes, and what each needs.
const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("POST", "/api/v1/tokens", r#"{"host":"victim-db"}"#, true),
    ("GET", "/api/v1/tokens", "", true),
    ("DELETE", "/api/v1/tokens/1", "", true),
    (
        "POST",
        "/api/v1/silences",
        r#"{"matchers":[{"name":"host","value":".*","isRegex":true}],"duration":"1h","createdBy":"x","comment":"x"}"#,
        true,
    ),
    ("POST", "/api/v1/alerts/00/ack", r#"{"by":"x"}"#, true),
    ("POST", "/api/v1/incidents/1/resolve", "{}", true),
    ("POST", "/api/v1/notifications/1/retry", "", true),
    ("GET", "/api/v1/notifications", "", false),
    ("GET", "/api/v1/actions", "", false),
    ("GET", "/api/v1/audit", "", false),
    ("GET", "/api/v1/incidents", "", false),
    ("GET", "/api/v1/alerts", "", false),
    ("GET", "/api/v1/hosts", "", false),
];

#[test]
fn a_network_listener_without_credentials_lets_nobody_in() {
    let _g = serial();
    let s = Stack::new(
        "services:\n  - { name: members, objective: 99.9% }\n  - { name: shop, objective: 99%, hosts: [web-*] }\n",
    );
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = on_every_address(&s);
    for &(method, path, body, _) in ROUTES {
        assert_eq!(call(&c, method, path, None, body), 403, "{method} {path}");
    }
    // No token was minted: a write with anything still finds no agent token.
    assert!(!c.log().contains("token issued"));
    assert!(c.log().contains("the admin API is off"), "said at start");
    // A service any agent may report for is named at start; one with its hosts is not.
    let log = c.log();
    let unbound: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("service without hosts"))
        .collect();
    assert_eq!(unbound.len(), 1, "{log}");
    assert!(unbound[0].contains("service=members"), "{}", unbound[0]);
    // Agents' routes too: nobody may write series for any host, nor take or answer a
    // remediation request, until ingest.token is set or an agent token issued.
    let (code, msg) = write(&c, None, "victim-db");
    assert_eq!(code, 403, "{msg}");
    assert!(msg.contains("ingest is off"), "{msg}");
    assert_eq!(write(&c, Some("anything"), "victim-db").0, 403);
    assert_eq!(
        call(&c, "GET", "/api/v1/actions/poll?host=victim-db", None, ""),
        403
    );
    assert_eq!(
        call(&c, "POST", "/api/v1/actions/1/result", None, "{}"),
        403
    );
    assert!(c.log().contains("ingest is off"), "said at start");
    assert!(
        metric(
            &c.url("/metrics"),
            "tocsin_ingest_rejected_requests_total{reason=\"disabled\"}"
        ) >= 2.0
    );
    assert_eq!(call(&c, "GET", "/healthz", None, ""), 200);
    assert_eq!(call(&c, "GET", "/metrics", None, ""), 200);
    assert!(
        metric(
            &c.url("/metrics"),
            "tocsin_api_denied_requests_total{reason=\"disabled\"}"
        ) >= ROUTES.len() as f64
    );
}

#[test]
fn read_and_admin_tokens_open_what_they_name_and_nothing_more() {
    let _g = serial();
    let s = Stack::new(
        "admin_token: adm1n-s3cret\nread_token: r3ad-s3cret\ningest:\n  token: 1ngest-s3cret\n",
    );
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = on_every_address(&s);
    // The shared ingest token opens writes, and only it: neither people's token does.
    assert_eq!(write(&c, Some("1ngest-s3cret"), "any").0, 204);
    for t in [None, Some("adm1n-s3cret"), Some("r3ad-s3cret")] {
        assert_eq!(write(&c, t, "any").0, 401, "{t:?}");
    }
    for &(method, path, body, admin) in ROUTES {
        let code = |t| call(&c, method, path, t, body);
        assert_eq!(code(None), 401, "{method} {path} without a token");
        assert_eq!(code(Some("wrong")), 401, "{method} {path} with a wrong one");
        let read = code(Some("r3ad-s3cret"));
        if admin {
            assert_eq!(read, 401, "{method} {path}: the read token changes nothing");
        } else {
            assert_eq!(read, 200, "{method} {path} with the read token");
        }
        // Past the credential: 200, or 404/400 for the made-up ids.
        let with_admin = code(Some("adm1n-s3cret"));
        assert!(
            ![401, 403].contains(&with_admin),
            "{method} {path} with the admin token: {with_admin}"
        );
    }
    let log = c.log();
    assert!(
        !log.contains("adm1n-s3cret")
            && !log.contains("r3ad-s3cret")
            && !log.contains("1ngest-s3cret")
    );
    assert!(!log.contains("ingest is off"));
}

#[test]
fn a_planted_receiver_secret_appears_in_no_log_or_answer() {
    let _g = serial();
    // Nothing listens there: every delivery fails, and the error names the endpoint.
    let port = tocsin_e2e::servers::free_port();
    let secret = "PLANTED-7f3a9c";
    let s = Stack::new(&format!(
        "  - name: robot\n    webhook: {{ url: \"http://127.0.0.1:{port}/robot/send?access_token={secret}\", timeout: 1s, max_attempts: 2 }}\n  - name: am\n    alertmanager: {{ url: \"http://am:{secret}@127.0.0.1:{port}\" }}\n  - name: slack\n    slack: {{ url: \"http://127.0.0.1:{port}/services/T0/B0/{secret}\" }}\n"
    ));
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(
        s.dir.path().join("rules/r.yaml"),
        "rules:\n  - name: Planted\n    expr: planted\n    levels: { critical: \"> 1\" }\n",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    assert_eq!(
        write_at(&c, &[("planted", tocsin_model::now_ms())], &[]).0,
        204
    );
    let answers = || {
        [
            "/api/v1/notifications",
            "/api/v1/notifications?status=dead",
            "/api/v1/alerts",
            "/metrics",
        ]
        .iter()
        .map(|p| reqwest::blocking::get(c.url(p)).unwrap().text().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
    };
    wait_for(
        "deliveries to every receiver failed with an error",
        Duration::from_secs(30),
        || {
            let v: Value = reqwest::blocking::get(c.url("/api/v1/notifications"))
                .unwrap()
                .json()
                .unwrap();
            let rows = v["data"]["notifications"].as_array()?;
            let failed: std::collections::BTreeSet<&str> = rows
                .iter()
                .filter(|r| r["lastError"].as_str().is_some_and(|e| !e.is_empty()))
                .filter_map(|r| r["receiver"].as_str())
                .collect();
            (failed.len() >= 3).then_some(())
        },
    );
    let text = answers();
    assert!(text.contains("lastError"), "{text}");
    assert!(!text.contains(secret), "a secret in an API answer:\n{text}");
    let log = c.log();
    assert!(log.contains("notification failed"), "{log}");
    assert!(!log.contains(secret), "a secret in the log:\n{log}");
}

#[test]
fn samples_no_clock_could_give_are_refused_live_or_not() {
    let _g = serial();
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(
        s.dir.path().join("rules/r.yaml"),
        "rules:\n  - name: Skewed\n    expr: skewed\n    levels: { critical: \"> 50\" }\n",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let now = tocsin_model::now_ms();
    let live = [(tocsin_wire::LIVE_HEADER, "1")];
    // A live sample a day ahead used to make every later sample of its series look judged.
    let (code, text) = write_at(&c, &[("skewed", now + 86_400_000)], &live);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("too far in the future"), "{text}");
    for ts in [0, 1, now / 1000, -1_000] {
        let (code, text) = write_at(&c, &[("skewed", ts)], &[]);
        assert_eq!(code, 400, "timestamp {ts}: {text}");
        assert!(text.contains("before the year 2000"), "{text}");
    }
    // All or nothing: a good sample beside a bad one is not stored either.
    assert_eq!(write_at(&c, &[("skewed", now), ("skewed2", 0)], &[]).0, 400);
    // The series is still judged: a sample now fires the rule.
    assert_eq!(write_at(&c, &[("skewed", now + 1000)], &live).0, 204);
    wait_for("the rule fired", Duration::from_secs(10), || {
        c.alerts()
            .iter()
            .any(|a| a["rule"] == "Skewed")
            .then_some(())
    });
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

#[test]
fn hostile_bodies_keep_memory_bounded_and_unauthenticated_ones_are_not_read() {
    let _g = serial();
    let (_s, c) = Stack::with_collector("ingest:\n  token: s3cret\n");
    let before = peak_rss_mib(c.child.id());
    // Snappy-compressed empty samples: 2 bytes each decompressed, ~3 MiB on the wire.
    let empty_samples = {
        let mut raw = Vec::new();
        // One series holding 30M empty Sample messages (field 2, length 0).
        let inner: Vec<u8> = [0x12u8, 0x00].repeat(30_000_000);
        raw.push(0x0a);
        let mut n = inner.len();
        while n >= 0x80 {
            raw.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        raw.push(n as u8);
        raw.extend_from_slice(&inner);
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    };
    assert!(empty_samples.len() < 4 << 20, "{}", empty_samples.len());
    let big = vec![0u8; 15 << 20];
    let send = |body: Vec<u8>, token: Option<&'static str>| {
        let url = c.url("/api/v1/write");
        std::thread::spawn(move || {
            let mut r = reqwest::blocking::Client::new()
                .post(url)
                .header("Content-Type", tocsin_wire::CONTENT_TYPE)
                .header("Content-Encoding", "snappy")
                .body(body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    // Unauthenticated 15 MiB bodies: refused before they are read (the client may see the
    // connection closed while it still sends).
    let codes: Vec<u16> = (0..30)
        .map(|_| send(big.clone(), None))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(codes.iter().all(|&c| c == 401 || c == 0), "{codes:?}");
    let grew = peak_rss_mib(c.child.id()) - before;
    assert!(
        grew < 48.0,
        "30 unread bodies grew peak memory by {grew:.0} MiB"
    );
    // Authenticated garbage: decoded a few at a time (one per core), each bounded by
    // ingest.max_decompressed (64 MiB) plus the samples kept up to the limit; it was 2.4 GB
    // for four such requests before.
    let codes: Vec<u16> = (0..4)
        .map(|_| send(empty_samples.clone(), Some("s3cret")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(codes.iter().all(|&c| c == 400), "{codes:?}");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let grew = peak_rss_mib(c.child.id()) - before;
    let bound = cores * (64.0 + 64.0) + 64.0;
    assert!(
        grew < bound,
        "peak memory grew by {grew:.0} MiB (bound {bound:.0})"
    );
    assert!(
        metric(
            &c.url("/metrics"),
            "tocsin_ingest_rejected_requests_total{reason=\"too_many_samples\"}"
        ) == 4.0
    );
    // And the collector still takes an honest request.
    assert_eq!(
        write_at(
            &c,
            &[("ok", tocsin_model::now_ms())],
            &[("Authorization", "Bearer s3cret")]
        )
        .0,
        204
    );
}

#[test]
fn a_silent_connection_is_closed_on_plain_http() {
    use std::io::Read;
    let _g = serial();
    let (_s, c) = Stack::with_collector("ingest:\n  idle_timeout: 1s\n");
    let started = std::time::Instant::now();
    let mut silent = std::net::TcpStream::connect(&c.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 256];
    // Closed by the collector (EOF, or a 408 then EOF), not by our read timeout.
    let n = silent.read(&mut buf).unwrap_or(0);
    let _ = silent.read(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held for {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&buf[..n])
    );
    // An idle keep-alive connection too.
    use std::io::Write;
    let mut idle = std::net::TcpStream::connect(&c.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    let _ = idle.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle keep-alive held for {:?}",
        started.elapsed()
    );
}

#[test]
fn data_files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let _g = serial();
    let s = Stack::new("");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    // An install made before: a data directory open to everyone.
    std::fs::create_dir(s.dir.path().join("data")).unwrap();
    std::fs::set_permissions(
        s.dir.path().join("data"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    assert_eq!(write_at(&c, &[("x", tocsin_model::now_ms())], &[]).0, 204);
    let mode = |p: &str| {
        std::fs::metadata(s.dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data"), 0o700);
    for f in std::fs::read_dir(s.dir.path().join("data")).unwrap() {
        let f = f.unwrap();
        let m = f.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(m & 0o077, 0, "{:?} is {m:o}", f.file_name());
    }
}

#[test]
fn a_label_an_agent_sends_never_chooses_what_runs() {
    let _g = serial();
    // An `on: collector` action whose unit comes from the alert's label, as in the review:
    // the agent of web-7 sent `unit="poweroff.target"`.
    let s = Stack::new(
        "actions:\n  restart_unit:\n    run: [/bin/echo, \"{unit}\"]\n    params: { unit: \"[a-z.-]+\" }\n",
    );
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    std::fs::write(
        s.dir.path().join("rules/r.yaml"),
        "rules:\n  - name: Act\n    expr: act_metric\n    levels: { critical: \"> 0\" }\n    remediation:\n      action: restart_unit\n      on: collector\n      params: { unit: { label: unit, values: [nginx.service] } }\n",
    )
    .unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
    let series = SeriesSamples {
        labels: Labels::from_pairs([
            ("__name__", "act_metric"),
            ("host", "web-7"),
            ("unit", "poweroff.target"),
        ]),
        samples: vec![Sample {
            timestamp_ms: tocsin_model::now_ms(),
            value: 1.0,
        }],
    };
    assert_eq!(c.remote_write(&[series], &[]).status().as_u16(), 204);
    wait_for("the remediation refused", Duration::from_secs(15), || {
        (metric(
            &c.url("/metrics"),
            "tocsin_remediation_events_total{kind=\"refused\"}",
        ) >= 1.0)
            .then_some(())
    });
    let actions: Value = reqwest::blocking::get(c.url("/api/v1/actions"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        actions["data"]["actions"].as_array().map(Vec::len),
        Some(0),
        "nothing requested: {actions}"
    );
    assert!(
        metric(
            &c.url("/metrics"),
            "tocsin_remediation_events_total{kind=\"requested\"}"
        ) == 0.0
    );
    let audit = reqwest::blocking::get(c.url("/api/v1/audit"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        audit.contains("is not one of the values the rule allows"),
        "{audit}"
    );
}

#[test]
fn no_textfile_wedges_an_agent_and_a_base_url_reaches_the_collector() {
    let _g = serial();
    let s = Stack::new("admin_token: adm1n\n");
    for d in ["rules", "tf", "outside"] {
        std::fs::create_dir(s.dir.path().join(d)).unwrap();
    }
    let mut c = s.collector("127.0.0.1:0", &s.p("rules"));
    let issued = cli(&c, &["tokens", "issue", "--host", "web-7"]);
    let token = issued["data"]["token"].as_str().unwrap().to_string();
    let tf = s.dir.path().join("tf");
    // Another host's label (a 403 under this token, retried for ever at the head of the
    // buffer before), a FIFO (hung sampling and SIGTERM), a link out of the directory.
    tocsin_e2e::write_textfile(
        &tf,
        "act.prom",
        "act_metric{host=\"victim-db\",unit=\"x\"} 1\n",
    );
    assert!(std::process::Command::new("mkfifo")
        .arg(tf.join("fifo.prom"))
        .status()
        .unwrap()
        .success());
    std::fs::write(s.dir.path().join("outside/secret.prom"), "leaked 1\n").unwrap();
    std::os::unix::fs::symlink(
        s.dir.path().join("outside/secret.prom"),
        tf.join("link.prom"),
    )
    .unwrap();
    let cfg = s.p("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: web-7\ninterval: 1s\ntextfile_dir: {}\ncollector: {{ url: \"{}\", token: {token} }}\n",
            tf.display(),
            c.url("")
        ),
    )
    .unwrap();
    let mut a = s.agent(&c, &["--config", &cfg]);
    wait_for("ten batches stored", Duration::from_secs(30), || {
        (metric(&a.url("/metrics"), "tocsin_agent_samples_sent_total") > 0.0
            && metric(&a.url("/metrics"), "tocsin_agent_cycles_total") >= 10.0)
            .then_some(())
    });
    assert_eq!(
        metric(
            &a.url("/metrics"),
            "tocsin_agent_send_errors_total{reason=\"status_4xx\"}"
        ),
        0.0,
        "nothing refused"
    );
    assert!(a.terminate().success(), "stopped on SIGTERM");
    c.terminate();
    let act = s.stored(|l| l.metric_name() == Some("act_metric"));
    assert_eq!(act.len(), 1);
    let labels = {
        let store = tocsin_store::Store::open(
            &s.dir.path().join("data/tocsin.db"),
            tocsin_store::StoreOptions::default(),
        )
        .unwrap();
        store
            .select(|l| l.metric_name() == Some("act_metric"))
            .remove(0)
            .1
    };
    assert_eq!(labels.get("host"), Some("web-7"));
    assert_eq!(labels.get("exported_host"), Some("victim-db"));
    assert!(s.stored(|l| l.metric_name() == Some("leaked")).is_empty());
    let log = a.log();
    assert!(log.contains("not a regular file"), "{log}");
    assert!(log.contains("a symbolic link; not followed"), "{log}");
}

#[test]
fn invented_hosts_and_host_less_series_are_bounded_through_the_api() {
    let _g = serial();
    let (_s, c) = Stack::with_collector("ingest:\n  max_hosts: 3\n  max_series_per_host: 2\n");
    let now = tocsin_model::now_ms();
    let series = |name: &str, host: Option<&str>| SeriesSamples {
        labels: match host {
            Some(h) => Labels::from_pairs([("__name__", name), ("host", h)]),
            None => Labels::from_pairs([("__name__", name)]),
        },
        samples: vec![Sample {
            timestamp_ms: now,
            value: 1.0,
        }],
    };
    let post = |batch: Vec<SeriesSamples>| {
        let r = c.remote_write(&batch, &[]);
        let stored = r
            .headers()
            .get(tocsin_wire::ACCEPTED_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), stored)
    };
    // Host-less series count as one host, with its own series limit.
    let (code, stored) = post((0..3).map(|i| series(&format!("m{i}"), None)).collect());
    assert_eq!((code, stored.as_deref()), (400, Some("2")));
    // Hosts a sender invents: two more, then refused.
    let (code, stored) = post(
        ["a", "b", "c", "d"]
            .iter()
            .map(|h| series("up", Some(h)))
            .collect(),
    );
    assert_eq!((code, stored.as_deref()), (400, Some("2")));
    assert_eq!(
        metric(
            &c.url("/metrics"),
            "tocsin_ingest_samples_total{result=\"over_series_limit\"}"
        ),
        3.0
    );
}
