//! The notification outbox, read and updated by delivery workers over their own connection.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use tocsin_model::TimestampMs;

use crate::{schema, Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Delivered,
    Dead,
}

impl OutboxStatus {
    fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub receiver: String,
    pub attempts: u32,
    pub next_attempt_ms: TimestampMs,
    pub payload: String,
}

/// One outbox row as the API shows it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub created_ms: TimestampMs,
    pub next_attempt_ms: TimestampMs,
    pub attempts: u32,
    pub status: String,
    pub last_error: Option<String>,
    pub payload: String,
}

pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    pub fn open(path: &Path, fsync: bool) -> Result<Outbox> {
        let conn = Connection::open(path).map_err(|e| StoreError::open(path, e))?;
        schema::prepare(&conn, fsync).map_err(|e| StoreError::open(path, e))?;
        Ok(Outbox { conn })
    }

    /// The oldest pending items of `receiver`, in the order they were queued. Delivery keeps
    /// that order: a later item waits while an earlier one is being retried.
    pub fn pending(&self, receiver: &str, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, receiver, attempts, next_attempt_ms, payload FROM outbox
             WHERE receiver = ?1 AND status = 'pending' ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![receiver, limit as i64], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                receiver: r.get(1)?,
                attempts: r.get(2)?,
                next_attempt_ms: r.get(3)?,
                payload: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_delivered(&self, id: i64) -> Result<()> {
        self.set(id, OutboxStatus::Delivered, None, None)
    }

    /// Records a failed attempt: retry at `retry_at`, or dead-letter when it is `None`.
    pub fn mark_failed(&self, id: i64, error: &str, retry_at: Option<TimestampMs>) -> Result<()> {
        match retry_at {
            Some(t) => self.set(id, OutboxStatus::Pending, Some(error), Some(t)),
            None => self.set(id, OutboxStatus::Dead, Some(error), None),
        }
    }

    fn set(
        &self,
        id: i64,
        status: OutboxStatus,
        error: Option<&str>,
        next: Option<TimestampMs>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET status = ?2, attempts = attempts + (?2 != 'delivered'),
                 last_error = coalesce(?3, last_error), next_attempt_ms = coalesce(?4, next_attempt_ms)
                 WHERE id = ?1",
            )?
            .execute(params![id, status.as_str(), error, next])?;
        Ok(())
    }

    /// The newest rows, optionally of one status (pending, delivered, dead).
    pub fn list(&self, status: Option<&str>, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, receiver, created_ms, next_attempt_ms, attempts, status, last_error, payload
             FROM outbox WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![status, limit as i64], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                receiver: r.get(1)?,
                created_ms: r.get(2)?,
                next_attempt_ms: r.get(3)?,
                attempts: r.get(4)?,
                status: r.get(5)?,
                last_error: r.get(6)?,
                payload: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

    /// Puts a dead-lettered notification back in line; false when `id` is not dead.
    pub fn retry_dead(&self, id: i64, now: TimestampMs) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = ?2
             WHERE id = ?1 AND status = 'dead'",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    /// Incidents opened in [from, to), newest first, as stored JSON.
    pub fn incidents(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT data FROM incidents WHERE opened_ms >= ?1 AND opened_ms < ?2
             ORDER BY opened_ms DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![from, to, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn incident(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT data FROM incidents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
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

    /// Items by status for `receiver`.
    pub fn count(&self, receiver: &str, status: OutboxStatus) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE receiver = ?1 AND status = ?2",
            params![receiver, status.as_str()],
            |r| r.get(0),
        )?;
        Ok(n as u64)
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
