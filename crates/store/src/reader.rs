//! Reading history for queries on connections of their own: SQLite's WAL mode lets them read
//! while the writer commits, so a query never waits on ingest nor ingest on a query.
//!
//! A query sees what is committed: the `chunks` table, and the samples still in the ingest
//! log. Decoding the whole log for every query would cost as much as the log is long, so the
//! readers keep a shared copy of it as a head of compressed chunks ([`ReadCache`]), extended
//! with the log rows committed since, and dropped when a checkpoint has moved the log into
//! `chunks` (the checkpoint bumps a generation number in the same transaction).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tocsin_model::{Labels, Sample, TimestampMs};

use crate::chunk::ChunkEncoder;
use crate::head;
use crate::{decode_into, stored_samples, Result, SeriesId, StoreError, MAX_CHUNK_SAMPLES};

/// The readers' shared view of the series index and of the ingest log.
#[derive(Clone, Default)]
pub struct ReadCache(Arc<Mutex<Cache>>);

#[derive(Default)]
struct Cache {
    /// Checkpoint generation the head belongs to.
    generation: i64,
    /// The newest ingest-log row already in the head.
    log_seen: i64,
    head: LogCopy,
    labels: Vec<Option<Arc<Labels>>>,
    by_name: HashMap<String, Vec<SeriesId>>,
    series_seen: i64,
}

pub struct Reader {
    conn: Connection,
    cache: ReadCache,
}

/// Key of the checkpoint generation in the `meta` table.
pub(crate) const GENERATION: &str = "checkpoint_generation";

impl Reader {
    pub fn open(path: &Path, cache: ReadCache) -> Result<Reader> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::open(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| StoreError::open(path, e))?;
        // Chunks are read through the OS's page cache, mapped: no copy per page read.
        conn.execute_batch("PRAGMA cache_size=-16384; PRAGMA mmap_size=1073741824;")
            .map_err(|e| StoreError::open(path, e))?;
        Ok(Reader { conn, cache })
    }

    /// Labels of every series `pred` accepts; `name` narrows to one metric when given.
    pub fn series(
        &mut self,
        name: Option<&str>,
        pred: impl Fn(&Labels) -> bool,
    ) -> Result<Vec<Arc<Labels>>> {
        let tx = self.conn.transaction()?;
        let mut c = self.cache.0.lock().unwrap_or_else(|p| p.into_inner());
        refresh_series(&tx, &mut c)?;
        Ok(candidates(&c, name)
            .filter_map(|id| c.labels[id as usize].clone())
            .filter(|l| pred(l))
            .collect())
    }

    /// Series `pred` accepts (narrowed to metric `name` when given) that have samples with
    /// `from <= t <= to`, with those samples in time order.
    pub fn select(
        &mut self,
        name: Option<&str>,
        pred: impl Fn(&Labels) -> bool,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        // One read transaction: the chunks and the log rows seen belong to one snapshot.
        let tx = self.conn.transaction()?;
        let generation: i64 = tx
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
                [GENERATION],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let (ids, heads) = {
            let mut c = self.cache.0.lock().unwrap_or_else(|p| p.into_inner());
            refresh_series(&tx, &mut c)?;
            let ids: Vec<(SeriesId, Arc<Labels>)> = candidates(&c, name)
                .filter_map(|id| Some((id, c.labels[id as usize].clone()?)))
                .filter(|(_, l)| pred(l))
                .collect();
            if generation > c.generation {
                c.head = LogCopy::default();
                c.log_seen = 0;
                c.generation = generation;
            }
            let heads: Vec<Vec<Vec<u8>>> = if generation == c.generation {
                let mut st =
                    tx.prepare_cached("SELECT id, data FROM wal WHERE id > ?1 ORDER BY id")?;
                let mut rows = st.query([c.log_seen])?;
                while let Some(r) = rows.next()? {
                    let row: i64 = r.get(0)?;
                    let data: Vec<u8> = r.get(1)?;
                    c.head.add_row(row, &data)?;
                    c.log_seen = row;
                }
                ids.iter()
                    .map(|(id, _)| c.head.chunks(*id, from, to))
                    .collect()
            } else {
                // This snapshot is older than the cache (a checkpoint came between): read the
                // log as this snapshot has it.
                drop(c);
                log_as_chunks(&tx, &ids, from, to)?
            };
            (ids, heads)
        };
        let mut out = Vec::new();
        for ((id, labels), head) in ids.into_iter().zip(heads) {
            let mut samples = Vec::new();
            stored_samples(&tx, id, from, to, &mut samples)?;
            for h in head {
                decode_into(&mut samples, &h, from, to, id)?;
            }
            if !samples.is_empty() {
                out.push(((*labels).clone(), samples));
            }
        }
        Ok(out)
    }
}

fn candidates<'c>(c: &'c Cache, name: Option<&str>) -> Box<dyn Iterator<Item = SeriesId> + 'c> {
    match name {
        Some(n) => Box::new(c.by_name.get(n).into_iter().flatten().copied()),
        None => {
            Box::new((0..c.labels.len() as SeriesId).filter(|i| c.labels[*i as usize].is_some()))
        }
    }
}

fn refresh_series(tx: &Connection, c: &mut Cache) -> Result<()> {
    let mut st = tx.prepare_cached("SELECT id, labels FROM series WHERE id > ?1 ORDER BY id")?;
    let mut rows = st.query([c.series_seen])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let text: String = r.get(1)?;
        let labels: Labels = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("series {id} labels: {e}")))?;
        let sid = id as SeriesId;
        let i = sid as usize;
        if c.labels.len() <= i {
            c.labels.resize(i + 1, None);
        }
        if let Some(n) = labels.metric_name() {
            c.by_name.entry(n.to_string()).or_default().push(sid);
        }
        c.labels[i] = Some(Arc::new(labels));
        c.series_seen = id;
    }
    Ok(())
}

/// The ingest log of this snapshot, as chunks per series asked for.
fn log_as_chunks(
    tx: &Connection,
    ids: &[(SeriesId, Arc<Labels>)],
    from: TimestampMs,
    to: TimestampMs,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut h = LogCopy::default();
    let mut st = tx.prepare_cached("SELECT id, data FROM wal ORDER BY id")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let row: i64 = r.get(0)?;
        let data: Vec<u8> = r.get(1)?;
        h.add_row(row, &data)?;
    }
    Ok(ids.iter().map(|(id, _)| h.chunks(*id, from, to)).collect())
}

/// The samples of the ingest log, per series in chunks of at most [`MAX_CHUNK_SAMPLES`] (a
/// log holding hours of history sent in bulk is then read a window at a time).
#[derive(Default)]
struct LogCopy(Vec<Vec<ChunkEncoder>>);

impl LogCopy {
    fn add_row(&mut self, row: i64, data: &[u8]) -> Result<()> {
        let entries = head::decode_log(data)
            .ok_or_else(|| StoreError::Corrupt(format!("ingest log row {row} is corrupt")))?;
        for (sid, s) in entries {
            let i = sid as usize;
            if self.0.len() <= i {
                self.0.resize_with(i + 1, Vec::new);
            }
            let chunks = &mut self.0[i];
            if chunks.last().is_none_or(|c| c.count() >= MAX_CHUNK_SAMPLES) {
                // (In memory: no page to fit, the sample count alone bounds a window's cost.)
                chunks.push(ChunkEncoder::new());
            }
            if let Some(c) = chunks.last_mut() {
                c.append(s);
            }
        }
        Ok(())
    }

    /// Copies of the chunks of `id` that overlap `from..=to`.
    fn chunks(&self, id: SeriesId, from: TimestampMs, to: TimestampMs) -> Vec<Vec<u8>> {
        self.0
            .get(id as usize)
            .into_iter()
            .flatten()
            .filter(|c| c.last_ts() >= from && c.first_ts() <= to)
            .map(|c| c.bytes().to_vec())
            .collect()
    }
}
