//! Process plumbing shared by the tocsin binaries: logging set-up, mapping errors to exit codes,
//! waiting for a shutdown signal, surviving a file size limit, and serving a process's own
//! metrics registry. Nothing tocsin-specific lives here.

use std::process::ExitCode;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The logging flag both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info`, `debug` or `info,tocsin_probes=debug` (also from TOCSIN_LOG).
    #[arg(
        long = "log",
        env = "TOCSIN_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub filter: String,
}

/// Logs to stderr with `filter` (falling back to `info` when it does not parse); colours only
/// on a terminal. A log line that cannot be written (stderr on a full disk) is dropped: the
/// default would report it with `eprintln!`, which panics when stderr fails, in whichever
/// thread logged.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .fmt_fields(log_fields())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .init();
}

/// How a log line writes its fields: as the default does (`name=value`, text fields quoted),
/// but with every control character of a value escaped (`\n`, `\u{1b}`), line separators too.
/// Values come from outside (a change's service, an agent's labels, an error quoting a
/// request): a newline in one must not start a line that reads as another event, nor an
/// escape sequence repaint a terminal.
fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = inert(&raw);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{}={text}", name.trim_start_matches("r#")),
        }
    })
    .delimited(" ")
}

/// `s` with its control characters and line separators escaped.
fn inert(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(unsafe_char) {
        return s.into();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            o.extend(c.escape_default());
        } else {
            o.push(c);
        }
    }
    o.into()
}

/// Background work whose panic must stop the process: a bug is better restarted by the service
/// manager (`Restart=always`) than left running without the work — an agent answering
/// `/healthz` that no longer samples, a collector whose deliveries or writer stopped. A request's
/// own panic is not watched: the server drops that connection and goes on.
#[derive(Clone)]
pub struct Supervisor {
    cancel: tokio_util::sync::CancellationToken,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Supervisor {
    /// Stops the process through `cancel` (its graceful shutdown) when watched work panics.
    pub fn new(cancel: tokio_util::sync::CancellationToken) -> Self {
        Supervisor {
            cancel,
            failed: Default::default(),
        }
    }

    /// Runs `fut` as a task of its own, watched by a task on `tracker`.
    pub fn spawn<F>(&self, tracker: &tokio_util::task::TaskTracker, name: &'static str, fut: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tracker.spawn(self.watch(name, tokio::spawn(fut)));
    }

    /// Runs `fut` as a task of its own, watched; the handle ends when the watching does.
    pub fn task<F>(&self, name: &'static str, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(self.watch(name, tokio::spawn(fut)))
    }

    /// Awaits `task`: if it panicked, the process has failed and stops.
    pub fn watch<T: Send + 'static>(
        &self,
        name: &'static str,
        task: tokio::task::JoinHandle<T>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            if let Err(e) = task.await {
                if e.is_panic() {
                    this.fail(name);
                }
            }
        }
    }

    /// A guard for a thread's work: dropped while the thread panics, the process has failed.
    pub fn guard(&self, name: &'static str) -> PanicGuard {
        PanicGuard {
            supervisor: self.clone(),
            name,
        }
    }

    fn fail(&self, name: &str) {
        tracing::error!(task = name, "panicked: stopping, to be restarted");
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Whether watched work panicked: the process should exit with an error.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// See [`Supervisor::guard`].
pub struct PanicGuard {
    supervisor: Supervisor,
    name: &'static str,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.supervisor.fail(self.name);
        }
    }
}

/// Runs `f`; an error is logged, printed as `name: error` and exits 1.
pub fn exit_code(name: &str, r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Keeps a write beyond the process's file size limit (`RLIMIT_FSIZE`, systemd's `LimitFSIZE=`)
/// from ending the process: SIGXFSZ is caught, so the write fails with EFBIG and is handled like
/// a full disk (retried, counted, answered 503). Logged at most once a minute. Needs a runtime.
/// Files and directories this process creates from now on are its user's alone (umask 077):
/// a database holds the acknowledgement signing key, logs hold live acknowledgement links.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Makes `dir` (which must exist) 0700, so what is in it, made before too, is this user's
/// alone.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

pub fn survive_file_size_limit() {
    use tokio::signal::unix::{signal, SignalKind};
    let kind = SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    match signal(kind) {
        Ok(mut s) => {
            tokio::spawn(async move {
                let mut logged: Option<std::time::Instant> = None;
                while s.recv().await.is_some() {
                    if logged.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                        tracing::error!(
                            "a write went past the file size limit (RLIMIT_FSIZE) and failed; \
                             handled like a full disk"
                        );
                        logged = Some(std::time::Instant::now());
                    }
                }
            });
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot catch SIGXFSZ: a write past the file size limit would end the process"
        ),
    }
}

/// Registers a collector and hands it back, for building metric structs in one expression.
pub fn register<T: prometheus::core::Collector + Clone + 'static>(
    r: &prometheus::Registry,
    c: T,
) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique within a process");
    c
}

/// The Prometheus text exposition of `registry`.
pub fn metrics_response(registry: &prometheus::Registry) -> Response {
    let mut buf = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// What the subscriber writes, kept.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Work that panics stops the process, marked failed; work that ends does not; nor does a
    /// guarded thread that ends well.
    #[tokio::test]
    async fn a_panic_in_watched_work_stops_the_process_marked_failed() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let sup = super::Supervisor::new(cancel.clone());
        sup.watch("ends", tokio::spawn(async { 1 })).await;
        let well = sup.guard("thread");
        drop(well);
        assert!(!cancel.is_cancelled() && !sup.failed());
        let bug = tokio::spawn(async {
            let zero = std::hint::black_box(0u64);
            1 / zero
        });
        sup.watch("sampler", bug).await;
        assert!(cancel.is_cancelled() && sup.failed());
        // A thread that panics under its guard.
        let cancel = tokio_util::sync::CancellationToken::new();
        let sup = super::Supervisor::new(cancel.clone());
        let s = sup.clone();
        let t = std::thread::spawn(move || {
            let _guard = s.guard("writer");
            panic!("a bug");
        });
        assert!(t.join().is_err());
        assert!(cancel.is_cancelled() && sup.failed());
    }

    #[test]
    fn a_value_from_outside_cannot_forge_a_log_line_or_repaint_a_terminal() {
        let kept = Kept::default();
        let out = kept.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(super::log_fields())
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let service = "api\n2026-12-06T00:00:00Z  INFO forged: admin signed in";
            let label = "web\u{1b}[2Jx\u{2028}y";
            tracing::info!(service = %service, label, n = 3, "change {} recorded\r\n", "x\ny");
        });
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r"service=api\n2026-12-06T00:00:00Z  INFO forged: admin signed in"),
            "{text}"
        );
        assert!(text.contains(r#"label="web\u{1b}[2Jx\u{2028}y""#), "{text}");
        assert!(
            text.contains(r"change x\ny recorded\r\n service="),
            "{text}"
        );
        assert!(text.trim_end().ends_with(" n=3"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }
}
