//! Service levels: an availability objective over a rolling period, the error budget it
//! allows, and the multi-window, multi-burn-rate alert conditions of the Google SRE workbook
//! ("Alerting on SLOs", table 5-8), judged over a bounded, time-bucketed record of the
//! service's indicator.
//!
//! The indicator is a share of good in [0, 1] observed over time (for tocsin: the share of a
//! service's probes that succeed, every second). Each observation stands for the time since
//! the previous one, so the error ratio over a window is the time-weighted share of bad in it,
//! as `1 - avg_over_time(indicator[window])` over evenly spaced samples. Time without an
//! observation (no fresh probe result, the collector down) counts neither way.
//!
//! Pure, over injected time; state is two ring buffers of fixed size per service, saved and
//! loaded as bytes (`Tracker::save`, `Tracker::load`).

use std::fmt;

pub type TimestampMs = i64;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// An availability objective: `target` (0.999 for 99.9 %) of the time over a rolling `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    pub target: f64,
    pub period_ms: i64,
}

impl Objective {
    /// Checked: a target strictly between 0 and 1, a period of at least a day (the longest
    /// alert window is three days; shorter periods scale it down).
    pub fn new(target: f64, period_ms: i64) -> Result<Objective, String> {
        if !(target > 0.0 && target < 1.0) {
            return Err(format!(
                "objective {} must be above 0 % and below 100 % (e.g. 99.9 %)",
                target * 100.0
            ));
        }
        if period_ms < DAY_MS {
            return Err("the objective's window must be at least 1d (e.g. 30d)".into());
        }
        Ok(Objective { target, period_ms })
    }

    /// The error budget: the share of the period allowed to be bad.
    pub fn budget(&self) -> f64 {
        1.0 - self.target
    }

    /// The budget as time: 43.2 minutes for 99.9 % over 30 days.
    pub fn budget_ms(&self) -> f64 {
        self.budget() * self.period_ms as f64
    }

    /// How long a constant burn rate takes to use up the whole budget.
    pub fn exhaustion_ms(&self, burn_rate: f64) -> f64 {
        self.period_ms as f64 / burn_rate
    }
}

/// Which of the workbook's three alert conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Speed {
    /// 2 % of the budget in an hour: page.
    Fast,
    /// 5 % of the budget in six hours: page.
    Slow,
    /// 10 % of the budget in three days: a ticket.
    Ticket,
}

impl Speed {
    pub fn as_str(self) -> &'static str {
        match self {
            Speed::Fast => "fast",
            Speed::Slow => "slow",
            Speed::Ticket => "ticket",
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One multi-window condition: the error ratio over both the long and the short window is
/// above `burn_rate × budget`, where the burn rate is the one that uses `budget_share` of the
/// budget in the long window. The long window carries the meaning (that much budget gone),
/// the short one makes the alert stop soon after the errors do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlert {
    pub speed: Speed,
    pub long_ms: i64,
    pub short_ms: i64,
    pub budget_share: f64,
}

/// The workbook's recommended pairs for a 30-day objective (table 5-8): 2 % of the budget in
/// 1 h (5 m short window), 5 % in 6 h (30 m), 10 % in 3 d (6 h).
pub const WORKBOOK: [BurnAlert; 3] = [
    BurnAlert {
        speed: Speed::Fast,
        long_ms: HOUR_MS,
        short_ms: 5 * MINUTE_MS,
        budget_share: 0.02,
    },
    BurnAlert {
        speed: Speed::Slow,
        long_ms: 6 * HOUR_MS,
        short_ms: 30 * MINUTE_MS,
        budget_share: 0.05,
    },
    BurnAlert {
        speed: Speed::Ticket,
        long_ms: 3 * DAY_MS,
        short_ms: 6 * HOUR_MS,
        budget_share: 0.10,
    },
];

/// The windows whose burn rates are exported: every alert window, and the period's.
pub fn windows(obj: &Objective) -> Vec<i64> {
    let mut w: Vec<i64> = WORKBOOK
        .iter()
        .flat_map(|a| [a.short_ms, a.long_ms])
        .chain([obj.period_ms])
        .collect();
    w.sort_unstable();
    w.dedup();
    w
}

impl BurnAlert {
    /// The burn rate that uses `budget_share` of the budget in the long window: 14.4, 6 and 1
    /// for a 30-day period.
    pub fn burn_rate(&self, obj: &Objective) -> f64 {
        self.budget_share * obj.period_ms as f64 / self.long_ms as f64
    }

    /// The error ratio both windows must exceed (1.44 % for the fast pair at 99.9 %).
    pub fn error_ratio_threshold(&self, obj: &Objective) -> f64 {
        self.burn_rate(obj) * obj.budget()
    }

    /// How long a constant error ratio `e`, after a long good spell, takes to make the alert
    /// fire: the long window's ratio reaches the threshold after `threshold / e × long`
    /// (the workbook's "detection time", `(1 − SLO) / e × window × burn rate`); the short
    /// window is there sooner. None when `e` never gets there.
    pub fn detection_ms(&self, obj: &Objective, e: f64) -> Option<f64> {
        let th = self.error_ratio_threshold(obj);
        (e > th && e > 0.0).then(|| th / e * self.long_ms as f64)
    }
}

/// Error ratios per bucket of time: (bad time, observed time), in a ring.
#[derive(Debug, Clone)]
struct Ring {
    res_ms: i64,
    slots: Vec<[f64; 2]>,
    /// Bucket index of the newest observation; `None` before the first.
    newest: Option<i64>,
    /// Whether changes are kept to be undone (from the first mark on: a record rebuilt from
    /// history is not).
    marked: bool,
    /// What changed since the last mark: each slot's value before, in order, and `newest` as
    /// it was (once it has changed).
    undo: Vec<(usize, [f64; 2])>,
    undo_newest: Option<Option<i64>>,
}

impl Ring {
    fn new(res_ms: i64, span_ms: i64) -> Ring {
        Ring {
            res_ms,
            slots: vec![[0.0; 2]; (span_ms / res_ms + 1) as usize],
            newest: None,
            marked: false,
            undo: Vec::new(),
            undo_newest: None,
        }
    }

    /// From here on, changes are kept to be undone.
    fn mark(&mut self) {
        self.marked = true;
        self.undo.clear();
        self.undo_newest = None;
    }

    /// Back to the ring as it was at the last mark.
    fn undo(&mut self) {
        for (i, old) in self.undo.drain(..).rev() {
            self.slots[i] = old;
        }
        if let Some(newest) = self.undo_newest.take() {
            self.newest = newest;
        }
    }

    fn set(&mut self, i: usize, v: [f64; 2]) {
        if self.marked {
            self.undo.push((i, self.slots[i]));
        }
        self.slots[i] = v;
    }

    fn set_newest(&mut self, i: i64) {
        if self.marked {
            self.undo_newest.get_or_insert(self.newest);
        }
        self.newest = Some(i);
    }

    fn len(&self) -> i64 {
        self.slots.len() as i64
    }

    fn add(&mut self, t: TimestampMs, bad: f64, total: f64) {
        let i = t.div_euclid(self.res_ms);
        let n = self.len();
        match self.newest {
            Some(newest) if i > newest => {
                for j in (newest + 1).max(i - n + 1)..=i {
                    self.set(j.rem_euclid(n) as usize, [0.0; 2]);
                }
                self.set_newest(i);
            }
            Some(newest) if i <= newest - n => return,
            Some(_) => {}
            // The slots are still as new: all zero.
            None => self.set_newest(i),
        }
        let k = i.rem_euclid(n) as usize;
        let [b, t] = self.slots[k];
        self.set(k, [b + bad, t + total]);
    }

    /// (bad, observed) over the buckets of the last `window_ms` up to `now`.
    fn sum(&self, now: TimestampMs, window_ms: i64) -> [f64; 2] {
        let Some(newest) = self.newest else {
            return [0.0; 2];
        };
        let n = self.len();
        let to = now.div_euclid(self.res_ms).min(newest);
        let from = ((now - window_ms).div_euclid(self.res_ms) + 1).max(newest - n + 1);
        let mut acc = [0.0; 2];
        for j in from..=to {
            let s = self.slots[j.rem_euclid(n) as usize];
            acc[0] += s[0];
            acc[1] += s[1];
        }
        acc
    }
}

/// Resolution of the record for windows up to six hours.
pub const FINE_MS: i64 = 10_000;
const FINE_SPAN_MS: i64 = 6 * HOUR_MS;
/// Resolution for the longer windows (three days, the period).
pub const COARSE_MS: i64 = 10 * MINUTE_MS;

/// A service's indicator over its objective's period, in buckets: 10 s for the last six
/// hours, 10 minutes for the whole period (about 70 KiB for 30 days). Windows are exact to
/// their resolution.
#[derive(Debug, Clone)]
pub struct Tracker {
    obj: Objective,
    fine: Ring,
    coarse: Ring,
    last: Option<TimestampMs>,
    /// `last` at the mark.
    last_marked: Option<TimestampMs>,
    max_gap_ms: i64,
}

impl Tracker {
    /// `max_gap_ms`: the most time one observation stands for (a longer silence is not
    /// counted beyond it).
    pub fn new(obj: Objective, max_gap_ms: i64) -> Tracker {
        Tracker {
            obj,
            fine: Ring::new(FINE_MS, FINE_SPAN_MS),
            coarse: Ring::new(COARSE_MS, obj.period_ms),
            last: None,
            last_marked: None,
            max_gap_ms,
        }
    }

    pub fn objective(&self) -> &Objective {
        &self.obj
    }

    /// The newest observation's time: after a `load`, what came after it is what is left to
    /// take in.
    pub fn last(&self) -> Option<TimestampMs> {
        self.last
    }

    /// From here on, observations are kept to be undone (`undo`): a caller that stores the
    /// indicator marks before each write and undoes what a failed write did not store.
    pub fn mark(&mut self) {
        self.fine.mark();
        self.coarse.mark();
        self.last_marked = self.last;
    }

    /// Forgets every observation since the last mark, exactly.
    pub fn undo(&mut self) {
        self.fine.undo();
        self.coarse.undo();
        self.last = self.last_marked;
    }

    /// The indicator was `good` (share in [0, 1]) at `t`, since the previous observation.
    /// Observations not newer than the previous one are ignored.
    pub fn observe(&mut self, t: TimestampMs, good: f64) {
        if !good.is_finite() {
            return;
        }
        let weight = match self.last {
            Some(last) if t <= last => return,
            Some(last) => (t - last).min(self.max_gap_ms) as f64,
            None => 0.0,
        };
        self.last = Some(t);
        let bad = (1.0 - good.clamp(0.0, 1.0)) * weight;
        self.fine.add(t, bad, weight);
        self.coarse.add(t, bad, weight);
    }

    /// The time-weighted share of bad over the last `window_ms`; None when nothing was
    /// observed in it.
    pub fn error_ratio(&self, now: TimestampMs, window_ms: i64) -> Option<f64> {
        let ring = if window_ms <= FINE_SPAN_MS {
            &self.fine
        } else {
            &self.coarse
        };
        let [bad, total] = ring.sum(now, window_ms);
        (total > 0.0).then(|| bad / total)
    }

    /// How many times faster than the objective allows the budget burned over the window.
    pub fn burn_rate(&self, now: TimestampMs, window_ms: i64) -> Option<f64> {
        self.error_ratio(now, window_ms)
            .map(|e| e / self.obj.budget())
    }

    /// The share of the period's budget not used yet (below 0 once overspent): the bad time
    /// of the period against the time the objective allows in a whole period (43.2 minutes
    /// for 99.9 % over 30 days), so a record younger than its period is not judged as if its
    /// first hours were all of it. None before anything was observed.
    pub fn budget_remaining(&self, now: TimestampMs) -> Option<f64> {
        let [bad, total] = self.coarse.sum(now, self.obj.period_ms);
        (total > 0.0 || self.last.is_some()).then(|| 1.0 - bad / self.obj.budget_ms())
    }

    /// The smaller of the two windows' burn rates over the condition's burn rate: at 1 or
    /// more, both windows burn at least that fast and the condition holds.
    pub fn alert_ratio(&self, now: TimestampMs, alert: &BurnAlert) -> Option<f64> {
        let long = self.burn_rate(now, alert.long_ms)?;
        let short = self.burn_rate(now, alert.short_ms)?;
        Some(long.min(short) / alert.burn_rate(&self.obj))
    }
}

/// `30d`, `6h`, `5m`, `90s`: a window in the largest unit that divides it, for labels.
pub fn window_label(ms: i64) -> String {
    for (unit, len) in [("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS)] {
        if ms % len == 0 {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{}s", ms / 1000)
}

mod saved;

#[cfg(test)]
mod tests;
