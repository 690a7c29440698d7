//! A mass outage through the incidents alone: N hosts go down (a `HostDown` each, one
//! incident per host, as `incidents.group_by` makes it for alerts without a service), then all
//! come back. Reports the time per alert event of each half, median of 5 runs, for N = 1,000
//! and 10,000: a cost that grows with N per event grows with N² per outage.
//!   cargo bench -p tocsin-incidents --bench mass_outage
use std::collections::BTreeMap;
use std::time::Instant;

use tocsin_dispatch::AlertInfo;
use tocsin_incidents::{Incidents, Settings};
use tocsin_model::{Labels, Level};

fn alert(host: &str, firing: bool) -> AlertInfo {
    let labels = Labels::from_pairs([("alertname", "HostDown"), ("host", host)]);
    AlertInfo {
        annotations: BTreeMap::from([("summary".to_string(), "host down".to_string())]),
        ..AlertInfo::bare("HostDown", labels, Level::Critical, firing)
    }
}

fn main() {
    const T0: i64 = 1_795_000_000_000;
    for n in [1_000, 10_000] {
        let hosts: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();
        let (mut down, mut up) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let mut inc = Incidents::new(Settings::default());
            let t = Instant::now();
            for h in &hosts {
                inc.on_alert(&alert(h, true), T0);
            }
            down.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            let t = Instant::now();
            for h in &hosts {
                inc.on_alert(&alert(h, false), T0 + 60_000);
            }
            up.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            assert_eq!(inc.live().count(), n, "one incident per host");
        }
        down.sort_by(f64::total_cmp);
        up.sort_by(f64::total_cmp);
        println!(
            "{n} hosts: down {:.2} µs per alert, back {:.2} µs per alert (medians of 5)",
            down[2], up[2]
        );
    }
}
