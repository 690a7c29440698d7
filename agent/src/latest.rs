//! The latest samples of every source, for `/metrics`: a Prometheus that scrapes the agent
//! where it scraped node_exporter gets the series the collector receives.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tocsin_model::Labels;
use tocsin_sampling::Family;

#[derive(Clone, Default)]
pub(crate) struct Latest(Arc<Mutex<Sources>>);

#[derive(Default)]
struct Sources {
    /// The last sampling cycle: host samplers and textfiles.
    host: Vec<Family>,
    /// Each probe's last run.
    probes: BTreeMap<String, Vec<Family>>,
}

impl Latest {
    pub(crate) fn set_host(&self, families: &[Family]) {
        self.lock().host = families.to_vec();
    }

    pub(crate) fn set_probe(&self, name: &str, families: &[Family]) {
        self.lock()
            .probes
            .insert(name.to_string(), families.to_vec());
    }

    /// Appends the latest samples to `out` in the text format, `base` labels added as when
    /// shipped; families named in `skip` (the agent's own) are left out.
    pub(crate) fn render(&self, base: &Labels, skip: &HashSet<String>, out: &mut String) {
        let s = self.lock();
        tocsin_sampling::exposition::render(
            s.host.iter().chain(s.probes.values().flatten()),
            base,
            skip,
            out,
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
