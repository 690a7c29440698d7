//! A record saved as bytes, so a restart reads the few kilobytes of its buckets instead of
//! rebuilding them from the indicator's whole period (2.6 million samples for 30 days at one a
//! second), then takes in only what was observed since it was saved.
//!
//! Format 1, little-endian: `SLO1`, the objective (target `f64`, period `i64`), the longest
//! gap an observation stands for (`i64`), the newest observation's time (`i64`, `i64::MIN`
//! for none), then each ring (fine, coarse): its resolution (`i64`), its length (`u32`), its
//! newest bucket (`i64`, `i64::MIN` for none) and its buckets as runs of equal ones (`u32`
//! count, then bad and observed time as `f64`) — a service that was up all along is one run.

use crate::{Objective, Ring, Tracker};

const MAGIC: &[u8; 4] = b"SLO1";
const NONE: i64 = i64::MIN;

impl Tracker {
    /// The record as bytes (`Tracker::load` reads them back).
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.obj.target.to_le_bytes());
        out.extend_from_slice(&self.obj.period_ms.to_le_bytes());
        out.extend_from_slice(&self.max_gap_ms.to_le_bytes());
        out.extend_from_slice(&self.last.unwrap_or(NONE).to_le_bytes());
        for ring in [&self.fine, &self.coarse] {
            ring.save(&mut out);
        }
        out
    }

    /// A record saved by `save` for the same objective and longest gap; an error says why
    /// the bytes cannot be taken (the objective changed, they are cut short or corrupt), and
    /// the caller rebuilds the record instead. What is observed from here on is not kept to be
    /// undone until the next `mark`, as for a new record.
    pub fn load(obj: Objective, max_gap_ms: i64, bytes: &[u8]) -> Result<Tracker, String> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err("not a saved service-level record (format 1)".into());
        }
        let saved = Objective {
            target: r.f64()?,
            period_ms: r.i64()?,
        };
        if saved != obj {
            return Err(format!(
                "saved for an objective of {} over {} ms, now {} over {} ms",
                saved.target, saved.period_ms, obj.target, obj.period_ms
            ));
        }
        if r.i64()? != max_gap_ms {
            return Err("saved with another longest gap".into());
        }
        let last = some(r.i64()?);
        let mut t = Tracker::new(obj, max_gap_ms);
        t.last = last;
        for ring in [&mut t.fine, &mut t.coarse] {
            ring.load(&mut r, max_gap_ms)?;
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes left over", r.0.len()));
        }
        Ok(t)
    }
}

impl Ring {
    fn save(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.res_ms.to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.newest.unwrap_or(NONE).to_le_bytes());
        let runs: Vec<(u32, [f64; 2])> = self.slots.iter().fold(Vec::new(), |mut runs, s| {
            match runs.last_mut() {
                Some((n, v)) if v == s => *n += 1,
                _ => runs.push((1, *s)),
            }
            runs
        });
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (n, [bad, total]) in runs {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&bad.to_le_bytes());
            out.extend_from_slice(&total.to_le_bytes());
        }
    }

    /// Fills a new ring of the same resolution and length from `r`. A bucket holds at most its
    /// own span and the longest gap an observation in it stands for, the bad part of it at most.
    fn load(&mut self, r: &mut Reader, max_gap_ms: i64) -> Result<(), String> {
        let (res, len) = (r.i64()?, r.u32()? as usize);
        if res != self.res_ms || len != self.slots.len() {
            return Err(format!(
                "a ring of {len} buckets of {res} ms, where {} of {} are kept",
                self.slots.len(),
                self.res_ms
            ));
        }
        self.newest = some(r.i64()?);
        let runs = r.u32()?;
        let mut at = 0usize;
        for _ in 0..runs {
            let n = r.u32()? as usize;
            let v = [r.f64()?, r.f64()?];
            let most = (self.res_ms + max_gap_ms) as f64;
            if !(v[0] >= 0.0 && v[0] <= v[1] && v[1] <= most) {
                return Err(format!("a bucket of {v:?}"));
            }
            let Some(end) = at.checked_add(n).filter(|&e| e <= len) else {
                return Err("more buckets than the ring holds".into());
            };
            self.slots[at..end].fill(v);
            at = end;
        }
        if at != len {
            return Err(format!("{at} of {len} buckets"));
        }
        Ok(())
    }
}

fn some(v: i64) -> Option<i64> {
    (v != NONE).then_some(v)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn f64(&mut self) -> Result<f64, String> {
        self.array().map(f64::from_le_bytes)
    }
}
