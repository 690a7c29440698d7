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

pub(super) fn check_rules(paths: &[PathBuf]) -> ExitCode {
    match rulefiles::load(paths) {
        Ok((rules, files)) => {
            println!("{} rules in {files} files: valid", rules.len());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problems found", problems.len());
            ExitCode::from(1)
        }
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
