//! The query service: PromQL over the stored history, on readers of their own (never the
//! writer's connection), at most `query.max_concurrent` at once, off the async threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tocsin_config::collector::QueryConfig;
use tocsin_model::{Labels, Sample};
use tocsin_promql::{Engine, Limits, Selector, Storage};
use tocsin_store::{ReadCache, Reader};
use tokio::sync::Semaphore;

pub struct QueryService {
    db: PathBuf,
    cache: ReadCache,
    idle: Mutex<Vec<Reader>>,
    permits: Semaphore,
    pub engine: Engine,
}

/// Why a query could not run at all (its own failures are in the `Ok` value).
#[derive(Debug)]
pub enum RunError {
    /// The database could not be opened or read: the detail, for the log only.
    Storage(String),
    /// The blocking task died.
    Internal(String),
    ShuttingDown,
}

impl QueryService {
    pub fn new(db: PathBuf, cfg: &QueryConfig) -> QueryService {
        QueryService {
            db,
            cache: ReadCache::default(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.max_concurrent),
            engine: Engine {
                lookback_ms: i64::try_from(cfg.lookback_delta.as_millis()).unwrap_or(i64::MAX),
                limits: Limits {
                    max_samples: cfg.max_samples,
                    max_series: cfg.max_series,
                    timeout: cfg.timeout,
                    ..Limits::default()
                },
                ..Engine::default()
            },
        }
    }

    /// Runs `f` on a reader, on a blocking thread, once one of the query slots is free.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Reader, &Engine) -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RunError::ShuttingDown)?;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let reader = me.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut reader = match reader {
                Some(r) => r,
                None => Reader::open(&me.db, me.cache.clone())
                    .map_err(|e| RunError::Storage(e.to_string()))?,
            };
            let out = f(&mut reader, &me.engine);
            me.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(reader);
            Ok(out)
        })
        .await
        .map_err(|e| RunError::Internal(e.to_string()))?
    }
}

/// The store's reader as the evaluator's storage.
pub struct Stored<'a>(pub &'a mut Reader);

impl Storage for Stored<'_> {
    fn select(
        &mut self,
        sel: Selector<'_>,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
        self.0
            .select(sel.metric_name(), |l| sel.matches(l), from, to)
            .map_err(|e| e.to_string())
    }
}
