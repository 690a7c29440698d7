//! Runs each probe on its own schedule. A result that flips (success ↔ failure) is shipped at
//! once, together with everything pending, so that detection does not wait for the next host
//! cycle; unchanged results ride along with the next host cycle. A new failure is confirmed by a
//! second run a twentieth of the interval later (at most 50 ms).

use std::sync::{Arc, Mutex};

use tocsin_model::{now_ms, Labels, SeriesSamples};
use tocsin_probes::Prober;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::schedule::Grid;
use crate::ship::{Batch, Buffer};
use crate::Telemetry;

/// Probe samples waiting for the next batch.
#[derive(Clone, Default)]
pub(crate) struct Pending(Arc<Mutex<Vec<SeriesSamples>>>);

impl Pending {
    pub(crate) fn take(&self) -> Vec<SeriesSamples> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add(&self, s: Vec<SeriesSamples>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(s);
    }
}

pub(crate) async fn probe_loop(
    mut prober: Prober,
    base: Labels,
    queue: Arc<Buffer>,
    pending: Pending,
    latest: crate::latest::Latest,
    tel: Telemetry,
    cancel: CancellationToken,
) {
    let name = prober.config().name.clone();
    let mut grid = Grid::new(prober.config().interval);
    let mut last: Option<bool> = None;
    // Whether this run confirms a failure just seen, and whether an event triggered it.
    let mut confirming = false;
    let mut by_event = false;
    let mut last_ts = 0;
    loop {
        // Strictly increasing, even for a confirmation run in the same millisecond: the
        // collector drops a sample that is not newer than the series' last one.
        let ts = now_ms().max(last_ts + 1);
        last_ts = ts;
        let outcome = prober.run().await;
        let ok = outcome.success();
        tel.probe_runs
            .with_label_values(&[name.as_str(), if ok { "success" } else { "failure" }])
            .inc();
        let families = prober.families(&outcome);
        latest.set_probe(&name, &families);
        let series = tocsin_sampling::to_series(&families, &base, ts);
        let changed = last.is_some_and(|l| l != ok) || (last.is_none() && !ok);
        match &outcome.result {
            Err(f) if changed => {
                warn!(probe = %name, reason = f.reason.as_str(), message = %f.message, "probe failing")
            }
            Ok(()) if changed => info!(probe = %name, "probe recovered"),
            _ => {}
        }
        last = Some(ok);
        // A fresh failure is confirmed by a quick second run rather than a full interval later,
        // so rules that want two failed runs decide within one interval. A death reported by
        // the kernel (pidfd) is confirmed at once.
        let confirm = changed && !ok;
        if changed || confirming {
            // Older pending samples go first, in the same request, so nothing arrives out of order.
            let mut all = pending.take();
            all.extend(series);
            queue.push(Batch::new(&all));
        } else {
            pending.add(series);
        }
        let confirm_delay = if by_event {
            std::time::Duration::ZERO
        } else {
            (prober.config().interval / 20).min(std::time::Duration::from_millis(50))
        };
        confirming = confirm;
        by_event = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(confirm_delay), if confirm => {}
            _ = grid.wait(), if !confirm => {}
            _ = prober.changed() => by_event = true,
        }
    }
}
