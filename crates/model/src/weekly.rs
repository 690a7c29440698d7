//! A recurring weekly window ("Fridays 18:00–24:00 at +08:00"): on some days of the week,
//! between two times of day, in a fixed UTC offset. An end before the start runs past
//! midnight into the next day. Silences' maintenance windows and change freezes use it.

use std::fmt;

use crate::TimestampMs;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekly {
    /// Bit i: weekday i (0 = Monday).
    days: u8,
    start_min: i64,
    end_min: i64,
    offset_min: i64,
}

/// Why a window is not valid; the texts are what users read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeeklyError {
    TimeOfDay(String),
    Day(String),
    UtcOffset(String),
    Empty,
}

impl fmt::Display for WeeklyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeeklyError::TimeOfDay(s) => write!(f, "invalid time of day {s:?}, expected HH:MM"),
            WeeklyError::Day(s) => write!(f, "unknown day {s:?}, expected mon … sun"),
            WeeklyError::UtcOffset(s) => write!(f, "invalid utcOffset {s:?}, expected e.g. +08:00"),
            WeeklyError::Empty => f.write_str("the window's start and end are the same time"),
        }
    }
}

impl std::error::Error for WeeklyError {}

fn hhmm(s: &str) -> Result<i64, WeeklyError> {
    let bad = || WeeklyError::TimeOfDay(s.to_string());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `+08:00`, `-05:30`, `Z` or `UTC` in minutes east of UTC.
pub fn parse_utc_offset(o: &str) -> Result<i64, WeeklyError> {
    match o {
        "Z" | "UTC" => Ok(0),
        _ => {
            let (sign, rest) = match o.as_bytes().first() {
                Some(b'+') => (1, &o[1..]),
                Some(b'-') => (-1, &o[1..]),
                _ => return Err(WeeklyError::UtcOffset(o.to_string())),
            };
            Ok(sign * hhmm(rest).map_err(|_| WeeklyError::UtcOffset(o.to_string()))?)
        }
    }
}

impl Weekly {
    /// On `days` (mon … sun, any prefix of three letters or more; none: every day), from
    /// `start` to `end` (HH:MM) at `utc_offset` (default UTC).
    pub fn new(
        days: &[String],
        start: &str,
        end: &str,
        utc_offset: Option<&str>,
    ) -> Result<Weekly, WeeklyError> {
        let mut mask = 0u8;
        for d in days {
            let lower = d.to_ascii_lowercase();
            let i = DAYS
                .iter()
                .position(|x| lower.starts_with(x))
                .ok_or_else(|| WeeklyError::Day(d.clone()))?;
            mask |= 1 << i;
        }
        let offset_min = utc_offset.map(parse_utc_offset).transpose()?.unwrap_or(0);
        let (start_min, end_min) = (hhmm(start)?, hhmm(end)?);
        if start_min == end_min {
            return Err(WeeklyError::Empty);
        }
        Ok(Weekly {
            days: if mask == 0 { 0x7f } else { mask },
            start_min,
            end_min,
            offset_min,
        })
    }

    pub fn contains(&self, now: TimestampMs) -> bool {
        let local_min = now.div_euclid(60_000) + self.offset_min;
        let day = local_min.div_euclid(1440);
        let minute = local_min.rem_euclid(1440);
        // 1970-01-01 was a Thursday (index 3).
        let weekday = |d: i64| (d + 3).rem_euclid(7) as u8;
        let on = |d: i64| self.days & (1 << weekday(d)) != 0;
        if self.start_min < self.end_min {
            on(day) && (self.start_min..self.end_min).contains(&minute)
        } else {
            (on(day) && minute >= self.start_min) || (on(day - 1) && minute < self.end_min)
        }
    }

    /// When the window that holds `now` ends (the first minute after it outside).
    pub fn end_after(&self, now: TimestampMs) -> TimestampMs {
        let mut t = now.div_euclid(60_000) * 60_000;
        for _ in 0..=7 * 1440 {
            if !self.contains(t) {
                return t;
            }
            t += 60_000;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_in_a_zone_and_past_midnight() {
        // 2026-12-04 was a Friday; 10:00 UTC is 18:00 at +08:00.
        let fri_10utc = 1_796_378_400_000;
        let w = Weekly::new(&["fri".into()], "18:00", "24:00", Some("+08:00")).unwrap();
        assert!(w.contains(fri_10utc));
        assert!(!w.contains(fri_10utc - 60_000));
        assert_eq!(w.end_after(fri_10utc), fri_10utc + 6 * 3_600_000);
        let night = Weekly::new(&[], "22:00", "02:00", None).unwrap();
        assert!(night.contains(fri_10utc + 13 * 3_600_000));
        assert!(!night.contains(fri_10utc + 7 * 3_600_000));
        assert_eq!(
            Weekly::new(&["fry".into()], "1:00", "2:00", None),
            Err(WeeklyError::Day("fry".into()))
        );
        assert_eq!(
            Weekly::new(&[], "25:00", "2:00", None),
            Err(WeeklyError::TimeOfDay("25:00".into()))
        );
        assert_eq!(
            Weekly::new(&[], "1:00", "1:00", None),
            Err(WeeklyError::Empty)
        );
    }
}
