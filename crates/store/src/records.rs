//! What the API reads and records besides notifications, over its own connection: agent
//! tokens (hashes only), stored incidents with their timelines, and the audit log.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use tocsin_model::TimestampMs;

use crate::{schema, Result, StoreError};

pub struct Records {
    conn: Connection,
}

impl Records {
    pub fn open(path: &Path) -> Result<Records> {
        let conn = Connection::open(path).map_err(|e| StoreError::open(path, e))?;
        schema::prepare(&conn, true).map_err(|e| StoreError::open(path, e))?;
        Ok(Records { conn })
    }

    /// Stores a new agent token's hash for `host`; returns its id.
    pub fn add_token(
        &self,
        host: &str,
        hash: &str,
        comment: &str,
        now: TimestampMs,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO agent_tokens (host, hash, comment, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![host, hash, comment, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Revokes a token; false when there is no such live token.
    pub fn revoke_token(&self, id: i64, now: TimestampMs) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE agent_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    /// All tokens, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, host, hash, comment, created_ms, revoked_ms FROM agent_tokens ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(TokenRow {
                id: r.get(0)?,
                host: r.get(1)?,
                hash: r.get(2)?,
                comment: r.get(3)?,
                created_ms: r.get(4)?,
                revoked_ms: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Incidents opened in [from, to), newest first, as stored JSON.
    pub fn incidents(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(crate::schema::INCIDENTS_OPENED)?;
        let rows = st.query_map(params![from, to, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn incident(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(crate::schema::INCIDENT_BY_ID, [id], |r| r.get(0))
            .optional()?)
    }

    /// An incident's timeline, in order.
    pub fn incident_events(&self, id: &str) -> Result<Vec<EventRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT at_ms, kind, text FROM incident_events WHERE incident = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(EventRow {
                at_ms: r.get(0)?,
                kind: r.get(1)?,
                text: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Appends to the audit log (what people changed through the API; remediation writes its
    /// rows in the writer's transactions).
    pub fn append_audit(
        &self,
        at: TimestampMs,
        actor: &str,
        event: &str,
        detail: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO audit (at_ms, actor, event, detail) VALUES (?1, ?2, ?3, ?4)",
            params![at, actor, event, detail],
        )?;
        Ok(())
    }

    /// The setting `key`, if set.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Records a change starting at `start_ms` (its JSON); returns its id.
    pub fn add_change(&self, start_ms: TimestampMs, data: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO changes (start_ms, data) VALUES (?1, ?2)",
            params![start_ms, data],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Changes starting in [from, to), oldest first: (id, JSON).
    pub fn changes(&self, from: TimestampMs, to: TimestampMs) -> Result<Vec<(i64, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, data FROM changes WHERE start_ms >= ?1 AND start_ms < ?2
             ORDER BY start_ms, id LIMIT 100000",
        )?;
        let rows = st.query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records feedback on an alert of `incident` (its JSON); returns its id.
    pub fn add_feedback(&self, at: TimestampMs, incident: &str, data: &str) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO feedback (at_ms, incident, data) VALUES (?1, ?2, ?3)",
            params![at, incident, data],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Feedback given in [from, to), oldest first, as JSON.
    pub fn feedback(&self, from: TimestampMs, to: TimestampMs) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT data FROM feedback WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY at_ms, id
             LIMIT 100000",
        )?;
        let rows = st.query_map(params![from, to], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Feedback on one incident's alerts, oldest first, as JSON.
    pub fn feedback_of(&self, incident: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT data FROM feedback WHERE incident = ?1 ORDER BY at_ms, id")?;
        let rows = st.query_map([incident], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest audit rows, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT at_ms, actor, event, detail FROM audit ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(AuditRow {
                at_ms: r.get(0)?,
                actor: r.get(1)?,
                event: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A per-agent token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub host: String,
    /// SHA-256 hex of the token.
    pub hash: String,
    pub comment: String,
    pub created_ms: TimestampMs,
    pub revoked_ms: Option<TimestampMs>,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub at_ms: TimestampMs,
    pub kind: String,
    pub text: String,
}

/// One row of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at_ms: TimestampMs,
    pub actor: String,
    pub event: String,
    /// JSON.
    pub detail: String,
}
