//! The notification outbox, read and updated by delivery workers over their own connection.

use std::path::Path;

use rusqlite::{params, Connection};
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

    /// Records that a message went to `receiver` at `at` (before it is sent: an attempt counts
    /// against a rate limit as a delivery does), forgetting its sends before `forget_before`.
    pub fn record_send(
        &self,
        receiver: &str,
        at: TimestampMs,
        forget_before: TimestampMs,
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.prepare_cached("DELETE FROM sends WHERE receiver = ?1 AND sent_ms < ?2")?
            .execute(params![receiver, forget_before])?;
        tx.prepare_cached("INSERT INTO sends (receiver, sent_ms) VALUES (?1, ?2)")?
            .execute(params![receiver, at])?;
        Ok(tx.commit()?)
    }

    /// The times messages went to `receiver` since `since`, oldest first.
    pub fn sends_since(&self, receiver: &str, since: TimestampMs) -> Result<Vec<TimestampMs>> {
        let mut st = self.conn.prepare_cached(
            "SELECT sent_ms FROM sends WHERE receiver = ?1 AND sent_ms >= ?2 ORDER BY sent_ms",
        )?;
        let rows = st.query_map(params![receiver, since], |r| r.get(0))?;
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

    /// Puts a dead-lettered notification back in line; false when `id` is not dead.
    pub fn retry_dead(&self, id: i64, now: TimestampMs) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = ?2
             WHERE id = ?1 AND status = 'dead'",
            params![id, now],
        )?;
        Ok(n > 0)
    }

    /// Items by status, all receivers.
    pub fn count_all(&self, status: OutboxStatus) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE status = ?1",
            params![status.as_str()],
            |r| r.get(0),
        )?;
        Ok(n as u64)
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

    /// Items by status, per receiver (those with any).
    pub fn count_by_receiver(&self, status: OutboxStatus) -> Result<Vec<(String, u64)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT receiver, count(*) FROM outbox WHERE status = ?1 GROUP BY receiver ORDER BY receiver",
        )?;
        let rows = st.query_map(params![status.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
