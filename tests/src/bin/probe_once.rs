//! Runs the first probe of an agent configuration once and prints `reason` then each series
//! as `name value`, so tests can run a probe inside a network namespace they create.
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: probe_once AGENT.yaml");
    let raw: tocsin_config::agent::RawAgentConfig =
        tocsin_config::read_yaml(std::path::Path::new(&path)).expect("config");
    let mut cfg = raw.validate().expect("valid config");
    let mut p = tocsin_probes::Prober::new(cfg.probes.remove(0)).expect("prober");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let o = rt.block_on(p.run());
    println!(
        "{}",
        o.result
            .as_ref()
            .err()
            .map(|f| f.reason.as_str())
            .unwrap_or("ok")
    );
    for f in p.families(&o) {
        println!("{} {}", f.name, f.samples[0].1);
    }
}
