//! Quick evaluation during tuning: scores every CSV under DATA into OUT with the default
//! detector (the production path is `tocsin-collector backtest`).
use std::io::Write;
use std::path::Path;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (data, outdir) = (Path::new(&a[1]), Path::new(&a[2]));
    let mut files = Vec::new();
    walk(data, &mut files);
    for f in files {
        let rel = f.strip_prefix(data).unwrap();
        let dst = outdir.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let mut cfg = tocsin_baseline::DetectorConfig::default();
        // Tuning knobs from the environment: TOCSIN_DET=alpha_level=0.1,point_k=5
        if let Ok(spec) = std::env::var("TOCSIN_DET") {
            let mut j = serde_json::to_value(cfg).unwrap();
            for kv in spec.split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap();
                j[k] = serde_json::json!(v.parse::<f64>().unwrap());
            }
            if let Some(m) = j.get_mut("min_history") {
                *m = serde_json::json!(m.as_f64().unwrap() as u32);
            }
            cfg = serde_json::from_value(j).unwrap();
        }
        let mut d = tocsin_baseline::Detector::new(cfg);
        let mut w = std::io::BufWriter::new(std::fs::File::create(&dst).unwrap());
        writeln!(w, "timestamp,value,anomaly_score,cause").unwrap();
        for line in text.lines().skip(1) {
            let (ts, v) = line.split_once(',').unwrap();
            let v: f64 = v.parse().unwrap();
            let o = d.update(parse_ts(ts), v);
            writeln!(w, "{ts},{v},{},{}", o.score, o.cause.as_str()).unwrap();
        }
    }
}

fn parse_ts(s: &str) -> i64 {
    tocsin_model::parse_timestamp(s).expect("timestamp")
}
