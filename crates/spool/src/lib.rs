//! A durable on-disk FIFO of records: the agent's buffer between sampling and shipping.
//!
//! Records are appended to numbered segment files (`00000000000000000001.seg`, …), each record
//! framed as `len u32 | crc32 u32 | created_ms i64 | samples u32 | body` (little endian, the CRC
//! covering everything after itself). One `write` per record, so a killed process leaves either
//! the whole record or, after a power loss, a torn tail that the next open cuts off. Reading is
//! sequential from a cursor kept in the `cursor` file; acknowledged segments are deleted. The
//! spool is bounded by bytes (the oldest segment goes, its pending samples counted as dropped)
//! and by age (records older than `max_age` are skipped and counted). A record that fails its
//! checksum ends what is read of its segment, counted, and reading goes on with the next one.
//! Nothing is ever loaded whole into memory: one record at a time.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 20;
/// Larger records are refused on append and read as corruption.
pub const MAX_RECORD: usize = 64 << 20;
const CURSOR_FILE: &str = "cursor";

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most bytes on disk; beyond it the oldest segment is dropped.
    pub max_bytes: u64,
    /// Records older than this (by their creation time) are dropped when reached.
    pub max_age_ms: i64,
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: 256 << 20,
            max_age_ms: 24 * 3600 * 1000,
            segment_bytes: 8 << 20,
        }
    }
}

/// A position in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub created_ms: i64,
    pub samples: u32,
    pub body: Vec<u8>,
}

/// What was lost, by cause, since the spool was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    /// Samples of segments dropped because the spool was full.
    pub full_samples: u64,
    /// Samples of records older than `max_age`.
    pub expired_samples: u64,
    /// Records whose checksum or framing was wrong (the rest of their segment is skipped).
    pub corrupt_records: u64,
    /// Bytes cut off the end of the newest segment at open (a torn last write).
    pub torn_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes on disk.
    bytes: u64,
    /// Bytes that hold valid records (reading stops here).
    valid: u64,
    records: u64,
    samples: u64,
}

pub struct Spool {
    /// Held (flock) while open: two processes never share a spool.
    _lock: File,
    dir: PathBuf,
    opts: Options,
    /// Oldest first; the last is the one appended to. Never empty.
    segments: VecDeque<Segment>,
    active: File,
    /// First byte not yet acknowledged; always in the front segment.
    cursor: Pos,
    /// Next byte to read; at or after `cursor`.
    read: Pos,
    reader: Option<(u64, BufReader<File>)>,
    /// Records and samples of the front segment before `cursor`.
    front_done: (u64, u64),
    /// What was read since `cursor`, per segment: (segment, records, samples).
    in_flight: Vec<(u64, u64, u64)>,
    losses: Losses,
    buf: Vec<u8>,
    /// The cursor's file, kept open: the cursor is written over it in place.
    cursor_file: Option<File>,
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Reads one framed record; `Ok(None)` at a clean end, `Err(InvalidData)` when torn or corrupt.
fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<(i64, u32, usize)>> {
    let mut h = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::InvalidData, "torn header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record length out of range",
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(io::ErrorKind::InvalidData, "torn body"),
        _ => e,
    })?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[8..]);
    hasher.update(buf);
    if hasher.finalize() != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    let created = i64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let samples = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    Ok(Some((created, samples, HEADER + len)))
}

fn frame(created_ms: i64, samples: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&created_ms.to_le_bytes());
    out.extend_from_slice(&samples.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: checks every record, cuts a torn tail off the
    /// newest segment, and resumes at the stored cursor.
    pub fn open(dir: &Path, opts: Options) -> io::Result<Spool> {
        fs::create_dir_all(dir).map_err(|e| ctx(e, "cannot create", dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ctx(e, "cannot open", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is in use by another process", dir.display()),
                )
            },
        )?;
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| ctx(e, "cannot list", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let stored = read_cursor(dir);
        let mut losses = Losses::default();
        let mut cursor = match stored {
            Some(c) if ids.contains(&c.segment) => c,
            _ => Pos {
                segment: ids.first().copied().unwrap_or(1),
                offset: 0,
            },
        };
        for &id in ids.iter().filter(|&&id| id < cursor.segment) {
            let _ = fs::remove_file(dir.join(seg_name(id)));
        }
        ids.retain(|&id| id >= cursor.segment);
        let mut segments = VecDeque::new();
        let mut front_done = (0, 0);
        let mut aligned = 0u64;
        let mut buf = Vec::new();
        let last = ids.last().copied();
        for id in ids {
            let path = dir.join(seg_name(id));
            let file = File::open(&path).map_err(|e| ctx(e, "cannot open", &path))?;
            let bytes = file.metadata()?.len();
            let mut r = BufReader::with_capacity(1 << 16, file);
            let mut seg = Segment {
                id,
                bytes,
                valid: 0,
                records: 0,
                samples: 0,
            };
            loop {
                match read_record(&mut r, &mut buf) {
                    Ok(Some((_, samples, len))) => {
                        seg.valid += len as u64;
                        // Records wholly before the cursor were acknowledged; a cursor between
                        // records (a damaged cursor file) moves back to the last boundary.
                        if id == cursor.segment && seg.valid <= cursor.offset {
                            front_done.0 += 1;
                            front_done.1 += u64::from(samples);
                            aligned = seg.valid;
                        }
                        seg.records += 1;
                        seg.samples += u64::from(samples);
                    }
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        if Some(id) == last {
                            // The newest segment: a torn last write. Cut it off.
                            losses.torn_bytes += bytes - seg.valid;
                            let f = OpenOptions::new().write(true).open(&path)?;
                            f.set_len(seg.valid)?;
                            f.sync_all()?;
                            seg.bytes = seg.valid;
                        } else {
                            losses.corrupt_records += 1;
                        }
                        break;
                    }
                    Err(e) => return Err(ctx(e, "cannot read", &path)),
                }
            }
            segments.push_back(seg);
        }
        if segments.is_empty() {
            segments.push_back(Segment {
                id: cursor.segment.max(1),
                bytes: 0,
                valid: 0,
                records: 0,
                samples: 0,
            });
            cursor = Pos {
                segment: cursor.segment.max(1),
                offset: 0,
            };
        }
        cursor.offset = aligned;
        let back = segments.back().expect("not empty");
        let path = dir.join(seg_name(back.id));
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ctx(e, "cannot open", &path))?;
        Ok(Spool {
            _lock: lock,
            dir: dir.to_path_buf(),
            opts,
            segments,
            active,
            cursor,
            read: cursor,
            reader: None,
            front_done,
            in_flight: Vec::new(),
            losses,
            buf,
            cursor_file: None,
        })
    }

    /// Appends one record; returns the samples of segments dropped to stay within `max_bytes`.
    pub fn append(&mut self, created_ms: i64, samples: u32, body: &[u8]) -> io::Result<u64> {
        if body.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("record of {} bytes is over {MAX_RECORD}", body.len()),
            ));
        }
        let back = self.segments.back().expect("not empty");
        if back.bytes >= self.opts.segment_bytes && back.records > 0 {
            self.rotate()?;
        }
        let rec = frame(created_ms, samples, body);
        let seg = self.segments.back_mut().expect("not empty");
        // One write: a killed process leaves the whole record or none of it.
        if let Err(e) = self.active.write_all(&rec) {
            // Do not leave half a record for the next append to follow.
            let _ = self.active.set_len(seg.bytes);
            return Err(e);
        }
        seg.bytes += rec.len() as u64;
        seg.valid = seg.bytes;
        seg.records += 1;
        seg.samples += u64::from(samples);
        Ok(self.enforce_bytes())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.active.sync_data()?;
        let id = self.segments.back().expect("not empty").id + 1;
        let path = self.dir.join(seg_name(id));
        self.active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ctx(e, "cannot create", &path))?;
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            valid: 0,
            records: 0,
            samples: 0,
        });
        Ok(())
    }

    /// Drops the oldest segments while over `max_bytes` (never the one appended to).
    fn enforce_bytes(&mut self) -> u64 {
        let mut dropped = 0;
        while self.bytes() > self.opts.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("len > 1");
            dropped += seg.samples - self.front_done.1;
            let _ = fs::remove_file(self.dir.join(seg_name(seg.id)));
            let next = self.segments[0].id;
            self.cursor = Pos {
                segment: next,
                offset: 0,
            };
            self.front_done = (0, 0);
            // What was read but not acknowledged is re-read from the new cursor.
            self.read = self.cursor;
            self.reader = None;
            self.in_flight.clear();
            let _ = self.save_cursor();
        }
        self.losses.full_samples += dropped;
        dropped
    }

    /// Makes appended records durable (fsync of the segment being written).
    pub fn sync(&self) -> io::Result<()> {
        self.active.sync_data()
    }

    /// The next record after those already read, skipping (and counting) expired ones at the
    /// cursor; `None` when everything has been read.
    pub fn next(&mut self, now_ms: i64) -> io::Result<Option<Record>> {
        loop {
            let i = (self.read.segment - self.segments[0].id) as usize;
            let Some(seg) = self.segments.get(i) else {
                return Ok(None);
            };
            if self.read.offset >= seg.valid {
                if i + 1 >= self.segments.len() {
                    return Ok(None);
                }
                let at_cursor = self.read == self.cursor;
                self.read = Pos {
                    segment: self.segments[i + 1].id,
                    offset: 0,
                };
                if at_cursor {
                    // Nothing read is outstanding: the cursor follows into the next segment.
                    self.commit_inner();
                }
                continue;
            }
            let id = seg.id;
            let reader = match &mut self.reader {
                Some((rid, r)) if *rid == id => r,
                _ => {
                    let path = self.dir.join(seg_name(id));
                    let mut f = File::open(&path).map_err(|e| ctx(e, "cannot open", &path))?;
                    f.seek(SeekFrom::Start(self.read.offset))?;
                    &mut self
                        .reader
                        .insert((id, BufReader::with_capacity(1 << 16, f)))
                        .1
                }
            };
            match read_record(reader, &mut self.buf) {
                Ok(Some((created, samples, len))) => {
                    let expired = created < now_ms.saturating_sub(self.opts.max_age_ms);
                    if expired && self.read != self.cursor {
                        // Send what was read first; the expired record is dealt with at the
                        // cursor, after that is acknowledged.
                        self.reader = None;
                        return Ok(None);
                    }
                    self.read.offset += len as u64;
                    if expired {
                        self.losses.expired_samples += u64::from(samples);
                        self.front_done.0 += 1;
                        self.front_done.1 += u64::from(samples);
                        self.cursor = self.read;
                        continue;
                    }
                    match self.in_flight.last_mut() {
                        Some(e) if e.0 == id => {
                            e.1 += 1;
                            e.2 += u64::from(samples);
                        }
                        _ => self.in_flight.push((id, 1, u64::from(samples))),
                    }
                    return Ok(Some(Record {
                        created_ms: created,
                        samples,
                        body: std::mem::take(&mut self.buf),
                    }));
                }
                Ok(None) => {
                    // The file ends before `valid`: it shrank under us.
                    self.mark_corrupt(i);
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.mark_corrupt(i);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn mark_corrupt(&mut self, i: usize) {
        self.losses.corrupt_records += 1;
        let seg = &mut self.segments[i];
        seg.valid = self.read.offset;
        self.reader = None;
    }

    /// Acknowledges every record read so far: they will not be read again, even after a restart.
    pub fn commit(&mut self) -> io::Result<()> {
        self.commit_inner();
        self.save_cursor()
    }

    fn commit_inner(&mut self) {
        // When the read position is in a later segment, everything before it there was read
        // in this flight (the cursor was in an earlier segment).
        let mut done = if self.read.segment == self.segments[0].id {
            self.front_done
        } else {
            (0, 0)
        };
        for (seg, records, samples) in self.in_flight.drain(..) {
            if seg == self.read.segment {
                done.0 += records;
                done.1 += samples;
            }
        }
        while self.segments[0].id < self.read.segment {
            let seg = self.segments.pop_front().expect("read segment is later");
            let _ = fs::remove_file(self.dir.join(seg_name(seg.id)));
        }
        self.front_done = done;
        self.cursor = self.read;
    }

    /// Forgets what was read since the last commit: it will be read again (after a failed send).
    pub fn rewind(&mut self) {
        self.read = self.cursor;
        self.reader = None;
        self.in_flight.clear();
    }

    /// Writes the cursor over its file in place, at a fixed width and with a checksum: one
    /// `pwrite` per acknowledgement rather than a new file and a rename (which was an eighth of
    /// the agent's CPU). A write torn by a power loss fails its checksum, and the spool then
    /// starts from its oldest segment: samples sent twice, which the collector drops as not
    /// newer, none lost.
    fn save_cursor(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let text = cursor_text(self.cursor);
        if self.cursor_file.is_none() {
            let path = self.dir.join(CURSOR_FILE);
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| ctx(e, "cannot open", &path))?;
            self.cursor_file = Some(f);
        }
        let f = self.cursor_file.as_ref().expect("opened above");
        f.write_all_at(text.as_bytes(), 0)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records not yet acknowledged.
    pub fn pending_records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum::<u64>() - self.front_done.0
    }

    /// Samples not yet acknowledged.
    pub fn pending_samples(&self) -> u64 {
        self.segments.iter().map(|s| s.samples).sum::<u64>() - self.front_done.1
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    pub fn losses(&self) -> Losses {
        self.losses
    }
}

/// The cursor as stored: `SEGMENT OFFSET CRC` at fixed widths (51 bytes, so that each write
/// covers the last), the CRC-32 over the first two fields.
fn cursor_text(c: Pos) -> String {
    let fields = format!("{:020} {:020}", c.segment, c.offset);
    let crc = crc32fast::hash(fields.as_bytes());
    format!("{fields} {crc:08x}\n")
}

/// The stored cursor, if it reads and its checksum holds (a cursor written before the checksum,
/// `SEGMENT OFFSET` by a rename, is read too).
fn read_cursor(dir: &Path) -> Option<Pos> {
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let mut it = text.split_whitespace();
    let (seg, off) = (it.next()?, it.next()?);
    if let Some(crc) = it.next() {
        let fields = format!("{seg} {off}");
        if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(fields.as_bytes()) {
            return None;
        }
    }
    Some(Pos {
        segment: seg.parse().ok()?,
        offset: off.parse().ok()?,
    })
}

#[cfg(test)]
mod tests;
