//! The disk wait of a group commit, overlapped with the next group.
//!
//! The writer commits a group to SQLite without waiting for the disk, hands the fsync of the
//! write-ahead log to this thread, and takes in and applies the next group meanwhile. The
//! group's answers, notifications and forwarding wait for the fsync, as before; only the
//! writer's CPU work no longer waits for the disk, nor the disk for it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tocsin_model::TimestampMs;
use tocsin_store::WalSync;

use super::group::Group;

pub(super) struct Syncer {
    ask: Option<mpsc::Sender<()>>,
    done: mpsc::Receiver<std::io::Result<()>>,
    thread: Option<JoinHandle<()>>,
    /// The committed group whose fsync is under way.
    pub(super) pending: Option<(Group, TimestampMs)>,
}

impl Syncer {
    pub(super) fn start(mut wal: WalSync) -> std::io::Result<Syncer> {
        let (ask, asked) = mpsc::channel::<()>();
        let (tell, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tocsin-fsync".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    if tell.send(wal.sync()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Syncer {
            ask: Some(ask),
            done,
            thread: Some(thread),
            pending: None,
        })
    }

    /// Starts making everything committed so far durable.
    pub(super) fn begin(&self) -> std::io::Result<()> {
        match &self.ask {
            Some(a) if a.send(()).is_ok() => Ok(()),
            _ => Err(std::io::Error::other("the fsync thread is gone")),
        }
    }

    /// Waits for the fsync begun last.
    pub(super) fn wait(&self) -> std::io::Result<()> {
        self.done
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread is gone")))
    }

    /// Makes everything committed so far durable, now.
    pub(super) fn sync_now(&self) -> std::io::Result<()> {
        self.begin()?;
        self.wait()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.ask.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
