//! Finding, loading and watching rule files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tocsin_rules::Rule;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Rule files named by `paths`: files as given, directories' `*.yaml`/`*.yml` (not recursive).
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| {
                            f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml")
                        })
                        .collect();
                    v.sort();
                    out.extend(v);
                }
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            problems.push(format!("{}: no such file or directory", p.display()));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Loads and checks every rule file; all problems of all files at once.
pub fn load(paths: &[PathBuf]) -> Result<(Vec<Rule>, usize), Vec<String>> {
    let files = files(paths)?;
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => match tocsin_rules::parse_file(&f.display().to_string(), &text) {
                Ok(r) => rules.extend(r),
                Err(p) => problems.extend(p),
            },
            Err(e) => problems.push(format!("{}: {e}", f.display())),
        }
    }
    if let Err(p) = tocsin_rules::check_unique(&rules) {
        problems.extend(p);
    }
    if problems.is_empty() {
        Ok((rules, files.len()))
    } else {
        Err(problems)
    }
}

/// Watches the rule paths: the watcher (kept alive by the caller) and the work that, on a
/// change (debounced), loads them and sends the result (run by the caller, supervised).
pub fn watch(
    paths: Vec<PathBuf>,
    out: mpsc::Sender<Result<Vec<Rule>, Vec<String>>>,
    cancel: CancellationToken,
) -> notify::Result<(
    impl Send,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })?;
    for p in &paths {
        let target: &Path = if p.is_dir() {
            p
        } else {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        };
        watcher.watch(target, RecursiveMode::NonRecursive)?;
    }
    let reload = async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Editors write in several steps: wait for the burst to end.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let result = load(&paths).map(|(r, _)| r);
            match &result {
                Ok(r) => info!(rules = r.len(), "rule files changed; reloading"),
                Err(problems) => {
                    for p in problems {
                        error!(problem = %p, "rule reload rejected; previous rules stay active");
                    }
                }
            }
            if out.send(result).await.is_err() {
                return;
            }
        }
    };
    Ok((watcher, reload))
}
