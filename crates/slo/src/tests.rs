//! The worked numbers of the SRE workbook's "Alerting on SLOs" chapter for a 99.9 % objective
//! over 30 days, then the same conditions judged on a simulated record, second by second.

use super::*;

const SLO: f64 = 0.999;

fn obj() -> Objective {
    Objective::new(SLO, 30 * DAY_MS).unwrap()
}

fn alert(speed: Speed) -> BurnAlert {
    *WORKBOOK.iter().find(|a| a.speed == speed).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn the_workbook_burn_rates_for_a_thirty_day_objective() {
    // Table 5-8: 2 % in 1 h → 14.4; 5 % in 6 h → 6; 10 % in 3 d → 1.
    let o = obj();
    assert!(close(alert(Speed::Fast).burn_rate(&o), 14.4, 1e-9));
    assert!(close(alert(Speed::Slow).burn_rate(&o), 6.0, 1e-9));
    assert!(close(alert(Speed::Ticket).burn_rate(&o), 1.0, 1e-9));
    // The error ratios they fire at: 1.44 %, 0.6 %, 0.1 %.
    assert!(close(
        alert(Speed::Fast).error_ratio_threshold(&o),
        0.0144,
        1e-12
    ));
    assert!(close(
        alert(Speed::Slow).error_ratio_threshold(&o),
        0.006,
        1e-12
    ));
    assert!(close(
        alert(Speed::Ticket).error_ratio_threshold(&o),
        0.001,
        1e-12
    ));
    // A seven-day objective scales the burn rates down with the period.
    let week = Objective::new(SLO, 7 * DAY_MS).unwrap();
    assert!(close(alert(Speed::Fast).burn_rate(&week), 3.36, 1e-9));
}

#[test]
fn the_workbook_exhaustion_times() {
    // Table 5-4 (burn rate → time to exhaust a 30-day budget): 1 → 30 d, 2 → 15 d, 10 → 3 d,
    // 1000 → 43 minutes (a 100 % outage at 99.9 %).
    let o = obj();
    assert_eq!(o.exhaustion_ms(1.0), (30 * DAY_MS) as f64);
    assert_eq!(o.exhaustion_ms(2.0), (15 * DAY_MS) as f64);
    assert_eq!(o.exhaustion_ms(10.0), (3 * DAY_MS) as f64);
    assert!(close(o.exhaustion_ms(1000.0) / 60_000.0, 43.2, 1e-9));
    assert!(close(o.budget_ms() / 60_000.0, 43.2, 1e-9));
}

#[test]
fn the_workbook_detection_times() {
    // "Detection time = ((1 − SLO) / error ratio) × alerting window size × burn rate".
    let o = obj();
    let fast = alert(Speed::Fast);
    // A full outage: 0.864 minutes, having used 2 % of the budget.
    let t = fast.detection_ms(&o, 1.0).unwrap();
    assert!(close(t / 1000.0, 51.84, 1e-9));
    assert!(close(t / o.budget_ms(), 0.02, 1e-12));
    // At exactly the threshold's ratio it takes the whole hour; below it, never.
    assert!(close(
        fast.detection_ms(&o, 0.0145).unwrap() / 60_000.0,
        59.586,
        1e-3
    ));
    assert_eq!(fast.detection_ms(&o, 0.01), None);
    // The slow pair: 2.16 minutes for a full outage; the ticket 4.32 minutes.
    assert!(close(
        alert(Speed::Slow).detection_ms(&o, 1.0).unwrap() / 1000.0,
        129.6,
        1e-9
    ));
    assert!(close(
        alert(Speed::Ticket).detection_ms(&o, 1.0).unwrap() / 1000.0,
        259.2,
        1e-9
    ));
    // A 10 % error ratio: 8.64 minutes to the fast page.
    assert!(close(
        fast.detection_ms(&o, 0.1).unwrap() / 60_000.0,
        8.64,
        1e-9
    ));
}

/// Feeds one observation a second from `from` to `to` (exclusive) with the given good share,
/// returning the first second at which the condition holds, if any.
fn run(tr: &mut Tracker, from: i64, to: i64, good: f64, watch: Option<&BurnAlert>) -> Option<i64> {
    let mut first = None;
    let mut t = from;
    while t < to {
        tr.observe(t, good);
        if first.is_none() {
            if let Some(a) = watch {
                if tr.alert_ratio(t, a).is_some_and(|r| r >= 1.0) {
                    first = Some(t);
                }
            }
        }
        t += 1000;
    }
    first
}

#[test]
fn a_full_outage_after_a_good_spell_fires_each_pair_at_its_detection_time() {
    let o = obj();
    for (speed, good_spell, expected_s) in [
        (Speed::Fast, 2 * HOUR_MS, 51.84),
        (Speed::Slow, 7 * HOUR_MS, 129.6),
        (Speed::Ticket, 4 * DAY_MS, 259.2),
    ] {
        let a = alert(speed);
        let mut tr = Tracker::new(o, 60_000);
        run(&mut tr, 0, good_spell, 1.0, None);
        assert!(
            tr.alert_ratio(good_spell - 1000, &a).unwrap() < 1.0,
            "{speed}"
        );
        let fired = run(&mut tr, good_spell, good_spell + 3_600_000, 0.0, Some(&a)).unwrap();
        let after_s = (fired - good_spell) as f64 / 1000.0;
        // Within the record's resolution of the workbook's figure (windows are exact to a
        // bucket: 10 s up to 6 h, 10 min beyond).
        let tol = if a.long_ms <= 6 * HOUR_MS { 1.5 } else { 2.0 };
        assert!(
            after_s >= expected_s - tol && after_s <= expected_s + tol,
            "{speed}: fired after {after_s} s, expected {expected_s} s"
        );
    }
}

#[test]
fn the_short_window_ends_the_page_minutes_after_the_errors_do() {
    let o = obj();
    let fast = alert(Speed::Fast);
    let mut tr = Tracker::new(o, 60_000);
    run(&mut tr, 0, 2 * HOUR_MS, 1.0, None);
    let down = 2 * HOUR_MS;
    run(&mut tr, down, down + 5 * MINUTE_MS, 0.0, None);
    let up = down + 5 * MINUTE_MS;
    assert!(tr.alert_ratio(up, &fast).unwrap() >= 1.0);
    let mut t = up;
    while tr.alert_ratio(t, &fast).unwrap() >= 1.0 {
        tr.observe(t, 1.0);
        t += 1000;
    }
    // The hour still burns at 5/60 × 1000 = 83×, far above 14.4: only the 5-minute window
    // lets it go, once the bad minutes have left it (5 minutes, less what 1.44 % allows).
    assert!(tr.burn_rate(t, HOUR_MS).unwrap() > 14.4);
    let cleared_s = (t - up) / 1000;
    assert!(
        (280..=300).contains(&cleared_s),
        "cleared after {cleared_s} s"
    );
}

#[test]
fn a_burn_within_budget_never_pages_and_the_budget_is_counted() {
    let o = obj();
    let mut tr = Tracker::new(o, 60_000);
    // 0.09 % errors for a whole period: under every condition's threshold.
    let mut t = 0;
    let mut paged = false;
    while t < 30 * DAY_MS {
        tr.observe(t, 1.0 - 0.0009);
        if t % (10 * MINUTE_MS) == 0 && t > 3 * DAY_MS {
            paged |= WORKBOOK
                .iter()
                .any(|a| tr.alert_ratio(t, a).unwrap() >= 1.0);
        }
        t += 10_000;
    }
    assert!(!paged);
    let left = tr.budget_remaining(t - 10_000).unwrap();
    assert!(close(left, 0.1, 1e-5), "budget left {left}");
}

#[test]
fn half_the_budget_in_one_outage() {
    // 21.6 minutes down in a 30-day period at 99.9 % use half the 43.2-minute budget.
    let o = obj();
    let mut tr = Tracker::new(o, 60_000);
    let day = DAY_MS;
    run(&mut tr, 0, 10 * day, 1.0, None);
    run(&mut tr, 10 * day, 10 * day + 1_296_000, 0.0, None);
    let end = 30 * day - 1000;
    run(&mut tr, 10 * day + 1_296_000, end + 1000, 1.0, None);
    let left = tr.budget_remaining(end).unwrap();
    assert!(close(left, 0.5, 0.01), "budget left {left}");
    // A record a day old with ten minutes down has used a quarter of a month's budget.
    let mut young = Tracker::new(o, 60_000);
    run(&mut young, 0, day, 1.0, None);
    run(&mut young, day, day + 10 * MINUTE_MS + 1000, 0.0, None);
    let left = young.budget_remaining(day + 10 * MINUTE_MS).unwrap();
    assert!(close(left, 1.0 - 10.0 / 43.2, 1e-3), "budget left {left}");
    // The outage leaves the 3-day window after three days: the ticket's long window forgets.
    assert_eq!(tr.burn_rate(end, 3 * DAY_MS), Some(0.0));
}

#[test]
fn silence_counts_neither_way_and_a_long_gap_only_up_to_its_bound() {
    let o = obj();
    let mut tr = Tracker::new(o, 60_000);
    assert_eq!(tr.error_ratio(0, HOUR_MS), None, "nothing observed");
    tr.observe(0, 1.0);
    tr.observe(30 * MINUTE_MS, 0.0);
    // The half hour without observations stands for one minute of bad only.
    let [bad, total] = tr.fine.sum(30 * MINUTE_MS, HOUR_MS);
    assert_eq!((bad, total), (60_000.0, 60_000.0));
    // Old and repeated observations are ignored; so are NaN and infinities.
    tr.observe(10 * MINUTE_MS, 0.0);
    tr.observe(30 * MINUTE_MS, 0.0);
    tr.observe(31 * MINUTE_MS, f64::NAN);
    assert_eq!(tr.fine.sum(31 * MINUTE_MS, HOUR_MS), [60_000.0, 60_000.0]);
}

#[test]
fn an_observation_after_a_pause_longer_than_the_record_starts_it_afresh() {
    let o = obj();
    let mut tr = Tracker::new(o, 60_000);
    run(&mut tr, 0, HOUR_MS, 0.0, None);
    // Forty days later: nothing of the first hour is in any window.
    let later = 40 * DAY_MS;
    tr.observe(later, 1.0);
    tr.observe(later + 1000, 1.0);
    assert_eq!(tr.error_ratio(later + 1000, 30 * DAY_MS), Some(0.0));
    assert_eq!(tr.error_ratio(later + 1000, HOUR_MS), Some(0.0));
}

#[test]
fn objectives_are_checked_and_windows_named() {
    assert!(Objective::new(1.0, 30 * DAY_MS).is_err());
    assert!(Objective::new(0.0, 30 * DAY_MS).is_err());
    assert!(Objective::new(f64::NAN, 30 * DAY_MS).is_err());
    assert!(Objective::new(0.99, HOUR_MS).is_err());
    assert_eq!(window_label(5 * MINUTE_MS), "5m");
    assert_eq!(window_label(30 * DAY_MS), "30d");
    assert_eq!(window_label(90_000), "90s");
    let names: Vec<String> = windows(&obj()).into_iter().map(window_label).collect();
    assert_eq!(names, ["5m", "30m", "1h", "6h", "3d", "30d"]);
}

/// A ring's buckets and newest position.
type RingState = (Vec<[f64; 2]>, Option<i64>);

/// Every bucket and position of a tracker, to compare two exactly.
fn state(tr: &Tracker) -> (RingState, RingState, Option<i64>) {
    (
        (tr.fine.slots.clone(), tr.fine.newest),
        (tr.coarse.slots.clone(), tr.coarse.newest),
        tr.last,
    )
}

#[test]
fn an_undo_returns_the_record_to_its_mark_exactly() {
    let mut tr = Tracker::new(obj(), 60_000);
    let t0 = 1_800_000_000_000;
    run(&mut tr, t0, t0 + 2 * HOUR_MS, 1.0, None);
    run(
        &mut tr,
        t0 + 2 * HOUR_MS,
        t0 + 2 * HOUR_MS + 10 * MINUTE_MS,
        0.0,
        None,
    );
    let before = state(&tr);
    let budget = tr.budget_remaining(t0 + 3 * DAY_MS);
    // A write that failed: an outage, a pause of a day that clears buckets, more observations.
    tr.mark();
    let t1 = t0 + 2 * HOUR_MS + 10 * MINUTE_MS;
    run(&mut tr, t1, t1 + HOUR_MS, 0.0, None);
    tr.observe(t1 + DAY_MS, 0.5);
    run(&mut tr, t1 + DAY_MS, t1 + DAY_MS + 7 * HOUR_MS, 1.0, None);
    assert_ne!(state(&tr), before);
    tr.undo();
    assert_eq!(state(&tr), before);
    assert_eq!(tr.budget_remaining(t0 + 3 * DAY_MS), budget);
    // Marked again, it learns on as if the undone samples had never come.
    tr.mark();
    let mut fresh = Tracker::new(obj(), 60_000);
    run(&mut fresh, t0, t0 + 2 * HOUR_MS, 1.0, None);
    run(&mut fresh, t0 + 2 * HOUR_MS, t1, 0.0, None);
    for t in [&mut tr, &mut fresh] {
        run(t, t1, t1 + HOUR_MS, 1.0, None);
    }
    assert_eq!(state(&tr), state(&fresh));
    // A record never marked keeps nothing to undo (one rebuilt from history).
    assert!(fresh.fine.undo.is_empty() && fresh.coarse.undo.is_empty());
    // An entry per observation since the mark (an hour of seconds) and per bucket it opened.
    assert!(
        tr.coarse.undo.len() <= 3_600 + 7,
        "{}",
        tr.coarse.undo.len()
    );
}

#[test]
fn a_saved_record_loads_exactly_and_goes_on_as_one_that_never_stopped() {
    let mut tr = Tracker::new(obj(), 60_000);
    let t0 = 1_800_000_000_000;
    // A day up, ten minutes down, a pause of half a day, half up for an hour, up again.
    run(&mut tr, t0, t0 + DAY_MS, 1.0, None);
    run(
        &mut tr,
        t0 + DAY_MS,
        t0 + DAY_MS + 10 * MINUTE_MS,
        0.0,
        None,
    );
    let t1 = t0 + DAY_MS + 12 * HOUR_MS;
    run(&mut tr, t1, t1 + HOUR_MS, 0.5, None);
    run(&mut tr, t1 + HOUR_MS, t1 + 3 * HOUR_MS, 1.0, None);
    let bytes = tr.save();
    let mut loaded = Tracker::load(obj(), 60_000, &bytes).unwrap();
    assert_eq!(state(&loaded), state(&tr));
    assert_eq!(loaded.last(), Some(t1 + 3 * HOUR_MS - 1000));
    // Buckets repeat: two days and a half of record in well under a kilobyte.
    assert!(bytes.len() < 1_000, "{} bytes", bytes.len());
    // Both take in the same next hours, a bad one included, and stay identical.
    for t in [&mut tr, &mut loaded] {
        run(t, t1 + 3 * HOUR_MS, t1 + 4 * HOUR_MS, 0.0, None);
        run(t, t1 + 4 * HOUR_MS, t1 + 9 * HOUR_MS, 1.0, None);
    }
    assert_eq!(state(&loaded), state(&tr));
    let now = t1 + 9 * HOUR_MS;
    for w in [5 * MINUTE_MS, HOUR_MS, 6 * HOUR_MS, 3 * DAY_MS] {
        assert_eq!(loaded.burn_rate(now, w), tr.burn_rate(now, w));
    }
    assert_eq!(loaded.budget_remaining(now), tr.budget_remaining(now));
    assert_eq!(loaded.save(), tr.save());
    // A new record saves and loads too.
    let empty = Tracker::new(obj(), 60_000);
    let back = Tracker::load(obj(), 60_000, &empty.save()).unwrap();
    assert_eq!(state(&back), state(&empty));
}

#[test]
fn a_saved_record_for_another_objective_or_damaged_is_refused() {
    let mut tr = Tracker::new(obj(), 60_000);
    let t0 = 1_800_000_000_000;
    run(&mut tr, t0, t0 + HOUR_MS, 0.9, None);
    let bytes = tr.save();
    let other = Objective::new(0.99, 30 * DAY_MS).unwrap();
    let e = Tracker::load(other, 60_000, &bytes).unwrap_err();
    assert!(e.contains("objective"), "{e}");
    let week = Objective::new(SLO, 7 * DAY_MS).unwrap();
    assert!(Tracker::load(week, 60_000, &bytes).is_err());
    assert!(Tracker::load(obj(), 30_000, &bytes).is_err());
    // Cut anywhere, or with a byte more, it is refused (no panic).
    for n in 0..bytes.len() {
        assert!(Tracker::load(obj(), 60_000, &bytes[..n]).is_err(), "{n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Tracker::load(obj(), 60_000, &longer).is_err());
    // Any single byte changed either loads (a different but valid record) or is refused.
    for i in 0..bytes.len() {
        for v in [0u8, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(t) = Tracker::load(obj(), 60_000, &b) {
                let now = t0 + HOUR_MS;
                if let Some(r) = t.error_ratio(now, HOUR_MS) {
                    assert!(r.is_finite() && r >= 0.0, "byte {i} = {v}: {r}");
                }
            }
        }
    }
    // A bucket that is not a time is refused.
    let nan_at = bytes.len() - 16;
    let mut b = bytes.clone();
    b[nan_at..nan_at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    assert!(Tracker::load(obj(), 60_000, &b).is_err());
}
