//! A local file: one JSON line per notification, synced before it counts as delivered.

use std::io::Write;
use std::path::{Path, PathBuf};

use tocsin_alerting::Payload;

use super::{Channel, DeliveryError, Sending};

pub(super) struct Log {
    pub(super) path: PathBuf,
}

impl Channel for Log {
    fn send<'a>(&'a self, raw: &'a str, _n: &'a Payload, _id: i64) -> Sending<'a> {
        self.append(raw)
    }

    fn send_report<'a>(
        &'a self,
        raw: &'a str,
        _r: &'a tocsin_reports::Report,
        _id: i64,
    ) -> Sending<'a> {
        self.append(raw)
    }
}

impl Log {
    fn append<'a>(&'a self, raw: &'a str) -> Sending<'a> {
        Box::pin(async move {
            let path = self.path.clone();
            let line = format!("{raw}\n");
            tokio::task::spawn_blocking(move || append_line(&path, &line))
                .await
                .map_err(|e| DeliveryError::Local(e.to_string()))?
                .map_err(DeliveryError::Local)
        })
    }
}

fn append_line(path: &Path, line: &str) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
