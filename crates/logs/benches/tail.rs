//! Log matching throughput, one core: a file of LINES lines (default 2,000,000; 1 % with
//! "ERROR") read from its start by the tailer with one simple pattern, then with a severity
//! regex too; lines per second, median of RUNS runs (default 5). Side by side, in the same
//! run, mtail (Debian's package) counting the same pattern over the same file in one-shot
//! mode, when it is installed.
//!
//!   cargo bench -p tocsin-logs --bench tail [-- LINES RUNS]

use std::io::Write;
use std::process::Command;
use std::time::Instant;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let lines = args.first().copied().unwrap_or(2_000_000);
    let runs = args.get(1).copied().unwrap_or(5) as usize;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("app.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..lines {
            let level = if i % 100 == 0 { "ERROR" } else { "INFO" };
            writeln!(
                f,
                "2026-12-05T03:22:{:02}.{:03}Z {level} shop.orders request {i} served in {} ms",
                i % 60,
                i % 1000,
                i % 250
            )
            .unwrap();
        }
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "{lines} lines, {:.1} MB, {} ({} cores)",
        bytes as f64 / 1e6,
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (what, severity) in [
        ("one pattern", ""),
        (
            "one pattern and severity",
            "    severity: '^\\S+ (?P<severity>[A-Z]+) '\n",
        ),
    ] {
        let mut rates = Vec::new();
        for r in 0..runs {
            let raw: tocsin_config::agent::RawAgentConfig = tocsin_config::parse_yaml(&format!(
                "logs:\n  - name: app\n    path: {}/app.log\n    start_at: beginning\n    patterns: [ {{ name: error, regex: 'ERROR' }} ]\n{severity}",
                logs.display()
            ))
            .unwrap();
            let cfg = raw.validate().unwrap().logs;
            let mut t = tocsin_logs::Tailer::new(
                cfg,
                dir.path().join(format!("o-{}-{r}.json", severity.len())),
            );
            let t0 = Instant::now();
            while t.totals("app").map_or(0, |x| x.lines) < lines {
                t.poll();
            }
            let secs = t0.elapsed().as_secs_f64();
            assert_eq!(t.totals("app").unwrap().matches["error"], lines / 100);
            rates.push(lines as f64 / secs);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "tocsin-logs, {what}: median {:.0} lines/s ({:.0} MB/s), min {:.0}, max {:.0}",
            rates[runs / 2],
            rates[runs / 2] * bytes as f64 / lines as f64 / 1e6,
            rates[0],
            rates[runs - 1]
        );
    }
    mtail(&path, dir.path(), lines, runs);
}

/// mtail's one-shot mode over the same file with the same pattern.
fn mtail(path: &std::path::Path, dir: &std::path::Path, lines: u64, runs: usize) {
    if Command::new("mtail").arg("--version").output().is_err() {
        println!("mtail: not installed (apt-get install mtail), no side-by-side figure");
        return;
    }
    let progs = dir.join("progs");
    std::fs::create_dir_all(&progs).unwrap();
    std::fs::write(
        progs.join("errors.mtail"),
        "counter errors\n/ERROR/ {\n  errors++\n}\n",
    )
    .unwrap();
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let o = Command::new("taskset")
            .args([
                "-c",
                "0",
                "mtail",
                "--one_shot",
                "--one_shot_format",
                "prometheus",
            ])
            .arg("--progs")
            .arg(&progs)
            .arg("--logs")
            .arg(path)
            .output()
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let out = String::from_utf8_lossy(&o.stdout);
        let counted = out
            .lines()
            .find(|l| l.starts_with("errors"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(
            counted,
            Some((lines / 100) as f64),
            "mtail counted: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        rates.push(lines as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "mtail {}, one pattern (one core, taskset; includes its start): median {:.0} lines/s, min {:.0}, max {:.0}",
        String::from_utf8_lossy(&Command::new("mtail").arg("--version").output().unwrap().stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?"),
        rates[runs / 2],
        rates[0],
        rates[runs - 1]
    );
}
