//! What a restart costs for service levels (`Slos::restore`). Without saved records each
//! objective's record is rebuilt from its stored indicator over the objective's period: the
//! collector derives the indicator every second, so a 30-day objective reads 2.6 million
//! samples per service. With the records saved at the last checkpoint, a restart reads them
//! and only the indicator since. Writes that history for SERVICES services (default 10) into a
//! fresh store, checkpointed into chunks as a running collector's is, times the rebuild, saves
//! the records, writes five minutes more (a checkpoint interval) and times the restart.
//!
//! `cargo bench -p tocsin-collector --bench slo_restore -- [SERVICES]`

use std::time::Instant;

use tocsin_collector::services::RATIO_METRIC;
use tocsin_collector::slo::Slos;
use tocsin_config::services::ServiceConfig;
use tocsin_model::{Labels, Sample, SeriesSamples, METRIC_NAME};
use tocsin_store::{Store, StoreOptions};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

fn main() -> anyhow::Result<()> {
    let services: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(
        &dir.path().join("slo.db"),
        StoreOptions {
            fsync: false,
            ..StoreOptions::default()
        },
    )?;
    let now = tocsin_model::now_ms() / 1000 * 1000;
    let from = now - 30 * DAY_MS;
    let name = |i: usize| format!("svc{i:03}");
    // Mostly all probes up; each service loses half of them for 30 s an hour.
    let value = |t: i64, i: usize| {
        if (t / 1000 + i as i64 * 7919) % 3600 < 30 {
            0.5
        } else {
            1.0
        }
    };
    // Every service's indicator, a sample a second over [t, end): the samples stored.
    let write = |store: &mut Store, t: i64, end: i64| -> anyhow::Result<usize> {
        let mut batch: Vec<SeriesSamples> = (0..services)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([(METRIC_NAME, RATIO_METRIC), ("service", &name(i))]),
                samples: (t..end)
                    .step_by(1000)
                    .map(|ts| Sample::new(ts, value(ts, i)))
                    .collect(),
            })
            .collect();
        let mut tx = store.begin()?;
        let accepted = tx.append_derived(&mut batch, end)?.accepted;
        tx.commit()?;
        Ok(accepted)
    };
    let started = Instant::now();
    let mut samples = 0usize;
    let mut t = from;
    while t < now {
        let end = (t + HOUR_MS).min(now);
        samples += write(&mut store, t, end)?;
        t = end;
        if (t - from) % DAY_MS == 0 {
            store.checkpoint(0)?;
        }
    }
    store.checkpoint(0)?;
    println!(
        "history: {services} services, {samples} indicator samples over 30 days, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let objective = tocsin_slo::Objective::new(0.999, 30 * DAY_MS).map_err(anyhow::Error::msg)?;
    let cfgs: Vec<ServiceConfig> = (0..services)
        .map(|i| ServiceConfig {
            name: name(i),
            owner: None,
            objective: Some(objective),
            latency: None,
            rto: None,
            rpo: None,
            impact: None,
            hosts: Vec::new(),
        })
        .collect();
    let (median, slos) = timed(&cfgs, &store, now, samples, 0)?;
    println!(
        "rebuild: {}, {:.1} M samples/s, {:.0} ms per service",
        median.0,
        samples as f64 / median.1 / 1e6,
        median.1 * 1000.0 / services as f64
    );
    let t = Instant::now();
    let saved = slos.save();
    store.save_error_budgets(&saved)?;
    let bytes: usize = saved.iter().map(|(k, v)| k.len() + v.len()).sum();
    println!(
        "save: {:.1} ms, {bytes} bytes for {services} records",
        t.elapsed().as_secs_f64() * 1000.0
    );
    // Five minutes more, as a running collector writes them before it stops.
    let later = now + 300_000;
    let since = write(&mut store, now, later)?;
    let (median, _) = timed(&cfgs, &store, later, since, services)?;
    println!(
        "restart from the saved records: {}, {:.2} ms per service",
        median.0,
        median.1 * 1000.0 / services as f64
    );
    Ok(())
}

/// Five restores at `now`, each checked to read `samples` and take `loaded` saved records:
/// their median (as text with every run, and in seconds) and the last one's records.
fn timed(
    cfgs: &[ServiceConfig],
    store: &Store,
    now: i64,
    samples: usize,
    loaded: usize,
) -> anyhow::Result<((String, f64), Slos)> {
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let mut slos = Slos::new(cfgs);
        let t = Instant::now();
        let r = slos.restore(store, now)?;
        runs.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            r.read == samples && r.loaded == loaded,
            "read {} of {samples} samples, {} of {loaded} saved records",
            r.read,
            r.loaded
        );
        last = Some(slos);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let text = format!(
        "median {} over {} runs ({})",
        secs(median),
        runs.len(),
        runs.iter().map(|&r| secs(r)).collect::<Vec<_>>().join(", ")
    );
    Ok(((text, median), last.expect("five runs")))
}

fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}
