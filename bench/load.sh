#!/usr/bin/env bash
# Many agents against one collector: AGENTS simulated agents x SERIES series every INTERVAL
# seconds for DURATION seconds (defaults 1000 x 300 every 10 s for 600 s, i.e. 30,000 samples/s
# and 300,000 series), the collector on the default rules. Reports request latency (p50/p99/max),
# samples not acknowledged, what the collector stored, and its RSS (sampled every 5 s).
#   bench/load.sh [AGENTS] [SERIES] [INTERVAL] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-1000}; series=${2:-300}; interval=${3:-10}; duration=${4:-600}
cargo build --release --locked -q -p tocsin-collector -p tocsin-loadgen
work=$(mktemp -d)
port=19798
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
cp rules/*.yaml "$work/rules/"
printf 'ingest: { max_series_per_host: 20000 }\n' >"$work/collector.yaml"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
./target/release/tocsin-collector --config "$work/collector.yaml" --listen 127.0.0.1:$port \
  --data-dir "$work/data" --rules "$work/rules" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
( while kill -0 $pid 2>/dev/null; do
    awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || true
    sleep 5
  done ) >"$work/rss" &
./target/release/tocsin-loadgen --url http://127.0.0.1:$port/api/v1/write \
  --agents "$agents" --series "$series" --interval "$interval" --duration "$duration" \
  | tee "$work/result.json"
metrics=$(curl -sf http://127.0.0.1:$port/metrics)
accepted=$(echo "$metrics" | awk '/^tocsin_ingest_samples_total\{result="accepted"\}/ {print $2}')
series_count=$(echo "$metrics" | awk '/^tocsin_storage_series / {print $2}')
cpu=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)
kill -TERM $pid; wait $pid || true
sort -n "$work/rss" | awk '{a[NR]=$1} END {printf "collector RSS: median %.0f MB, max %.0f MB over %d samples\n", a[int((NR+1)/2)]/1024, a[NR]/1024, NR}'
echo "collector stored (accepted) samples: $accepted, series: $series_count, CPU: ${cpu}s over ${duration}s"
python3 - "$work/result.json" "$accepted" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
stored = float(sys.argv[2])
# The collector also stores its own derived series (host liveness); it must hold at least every
# acknowledged sample.
ok = r["dropped_samples"] == 0 and r["acked_samples"] == r["expected_samples"] and stored >= r["acked_samples"]
print(f"acked {r['acked_samples']} of {r['expected_samples']}, dropped {r['dropped_samples']}, "
      f"latency p50 {r['latency_ms_p50']:.1f} ms p99 {r['latency_ms_p99']:.1f} ms max {r['latency_ms_max']:.1f} ms: "
      + ("no sample lost" if ok else "SAMPLES LOST"))
sys.exit(0 if ok else 1)
PY
