//! Subcommands that need no running collector: rule checks and export, backtests.

//! Command line: `tocsin-collector [FLAGS]` runs the collector; subcommands do one-off jobs.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::rulefiles;

pub(super) fn export_rules(
    format: &str,
    out: Option<&std::path::Path>,
    paths: &[PathBuf],
) -> ExitCode {
    if format != "prometheus" {
        eprintln!("tocsin-collector export-rules: unknown format {format:?} (prometheus)");
        return ExitCode::from(2);
    }
    let rules = match rulefiles::load(paths) {
        Ok((rules, _)) => rules,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::from(1);
        }
    };
    let (yaml, notes) = crate::export::prometheus(&rules);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let written = match out {
        Some(p) => {
            std::fs::write(p, &yaml).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            print!("{yaml}");
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tocsin-collector export-rules: {e}");
            ExitCode::from(1)
        }
    }
}

/// The configuration as a start reads it, or the exit code after saying why not.
fn config(args: &super::RunArgs) -> Result<tocsin_config::collector::CollectorConfig, ExitCode> {
    super::serve::load_config(args).map_err(|e| {
        eprintln!("{e:#}");
        ExitCode::from(1)
    })
}

/// Every problem on its line, then how many: exit 1.
fn report(problems: &[String]) -> ExitCode {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!("{} problems found", problems.len());
    ExitCode::from(1)
}

/// `check-config`: the configuration as the collector would start with it (flags over the
/// file, as when it runs) — every problem of the file, with its line, of the rule files it
/// names, of receivers whose channel cannot be built and of its TLS settings — then 0, or 1.
/// Nothing is opened or written: the database, the data directory and the port are left alone.
pub(super) fn check_config(args: &super::RunArgs) -> ExitCode {
    let source = args
        .config
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let cfg = match config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut problems = Vec::new();
    let (rules, files) = match rulefiles::load(&cfg.rules) {
        Ok(found) => found,
        Err(p) => {
            problems.extend(p);
            (Vec::new(), 0)
        }
    };
    for r in &cfg.receivers {
        if let Err(e) = tocsin_notify::check_receiver(r) {
            problems.push(format!("receiver {:?}: {e}", r.name));
        }
    }
    if let Some(t) = &cfg.tls {
        if let Err(e) = crate::server::acceptor(t) {
            problems.push(format!("tls: {e:#}"));
        }
    }
    if !problems.is_empty() {
        return report(&problems);
    }
    println!(
        "{source}: valid — listen {}, data in {}, {} receivers ({}), {} rules in {files} files",
        cfg.listen,
        cfg.data_dir.display(),
        cfg.receivers.len(),
        cfg.receivers
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        rules.len(),
    );
    for node in cfg.route.resent_on_every_change() {
        eprintln!(
            "warning: {node}: {}",
            tocsin_config::route::RESENT_ON_EVERY_CHANGE
        );
    }
    ExitCode::SUCCESS
}

/// `test-receiver NAME`: one test message (`TocsinTest`, warning) through the named receiver,
/// as the configuration (and flags) describe it, now; 0 when the receiver took it.
pub(super) fn test_receiver(args: &super::RunArgs, name: &str) -> ExitCode {
    let cfg = match config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(r) = cfg.receivers.iter().find(|r| r.name == name) else {
        let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
        eprintln!("no receiver {name:?}; configured: {}", names.join(", "));
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let host = tocsin_config::agent::system_hostname();
    let sent = rt.block_on(tocsin_notify::send_test(
        r,
        &cfg.external_url,
        &host,
        tocsin_model::now_ms(),
    ));
    match sent {
        Ok(()) => {
            println!("{name}: test message sent (TocsinTest, warning, host {host})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}

pub(super) fn check_rules(paths: &[PathBuf]) -> ExitCode {
    match rulefiles::load(paths) {
        Ok((rules, files)) => {
            println!("{} rules in {files} files: valid", rules.len());
            ExitCode::SUCCESS
        }
        Err(problems) => report(&problems),
    }
}

pub(super) enum Source {
    Csv(PathBuf),
    Stored {
        data_dir: PathBuf,
        from: String,
        to: String,
        host: Option<String>,
    },
}

pub(super) fn backtest(
    rules: &std::path::Path,
    rule: &str,
    source: &Source,
    out: Option<&std::path::Path>,
) -> ExitCode {
    let go = |w: &mut dyn std::io::Write| match source {
        Source::Csv(c) => crate::backtest::run(rules, rule, c, w),
        Source::Stored {
            data_dir,
            from,
            to,
            host,
        } => crate::backtest::run_stored(rules, rule, data_dir, (from, to), host.as_deref(), w),
    };
    let result = match out {
        Some(p) => std::fs::File::create(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                let r = go(&mut w);
                std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
                r
            }),
        None => go(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(s) => {
            eprintln!(
                "{} rows; alerts fired: warning {}, critical {}, emergency {}; first {}, last {}",
                s.rows,
                s.alerts[0],
                s.alerts[1],
                s.alerts[2],
                s.first.as_deref().unwrap_or("-"),
                s.last.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tocsin-collector backtest: {e}");
            ExitCode::from(1)
        }
    }
}
