//! tocsin's storage, the only crate that speaks SQL: one SQLite file holding series, a durable
//! ingest log, compressed chunks, alert state, the notification outbox and host liveness.
//! Samples are made durable as one log row per group commit, kept in an in-memory head of
//! compressed chunks, and moved to the `chunks` table at each checkpoint (like Prometheus's WAL,
//! head and blocks). It knows nothing of rules, HTTP or delivery.

pub mod chunk;
mod error;
mod head;
mod outbox;
mod reader;
mod records;
mod schema;
mod walckpt;

pub use walckpt::WalSync;

pub use error::StoreError;
pub use outbox::{Outbox, OutboxItem, OutboxRow, OutboxStatus};
pub use reader::{ReadCache, Reader};
pub use records::{AuditRow, EventRow, Records, TokenRow};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;
use tocsin_model::{Labels, Sample, SeriesSamples, TimestampMs};

use head::Head;

pub type Result<T> = std::result::Result<T, StoreError>;

/// Most samples in one stored chunk (Prometheus cuts its chunks at 120 samples too): a query
/// over a short window of a long history decodes at most this many samples beyond it.
pub const MAX_CHUNK_SAMPLES: u32 = 120;

/// Most bytes in one stored chunk: a `chunks` row then stays within what SQLite keeps on its
/// B-tree page (about 1,000 bytes of a 4 KiB page for a `WITHOUT ROWID` table); a larger row
/// would take a 4 KiB overflow page of its own. Ops data rarely reaches it (1–3 bytes per
/// sample); noisy floats do (8).
pub const MAX_CHUNK_BYTES: usize = 900;

/// Identifies a series inside one store.
pub type SeriesId = u32;

#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Fsync every commit (`synchronous=FULL`): acknowledged data survives power loss, not only
    /// a crash of the process.
    pub fsync: bool,
    /// Samples further in the future than this are rejected.
    pub max_future_ms: i64,
    /// Most series one `host` may have, series without a `host` label counting as one more
    /// host; new series beyond it are refused (0: no limit).
    pub max_series_per_host: usize,
    /// Most distinct hosts; series of a new host beyond it are refused (0: no limit). A sender
    /// inventing hosts would otherwise pass any per-host bound, each host a future HostDown.
    pub max_hosts: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            max_future_ms: 10 * 60 * 1000,
            max_series_per_host: 0,
            max_hosts: 0,
        }
    }
}

/// A stored silence; `matchers` is the JSON the API received.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: i64,
    pub matchers: String,
    pub starts_ms: TimestampMs,
    pub ends_ms: TimestampMs,
    pub author: String,
    pub comment: String,
    pub created_ms: TimestampMs,
    /// A recurring window (JSON) within `starts_ms..ends_ms`; `None` for a one-off silence.
    pub schedule: Option<String>,
}

/// What one append did, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    pub accepted: usize,
    /// Timestamp not after the series' newest stored sample (a retry, or out of order).
    pub out_of_order: usize,
    pub too_far_in_future: usize,
    pub new_series: usize,
    /// New series refused because their host has reached `max_series_per_host`, and their
    /// samples.
    pub refused_series: usize,
    pub over_limit: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CheckpointStats {
    pub chunks_written: usize,
    pub samples_written: usize,
    pub log_rows_removed: usize,
    pub chunks_expired: usize,
}

pub struct Store {
    /// Copies the write-ahead log into the database mostly off the writer's thread; first, so
    /// that it is dropped (and joined) before the writer's connection closes.
    checkpointer: Option<walckpt::Checkpointer>,
    conn: Connection,
    path: PathBuf,
    opts: StoreOptions,
    /// Shared with the [`Resolver`]s of the request workers, which look series up; only the
    /// writer (in `commit`) adds to it.
    index: Arc<RwLock<SeriesIndex>>,
    head: Head,
}

/// What a request worker found out about one series of a batch before the writer takes it:
/// its fingerprint, and its id when the series is known. Ids are never reused, so a known id
/// stays right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub fingerprint: u64,
    pub id: Option<SeriesId>,
}

/// Looks series up in the store's index from other threads, so that the writer does not
/// have to (hashing labels and probing the index is most of its work per known series).
#[derive(Clone)]
pub struct Resolver(Arc<RwLock<SeriesIndex>>);

impl Resolver {
    /// One hint per entry of `batch`, in order.
    pub fn resolve(&self, batch: &[SeriesSamples]) -> Vec<Hint> {
        let index = read(&self.0);
        batch
            .iter()
            .map(|s| {
                let fingerprint = s.labels.fingerprint();
                Hint {
                    fingerprint,
                    id: index.lookup(fingerprint, &s.labels),
                }
            })
            .collect()
    }
}

/// The index, readable even if a thread panicked while holding it (it is only ever extended
/// whole series at a time).
fn read(index: &RwLock<SeriesIndex>) -> RwLockReadGuard<'_, SeriesIndex> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

fn write(index: &RwLock<SeriesIndex>) -> RwLockWriteGuard<'_, SeriesIndex> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct SeriesIndex {
    /// Keyed by fingerprint (already a hash): a cheap hasher, not SipHash, on the ingest path.
    by_fp: FxHashMap<u64, SeriesId>,
    /// Second-chance map for the (astronomically rare) fingerprint collision.
    collided: HashMap<Labels, SeriesId>,
    /// Each series' labels in their compact form: one allocation, so that checking a
    /// fingerprint's match touches one or two cache lines rather than every label's string.
    labels: Vec<Option<Box<[u8]>>>,
    /// Series per `host` label.
    per_host: HashMap<String, usize>,
}

impl SeriesIndex {
    fn lookup(&self, fp: u64, labels: &Labels) -> Option<SeriesId> {
        let id = *self.by_fp.get(&fp)?;
        if self.labels[id as usize]
            .as_ref()
            .is_some_and(|k| labels.matches_key(k))
        {
            Some(id)
        } else {
            self.collided.get(labels).copied()
        }
    }

    /// Indexes a series; `derived` ones (the collector's own) do not count against a host's
    /// series limit.
    fn insert(&mut self, fp: u64, id: SeriesId, labels: Labels, derived: bool) {
        let i = id as usize;
        if self.labels.len() <= i {
            self.labels.resize(i + 1, None);
        }
        match self.by_fp.entry(fp) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.insert(labels.clone(), id);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
        }
        if !derived {
            *self
                .per_host
                .entry(labels.get("host").unwrap_or_default().to_string())
                .or_default() += 1;
        }
        self.labels[i] = Some(labels.key());
    }
}

/// Appends the stored samples of series `id` with `from <= t <= to` to `out`, in time order.
/// A series' chunks never overlap in time, so they are read newest first from `to` and the
/// reading stops at the first that ends before `from`: a short window of a long history reads
/// only the chunks it needs.
pub(crate) fn stored_samples(
    conn: &Connection,
    id: SeriesId,
    from: TimestampMs,
    to: TimestampMs,
    out: &mut Vec<Sample>,
) -> Result<()> {
    // `+?`: SQLite (built with STAT4) otherwise recompiles the statement whenever the series
    // bound changes, which cost more than reading the chunk; the plan is the same.
    let mut st = conn.prepare_cached(
        "SELECT end_ms, data FROM chunks WHERE series_id = +?1 AND start_ms <= +?2 ORDER BY start_ms DESC",
    )?;
    let mut rows = st.query(params![id, to])?;
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    while let Some(r) = rows.next()? {
        let end: i64 = r.get(0)?;
        if end < from {
            break;
        }
        blobs.push(r.get(1)?);
    }
    for b in blobs.iter().rev() {
        decode_into(out, b, from, to, id)?;
    }
    Ok(())
}

/// Appends the samples of one chunk with `from <= t <= to` to `out`.
pub(crate) fn decode_into(
    out: &mut Vec<Sample>,
    data: &[u8],
    from: TimestampMs,
    to: TimestampMs,
    id: SeriesId,
) -> Result<()> {
    let samples =
        chunk::decode(data).map_err(|e| StoreError::Corrupt(format!("series {id}: {e}")))?;
    out.extend(
        samples
            .into_iter()
            .filter(|s| s.timestamp_ms >= from && s.timestamp_ms <= to),
    );
    Ok(())
}

impl Store {
    /// Opens or creates the database, then rebuilds the head from the ingest log.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let conn = Connection::open(path).map_err(|e| StoreError::open(path, e))?;
        schema::prepare(&conn, opts.fsync).map_err(|e| StoreError::open(path, e))?;
        let checkpointer = walckpt::Checkpointer::start(path);
        if checkpointer.is_some() {
            // The background checkpoints do the copying; `begin` finishes one now and then,
            // which lets the log restart (and be cut back to 4 MiB).
            conn.execute_batch("PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=16777216;")
                .map_err(|e| StoreError::open(path, e))?;
        }
        let mut store = Store {
            checkpointer,
            conn,
            path: path.to_path_buf(),
            opts,
            index: Arc::default(),
            head: Head::default(),
        };
        store.load()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&mut self) -> Result<()> {
        let mut series = Vec::new();
        {
            let mut st = self
                .conn
                .prepare("SELECT id, labels, derived FROM series")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                let text: String = r.get(1)?;
                let derived: bool = r.get(2)?;
                let labels: Labels = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("series {id} labels: {e}")))?;
                series.push((id as SeriesId, labels, derived));
            }
        }
        {
            let mut last = self.conn.prepare(
                "SELECT end_ms FROM chunks WHERE series_id = ?1 ORDER BY start_ms DESC LIMIT 1",
            )?;
            let mut index = write(&self.index);
            for (id, labels, derived) in series {
                let last_ts: Option<i64> = last.query_row([id], |r| r.get(0)).optional()?;
                index.insert(labels.fingerprint(), id, labels, derived);
                self.head.ensure(id, last_ts);
            }
        }
        let mut st = self.conn.prepare("SELECT id, data FROM wal ORDER BY id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let data: Vec<u8> = r.get(1)?;
            let entries = head::decode_log(&data)
                .ok_or_else(|| StoreError::Corrupt(format!("ingest log row {id} is corrupt")))?;
            for (sid, s) in entries {
                self.head.ensure(sid, None);
                self.head.append(sid, s);
            }
        }
        Ok(())
    }

    /// Starts an immediate transaction; everything done through it lands together or not at all.
    pub fn begin(&mut self) -> Result<Txn<'_>> {
        if self.checkpointer.as_ref().is_some_and(|c| c.log_is_long()) {
            // Mostly copied by the background checkpoints already: this copies the rest, and the
            // transaction below then restarts the log from its beginning (unless a reader still
            // reads from it: then a later one does).
            // Only a matter of the log's size: a failure here is not the transaction's.
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; the log grows until one works");
            }
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Txn {
            store: self,
            log: Vec::new(),
            staged: Vec::new(),
            new_series: Vec::new(),
            new_by_fp: FxHashMap::default(),
            new_per_host: HashMap::new(),
            new_hosts: 0,
            pending: FxHashMap::default(),
            hosts: HashMap::new(),
            finished: false,
        })
    }

    pub fn series_count(&self) -> usize {
        read(&self.index)
            .labels
            .iter()
            .filter(|l| l.is_some())
            .count()
    }

    /// From now on a commit returns once SQLite has written the write-ahead log, without
    /// waiting for the disk: the caller makes it durable with the returned [`WalSync`] before it
    /// acknowledges anything (the collector's writer syncs one group while it prepares the next).
    /// Without `fsync` in the options, syncing does nothing, as commits did not wait before.
    pub fn defer_sync(&mut self) -> Result<WalSync> {
        if self.opts.fsync {
            self.conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        }
        Ok(WalSync::new(&self.path, self.opts.fsync))
    }

    /// A handle for looking series up from other threads.
    pub fn resolver(&self) -> Resolver {
        Resolver(Arc::clone(&self.index))
    }

    pub fn head_samples(&self) -> u64 {
        self.head.samples()
    }

    /// Series whose labels satisfy `pred`.
    pub fn select(&self, pred: impl Fn(&Labels) -> bool) -> Vec<(SeriesId, Labels)> {
        read(&self.index)
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let l = Labels::from_key(k.as_ref()?);
                pred(&l).then_some((i as SeriesId, l))
            })
            .collect()
    }

    /// The newest sample of every series that has one at or after `since` (samples appended
    /// before a restart are not known here until the series gets a new one).
    pub fn latest(&self, since: TimestampMs) -> Vec<(Labels, Sample)> {
        read(&self.index)
            .labels
            .iter()
            .enumerate()
            .filter_map(move |(i, k)| {
                let (k, s) = (k.as_ref()?, self.head.last(i as SeriesId)?);
                (s.timestamp_ms >= since).then(|| (Labels::from_key(k), s))
            })
            .collect()
    }

    /// Samples of one series with `from <= t <= to`, in time order.
    pub fn query(&self, id: SeriesId, from: TimestampMs, to: TimestampMs) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        stored_samples(&self.conn, id, from, to, &mut out)?;
        if let Some(b) = self.head.chunk_bytes(id) {
            decode_into(&mut out, b, from, to, id)?;
        }
        Ok(out)
    }

    /// Moves the head into `chunks`, empties the ingest log and drops data older than `cutoff`.
    pub fn checkpoint(&mut self, expire_before: TimestampMs) -> Result<CheckpointStats> {
        let mut stats = CheckpointStats::default();
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO chunks (series_id, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (id, c) in self.head.chunks() {
                if c.count() <= MAX_CHUNK_SAMPLES && c.bytes().len() <= MAX_CHUNK_BYTES {
                    ins.execute(params![id, c.first_ts(), c.last_ts(), c.count(), c.bytes()])?;
                    stats.chunks_written += 1;
                } else {
                    // A head that grew long (history sent in bulk, a long interval) is cut, so
                    // a query for a short window decodes little more than that window.
                    let samples = chunk::decode(c.bytes())
                        .map_err(|e| StoreError::Corrupt(format!("head {id}: {e}")))?;
                    let mut e = chunk::ChunkEncoder::new();
                    for s in samples {
                        if e.count() >= MAX_CHUNK_SAMPLES
                            || e.bytes().len() + chunk::MAX_SAMPLE_BYTES > MAX_CHUNK_BYTES
                        {
                            ins.execute(params![
                                id,
                                e.first_ts(),
                                e.last_ts(),
                                e.count(),
                                e.bytes()
                            ])?;
                            stats.chunks_written += 1;
                            e = chunk::ChunkEncoder::new();
                        }
                        e.append(s);
                    }
                    ins.execute(params![id, e.first_ts(), e.last_ts(), e.count(), e.bytes()])?;
                    stats.chunks_written += 1;
                }
                stats.samples_written += c.count() as usize;
            }
            stats.log_rows_removed = tx.execute("DELETE FROM wal", [])?;
            stats.chunks_expired =
                tx.execute("DELETE FROM chunks WHERE end_ms < ?1", [expire_before])?;
            tx.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND created_ms < ?1",
                [expire_before],
            )?;
            // Readers keep a copy of the ingest log: a new generation tells them it moved.
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, '1') ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                [reader::GENERATION],
            )?;
        }
        tx.commit()?;
        self.head.reset_chunks();
        // Keep SQLite's own WAL file from growing without bound.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(stats)
    }

    /// Every persisted alert state, as `(key, json)`.
    pub fn alert_states(&self) -> Result<Vec<(String, String)>> {
        self.key_rows("alert_state")
    }

    /// Every (key, data) row of one of the key/JSON tables, by key.
    fn key_rows(&self, table: &'static str) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT key, data FROM {table} ORDER BY key"))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces every stored baseline with `items` (`(key, state)`), in one transaction.
    pub fn save_baselines(&mut self, items: &[(String, Vec<u8>)]) -> Result<()> {
        self.replace_states("baselines", items)
    }

    /// Stored baselines as `(key, state)`: binary since the compact form, JSON text before.
    pub fn baselines(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.states("baselines")
    }

    /// Replaces every saved service-level record with `items` (`(key, record)`), in one
    /// transaction.
    pub fn save_error_budgets(&mut self, items: &[(String, Vec<u8>)]) -> Result<()> {
        self.replace_states("error_budgets", items)
    }

    /// Saved service-level records as `(key, record)`.
    pub fn error_budgets(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.states("error_budgets")
    }

    /// Replaces every row of one of the key/state tables, in one transaction.
    fn replace_states(&mut self, table: &'static str, items: &[(String, Vec<u8>)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(&format!("DELETE FROM {table}"), [])?;
        {
            let mut ins =
                tx.prepare_cached(&format!("INSERT INTO {table} (key, data) VALUES (?1, ?2)"))?;
            for (k, d) in items {
                ins.execute(params![k, d])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every (key, state) row of one of the key/state tables, by key.
    fn states(&self, table: &'static str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT key, data FROM {table} ORDER BY key"))?;
        let rows = st.query_map([], |r| {
            let data = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                    b.to_vec()
                }
                _ => Vec::new(),
            };
            Ok((r.get(0)?, data))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a silence; returns its id.
    pub fn add_silence(&mut self, s: &Silence) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO silences (matchers, starts_ms, ends_ms, author, comment, created_ms, schedule) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![s.matchers, s.starts_ms, s.ends_ms, s.author, s.comment, s.created_ms, s.schedule],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Ends a silence now (keeps it for the record); false when there is no such silence.
    pub fn expire_silence(&mut self, id: i64, now: TimestampMs) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE silences SET ends_ms = min(ends_ms, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    /// Silences that have not ended before `since`.
    pub fn silences(&self, since: TimestampMs) -> Result<Vec<Silence>> {
        let mut st = self.conn.prepare(
            "SELECT id, matchers, starts_ms, ends_ms, author, comment, created_ms, schedule FROM silences WHERE ends_ms >= ?1 ORDER BY id",
        )?;
        let rows = st.query_map([since], |r| {
            Ok(Silence {
                id: r.get(0)?,
                matchers: r.get(1)?,
                starts_ms: r.get(2)?,
                ends_ms: r.get(3)?,
                author: r.get(4)?,
                comment: r.get(5)?,
                created_ms: r.get(6)?,
                schedule: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Notification dispatch state rows: (key, JSON).
    pub fn dispatch_rows(&self) -> Result<Vec<(String, String)>> {
        self.key_rows("dispatch")
    }

    /// Remediation state rows: (key, JSON).
    pub fn remedy_rows(&self) -> Result<Vec<(String, String)>> {
        self.key_rows("remedy")
    }

    /// Incidents still live: not resolved, or resolved after `resolved_since` (for reopening);
    /// (id, JSON), plus the incident id sequence as `#seq` when stored.
    pub fn live_incidents(&self, opened_since: TimestampMs) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare(schema::LIVE_INCIDENTS)?;
        let mut rows: Vec<(String, String)> = st
            .query_map([opened_since], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let seq: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'incident_seq'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(s) = seq {
            rows.push(("#seq".into(), s));
        }
        Ok(rows)
    }

    /// The setting `key`, created with `init()` the first time.
    pub fn meta_or_init(&mut self, key: &str, init: impl FnOnce() -> String) -> Result<String> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if let Some(v) = found {
            return Ok(v);
        }
        let v = init();
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![key, v],
        )?;
        Ok(v)
    }

    /// Hosts with the last time any of their data arrived.
    pub fn hosts(&self) -> Result<Vec<(String, TimestampMs)>> {
        let mut st = self
            .conn
            .prepare("SELECT host, last_seen_ms FROM hosts ORDER BY host")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// One write transaction. Dropping it without `commit` rolls everything back, including the
/// in-memory effects, which are only applied after SQLite has committed.
pub struct Txn<'a> {
    store: &'a mut Store,
    log: Vec<u8>,
    staged: Vec<(SeriesId, Sample)>,
    /// New series: fingerprint, id, labels, derived.
    new_series: Vec<(u64, SeriesId, Labels, bool)>,
    /// Index into `new_series` by fingerprint, and new series per host: lookups stay O(1)
    /// when one transaction creates many series (a fleet's first cycle).
    new_by_fp: FxHashMap<u64, Vec<usize>>,
    new_per_host: HashMap<String, usize>,
    /// Hosts of `new_per_host` the index does not know yet.
    new_hosts: usize,
    /// Newest timestamp per series staged in this transaction.
    pending: FxHashMap<SeriesId, TimestampMs>,
    hosts: HashMap<String, TimestampMs>,
    finished: bool,
}

impl Txn<'_> {
    /// Stages samples; drops, in place, those it rejects, so `batch` afterwards holds exactly the
    /// accepted samples. Returns the series id of each entry of `batch`.
    pub fn append(
        &mut self,
        batch: &mut [SeriesSamples],
        now: TimestampMs,
    ) -> Result<(Vec<SeriesId>, AppendStats)> {
        self.append_inner(batch, &[], now, true)
    }

    /// As `append`, with what a [`Resolver`] found for each entry of `batch` (ignored unless
    /// there is one per entry).
    pub fn append_resolved(
        &mut self,
        batch: &mut [SeriesSamples],
        hints: &[Hint],
        now: TimestampMs,
    ) -> Result<(Vec<SeriesId>, AppendStats)> {
        self.append_inner(batch, hints, now, true)
    }

    /// As `append`, for series the collector derives itself: they do not count as a sign of
    /// life from their `host`.
    pub fn append_derived(
        &mut self,
        batch: &mut [SeriesSamples],
        now: TimestampMs,
    ) -> Result<AppendStats> {
        self.append_inner(batch, &[], now, false).map(|(_, s)| s)
    }

    fn append_inner(
        &mut self,
        batch: &mut [SeriesSamples],
        hints: &[Hint],
        now: TimestampMs,
        touch_hosts: bool,
    ) -> Result<(Vec<SeriesId>, AppendStats)> {
        let mut stats = AppendStats::default();
        let mut ids = Vec::with_capacity(batch.len());
        let max_ts = now.saturating_add(self.store.opts.max_future_ms);
        let mut last_host: Option<&str> = None;
        let hinted = hints.len() == batch.len();
        let index = Arc::clone(&self.store.index);
        let index = read(&index);
        for (i, s) in batch.iter_mut().enumerate() {
            let hint = hinted.then(|| hints[i]);
            let id = match hint.and_then(|h| h.id) {
                Some(id) => Some(id),
                None => self.series_id(&index, &s.labels, hint, &mut stats, touch_hosts)?,
            };
            let Some(id) = id else {
                stats.refused_series += 1;
                stats.over_limit += s.samples.len();
                s.samples.clear();
                continue;
            };
            ids.push(id);
            // A host is alive when its samples arrive, whatever their timestamps say: samples
            // dropped as out of order (a clock that ran ahead and came back) are still a sign
            // of life.
            if let Some(h) = s.labels.get("host").filter(|_| touch_hosts) {
                // A request mostly holds one host's series: look it up once per run of them.
                if last_host != Some(h) {
                    last_host = Some(h);
                    match self.hosts.get_mut(h) {
                        Some(t) => *t = now,
                        None => {
                            self.hosts.insert(h.to_string(), now);
                        }
                    }
                }
            }
            let mut last = self
                .pending
                .get(&id)
                .copied()
                .or_else(|| self.store.head.last_ts(id))
                .unwrap_or(i64::MIN);
            let before = s.samples.len();
            s.samples.retain(|x| {
                if x.timestamp_ms > max_ts {
                    stats.too_far_in_future += 1;
                    false
                } else if x.timestamp_ms <= last {
                    stats.out_of_order += 1;
                    false
                } else {
                    last = x.timestamp_ms;
                    true
                }
            });
            if s.samples.is_empty() {
                continue;
            }
            stats.accepted += s.samples.len();
            debug_assert!(s.samples.len() <= before);
            self.pending.insert(id, last);
            head::encode_log(&mut self.log, id, &s.samples);
            self.staged.extend(s.samples.iter().map(|&x| (id, x)));
        }
        Ok((ids, stats))
    }

    /// The series' id, created if new; `None` when it is new and its host is at its limit
    /// (`limited`: ingest from agents, not series the collector derives).
    fn series_id(
        &mut self,
        index: &SeriesIndex,
        labels: &Labels,
        hint: Option<Hint>,
        stats: &mut AppendStats,
        limited: bool,
    ) -> Result<Option<SeriesId>> {
        let fp = hint.map_or_else(|| labels.fingerprint(), |h| h.fingerprint);
        // A hint without an id may be older than the commit that created the series.
        if let Some(id) = index.lookup(fp, labels) {
            return Ok(Some(id));
        }
        if let Some(id) = self.new_by_fp.get(&fp).and_then(|ix| {
            ix.iter()
                .map(|&i| &self.new_series[i])
                .find(|(_, _, l, _)| l == labels)
                .map(|(_, id, _, _)| *id)
        }) {
            return Ok(Some(id));
        }
        // Series without a host count as one host of their own ("").
        let host = labels.get("host").unwrap_or_default();
        if limited {
            let (limit, max_hosts) = (
                self.store.opts.max_series_per_host,
                self.store.opts.max_hosts,
            );
            let known = index.per_host.get(host).copied();
            let pending = self.new_per_host.get(host).copied();
            if limit > 0 && known.unwrap_or(0) + pending.unwrap_or(0) >= limit {
                return Ok(None);
            }
            if known.is_none()
                && pending.is_none()
                && max_hosts > 0
                && index.per_host.len() + self.new_hosts >= max_hosts
            {
                return Ok(None);
            }
        }
        let text = serde_json::to_string(labels).expect("labels serialize");
        self.store
            .conn
            .prepare_cached(
                "INSERT INTO series (labels, metric, host, derived) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                text,
                labels.metric_name(),
                labels.get("host"),
                !limited
            ])?;
        let id = SeriesId::try_from(self.store.conn.last_insert_rowid())
            .map_err(|_| StoreError::Corrupt("series id space exhausted".into()))?;
        self.new_by_fp
            .entry(fp)
            .or_default()
            .push(self.new_series.len());
        if limited {
            let n = self.new_per_host.entry(host.to_string()).or_default();
            if *n == 0 && !index.per_host.contains_key(host) {
                self.new_hosts += 1;
            }
            *n += 1;
        }
        self.new_series.push((fp, id, labels.clone(), !limited));
        stats.new_series += 1;
        Ok(Some(id))
    }

    /// Replaces (or with `None` removes) one row of one of the key/JSON tables.
    fn put_key_row(&mut self, table: &'static str, key: &str, json: Option<&str>) -> Result<()> {
        let conn = &self.store.conn;
        match json {
            Some(j) => conn
                .prepare_cached(&format!(
                    "INSERT INTO {table} (key, data) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET data = excluded.data"
                ))?
                .execute(params![key, j])?,
            None => conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE key = ?1"))?
                .execute([key])?,
        };
        Ok(())
    }

    /// Replaces (or with `None` removes) one persisted alert state.
    pub fn put_alert_state(&mut self, key: &str, json: Option<&str>) -> Result<()> {
        self.put_key_row("alert_state", key, json)
    }

    /// Replaces (or with `None` removes) one row of notification dispatch state.
    pub fn put_dispatch(&mut self, key: &str, json: Option<&str>) -> Result<()> {
        self.put_key_row("dispatch", key, json)
    }

    /// Replaces (or with `None` removes) one row of remediation state.
    pub fn put_remedy(&mut self, key: &str, json: Option<&str>) -> Result<()> {
        self.put_key_row("remedy", key, json)
    }

    /// Writes one incident (`#seq`: the id sequence): its row and, each a row of its own, the
    /// parts of its alerts given (`(alert id, JSON)`; those not given stay as stored) and the
    /// members it gained (`(set, member)`: `hosts`, `services` or `probes`). The row's `alerts`
    /// and sets are read back from the parts (`schema::incident_data!`).
    pub fn put_incident(
        &mut self,
        id: &str,
        opened_ms: TimestampMs,
        state: &str,
        json: &str,
        alerts: &[(String, String)],
        members: &[(&str, String)],
    ) -> Result<()> {
        if id == "#seq" {
            self.store.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('incident_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [json],
            )?;
            return Ok(());
        }
        // Statements a burst runs once per alert or per batch are parsed once (cached).
        self.store
            .conn
            .prepare_cached(
                "INSERT INTO incidents (id, opened_ms, state, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data",
            )?
            .execute(params![id, opened_ms, state, json])?;
        let mut st = self.store.conn.prepare_cached(
            "INSERT INTO incident_alerts (incident, alert, data) VALUES (?1, ?2, ?3)
             ON CONFLICT(incident, alert) DO UPDATE SET data = excluded.data",
        )?;
        for (alert, data) in alerts {
            st.execute(params![id, alert, data])?;
        }
        let mut st = self.store.conn.prepare_cached(
            "INSERT OR IGNORE INTO incident_members (incident, kind, member) VALUES (?1, ?2, ?3)",
        )?;
        for (kind, member) in members {
            st.execute(params![id, kind, member])?;
        }
        Ok(())
    }

    /// Whether an incident with this id was ever stored.
    pub fn incident_exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .store
            .conn
            .query_row("SELECT 1 FROM incidents WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// A stored incident's JSON.
    pub fn incident(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .conn
            .query_row(schema::INCIDENT_BY_ID, [id], |r| r.get(0))
            .optional()?)
    }

    /// Appends one row to an incident's timeline.
    pub fn add_incident_event(
        &mut self,
        incident: &str,
        at: TimestampMs,
        kind: &str,
        text: &str,
    ) -> Result<()> {
        self.store
            .conn
            .prepare_cached(
                "INSERT INTO incident_events (incident, at_ms, kind, text) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![incident, at, kind, text])?;
        Ok(())
    }

    /// Changes that have started by `now` and whose marker is not written yet, oldest first, at
    /// most `limit`: (id, start, JSON).
    pub fn changes_to_mark(
        &mut self,
        now: TimestampMs,
        limit: usize,
    ) -> Result<Vec<(i64, TimestampMs, String)>> {
        let mut st = self.store.conn.prepare_cached(
            "SELECT id, start_ms, data FROM changes WHERE marked = 0 AND start_ms <= ?1
             ORDER BY start_ms, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Notes that the marker of change `id` is written (in this transaction).
    pub fn mark_change(&mut self, id: i64) -> Result<()> {
        self.store
            .conn
            .execute("UPDATE changes SET marked = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Sets the setting `key` (e.g. when a scheduled report last ran).
    pub fn put_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.store.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Appends to the audit log.
    pub fn audit(&mut self, at: TimestampMs, actor: &str, event: &str, detail: &str) -> Result<()> {
        self.store.conn.execute(
            "INSERT INTO audit (at_ms, actor, event, detail) VALUES (?1, ?2, ?3, ?4)",
            params![at, actor, event, detail],
        )?;
        Ok(())
    }

    /// Queues a notification for `receiver`; it is sent only after this transaction commits.
    pub fn enqueue(&mut self, receiver: &str, payload: &str, now: TimestampMs) -> Result<i64> {
        self.store
            .conn
            .prepare_cached(
                "INSERT INTO outbox (receiver, created_ms, next_attempt_ms, payload) VALUES (?1, ?2, ?2, ?3)",
            )?
            .execute(params![receiver, now, payload])?;
        Ok(self.store.conn.last_insert_rowid())
    }

    /// Forgets `host` in the hosts table (and what this transaction saw of it), so a restart
    /// does not judge it again; whether it was there.
    pub fn forget_host(&mut self, host: &str) -> Result<bool> {
        let seen = self.hosts.remove(host).is_some();
        let rows = self
            .store
            .conn
            .prepare_cached("DELETE FROM hosts WHERE host = ?1")?
            .execute([host])?;
        Ok(seen || rows > 0)
    }

    /// Hosts that sent data in this transaction, with the time.
    pub fn hosts_seen(&self) -> impl Iterator<Item = (&str, TimestampMs)> {
        self.hosts.iter().map(|(h, t)| (h.as_str(), *t))
    }

    pub fn commit(mut self) -> Result<()> {
        let conn = &self.store.conn;
        if !self.log.is_empty() {
            conn.prepare_cached("INSERT INTO wal (data) VALUES (?1)")?
                .execute([&self.log])?;
        }
        for (h, t) in &self.hosts {
            conn.prepare_cached(
                "INSERT INTO hosts (host, last_seen_ms) VALUES (?1, ?2) ON CONFLICT(host) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
            )?
            .execute(params![h, t])?;
        }
        conn.execute_batch("COMMIT")?;
        self.finished = true;
        if !self.new_series.is_empty() {
            let mut index = write(&self.store.index);
            for (fp, id, labels, derived) in self.new_series.drain(..) {
                index.insert(fp, id, labels, derived);
                self.store.head.ensure(id, None);
            }
        }
        for &(id, s) in &self.staged {
            self.store.head.append(id, s);
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        // After some errors (a write that failed for disk space) SQLite has rolled back already.
        if !self.finished && !self.store.conn.is_autocommit() {
            if let Err(e) = self.store.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
