//! Every example configuration in the repository loads and validates.

use std::path::Path;

use tocsin_config::agent::RawAgentConfig;
use tocsin_config::collector::RawCollectorConfig;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn collector_example_is_valid() {
    std::env::set_var("DINGTALK_SECRET", "SECexample");
    let raw: RawCollectorConfig = tocsin_config::read_yaml(&example("collector.yaml")).unwrap();
    let c = raw.validate().unwrap();
    assert_eq!(c.receivers.len(), 3);
}

#[test]
fn agent_example_is_valid() {
    // The example reads one password from the environment and one from a file.
    std::env::set_var("SHOP_DB_PASSWORD", "example");
    let mut raw: RawAgentConfig = tocsin_config::read_yaml(&example("agent.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "example\n").unwrap();
    for p in &mut raw.probes {
        if let Some(m) = &mut p.mysql {
            m.password = Some(tocsin_config::RawSecret::File { file: pw.clone() });
        }
    }
    let c = raw.validate().unwrap();
    assert_eq!(c.labels.get("env"), Some("prod"));
    assert_eq!(c.probes.len(), 10);
}
