//! Compressed sample chunks: timestamps as delta-of-delta zigzag varints, values as the XOR with
//! the previous value, written as a one-byte header plus only the bytes that differ (a byte-wise
//! cousin of Gorilla's bit-packing: almost as small on ops data, much simpler and faster).

use tocsin_model::{Sample, TimestampMs};

/// The most bytes one sample adds to a chunk (a ten-byte varint and nine of value).
pub const MAX_SAMPLE_BYTES: usize = 19;

/// Appends samples one at a time; the bytes are valid after every append.
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    buf: Vec<u8>,
    count: u32,
    first_ts: TimestampMs,
    last_ts: TimestampMs,
    last_delta: i64,
    last_bits: u64,
}

impl ChunkEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn append(&mut self, s: Sample) {
        let bits = s.value.to_bits();
        if self.count == 0 {
            put_varint(&mut self.buf, zigzag(s.timestamp_ms));
            self.buf.extend_from_slice(&bits.to_le_bytes());
            self.first_ts = s.timestamp_ms;
        } else {
            let delta = s.timestamp_ms.wrapping_sub(self.last_ts);
            put_varint(&mut self.buf, zigzag(delta.wrapping_sub(self.last_delta)));
            self.last_delta = delta;
            put_xor(&mut self.buf, bits ^ self.last_bits);
        }
        self.last_ts = s.timestamp_ms;
        self.last_bits = bits;
        self.count += 1;
    }

    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn first_ts(&self) -> TimestampMs {
        self.first_ts
    }
    pub fn last_ts(&self) -> TimestampMs {
        self.last_ts
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Starts a new chunk, keeping nothing.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.last_delta = 0;
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt chunk at byte {0}")]
pub struct CorruptChunk(pub usize);

/// Decodes a whole chunk.
pub fn decode(mut b: &[u8]) -> Result<Vec<Sample>, CorruptChunk> {
    let total = b.len();
    let pos = |b: &[u8]| total - b.len();
    let mut out = Vec::new();
    if b.is_empty() {
        return Ok(out);
    }
    let ts0 = unzigzag(get_varint(&mut b).ok_or(CorruptChunk(pos(b)))?);
    let v0 = u64::from_le_bytes(
        b.get(..8)
            .ok_or(CorruptChunk(pos(b)))?
            .try_into()
            .expect("8 bytes"),
    );
    b = &b[8..];
    out.push(Sample::new(ts0, f64::from_bits(v0)));
    let (mut ts, mut delta, mut bits) = (ts0, 0i64, v0);
    while !b.is_empty() {
        let dod = unzigzag(get_varint(&mut b).ok_or(CorruptChunk(pos(b)))?);
        delta = delta.wrapping_add(dod);
        ts = ts.wrapping_add(delta);
        bits ^= get_xor(&mut b).ok_or(CorruptChunk(pos(b)))?;
        out.push(Sample::new(ts, f64::from_bits(bits)));
    }
    Ok(out)
}

fn put_xor(buf: &mut Vec<u8>, x: u64) {
    if x == 0 {
        buf.push(0);
        return;
    }
    let lead = (x.leading_zeros() / 8).min(7) as u8;
    let trail = (x.trailing_zeros() / 8).min(7) as u8;
    buf.push(0x80 | (lead << 3) | trail);
    let bytes = x.to_be_bytes();
    buf.extend_from_slice(&bytes[lead as usize..8 - trail as usize]);
}

fn get_xor(b: &mut &[u8]) -> Option<u64> {
    let (&h, rest) = b.split_first()?;
    *b = rest;
    if h == 0 {
        return Some(0);
    }
    if h & 0x80 == 0 {
        return None;
    }
    let lead = ((h >> 3) & 7) as usize;
    let trail = (h & 7) as usize;
    let n = 8usize.checked_sub(lead + trail).filter(|&n| n > 0)?;
    let mid = b.get(..n)?;
    let mut bytes = [0u8; 8];
    bytes[lead..lead + n].copy_from_slice(mid);
    *b = &b[n..];
    Some(u64::from_be_bytes(bytes))
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *b = &b[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(samples: &[Sample]) -> ChunkEncoder {
        let mut e = ChunkEncoder::new();
        for &s in samples {
            e.append(s);
        }
        e
    }

    #[test]
    fn regular_gauge_is_small() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample::new(1_700_000_000_000 + i * 10_000, (i % 7) as f64))
            .collect();
        let e = enc(&samples);
        assert_eq!(decode(e.bytes()).unwrap(), samples);
        // Regular timestamps cost one byte; small integers a header plus one or two bytes.
        assert!(e.bytes().len() < 120 * 4, "{} bytes", e.bytes().len());
    }

    #[test]
    fn corrupt_is_an_error_not_a_panic() {
        let e = enc(&[Sample::new(1, 1.0), Sample::new(2, 2.0)]);
        let mut b = e.bytes().to_vec();
        b.truncate(b.len() - 1);
        assert!(decode(&b).is_err());
        assert!(decode(&[0x02, 1, 2]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(ts in proptest::collection::vec(any::<i64>(), 1..200), vals in proptest::collection::vec(any::<u64>(), 200)) {
            let samples: Vec<Sample> = ts.iter().zip(&vals).map(|(&t, &v)| Sample::new(t, f64::from_bits(v))).collect();
            let got = decode(enc(&samples).bytes()).unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (a, b) in got.iter().zip(&samples) {
                prop_assert_eq!(a.timestamp_ms, b.timestamp_ms);
                prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
            }
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
        }
    }
}
