//! The detector: an ensemble of simple, robust online statistics.
//!
//! - **Point deviation**: distance of the value from a fast exponentially weighted level, in
//!   units of the exponentially weighted mean absolute deviation (a robust scale).
//! - **Sustained shift**: a two-sided CUSUM of the value's distance from what is expected (the
//!   seasonal profile's mean, else the long-term mean), each sample's part clipped so one spike
//!   cannot make it, and decayed so it forgets.
//! - **Daily profile**: per 15-minute bucket of the day, a mean and deviation learned once a day;
//!   a bucket's deviation is taken as at least a tenth of the long-term one.
//! - **Weekly profile**: the same per hour of the week; it replaces the daily one for a series
//!   it has predicted clearly better (one with a weekend).
//! - **Records**: a value beyond the range the series has shown, or a short-term volatility
//!   above its highest, by a margin (a value's wider while the range is young); as rare as such
//!   records have been for the series.
//! - **Freezes**: the short-term volatility below a quarter of the lowest the series has shown
//!   (as it stood up to 128 samples before): the series stopped moving, for longer than it
//!   ever has; as rare as such freezes have been.
//!
//! The largest deviation, log-compressed (the surprise), is judged against the series' own
//! history of surprises: the tail probability is the larger of a Gaussian fitted to that
//! history and its empirical distribution (so a jump the series makes every few hours is only
//! as rare as it has been), then spread on a log scale to [0, 1].

mod persist;

pub use persist::DecodeError;

/// Tunables; defaults are chosen on the NAB tuning subset (docs/DYNAMIC.md).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectorConfig {
    /// Samples before any score is given.
    pub min_history: u32,
    pub alpha_level: f64,
    pub alpha_dev: f64,
    pub alpha_long: f64,
    /// Deviation (in scale units) that maps to a score of about 0.63.
    pub point_k: f64,
    /// The sustained shift's CUSUM (in long-term scale units) that scores like `point_k`.
    pub shift_k: f64,
    /// Per sample, the CUSUM keeps this share of itself: its memory is about 1 / (1 − decay)
    /// samples.
    #[serde(default = "default_shift_decay")]
    pub shift_decay: f64,
    /// Smoothing of the raw surprise before it is compared with its own history.
    pub alpha_surprise_short: f64,
    /// Memory of the surprise distribution.
    pub alpha_surprise_long: f64,
    /// Learning rate of the time-of-day profile (one step per bucket visit, i.e. per day).
    pub alpha_season: f64,
    /// Days a bucket must have seen before the profile is trusted.
    pub season_min_days: f64,
    /// Weeks an hour-of-the-week bucket must have seen before the weekly profile is trusted
    /// (0: no weekly profile).
    #[serde(default = "default_week_min")]
    pub season_min_weeks: f64,
    /// Seasonal deviation (in bucket scale units) scoring like `point_k` (used alone, for
    /// anomalies that break the daily shape without a sudden jump).
    pub season_k: f64,
    /// A profile bucket's deviation is taken as at least this share of the series' long-term
    /// deviation: a bucket learns from a few samples a day, and at the quiet hours of a series
    /// its deviation can shrink until any wiggle then looks extreme.
    #[serde(default = "default_season_floor")]
    pub season_floor: f64,
    /// Decay per sample of the remembered peak score; a score below the remembered peak is an
    /// echo of an event already reported and is damped by `echo_damp`.
    pub peak_decay: f64,
    pub echo_damp: f64,
    /// Memory of the empirical distribution of the surprise (0: off). A surprise this series
    /// has often shown is only as rare as it has been, however far out a Gaussian puts it.
    #[serde(default)]
    pub tail_alpha: f64,
    /// A value beyond the range the series has shown by this share of that range is a record;
    /// it scores by how rare such records have been (0: off).
    #[serde(default = "default_record_margin")]
    pub record_margin: f64,
    /// The same for the short-term volatility (the mean absolute deviation from the level over
    /// about 1/`alpha_vol` samples), upwards only (negative: off).
    #[serde(default = "default_volatility_margin")]
    pub volatility_margin: f64,
    #[serde(default = "default_alpha_vol")]
    pub alpha_vol: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_history: 30,
            alpha_level: 0.2,
            alpha_dev: 0.01,
            shift_decay: default_shift_decay(),
            alpha_long: 0.005,
            point_k: 6.0,
            shift_k: 20.0,
            alpha_surprise_short: 0.8,
            alpha_surprise_long: 0.002,
            alpha_season: 0.1,
            season_min_days: 5.0,
            season_min_weeks: default_week_min(),
            season_k: 6.0,
            season_floor: default_season_floor(),
            peak_decay: 0.9995,
            echo_damp: 0.5,
            tail_alpha: 0.001,
            record_margin: default_record_margin(),
            volatility_margin: default_volatility_margin(),
            alpha_vol: default_alpha_vol(),
        }
    }
}

fn default_season_floor() -> f64 {
    0.1
}

fn default_shift_decay() -> f64 {
    0.9
}

fn default_week_min() -> f64 {
    3.0
}

fn default_record_margin() -> f64 {
    0.1
}

fn default_volatility_margin() -> f64 {
    0.02
}

fn default_alpha_vol() -> f64 {
    0.05
}

/// What made a score: the evidence that was the least likely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The value's distance from what was expected (the point, level shift and seasonal
    /// deviations), judged against the series' own history of such distances.
    Deviation,
    /// A value beyond the range the series has shown.
    Record,
    /// Short-term volatility above any the series has shown.
    Volatility,
    /// The series stopped moving: its short-term volatility fell far below the lowest it had
    /// shown (a hung exporter, a stuck sensor, a frozen counter).
    Frozen,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Deviation => "deviation",
            Cause::Record => "record",
            Cause::Volatility => "volatility",
            Cause::Frozen => "frozen",
        }
    }
}

/// One evaluation: the score, what made it, and the band the model expected the value in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub score: f64,
    pub cause: Cause,
    /// The baseline has not learned `min_history` samples yet: the score is 0 and means nothing.
    pub warming: bool,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detector {
    cfg: DetectorConfig,
    n: u64,
    level: f64,
    dev: f64,
    /// The sustained shift's CUSUM, upwards and downwards.
    #[serde(default)]
    shift: [f64; 2],
    long: f64,
    long_dev: f64,
    s_short: f64,
    s_mean: f64,
    s_var: f64,
    /// Time-of-day profile: per bucket, visits, mean and mean absolute deviation.
    season: Vec<[f32; 3]>,
    /// Hour-of-the-week profile, the same per bucket (empty until the first sample).
    #[serde(default)]
    week: Vec<[f32; 3]>,
    /// Running mean distance of the value from each profile's mean (daily, weekly), in the
    /// series' scale, while both are trusted: the one that has predicted better is used.
    #[serde(default)]
    season_err: [f64; 2],
    last_ts: i64,
    /// Remembered peak scores of deviations upwards and downwards: an echo of a drop does not
    /// damp a rise.
    peak: [f64; 2],
    /// Per daily bucket, the largest raw surprise of its latest visit and of the visit before,
    /// in steps of 1/`ECHO_STEPS` (empty until the first sample; state saved before it
    /// existed starts it afresh).
    #[serde(default)]
    day_echo: Vec<[u8; 2]>,
    /// The same per hour of the week.
    #[serde(default)]
    week_echo: Vec<[u8; 2]>,
    /// Decayed histogram of the raw surprise, bins of `TAIL_BIN` from 0.
    #[serde(default)]
    tail: Vec<f32>,
    /// The range of values seen and how often it has been broken (none until the first sample
    /// after a restore of state saved before it existed).
    #[serde(default)]
    records: Option<Records>,
    /// Short-term volatility and its records.
    #[serde(default)]
    vol: f64,
    #[serde(default)]
    vol_records: Option<Records>,
    /// The short-term volatility's low, for freezes (from `RECORD_WARM` samples on, once the
    /// volatility has settled from its start at zero; judged after as many again).
    #[serde(default)]
    frozen: Option<Records>,
    /// The freezes' low as it stood at the last multiple of `FREEZE_LAG` samples.
    #[serde(default)]
    frozen_low: Option<f64>,
    /// For creeping value records: the range as it stood when the current block of `CREEP_LAG`
    /// samples began, moved out to each record since.
    #[serde(default)]
    creep_block: Option<[f64; 2]>,
    /// The visit in progress of each profile (daily, weekly).
    #[serde(default)]
    visit: [Visit; 2],
}

/// A visit to a profile bucket: the bucket's slot counted from the epoch, and its mean when the
/// visit began.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Visit {
    slot: i64,
    mean: f32,
}

impl Default for Visit {
    fn default() -> Self {
        Visit {
            slot: i64::MIN,
            mean: 0.0,
        }
    }
}

/// The range of values a series has shown, forgetting slowly, and per side (above, below) the
/// running rate at which values have broken it by the record margin.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Records {
    lo: f64,
    hi: f64,
    n: u64,
    rate: [f64; 2],
}

/// A series that has only shown positive values also breaks its range downwards by falling
/// below its lowest by this share of the range's span on a ratio scale: lo · (lo / hi)^share,
/// a sliver of the lowest it has shown (a price, a latency, a rate fallen to nearly nothing).
/// On the additive scale such a fall cannot be a record when the lowest is near zero next to
/// the highest, as it is for most positive series. Zero itself is left to the additive
/// scale: for a count, an interval with nothing in it is routine.
const RATIO_MARGIN: f64 = 0.5;

/// Samples a range must have seen before a record is judged: a day at five minutes. A range seen
/// for less has not shown the series' daily swing, nor how heavy its tail is: its records are the
/// series showing its range, and they were most of a new series' first-week false alarms.
const RECORD_WARM: u64 = 288;
/// A volatility below this share of the lowest the series has shown is a freeze...
const FREEZE_SHARE: f64 = 0.25;
/// ...that lowest taken as it stood up to this many samples ago: a volatility that creeps down
/// (each step small, the live low following it) is judged against the low from before.
const FREEZE_LAG: u64 = 128;
/// A value that creeps past its highest (or lowest) breaks the range as it stood up to this many
/// samples before: each step of a climb is too small to break the live range, which follows it
/// (a temperature rising past its all-time high over a few hours)...
const CREEP_LAG: u64 = 64;
/// ...once the range has stood this many samples (a week at five minutes): a young range's
/// highs are still being found, and a wandering series reaches them by creeping too.
const CREEP_GROWN: u64 = 2_000;
/// Per sample, the range shrinks by this share towards its middle, so that one absurd value
/// does not hide every later record for good (a time constant of 100,000 samples).
const RANGE_FORGET: f64 = 1e-5;

impl Records {
    fn new(x: f64) -> Self {
        Records {
            lo: x,
            hi: x,
            n: 0,
            rate: [0.0; 2],
        }
    }

    /// When `x` breaks the range by the margin, the probability of such a record, from how often
    /// records have happened: (records + 1) / (samples + 2) over the memory (none otherwise).
    /// With a `ratio_margin`, a positive `x` also breaks a positive range downwards on a ratio
    /// scale (`RATIO_MARGIN`). With a creeping `block` (the range as it stood when the current
    /// block of `CREEP_LAG` samples began, moved out to each record since), once the range has
    /// grown (`CREEP_GROWN`), the range to break is the block's: a climb past the highest is a
    /// record once per margin. Then learns `x`.
    fn update(
        &mut self,
        x: f64,
        margin: f64,
        ratio_margin: Option<f64>,
        block: Option<&mut Option<[f64; 2]>>,
        min_alpha: f64,
    ) -> Option<f64> {
        let m = margin * (self.hi - self.lo);
        let sliver = ratio_margin.is_some_and(|rm| {
            // Cheap tests first: the power only for a positive value below the lowest.
            x > 0.0 && x < self.lo && x < self.lo * (self.lo / self.hi).powf(rm)
        });
        let block = block.map(|b| {
            let b = b.get_or_insert([self.lo, self.hi]);
            if self.n.is_multiple_of(CREEP_LAG) {
                *b = [self.lo, self.hi];
            }
            b
        });
        // The block's range within the live one (which forgets, the block's not).
        let [lo, hi] = match &block {
            Some(b) if self.n >= CREEP_GROWN => [b[0].max(self.lo), b[1].min(self.hi)],
            _ => [self.lo, self.hi],
        };
        let broke = [x > hi + m, x < lo - m || sliver];
        if let Some(b) = block {
            if broke[0] {
                b[1] = b[1].max(x);
            }
            if broke[1] {
                b[0] = b[0].min(x);
            }
        }
        self.judge_and_learn(x, broke, min_alpha, true)
    }

    /// The same for a collapse: `x` below `FREEZE_SHARE` of the low of up to `FREEZE_LAG`
    /// samples ago (`low_before`, the low as it stood at the last multiple of `FREEZE_LAG`).
    fn update_collapse(
        &mut self,
        x: f64,
        low_before: &mut Option<f64>,
        min_alpha: f64,
    ) -> Option<f64> {
        if low_before.is_none() || self.n.is_multiple_of(FREEZE_LAG) {
            *low_before = Some(self.lo);
        }
        let low = low_before.unwrap_or(self.lo);
        self.judge_and_learn(x, [false, x < FREEZE_SHARE * low], min_alpha, false)
    }

    /// With `forget`, the range shrinks towards its middle by `RANGE_FORGET` per sample.
    fn judge_and_learn(
        &mut self,
        x: f64,
        broke: [bool; 2],
        min_alpha: f64,
        forget: bool,
    ) -> Option<f64> {
        let n_eff = (self.n as f64).min(1.0 / min_alpha.max(1e-9));
        let p = broke
            .iter()
            .position(|&b| b)
            .filter(|_| self.n >= RECORD_WARM)
            .map(|side| (self.rate[side] * n_eff + 1.0) / (n_eff + 2.0));
        let a = running(self.n, min_alpha);
        for (r, b) in self.rate.iter_mut().zip(broke) {
            *r += a * (f64::from(u8::from(b)) - *r);
        }
        self.n += 1;
        self.hi = self.hi.max(x);
        self.lo = self.lo.min(x);
        if forget {
            let mid = self.lo + (self.hi - self.lo) / 2.0;
            self.hi -= RANGE_FORGET * (self.hi - mid);
            self.lo += RANGE_FORGET * (mid - self.lo);
        }
        p
    }
}

const TAIL_BINS: usize = 24;
const TAIL_BIN: f64 = 0.25;

/// Each sample's part in the sustained-shift CUSUM is clipped at this many long-term scale
/// units (a spike counts as a moderate deviation)...
const SHIFT_CLIP: f64 = 3.0;
/// ...and this much is taken off it, so that the noise around the expected value (about one
/// unit) does not accumulate.
const SHIFT_ALLOWANCE: f64 = 0.5;

/// Buckets of the daily profile: 15 minutes each.
const BUCKETS: usize = 96;
const DAY_MS: i64 = 86_400_000;
/// A deviation is damped like an echo when the largest raw surprise at the same time of day
/// (its 15-minute bucket or a neighbour) on the day before, or in the same hour of the week a
/// week before, was at least this share of its own: a daily or weekly event (a nightly job's
/// spike, a Sunday backup) is news once, not every time until the profile has learned it (five
/// days, three weeks), nor when it comes a few minutes off its usual bucket.
const ECHO: f64 = 0.8;
/// The echoes keep surprises in steps of 1/16 (up to about 16, a deviation of millions of scale
/// units): a byte each.
const ECHO_STEPS: f64 = 16.0;
/// Buckets of the weekly profile: one hour each.
const WEEK_BUCKETS: usize = 168;
const WEEK_MS: i64 = 7 * DAY_MS;
const DAY_BUCKET_MS: i64 = DAY_MS / BUCKETS as i64;
const WEEK_BUCKET_MS: i64 = WEEK_MS / WEEK_BUCKETS as i64;
/// The weekly profile is used when its running deviation is below this share of the daily's.
const WEEKLY_BETTER: f64 = 0.65;
const SEASON_ERR_ALPHA: f64 = 0.01;
/// Deviations are capped in that running mean, so one outage does not decide.
const SEASON_ERR_CAP: f64 = 10.0;

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector {
            cfg,
            n: 0,
            level: 0.0,
            dev: 0.0,
            shift: [0.0; 2],
            long: 0.0,
            long_dev: 0.0,
            s_short: 0.0,
            s_mean: 0.0,
            s_var: 0.0,
            season: vec![[0.0; 3]; BUCKETS],
            week: Vec::new(),
            season_err: [0.0; 2],
            last_ts: 0,
            peak: [0.0; 2],
            day_echo: Vec::new(),
            week_echo: Vec::new(),
            tail: Vec::new(),
            records: None,
            vol: 0.0,
            vol_records: None,
            frozen: None,
            frozen_low: None,
            creep_block: None,
            visit: [Visit::default(); 2],
        }
    }

    /// Applies a configuration to learned state (a rule's current one to a baseline restored
    /// from storage).
    pub fn set_config(&mut self, cfg: DetectorConfig) {
        self.cfg = cfg;
    }

    /// Memory held for one series, heap included.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.season.capacity() + self.week.capacity()) * std::mem::size_of::<[f32; 3]>()
            + self.tail.capacity() * std::mem::size_of::<f32>()
            + (self.day_echo.capacity() + self.week_echo.capacity())
                * std::mem::size_of::<[u8; 2]>()
    }

    /// Fewer than `min_history` samples learned: nothing is judged yet.
    pub fn warming(&self) -> bool {
        self.n < u64::from(self.cfg.min_history)
    }

    /// Scores `x` observed at `ts_ms` against the past, then learns from it.
    pub fn update(&mut self, ts_ms: i64, x: f64) -> Output {
        if !x.is_finite() {
            // Nothing to learn from, nothing to judge.
            return Output {
                score: 0.0,
                cause: Cause::Deviation,
                warming: self.warming(),
                expected: self.level,
                lower: self.level,
                upper: self.level,
            };
        }
        let out = self.update_finite(ts_ms, x);
        let ranges = [self.records, self.vol_records, self.frozen]
            .into_iter()
            .flatten()
            .flat_map(|r| [r.lo, r.hi]);
        let state = [
            self.level,
            self.dev,
            self.shift[0],
            self.shift[1],
            self.long,
            self.long_dev,
            self.s_mean,
            self.s_var,
            self.vol,
        ];
        if state.into_iter().chain(ranges).any(|v| !v.is_finite()) {
            // Values beyond f64's range broke the arithmetic: start learning afresh.
            *self = Detector::new(self.cfg);
        }
        Output {
            score: if out.score.is_finite() {
                out.score.clamp(0.0, 1.0)
            } else {
                0.0
            },
            ..out
        }
    }

    fn update_finite(&mut self, ts_ms: i64, x: f64) -> Output {
        let c = self.cfg;
        if self.n == 0 {
            self.level = x;
            self.long = x;
        }
        // A floor for the scale, so a perfectly flat series does not score infinite deviations
        // for tiny changes. Relative only: the unit of a series must not change its scores.
        let floor = (1e-3 * self.long.abs()).max(f64::MIN_POSITIVE);
        let scale = self.dev.max(floor);
        let long_scale = self.long_dev.max(floor);
        let point = (x - self.level).abs() / scale;
        // A profile's bucket, from its slot (the bucket counted from the epoch); a visit begins
        // when the slot changes.
        let learn = |e: &mut [f32; 3], v: &mut Visit, slot: i64, bucket_ms: i64| {
            let share = 1.0 / samples_per_bucket(self.last_ts, ts_ms, bucket_ms);
            if slot != v.slot {
                *v = Visit { slot, mean: e[1] };
            }
            profile_learn(e, x, c.alpha_season, share, f64::from(v.mean));
        };
        let day_slot = ts_ms.div_euclid(DAY_BUCKET_MS);
        let b = day_slot.rem_euclid(BUCKETS as i64) as usize;
        let week_slot = ts_ms.div_euclid(WEEK_BUCKET_MS);
        let w = week_slot.rem_euclid(WEEK_BUCKETS as i64) as usize;
        // A new visit to a bucket: the sample before was in another slot (told to the echoes).
        let new_day = day_slot != self.visit[0].slot;
        let new_week = week_slot != self.visit[1].slot;
        let bucket_floor = floor.max(c.season_floor * long_scale);
        let daily = profile_z(self.season[b], x, c.season_min_days, bucket_floor);
        let daily_mean = f64::from(self.season[b][1]);
        let daily_miss = (x - daily_mean).abs() / scale;
        learn(
            &mut self.season[b],
            &mut self.visit[0],
            day_slot,
            DAY_BUCKET_MS,
        );
        let weekly = if c.season_min_weeks > 0.0 {
            if self.week.len() != WEEK_BUCKETS {
                self.week = vec![[0.0; 3]; WEEK_BUCKETS];
            }
            let mean = f64::from(self.week[w][1]);
            let z = profile_z(self.week[w], x, c.season_min_weeks, bucket_floor)
                .map(|z| (z, (x - mean).abs() / scale, mean));
            learn(
                &mut self.week[w],
                &mut self.visit[1],
                week_slot,
                WEEK_BUCKET_MS,
            );
            z
        } else {
            // No weekly profile: the visit still tells the weekly echo a new hour.
            self.visit[1].slot = week_slot;
            None
        };
        // The weekly profile takes over once it has predicted clearly better than the daily
        // one (a quiet weekend is normal for it).
        let seasonal = match (daily, weekly) {
            (Some(d), Some((w, weekly_miss, weekly_mean))) => {
                let e = &mut self.season_err;
                let better = e[1] < WEEKLY_BETTER * e[0];
                e[0] += SEASON_ERR_ALPHA * (daily_miss.min(SEASON_ERR_CAP) - e[0]);
                e[1] += SEASON_ERR_ALPHA * (weekly_miss.min(SEASON_ERR_CAP) - e[1]);
                Some(if better {
                    (w, weekly_mean)
                } else {
                    (d, daily_mean)
                })
            }
            (d, _) => d.map(|d| (d, daily_mean)),
        };
        // A sustained shift away from what is expected accumulates; one spike adds at most
        // SHIFT_CLIP − SHIFT_ALLOWANCE, and noise within the allowance adds nothing.
        let expected = seasonal.map_or(self.long, |(_, mean)| mean);
        let d = (x - expected) / long_scale;
        let shift_next = [
            (c.shift_decay * self.shift[0] + d.min(SHIFT_CLIP) - SHIFT_ALLOWANCE).max(0.0),
            (c.shift_decay * self.shift[1] - d.max(-SHIFT_CLIP) - SHIFT_ALLOWANCE).max(0.0),
        ];
        let shift = shift_next[0].max(shift_next[1]);
        // A jump the daily shape predicts is not a surprise; a shape the day never had is.
        let z = match seasonal.map(|(sz, _)| sz) {
            Some(sz) => (point.min(sz) / c.point_k)
                .max(sz / c.season_k)
                .max(shift / c.shift_k),
            None => (point / c.point_k).max(shift / c.shift_k),
        };
        let raw = (1.0 + z).ln();
        // An echo of the surprise at the same time the day before (a neighbouring quarter of an
        // hour too, for a job a few minutes early or late) or at the same hour a week before.
        let day_echo = echo(&mut self.day_echo, BUCKETS, b, new_day, true, raw);
        let week_echo = echo(&mut self.week_echo, WEEK_BUCKETS, w, new_week, false, raw);
        self.last_ts = ts_ms;
        // How unusual is this surprise for this series? Compare its short-term average with
        // its long-term distribution (the idea of Numenta's anomaly likelihood).
        let s_short = self.s_short + c.alpha_surprise_short * (raw - self.s_short);
        let sd = self.s_var.sqrt().max(1e-3);
        let mut tail = gaussian_tail((s_short - self.s_mean) / sd);
        let mut cause = Cause::Deviation;
        if c.tail_alpha > 0.0 && self.tail.len() != TAIL_BINS {
            self.tail = vec![0.0; TAIL_BINS];
        }
        if !self.tail.is_empty() {
            let b = ((s_short / TAIL_BIN) as usize).min(TAIL_BINS - 1);
            let total: f32 = self.tail.iter().sum();
            if total > 0.0 {
                let above: f32 = self.tail[b..].iter().sum();
                tail = tail.max(f64::from(above / total));
            }
            let keep = (1.0 - c.tail_alpha) as f32;
            for v in &mut self.tail {
                *v *= keep;
            }
            let rb = ((raw / TAIL_BIN) as usize).min(TAIL_BINS - 1);
            self.tail[rb] += c.tail_alpha as f32;
        }
        // A value the series has never come near is as rare as such records have been, however
        // routine a surprise of its size is. How often they have been is counted over the
        // range's own memory: a series that has set no record in ten thousand samples makes
        // one rarer than a series that set none in the last thousand. A young series has not
        // shown its range yet, while its records are read on the full scale (the stretch):
        // its margin is widened by the stretch's factor to the power 2.5 (2.7 times at 100
        // samples, 1.6 at 300, none from the tail's memory on). A positive series also sets a
        // record by falling to a sliver of its lowest (`RATIO_MARGIN`, widened the same way).
        let youth = self.youth();
        if c.record_margin > 0.0 {
            let widen = youth * youth * youth.sqrt();
            let margin = c.record_margin * widen;
            let r = self.records.get_or_insert_with(|| Records::new(x));
            let ratio = Some(RATIO_MARGIN * widen);
            if let Some(p) = r
                .update(x, margin, ratio, Some(&mut self.creep_block), RANGE_FORGET)
                .filter(|&p| p < tail)
            {
                tail = p;
                cause = Cause::Record;
            }
        }
        // Volatility records keep the surprise's memory: counted over the range's memory they
        // add false positives on NAB's known-cause series (docs/DYNAMIC.md).
        if c.volatility_margin >= 0.0 {
            self.vol += c.alpha_vol * ((x - self.level).abs() - self.vol);
            let r = self
                .vol_records
                .get_or_insert_with(|| Records::new(self.vol));
            let p = r.update(self.vol, c.volatility_margin, None, None, c.tail_alpha);
            if let Some(p) = p.filter(|&p| p < tail) {
                tail = p;
                cause = Cause::Volatility;
            }
            // A series that stops moving: its volatility falls to a fraction of its lowest.
            if self.n >= RECORD_WARM {
                let r = self.frozen.get_or_insert_with(|| Records::new(self.vol));
                if let Some(p) = r
                    .update_collapse(self.vol, &mut self.frozen_low, c.tail_alpha)
                    .filter(|&p| p < tail)
                {
                    tail = p;
                    cause = Cause::Frozen;
                }
            }
        }
        let warming = self.warming();
        let score = if warming {
            0.0
        } else {
            stretch(spread(tail), self.stretch_factor(youth))
        };
        // The surprise's mean and variance start at zero: until the memory is full they are
        // running averages (as the records' rates are), not exponential ones still weighted
        // towards that zero, which would read a young series' surprises as extreme.
        let a = running(self.n, c.alpha_surprise_long);
        moments(&mut self.s_mean, &mut self.s_var, raw, a);
        self.s_short = s_short;
        let score = if (day_echo || week_echo) && cause == Cause::Deviation {
            score * c.echo_damp
        } else {
            score
        };
        // A score below the remembered peak is an echo of the event that set it, and damped; a
        // value record is not, as it goes beyond everything the series has shown, that event
        // included (a burst larger than the one of an hour ago is news, however often the range
        // has been broken lately) — once the range has grown up: a young range is still being
        // found, and its records are as much the series showing its range as news.
        let side = usize::from(x < self.level);
        let score = if score >= self.peak[side] {
            self.peak[side] = score;
            score
        } else {
            self.peak[side] *= c.peak_decay;
            if cause == Cause::Record && youth <= 1.0 {
                score
            } else {
                score * c.echo_damp
            }
        };

        let band = c.point_k * scale;
        let out = Output {
            score,
            cause,
            warming,
            expected: self.level,
            lower: self.level - band,
            upper: self.level + band,
        };
        // Learn.
        let r = (x - self.level).abs();
        self.dev += c.alpha_dev * (r - self.dev);
        self.level += c.alpha_level * (x - self.level);
        self.shift = shift_next;
        let lr = (x - self.long).abs();
        self.long_dev += c.alpha_long * (lr - self.long_dev);
        self.long += c.alpha_long * (x - self.long);
        self.n += 1;
        out
    }
}

/// A history of `n` samples attests a rarity of about 1/n at most, while scores are read on the
/// scale of a full memory of the surprise's tail (1/`tail_alpha` samples). Until the history is
/// that long, a score is stretched by ln(memory)/ln(n) (`youth`), from the series' first day of
/// samples on (`Detector::stretch_factor`): the rarest event a short history can show scores
/// like the rarest of a full one, so one cutoff serves series of every age. Past the memory it
/// changes nothing.
fn stretch(score: f64, youth: f64) -> f64 {
    (score * youth).min(1.0)
}

impl Detector {
    /// The factor a score is stretched by: none in a series' first day of samples
    /// (`RECORD_WARM`), which is still showing its range and how heavy its tail is — the rarest
    /// event of a few hours is not the rarest of a full memory — then `youth`.
    fn stretch_factor(&self, youth: f64) -> f64 {
        if self.n < RECORD_WARM {
            1.0
        } else {
            youth
        }
    }

    /// How young a history is: ln(memory)/ln(n) until it is as long as the memory of the
    /// surprise's tail, 1 from then on (and without a tail memory). The stretch's factor after
    /// the first day, and what widens a young range's record margin.
    fn youth(&self) -> f64 {
        if self.cfg.tail_alpha <= 0.0 {
            return 1.0;
        }
        let memory = 1.0 / self.cfg.tail_alpha;
        let n = self.n as f64;
        if n >= memory {
            return 1.0;
        }
        (memory + 2.0).ln() / (n + 2.0).ln()
    }
}

/// Whether a raw surprise in bucket `b` of a periodic profile of echoes (`n` buckets, each the
/// largest surprise of its latest visit and of the visit before) is an echo: one at least
/// `ECHO` times as large there — or, with `neighbours`, in the bucket before or after — at
/// their visit a period before. Then remembers it as its bucket's surprise of this visit.
fn echo(
    e: &mut Vec<[u8; 2]>,
    n: usize,
    b: usize,
    new_visit: bool,
    neighbours: bool,
    raw: f64,
) -> bool {
    if e.len() != n {
        *e = vec![[0; 2]; n];
    }
    if new_visit {
        // The latest becomes the one before.
        e[b] = [0, e[b][0]];
    }
    // The bucket before was visited this period already (its visit before is the last
    // period's), the one after not yet (its latest is the last period's).
    let mut before = e[b][1];
    if neighbours {
        before = before.max(e[(b + n - 1) % n][1]).max(e[(b + 1) % n][0]);
    }
    // Saturating: a surprise beyond the last step is kept as the last step.
    let steps = (raw * ECHO_STEPS).round().min(255.0) as u8;
    e[b][0] = e[b][0].max(steps);
    raw > 0.0 && f64::from(before) / ECHO_STEPS >= ECHO * raw
}

/// The weight of the `n`-th sample (from 0) in a mean with memory 1/`alpha`: a plain running
/// mean until the memory is full, exponential from then on. An exponential mean started at
/// zero would stay weighted towards that zero for about its memory.
fn running(n: u64, alpha: f64) -> f64 {
    (1.0 / (n as f64 + 1.0)).max(alpha)
}

/// Learns `x` into a mean and a variance with weight `a`.
fn moments(mean: &mut f64, var: &mut f64, x: f64, a: f64) {
    let d = x - *mean;
    *mean += a * d;
    *var = (1.0 - a) * (*var + a * d * d);
}

/// A tail probability as a score in [0, 1]: log(p) / log(10⁻¹⁰), which spreads the values
/// near 1 apart (as HTM's log likelihood does).
fn spread(p: f64) -> f64 {
    ((p + 1e-10).ln() / (1e-10f64).ln()).clamp(0.0, 1.0)
}

/// Deviation of `x` from a profile bucket (visits, mean, mean absolute deviation) in the
/// bucket's scale, once the bucket has been visited `min_visits` times.
fn profile_z(e: [f32; 3], x: f64, min_visits: f64, floor: f64) -> Option<f64> {
    let [visits, mean, dev] = e.map(f64::from);
    (visits >= min_visits).then(|| (x - mean).abs() / dev.max(floor))
}

/// Learns `x` into a profile bucket; `visit` is the share of one period's visit this sample is,
/// `start` the bucket's mean when this visit began.
///
/// Within a visit the mean follows its samples, so a later sample lands close to it; a
/// deviation learned from those distances alone is too small for a visit's first sample,
/// judged by what the earlier visits taught, and a series whose level wanders (a queue, a
/// temperature) then alarms at the start of buckets: on the hour, with the weekly profile. The
/// deviation learns, half each, the distance from the mean as the visit found it and as it
/// stands.
fn profile_learn(e: &mut [f32; 3], x: f64, alpha: f64, visit: f64, start: f64) {
    let [visits, mean, dev] = e.map(f64::from);
    let a = if visits < 1.0 {
        1.0
    } else {
        alpha.max(1.0 / (visits + 1.0))
    };
    let dev = if visits < 1.0 {
        0.0
    } else {
        dev + a * (0.5 * ((x - start).abs() + (x - mean).abs()) - dev)
    };
    *e = [
        (visits + visit) as f32,
        (mean + a * (x - mean)) as f32,
        dev as f32,
    ];
}

/// How many samples land in one bucket of `bucket_ms` per period, judged from the sampling
/// step.
fn samples_per_bucket(prev: i64, now: i64, bucket_ms: i64) -> f64 {
    let step = (now - prev).clamp(1_000, DAY_MS);
    (bucket_ms as f64 / step as f64).max(1.0)
}

/// P(Z > z) for a standard normal Z (Abramowitz–Stegun 7.1.26 on erfc).
fn gaussian_tail(z: f64) -> f64 {
    if z < 0.0 {
        return 1.0 - gaussian_tail(-z);
    }
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    0.5 * poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: u64) -> f64 {
        // Deterministic pseudo-noise in [-1, 1].
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) - 1.0
    }

    #[test]
    fn spike_scores_far_above_noise() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut max_normal: f64 = 0.0;
        for i in 0..2000 {
            let o = d.update(i as i64 * 300_000, 50.0 + noise(i));
            if i > 500 {
                max_normal = max_normal.max(o.score);
            }
        }
        let spike = d.update(2000 * 300_000, 80.0).score;
        assert!(spike > 0.9, "spike {spike}");
        assert!(spike > max_normal, "spike {spike} vs noise {max_normal}");
    }

    #[test]
    fn state_saved_before_the_weekly_profile_and_records_still_loads_and_learns() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..100 {
            d.update(i as i64 * 300_000, noise(i));
        }
        let mut old = serde_json::to_value(&d).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("week").unwrap();
        fields.remove("season_err").unwrap();
        for f in ["records", "vol", "vol_records"] {
            fields.remove(f).unwrap();
        }
        let cfg = fields["cfg"].as_object_mut().unwrap();
        for f in [
            "season_min_weeks",
            "record_margin",
            "volatility_margin",
            "alpha_vol",
        ] {
            cfg.remove(f).unwrap();
        }
        let mut back: Detector = serde_json::from_value(old).unwrap();
        assert!(back.week.is_empty());
        back.update(100 * 300_000, 3.0);
        assert_eq!(back.week.len(), WEEK_BUCKETS);
        assert_eq!(back.cfg.season_min_weeks, 3.0);
        // The range starts at the first sample after the restore, and judges nothing for a
        // while: everything would break a range of one value.
        assert_eq!(back.cfg.record_margin, 0.1);
        let r = back.records.expect("started");
        assert_eq!((r.lo, r.hi, r.n), (3.0, 3.0, 1));
        assert_eq!(back.cfg.volatility_margin, 0.02);
        assert_eq!(back.vol_records.expect("started").n, 1);
    }

    #[test]
    fn quiet_during_cold_start_and_bounded_state() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..30 {
            assert_eq!(d.update(i * 300_000, i as f64 * 100.0).score, 0.0);
        }
        assert!(d.state_bytes() <= 4608, "{} bytes", d.state_bytes());
    }

    /// The cause of a value beyond the range by `excess` of its span, after `n` samples of noise.
    fn cause_beyond_the_range(n: u64, excess: f64) -> Cause {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..n {
            d.update(i as i64 * 300_000, noise(i));
        }
        let r = d.records.expect("range");
        let x = r.hi + excess * (r.hi - r.lo);
        d.update(n as i64 * 300_000, x).cause
    }

    #[test]
    fn a_young_range_needs_a_wider_margin_for_a_record() {
        // The same excess over the range (13 % of it) after 300 and after 1,100 samples of the
        // same noise: in the young series it is within the widened margin (16 %), in the older
        // one a record.
        assert_ne!(cause_beyond_the_range(300, 0.13), Cause::Record);
        assert_eq!(cause_beyond_the_range(1_100, 0.13), Cause::Record);
    }

    #[test]
    fn a_range_is_judged_once_it_has_seen_a_day() {
        // Twice the range beyond its highest: after 200 five-minute samples the series showing
        // its range in its first day, after 300 a record.
        assert_ne!(cause_beyond_the_range(200, 2.0), Cause::Record);
        assert_eq!(cause_beyond_the_range(300, 2.0), Cause::Record);
    }

    #[test]
    fn a_short_history_reads_its_rarest_events_on_the_full_scale() {
        let mut d = Detector::new(DetectorConfig::default());
        let memory = 1.0 / d.cfg.tail_alpha;
        // The rarest a history of n can attest (1/(n+2)) scores as the rarest of a full memory.
        let rarest = |n: f64| spread(1.0 / (n + 2.0));
        d.n = 300;
        let full = rarest(memory);
        assert!((stretch(rarest(300.0), d.youth()) - full).abs() < 1e-6);
        assert!(stretch(0.25, d.youth()) > 0.25 && stretch(0.25, d.youth()) < 0.32);
        assert_eq!(stretch(0.9, d.youth()), 1.0, "capped");
        // From a full memory on, nothing changes.
        for n in [1000, 5000, 1_000_000] {
            d.n = n;
            assert_eq!(stretch(0.25, d.youth()), 0.25);
        }
        d.cfg.tail_alpha = 0.0;
        d.n = 10;
        assert_eq!(stretch(0.25, d.youth()), 0.25, "no tail memory, no stretch");
    }

    #[test]
    fn a_series_first_day_is_not_stretched() {
        // Its first day's rarest events are the series showing its range: read as they are.
        let mut d = Detector::new(DetectorConfig::default());
        d.n = 200;
        assert!(d.youth() > 1.2);
        assert_eq!(d.stretch_factor(d.youth()), 1.0);
        d.n = 300;
        assert_eq!(d.stretch_factor(d.youth()), d.youth());
        assert!(d.youth() > 1.2);
    }

    #[test]
    fn moments_are_plain_until_the_memory_is_full_then_exponential() {
        let (mut mean, mut var) = (0.0, 0.0);
        for (n, x) in [1.0, 2.0, 3.0, 6.0].into_iter().enumerate() {
            moments(&mut mean, &mut var, x, running(n as u64, 0.01));
        }
        assert!((mean - 3.0).abs() < 1e-12, "{mean}");
        assert!((var - 3.5).abs() < 1e-12, "{var}");
        assert_eq!(running(99, 0.01), 0.01);
        assert_eq!(running(500, 0.01), 0.01);
    }

    #[test]
    fn state_round_trips() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..100 {
            d.update(i as i64 * 300_000, noise(i));
        }
        let json = serde_json::to_string(&d).unwrap();
        let mut back: Detector = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.update(100 * 300_000, 3.0),
            d.update(100 * 300_000, 3.0)
        );
    }
}

#[cfg(test)]
mod behaviour {
    use super::*;

    const STEP: i64 = 300_000; // 5 minutes
    /// The medium sensitivity's warning and critical cutoffs (tocsin-rules).
    const WARN: f64 = 0.2;
    const CRIT: f64 = 0.4;

    fn daily(i: i64) -> f64 {
        // Busy 08:00–20:00, quiet otherwise: a square wave over the day.
        let minute = (i * STEP / 60_000) % 1440;
        if (480..1200).contains(&minute) {
            100.0
        } else {
            20.0
        }
    }

    #[test]
    fn learned_seasonality_stops_the_daily_jumps_from_scoring() {
        let mut d = Detector::new(DetectorConfig::default());
        let per_day = 288;
        let mut first_day_max: f64 = 0.0;
        let mut late_max: f64 = 0.0;
        for i in 0..per_day * 14 {
            let s = d.update(i * STEP, daily(i)).score;
            if (per_day / 3..per_day).contains(&i) {
                first_day_max = first_day_max.max(s);
            }
            if i >= per_day * 10 {
                late_max = late_max.max(s);
            }
        }
        assert!(
            first_day_max > CRIT,
            "an unknown jump is a surprise: {first_day_max}"
        );
        assert!(late_max < WARN, "a learned daily jump is not: {late_max}");
        // The day that fails to rise is caught: at warning after two weeks, at critical after a
        // month, when the surprises of the first days (the jumps, before the profile knew them)
        // have left the surprise's memory. (A profile bucket's deviation is at least a tenth of
        // the long-term one, which a square wave's swing makes large: 80 is 20 such units.)
        let broken_day = |d: &mut Detector, day: i64| {
            (per_day * day..per_day * (day + 1))
                .map(|i| d.update(i * STEP, 20.0).score)
                .fold(0.0, f64::max)
        };
        let mut later = d.clone();
        let broken = broken_day(&mut d, 14);
        assert!(broken > WARN, "a broken daily shape scores: {broken}");
        for i in per_day * 14..per_day * 30 {
            later.update(i * STEP, daily(i));
        }
        let broken = broken_day(&mut later, 30);
        assert!(broken > CRIT, "a broken daily shape a month on: {broken}");
    }

    #[test]
    fn a_weekly_shape_is_learned_and_a_weekday_that_looks_like_a_weekend_is_caught() {
        // Busy on weekdays 08:00-20:00, quiet at night and all weekend; a sample every 15
        // minutes.
        const STEP: i64 = 900_000;
        const DAY: i64 = 96;
        const WEEK: i64 = 7 * DAY;
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        let value = |i: i64| {
            let busy = (i / DAY) % 7 < 5 && (8 * 4..20 * 4).contains(&(i % DAY));
            (if busy { 100.0 } else { 20.0 }) + noise(i)
        };
        let mut d = Detector::new(DetectorConfig::default());
        let mut late_max: f64 = 0.0;
        for i in 0..WEEK * 8 {
            let s = d.update(i * STEP, value(i)).score;
            if i >= WEEK * 6 {
                late_max = late_max.max(s);
            }
        }
        assert!(late_max < WARN, "learned weekends are normal: {late_max}");
        // A weekday (the first day of the ninth week) that stays quiet.
        let mut broken: f64 = 0.0;
        for i in WEEK * 8..WEEK * 8 + DAY {
            broken = broken.max(d.update(i * STEP, 20.0 + noise(i)).score);
        }
        // It alerts. Not at critical: the weekends of the first weeks, surprises before the
        // weekly profile was trusted, are still in the memory of the empirical tail.
        assert!(
            broken > WARN,
            "a weekday without its traffic scores: {broken}"
        );
        // With the daily profile alone, weekend mornings are routine surprises, and so is a
        // weekday that looks like one.
        let mut daily_only = Detector::new(DetectorConfig {
            season_min_weeks: 0.0,
            ..DetectorConfig::default()
        });
        for i in 0..WEEK * 8 {
            daily_only.update(i * STEP, value(i));
        }
        let missed = (WEEK * 8..WEEK * 8 + DAY)
            .map(|i| daily_only.update(i * STEP, 20.0 + noise(i)).score)
            .fold(0.0, f64::max);
        assert!(missed < WARN, "the daily profile alone: {missed}");
        assert!(d.state_bytes() <= 4608, "{} bytes", d.state_bytes());
    }

    #[test]
    fn a_level_shift_is_caught_then_absorbed() {
        let mut d = Detector::new(DetectorConfig::default());
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        for i in 0..2000 {
            d.update(i * STEP, 50.0 + noise(i));
        }
        let mut scores = Vec::new();
        for i in 2000..4000 {
            scores.push(d.update(i * STEP, 80.0 + noise(i)).score);
        }
        let early = scores[..20].iter().copied().fold(0.0, f64::max);
        let late = scores[1500..].iter().copied().fold(0.0, f64::max);
        assert!(early > CRIT, "the shift is reported: {early}");
        assert!(late < WARN, "the new level is normal after a while: {late}");
    }

    /// Ten days of uniform noise (standard deviation 0.32) around 50.5: the detector, the
    /// noise, the samples fed and the highest score of the last five days.
    fn ten_days_of_noise() -> (Detector, fn(i64) -> f64, i64, f64) {
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        let mut d = Detector::new(DetectorConfig::default());
        let days = 10 * 288;
        let mut before: f64 = 0.0;
        for i in 0..days {
            let s = d.update(i * STEP, 50.0 + noise(i)).score;
            if i > days / 2 {
                before = before.max(s);
            }
        }
        (d, noise, days, before)
    }

    #[test]
    fn a_sustained_shift_too_small_for_any_one_sample_is_caught_then_absorbed() {
        // Then the series settles 0.64 higher, two standard deviations: no one sample of it is
        // unusual (the noise alone reaches that far every few samples), its persistence is.
        let (mut d, noise, days, before) = ten_days_of_noise();
        let scores: Vec<f64> = (days..days + 2000)
            .map(|i| d.update(i * STEP, 50.64 + noise(i)).score)
            .collect();
        let first = scores.iter().position(|&s| s > WARN);
        assert!(before < WARN, "the noise: {before}");
        assert!(
            first.is_some_and(|n| n < 60),
            "caught within five hours: {first:?}"
        );
        let late = scores[1000..].iter().copied().fold(0.0, f64::max);
        assert!(late < WARN, "the new level is normal after a while: {late}");
    }

    #[test]
    fn a_series_that_freezes_is_caught() {
        // Then the value stops moving (a hung exporter, a stuck sensor): its volatility creeps
        // down to nothing, far below anything the series has shown.
        let (mut d, _, days, before) = ten_days_of_noise();
        let frozen: Vec<Output> = (days..days + 288)
            .map(|i| d.update(i * STEP, 50.4))
            .collect();
        assert!(before < WARN, "the noise: {before}");
        let first = frozen.iter().position(|o| o.score > WARN);
        assert!(
            first.is_some_and(|n| n < 72),
            "caught within six hours: {first:?}"
        );
        assert_eq!(frozen[first.unwrap()].cause, Cause::Frozen);
    }

    #[test]
    fn a_second_event_soon_after_a_first_still_scores() {
        // One incident makes a second as large look less rare for a while (the empirical
        // tail), but it must still warn.
        let mut d = Detector::new(DetectorConfig::default());
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        for i in 0..1000 {
            d.update(i * STEP, 40.0 + noise(i));
        }
        let drop = d.update(1000 * STEP, 5.0).score;
        for i in 1001..1010 {
            d.update(i * STEP, 40.0 + noise(i));
        }
        let rise = d.update(1010 * STEP, 90.0).score;
        assert!(drop > 0.9 && rise > WARN, "drop {drop}, rise {rise}");
    }

    #[test]
    fn routine_spikes_stop_scoring_but_a_larger_one_still_does() {
        // A job doubles the value for one sample every 37 minutes; two days of minutes, so the
        // daily profile (trusted after five days) is not involved.
        const MINUTE: i64 = 60_000;
        let mut d = Detector::new(DetectorConfig::default());
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        let mut late_spikes: f64 = 0.0;
        for i in 0..3000 {
            let spike = i % 37 == 36;
            let s = d
                .update(i * MINUTE, if spike { 80.0 } else { 40.0 } + noise(i))
                .score;
            if spike && i > 2000 {
                late_spikes = late_spikes.max(s);
            }
        }
        assert!(late_spikes < WARN, "a routine spike: {late_spikes}");
        let big = d.update(3000 * MINUTE, 400.0).score;
        // It alerts; damped as an echo of the first, unlearned spikes, only at warning level.
        assert!(
            big > WARN && big > late_spikes,
            "a spike ten times larger than the routine one: {big}"
        );
    }

    #[test]
    fn a_value_beyond_anything_seen_is_caught_even_when_deviations_of_its_size_are_routine() {
        // Uniform noise of ±5 around 50: a value of 57 is under three mean deviations out, a
        // surprise of a routine size, but the series has never come near it (its range is
        // 45-55, and 57 is beyond it by a fifth of it).
        let noise = |i: i64| ((i * 7919) % 101) as f64 / 10.0 - 5.0;
        let run = |record_margin: f64| {
            let mut d = Detector::new(DetectorConfig {
                record_margin,
                // The jump also lifts the short-term volatility above anything seen.
                volatility_margin: if record_margin > 0.0 {
                    DetectorConfig::default().volatility_margin
                } else {
                    -1.0
                },
                ..DetectorConfig::default()
            });
            let mut normal: f64 = 0.0;
            for i in 0..2000 {
                let s = d.update(i * STEP, 50.0 + noise(i)).score;
                if i > 500 {
                    normal = normal.max(s);
                }
            }
            (normal, d.update(2000 * STEP, 57.0))
        };
        let (normal, record) = run(DetectorConfig::default().record_margin);
        assert!(normal < WARN, "the noise itself: {normal}");
        assert!(record.score > WARN, "a value never seen: {record:?}");
        assert_eq!(record.cause, Cause::Record);
        let (_, without) = run(0.0);
        assert!(
            without.score < WARN,
            "without records of either kind: {without:?}"
        );
        assert_eq!(without.cause, Cause::Deviation);
    }

    #[test]
    fn a_nightly_spike_is_news_once_before_the_profile_has_learned_it() {
        // A job that lifts a host's CPU for one minute every night, a few minutes later or
        // earlier from night to night (03:05, 03:20, 03:35, 03:25: three 15-minute buckets),
        // in the series' first days, before the daily profile is trusted (five days). Its
        // rarity (one minute a day) is the same every night, and a day is long enough for the
        // echo of the night before to have faded.
        const MINUTE: i64 = 60_000;
        let per_day = 1_440;
        let spikes = [(1, 185), (2, 200), (3, 215), (4, 205)]; // (day, minute of the day)
        let mut d = Detector::new(DetectorConfig::default());
        let mut nightly = Vec::new();
        for i in 0..5 * per_day {
            let spike = spikes.contains(&(i / per_day, i % per_day));
            let other = i == 4 * per_day + 900; // 15:00 on day four
            let x = if spike || other { 80.0 } else { 50.0 } + ((i * 7919) % 11) as f64 / 5.0;
            let o = d.update(i * MINUTE, x);
            if spike {
                nightly.push(o.score);
            }
            if other {
                assert!(o.score > WARN, "the same spike at another time {o:?}");
            }
        }
        assert!(nightly[0] > WARN, "{nightly:?}");
        assert!(nightly[1..].iter().all(|&s| s < WARN), "{nightly:?}");
    }

    #[test]
    fn a_weekly_spike_is_news_once_before_the_profile_has_learned_it() {
        // A backup that lifts a host's disk I/O for one five-minute sample every Sunday night,
        // at 02:05, 02:40, 02:20 (the same hour), for four weeks: before the weekly profile is
        // trusted (three weeks) each is as rare as the last and a week is long enough for the
        // echo of the one before to have faded. The same spike on a Wednesday still warns.
        let per_week = 7 * 288;
        // 1970-01-01 was a Thursday: Sunday 02:00 is 3 days and 2 hours in.
        let sunday = |week: i64, minute: i64| week * per_week + 3 * 288 + 24 + minute / 5;
        let spikes = [sunday(0, 5), sunday(1, 40), sunday(2, 20), sunday(3, 5)];
        let other = sunday(2, 0) + 3 * 288 + 120; // Wednesday at noon
        let mut d = Detector::new(DetectorConfig::default());
        let mut weekly = Vec::new();
        for i in 0..4 * per_week {
            let spike = spikes.contains(&i);
            let x = if spike || i == other { 80.0 } else { 50.0 } + ((i * 7919) % 11) as f64 / 5.0;
            let o = d.update(i * STEP, x);
            if spike {
                weekly.push(o.score);
            }
            if i == other {
                assert!(o.score > WARN, "the same spike at another time {o:?}");
            }
        }
        assert!(weekly[0] > WARN, "{weekly:?}");
        assert!(weekly[1..].iter().all(|&s| s < WARN), "{weekly:?}");
    }

    #[test]
    fn a_positive_series_falling_to_a_sliver_of_its_lowest_is_a_record() {
        // A price ranging over 0.05-0.8 (evenly on a ratio scale): on the additive scale no
        // positive value can break that range downwards by a tenth of it.
        let price = |i: i64| 0.05 * 16f64.powf(((i * 7919) % 101) as f64 / 100.0);
        let after = |x: f64| {
            let mut d = Detector::new(DetectorConfig::default());
            for i in 0..2_000 {
                d.update(i * STEP, price(i));
            }
            d.update(2_000 * STEP, x)
        };
        let sliver = after(0.001);
        assert_eq!(sliver.cause, Cause::Record, "{sliver:?}");
        assert!(sliver.score > WARN, "{sliver:?}");
        // Below the lowest, but not by half the range's span on the ratio scale (0.0125).
        let low = after(0.03);
        assert!(low.cause != Cause::Record && low.score < WARN, "{low:?}");
        // Zero is judged on the additive scale only (for a count, an empty interval).
        assert_ne!(after(0.0).cause, Cause::Record);
    }

    #[test]
    fn a_burst_beyond_the_last_one_is_news_not_its_echo() {
        // Mentions of a name: a few every five minutes, then a burst to 100 for an hour
        // (reported); three days later a second burst, to 130, while the remembered peak of
        // the first has not yet faded. A value beyond any shown is a record, and no echo of the
        // burst before, though the range was broken recently: the second burst still warns.
        let mut d = Detector::new(DetectorConfig::default());
        let noise = |i: i64| ((i * 7919) % 11) as f64 / 10.0;
        let mut first: f64 = 0.0;
        for i in 0..3_000 {
            let x = if (2_000..2_012).contains(&i) {
                100.0
            } else {
                5.0 + noise(i)
            };
            first = first.max(d.update(i * STEP, x).score);
        }
        let second = d.update(3_000 * STEP, 130.0);
        assert!(
            first > WARN && second.cause == Cause::Record && second.score > WARN,
            "first {first}, second {second:?}"
        );
    }

    #[test]
    fn a_climb_past_the_highest_is_a_record_though_each_step_is_small() {
        // A machine's temperature: a daily cycle whose level varies from day to day (so the
        // profile's buckets are wide) for two weeks, then, from the cycle's top, a climb of
        // half a degree every five minutes, noisy as the series always is. Each step stays
        // within the margin of the highest so far, which follows the climb; past the highest as
        // it stood before the climb by the margin, it is a record and the climb's first warning
        // (at 103.6, 0.33; judged against the live range alone, the first warning came 20
        // samples later at 113.3, from the deviation).
        let mut d = Detector::new(DetectorConfig::default());
        let per_day = 288;
        let noise = |i: i64| ((i * 7919) % 41) as f64 / 10.0;
        let cycle = |i: i64| {
            let day = i / per_day;
            let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
            70.0 + 3.0 * ((day * 37) % 7 - 3) as f64 + 15.0 * phase.sin() + noise(i)
        };
        let top = per_day * 14 + per_day / 4;
        for i in 0..top {
            d.update(i * STEP, cycle(i));
        }
        let mut level = cycle(top) - noise(top);
        for i in top..top + 120 {
            let (lo, hi) = d.records.map(|r| (r.lo, r.hi)).expect("range");
            let x = level + noise(i);
            let o = d.update(i * STEP, x);
            if o.score > WARN {
                assert_eq!(o.cause, Cause::Record, "{x}: {o:?}");
                // Not a plain record: within the margin of the highest as it stood.
                assert!(x < hi + d.cfg.record_margin * (hi - lo), "{x} beyond {hi}");
                return;
            }
            level += 0.5;
        }
        panic!("the climb to {level} did not warn");
    }

    #[test]
    fn a_wandering_level_does_not_alarm_on_the_hour() {
        // A random walk (a queue, a temperature) for about a hundred days of 5-minute samples,
        // twenty times over: its false alarms come at any time, not at the start of the weekly
        // profile's hour buckets, each hour's first sample judged by a deviation learned
        // mostly from samples that the visit's own mean had followed.
        let (mut on_the_hour, mut other) = (0, 0);
        for seed in 1..=20u64 {
            let mut r = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut walk = 100.0;
            let mut d = Detector::new(DetectorConfig::default());
            for i in 0..30_000i64 {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                walk += (r >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                if i >= 2_000 && d.update(i * STEP, walk).score >= WARN {
                    if i % 12 == 0 {
                        on_the_hour += 1;
                    } else {
                        other += 1;
                    }
                }
            }
        }
        // One sample in twelve is an hour's first: allow twice that share.
        assert!(
            on_the_hour * 12 <= 2 * (on_the_hour + other),
            "on the hour {on_the_hour}, other {other}"
        );
    }

    #[test]
    fn a_record_is_rarer_the_longer_the_series_has_set_none() {
        // The same noise and the same new high, after two thousand and after twenty thousand
        // samples without a record (the few of the first samples, which set the range, still
        // count): the longer history makes it several times rarer.
        let noise = |i: i64| ((i * 7919) % 101) as f64 / 10.0 - 5.0;
        let record_after = |n: i64| {
            let mut d = Detector::new(DetectorConfig::default());
            for i in 0..n {
                d.update(i * STEP, 50.0 + noise(i));
            }
            d.update(n * STEP, 57.0)
        };
        let (short, long) = (record_after(2_000), record_after(20_000));
        assert_eq!((short.cause, long.cause), (Cause::Record, Cause::Record));
        assert!(short.score > WARN, "{short:?}");
        let rarity = |score: f64| 10f64.powf(-10.0 * score);
        let ratio = rarity(short.score) / rarity(long.score);
        assert!(
            (4.0..20.0).contains(&ratio),
            "{ratio} ({short:?}, {long:?})"
        );
    }

    #[test]
    fn noise_growing_beyond_anything_seen_is_caught_though_no_value_is_extreme() {
        // A slow swing between 30 and 70 with noise of ±1; then the noise grows to ±5 while
        // every value stays inside the range the series has shown (a retry storm, a flapping
        // dependency: the level holds, the jitter does not).
        let noise = |i: i64| ((i * 7919) % 101) as f64 / 50.0 - 1.0;
        let swing = |i: i64| 50.0 + 20.0 * (i as f64 / 150.0).sin();
        let run = |volatility_margin: f64| {
            let mut d = Detector::new(DetectorConfig {
                volatility_margin,
                ..DetectorConfig::default()
            });
            let mut normal: f64 = 0.0;
            for i in 0..3000 {
                let s = d.update(i * STEP, swing(i) + noise(i)).score;
                if i > 500 {
                    normal = normal.max(s);
                }
            }
            let mut jitter = None::<Output>;
            for i in 3000..3060 {
                let x = (swing(i) + 5.0 * noise(i)).clamp(31.0, 69.0);
                let o = d.update(i * STEP, x);
                if jitter.is_none_or(|j| o.score > j.score) {
                    jitter = Some(o);
                }
            }
            (normal, jitter.expect("scored"))
        };
        let (normal, jitter) = run(DetectorConfig::default().volatility_margin);
        assert!(normal < WARN, "the usual noise: {normal}");
        assert!(jitter.score > WARN, "noise never seen: {jitter:?}");
        assert_eq!(jitter.cause, Cause::Volatility);
        let (_, without) = run(-1.0);
        assert!(
            without.score < WARN,
            "without volatility records: {without:?}"
        );
    }

    #[test]
    fn values_at_the_ends_of_f64_leave_no_range_stuck_at_infinity() {
        // A range as wide as f64 allows: its width overflows on the next sample.
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..200 {
            d.update(i * STEP, (i % 7) as f64);
        }
        for r in [&mut d.records, &mut d.vol_records] {
            let r = r.as_mut().expect("started");
            (r.lo, r.hi) = (-0.9 * f64::MAX, 0.9 * f64::MAX);
        }
        d.update(200 * STEP, 3.0);
        let finite = |r: Option<Records>| r.is_none_or(|r| r.lo.is_finite() && r.hi.is_finite());
        assert!(finite(d.records) && finite(d.vol_records), "{d:?}");
    }

    #[test]
    fn scores_stay_in_range_for_hostile_input() {
        let mut d = Detector::new(DetectorConfig::default());
        let vals = [0.0, 1e300, -1e300, 1e-300, 5.0, f64::MAX / 2.0, 0.0, 7.0];
        for i in 0..5000i64 {
            let v = vals[(i as usize * 31) % vals.len()];
            let o = d.update(i * 1000, v);
            assert!((0.0..=1.0).contains(&o.score), "{} at {i}", o.score);
        }
    }
}
