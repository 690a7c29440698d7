//! Plain data shared by every tocsin crate: labels, samples, series identity and alert levels.
//! No I/O lives here.

mod action;
mod labels;
mod level;
mod redact;
mod retry;
pub mod weekly;
pub mod window;

pub use action::ActionStatus;
pub use labels::{
    is_reserved_metric_name, is_valid_label_name, is_valid_metric_name, Label, Labels, METRIC_NAME,
};
pub use level::{Level, ParseLevelError};

/// Text from labels, rules and people made inert in Markdown that has no escape character
/// (DingTalk's, WeCom's, reports): one line, and the brackets that open links, images and raw
/// HTML in their full-width forms, which read the same.
pub fn markdown_inert(s: &str) -> String {
    s.replace(['\r', '\n', '\u{2028}', '\u{2029}'], " ")
        .chars()
        .map(|c| match c {
            '[' => '［',
            ']' => '］',
            '<' => '＜',
            '>' => '＞',
            c => c,
        })
        .collect()
}

/// Language of messages people read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    ZhCn,
    En,
}

impl Locale {
    pub fn parse(s: Option<&str>, default: &str) -> Result<Locale, String> {
        match s.unwrap_or(default) {
            "zh-CN" | "zh" => Ok(Locale::ZhCn),
            "en" | "en-US" => Ok(Locale::En),
            o => Err(format!("locale {o:?} must be zh-CN or en")),
        }
    }

    /// The text in this language: `pick("可用性", "Availability")`.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Locale::ZhCn => zh,
            Locale::En => en,
        }
    }
}

pub use redact::{error_chain, redact_url};
pub use retry::Backoff;

/// Milliseconds since the Unix epoch, the unit of every timestamp in tocsin.
pub type TimestampMs = i64;

/// One observation of one series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub timestamp_ms: TimestampMs,
    pub value: f64,
}

impl Sample {
    pub const fn new(timestamp_ms: TimestampMs, value: f64) -> Self {
        Self {
            timestamp_ms,
            value,
        }
    }
}

/// A series with the samples of one batch, the unit that crosses the wire and enters the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Current wall-clock time in milliseconds.
/// A float as Prometheus writes it, in its text exposition and its JSON API (Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`): shortest round-trip digits, `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (or with a `T`, optional fraction and `Z`) as UTC, or a plain
/// number of Unix seconds, into milliseconds.
pub fn parse_timestamp(s: &str) -> Option<TimestampMs> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1000.0) as i64);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let n = |a: usize, z: usize| s.get(a..z)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hh, mm, ss) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut ms = 0;
    if let Some(frac) = s.get(19..).and_then(|r| r.strip_prefix('.')) {
        let digits: String = frac
            .chars()
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        ms = format!("{digits:0<3}").parse::<i64>().ok()?;
    }
    let days = days_from_civil(y, m, d);
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000 + ms)
}

/// Days since 1970-01-01 of a date (month 1–12; H. Hinnant's algorithm, March-based years so
/// the leap day ends one).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod time_tests {
    use super::parse_timestamp;

    #[test]
    fn formats() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00"),
            Some(1_397_114_100_000)
        );
        assert_eq!(
            parse_timestamp("2014-04-10T07:15:00.25Z"),
            Some(1_397_114_100_250)
        );
        assert_eq!(parse_timestamp("1397114100"), Some(1_397_114_100_000));
        assert_eq!(parse_timestamp("2014-13-10 07:15:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
