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
    let body = tocsin_wire::encode(&tocsin_wire::to_request(&[s]));
    let mut r = reqwest::blocking::Client::new()
        .post(c.url("/api/v1/write"))
        .header("Content-Type", tocsin_wire::CONTENT_TYPE)
        .header("Content-Encoding", tocsin_wire::CONTENT_ENCODING)
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn per_agent_tokens_are_bound_to_their_host_and_can_be_revoked() {
    let _g = serial();
    let s = Stack::new("admin_token: adm1n\n");
    std::fs::create_dir(s.dir.path().join("rules")).unwrap();
    let c = s.collector("127.0.0.1:0", &s.p("rules"));
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
        let v: Value = reqwest::blocking::get(c.url("/api/v1/hosts"))
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
