use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The cause is in the message, not given as a source too (which a report of the whole
    /// chain would print a second time).
    #[error("cannot open database {path}: {cause}")]
    Open {
        path: String,
        cause: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    pub(crate) fn open(path: &Path, source: rusqlite::Error) -> Self {
        StoreError::Open {
            path: path.display().to_string(),
            cause: source,
        }
    }

    /// True when retrying later may succeed (disk full, locked database): callers answer 503.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DiskFull | DatabaseBusy | DatabaseLocked | SystemIoFailure | OutOfMemory
            ),
            _ => false,
        }
    }
}
