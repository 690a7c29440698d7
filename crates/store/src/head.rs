//! The in-memory head: per series, the newest timestamp (and value, once one arrived since the
//! start) and a compressed chunk of the samples not yet checkpointed. Indexed by series id, which SQLite hands out densely.

use tocsin_model::{Sample, TimestampMs};

use crate::chunk::{get_varint, put_varint, unzigzag, zigzag, ChunkEncoder};
use crate::SeriesId;

#[derive(Default)]
pub(crate) struct Head {
    series: Vec<Option<HeadSeries>>,
    samples: u64,
}

struct HeadSeries {
    last_ts: Option<TimestampMs>,
    /// The newest sample, when it was appended since the start (a restart knows only its time).
    last: Option<Sample>,
    chunk: ChunkEncoder,
}

impl Head {
    pub(crate) fn ensure(&mut self, id: SeriesId, last_ts: Option<TimestampMs>) {
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, || None);
        }
        let s = self.series[i].get_or_insert_with(|| HeadSeries {
            last_ts: None,
            last: None,
            chunk: ChunkEncoder::new(),
        });
        if last_ts > s.last_ts {
            s.last_ts = last_ts;
        }
    }

    pub(crate) fn last_ts(&self, id: SeriesId) -> Option<TimestampMs> {
        self.series.get(id as usize)?.as_ref()?.last_ts
    }

    /// Appends a sample known to be newer than the series' last one.
    pub(crate) fn append(&mut self, id: SeriesId, s: Sample) {
        if let Some(Some(h)) = self.series.get_mut(id as usize) {
            if h.last_ts.is_some_and(|t| s.timestamp_ms <= t) {
                return;
            }
            h.chunk.append(s);
            h.last_ts = Some(s.timestamp_ms);
            h.last = Some(s);
            self.samples += 1;
        }
    }

    pub(crate) fn last(&self, id: SeriesId) -> Option<Sample> {
        self.series.get(id as usize)?.as_ref()?.last
    }

    pub(crate) fn chunk_bytes(&self, id: SeriesId) -> Option<&[u8]> {
        let h = self.series.get(id as usize)?.as_ref()?;
        (!h.chunk.is_empty()).then(|| h.chunk.bytes())
    }

    pub(crate) fn chunks(&self) -> impl Iterator<Item = (SeriesId, &ChunkEncoder)> {
        self.series.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .filter(|s| !s.chunk.is_empty())
                .map(|s| (i as SeriesId, &s.chunk))
        })
    }

    pub(crate) fn reset_chunks(&mut self) {
        for s in self.series.iter_mut().flatten() {
            s.chunk.reset();
        }
        self.samples = 0;
    }

    pub(crate) fn samples(&self) -> u64 {
        self.samples
    }
}

/// Ingest-log row format: repeated `series id, count, (ts delta zigzag, value bits LE)*`.
pub(crate) fn encode_log(buf: &mut Vec<u8>, id: SeriesId, samples: &[Sample]) {
    put_varint(buf, u64::from(id));
    put_varint(buf, samples.len() as u64);
    let mut prev = 0i64;
    for s in samples {
        put_varint(buf, zigzag(s.timestamp_ms.wrapping_sub(prev)));
        prev = s.timestamp_ms;
        buf.extend_from_slice(&s.value.to_bits().to_le_bytes());
    }
}

pub(crate) fn decode_log(mut b: &[u8]) -> Option<Vec<(SeriesId, Sample)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let id = SeriesId::try_from(get_varint(&mut b)?).ok()?;
        let n = get_varint(&mut b)?;
        let mut prev = 0i64;
        for _ in 0..n {
            let ts = prev.wrapping_add(unzigzag(get_varint(&mut b)?));
            prev = ts;
            let v = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
            b = &b[8..];
            out.push((id, Sample::new(ts, f64::from_bits(v))));
        }
    }
    Some(out)
}
