//! SQLite's write-ahead log copied into the database file off the writer's thread.
//!
//! By default SQLite checkpoints inside the commit that takes the log past 1000 pages: the
//! writer copies those pages while every request of its group waits (a fleet's first cycle,
//! which writes the series table and its index, most of all). Here the writer's connection does
//! not checkpoint by itself; a thread with a connection of its own runs passive checkpoints
//! (which neither wait for nor block the writer) whenever the log has been written since its
//! last look. A checkpoint that completes between two commits of a busy writer rarely does,
//! and only a complete one lets the next commit restart the log from its beginning: so once
//! the log is longer than `LONG_LOG_BYTES`, the writer runs one itself before its next
//! transaction, with little left to copy (`Store::begin`), and the log restarts there.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How often the log is looked at.
const POLL: Duration = Duration::from_millis(50);
/// Past this, the writer completes a checkpoint itself. The log is cut back to 4 MiB when it
/// restarts (`journal_size_limit`), so a longer one has not restarted since.
const LONG_LOG_BYTES: u64 = 64 << 20;

pub(crate) struct Checkpointer {
    wal: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode); `None`, with the
    /// reason logged, when its connection or thread cannot be had: the writer's own
    /// checkpoints do all the work then, as they would anyway.
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c));
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no background WAL checkpoints");
                return None;
            }
        };
        let wal = wal_path(path);
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = wal.clone();
        match std::thread::Builder::new()
            .name("tocsin-walckpt".into())
            .spawn(move || run(conn, &watched, stopped))
        {
            Ok(thread) => Some(Checkpointer {
                wal,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no background WAL checkpoints");
                None
            }
        }
    }
}

/// SQLite's write-ahead log of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

impl Checkpointer {
    /// Whether the log has grown past `LONG_LOG_BYTES` (a stat of the file).
    pub(crate) fn log_is_long(&self) -> bool {
        std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > LONG_LOG_BYTES)
    }
}

fn run(conn: Connection, wal: &Path, stopped: mpsc::Receiver<()>) {
    let mut seen = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
        // Written since the last look (an idle collector costs a stat per poll).
        let written = std::fs::metadata(wal).and_then(|m| m.modified()).ok();
        if written.is_none() || written == seen {
            continue;
        }
        seen = written;
        // Busy (the writer's own checkpoint) or failed: the next write brings another try,
        // and the writer's checkpoint does the work when the log is long; nothing is lost.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "background WAL checkpoint failed");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes the write-ahead log durable for a writer that commits without waiting for the disk
/// (`Store::defer_sync`): after `sync` returns, every transaction committed before it was
/// called survives a power loss. Movable to another thread, to sync one group while the next
/// is being prepared.
pub struct WalSync {
    path: PathBuf,
    enabled: bool,
    /// The log file and its inode: reopened if SQLite ever replaces the file.
    file: Option<(std::fs::File, u64)>,
}

impl WalSync {
    pub(crate) fn new(db: &Path, enabled: bool) -> WalSync {
        WalSync {
            path: wal_path(db),
            enabled,
            file: None,
        }
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        if !self.enabled {
            return Ok(());
        }
        let ino = match std::fs::metadata(&self.path) {
            Ok(m) => m.ino(),
            // No log yet: nothing was committed through it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let file = match self.file.take() {
            Some((f, i)) if i == ino => f,
            _ => std::fs::File::open(&self.path)?,
        };
        let r = file.sync_data();
        self.file = Some((file, ino));
        r
    }
}
