use rusqlite::Connection;

pub(crate) const VERSION: i64 = 14;

const SCHEMA_V1: &str = "
CREATE TABLE series (
    id      INTEGER PRIMARY KEY,
    labels  TEXT NOT NULL UNIQUE,
    metric  TEXT NOT NULL,
    host    TEXT
);
CREATE INDEX series_metric ON series (metric);
CREATE INDEX series_host ON series (host);
-- Compressed samples of one series over [start_ms, end_ms] (see chunk.rs).
CREATE TABLE chunks (
    series_id INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (series_id, start_ms)
) WITHOUT ROWID;
CREATE INDEX chunks_end ON chunks (end_ms);
-- Durable ingest log: samples acknowledged but not yet in chunks, one row per commit.
CREATE TABLE wal (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE alert_state (
    key  TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    receiver        TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL DEFAULT 'pending',
    last_error      TEXT,
    payload         TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (receiver, status, next_attempt_ms);
CREATE TABLE hosts (
    host         TEXT PRIMARY KEY,
    last_seen_ms INTEGER NOT NULL
);
";

/// Learned baselines of dynamic rules, written at each checkpoint.
const SCHEMA_V2: &str = "
CREATE TABLE baselines (
    key  TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
";

/// Silences: label matchers (JSON) muting notifications between two times.
const SCHEMA_V3: &str = "
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_ms  INTEGER NOT NULL,
    ends_ms    INTEGER NOT NULL,
    author     TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// Notification dispatch state (groups, escalations, acknowledgements), recurring schedules of
/// maintenance windows, and small settings such as the key that signs acknowledgement links.
const SCHEMA_V4: &str = "
CREATE TABLE dispatch (
    key  TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
ALTER TABLE silences ADD COLUMN schedule TEXT;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Incidents with their append-only timelines, remediation state, and the append-only audit
/// log of remediation.
const SCHEMA_V5: &str = "
CREATE TABLE incidents (
    id        TEXT PRIMARY KEY,
    opened_ms INTEGER NOT NULL,
    state     TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX incidents_opened ON incidents (opened_ms);
CREATE TABLE incident_events (
    seq      INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident, seq);
CREATE TABLE remedy (
    key  TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE audit (
    seq    INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    event  TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER audit_append_only_u BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_append_only_d BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
";

/// Per-agent ingest tokens, stored as SHA-256 hashes, bound to one host.
const SCHEMA_V6: &str = "
CREATE TABLE agent_tokens (
    id         INTEGER PRIMARY KEY,
    host       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    comment    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
";

/// Series the collector derives itself (liveness, service ratios, its own metrics) are marked,
/// so that they never count against the series limits of the senders.
const SCHEMA_V7: &str = "
ALTER TABLE series ADD COLUMN derived INTEGER NOT NULL DEFAULT 0;
";

/// Nothing reads series by labels, metric or host from SQLite: the index is in memory, and it is
/// what keeps label sets unique (the one writer looks a series up before it creates it). The
/// three indexes only cost every new series three more B-tree inserts, the one on the labels'
/// JSON text the most (a fleet's first cycle: 128k of them). The table is rebuilt without them.
const SCHEMA_V8: &str = "
CREATE TABLE series_v8 (
    id      INTEGER PRIMARY KEY,
    labels  TEXT NOT NULL,
    metric  TEXT NOT NULL,
    host    TEXT,
    derived INTEGER NOT NULL DEFAULT 0
);
INSERT INTO series_v8 (id, labels, metric, host, derived)
    SELECT id, labels, metric, host, derived FROM series;
DROP TABLE series;
ALTER TABLE series_v8 RENAME TO series;
";

/// Changes (deploys, configuration, infrastructure) and people's feedback on alerts: JSON
/// rows the API appends, by time (and feedback by incident).
const SCHEMA_V9: &str = "
CREATE TABLE changes (
    id       INTEGER PRIMARY KEY,
    start_ms INTEGER NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX changes_by_start ON changes (start_ms);
CREATE TABLE feedback (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    incident TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX feedback_by_at ON feedback (at_ms);
CREATE INDEX feedback_by_incident ON feedback (incident);
";

/// Whether each change's marker series has been written: the writer writes it once the change
/// has started, in the same transaction that marks the row, so a failed write or a restart
/// loses none and writes none twice. Rows from before were marked when they were recorded.
const SCHEMA_V10: &str = "
ALTER TABLE changes ADD COLUMN marked INTEGER NOT NULL DEFAULT 0;
UPDATE changes SET marked = 1;
CREATE INDEX changes_unmarked ON changes (start_ms) WHERE marked = 0;
";

/// Each service level's record of its indicator as saved at the last checkpoint, so a restart
/// takes in only what came after instead of rebuilding the whole period.
const SCHEMA_V11: &str = "
CREATE TABLE error_budgets (
    key  TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
";

/// When each receiver was last sent a message, so its rate limits (an hour's texts, a day's)
/// hold across a restart: a collector restarting in a loop through an outage must not start
/// every receiver's budget afresh.
const SCHEMA_V12: &str = "
CREATE TABLE sends (
    receiver TEXT NOT NULL,
    sent_ms  INTEGER NOT NULL
);
CREATE INDEX sends_by_receiver ON sends (receiver, sent_ms);
";

/// Each alert's part in an incident is a row of its own, so a change to one alert of an
/// incident of thousands (a mass outage) writes that alert's row and the incident's small one,
/// not every alert again. The incident's own row keeps `"alerts": {}`; reads put the parts back
/// (`incident_data!`). Rows written before are split here; an unreadable row is left as it was.
const SCHEMA_V13: &str = "
CREATE TABLE incident_alerts (
    incident TEXT NOT NULL,
    alert    TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (incident, alert)
) WITHOUT ROWID;
INSERT INTO incident_alerts (incident, alert, data)
    SELECT i.id, a.key, a.value FROM incidents i, json_each(i.data, '$.alerts') a
    WHERE json_valid(i.data) AND json_type(i.data, '$.alerts') = 'object';
UPDATE incidents SET data = json_set(data, '$.alerts', json('{}'))
    WHERE json_valid(data) AND json_type(data, '$.alerts') = 'object';
";

/// The hosts, services and probes an incident touches are rows of their own too: a mass outage
/// of thousands of hosts grew the incident's own row by each of them, and that row is written
/// with every change. The row keeps empty lists; reads put the members back
/// (`incident_data!`). Rows written before are split here.
const SCHEMA_V14: &str = "
CREATE TABLE incident_members (
    incident TEXT NOT NULL,
    kind     TEXT NOT NULL,
    member   TEXT NOT NULL,
    PRIMARY KEY (incident, kind, member)
) WITHOUT ROWID;
INSERT OR IGNORE INTO incident_members (incident, kind, member)
    SELECT i.id, k.kind, m.value
    FROM incidents i,
         (SELECT 'hosts' AS kind UNION ALL SELECT 'services' UNION ALL SELECT 'probes') k,
         json_each(i.data, '$.' || k.kind) m
    WHERE json_valid(i.data) AND json_type(i.data, '$.' || k.kind) = 'array'
      AND m.type = 'text';
UPDATE incidents SET data = json_set(data, '$.hosts', json('[]'))
    WHERE json_valid(data) AND json_type(data, '$.hosts') = 'array';
UPDATE incidents SET data = json_set(data, '$.services', json('[]'))
    WHERE json_valid(data) AND json_type(data, '$.services') = 'array';
UPDATE incidents SET data = json_set(data, '$.probes', json('[]'))
    WHERE json_valid(data) AND json_type(data, '$.probes') = 'array';
";

/// One of an incident's member sets as stored before the split (V14), sorted as the record
/// sorted it.
macro_rules! incident_members {
    ($kind:literal) => {
        concat!(
            "'$.", $kind, "', json((SELECT json_group_array(m.member) FROM (SELECT member FROM incident_members WHERE incident = incidents.id AND kind = '",
            $kind,
            "' ORDER BY member) m))"
        )
    };
}

/// An incident's record as stored before the splits (V13, V14): its row with its alerts' rows
/// put back under `alerts`, in the order of their ids, and its members in their sets. Selected
/// in place of `data` wherever an incident is read (`FROM incidents` unaliased); a macro, so
/// the queries below are constants.
macro_rules! incident_data {
    () => {
        concat!(
            "CASE WHEN json_valid(incidents.data) THEN json_set(incidents.data, '$.alerts', json((SELECT json_group_object(a.alert, json(a.data)) FROM incident_alerts a WHERE a.incident = incidents.id)), ",
            incident_members!("hosts"),
            ", ",
            incident_members!("services"),
            ", ",
            incident_members!("probes"),
            ") ELSE incidents.data END"
        )
    };
}

/// One incident's record by id.
pub(crate) const INCIDENT_BY_ID: &str =
    concat!("SELECT ", incident_data!(), " FROM incidents WHERE id = ?1");
/// (id, record) of the incidents still live: not resolved, or opened since ?1.
pub(crate) const LIVE_INCIDENTS: &str = concat!(
    "SELECT id, ",
    incident_data!(),
    " FROM incidents WHERE state != 'resolved' OR opened_ms >= ?1"
);
/// Records of the incidents opened in [?1, ?2), newest first, at most ?3.
pub(crate) const INCIDENTS_OPENED: &str = concat!(
    "SELECT ",
    incident_data!(),
    " FROM incidents WHERE opened_ms >= ?1 AND opened_ms < ?2 ORDER BY opened_ms DESC LIMIT ?3"
);

pub(crate) fn prepare(conn: &Connection, fsync: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The writer's statements (samples, alert and dispatch rows, incidents, outbox, …) each
    // parsed once: more than the default cache of 16 would evict and parse again.
    conn.set_prepared_statement_cache_capacity(64);
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.execute_batch(if fsync {
        "PRAGMA synchronous=FULL;"
    } else {
        "PRAGMA synchronous=NORMAL;"
    })?;
    // SQLite's default page cache (2 MiB) holds a few thousand series rows: past that, every
    // new series reads the pages of the labels index back from the OS (a fleet's first
    // cycle: 128k series in the ingest benchmark). 32 MiB, allocated as pages are used.
    conn.execute_batch("PRAGMA cache_size=-32768;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        // An earlier binary would misread what it does not know (an incident's alerts kept
        // in rows of their own, schema 13, read as none) rather than fail later.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "its schema ({version}) is newer than this version of tocsin reads ({VERSION}); \
                 going back to an earlier version needs the backup taken before the upgrade"
            )),
        ));
    }
    let steps = [
        (1, SCHEMA_V1),
        (2, SCHEMA_V2),
        (3, SCHEMA_V3),
        (4, SCHEMA_V4),
        (5, SCHEMA_V5),
        (6, SCHEMA_V6),
        (7, SCHEMA_V7),
        (8, SCHEMA_V8),
        (9, SCHEMA_V9),
        (10, SCHEMA_V10),
        (11, SCHEMA_V11),
        (12, SCHEMA_V12),
        (13, SCHEMA_V13),
        (14, SCHEMA_V14),
    ];
    for (v, sql) in steps {
        if version < v {
            conn.execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {v}; COMMIT;"))?;
        }
    }
    debug_assert_eq!(steps.last().map(|s| s.0), Some(VERSION));
    Ok(())
}
