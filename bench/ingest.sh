#!/usr/bin/env bash
# Remote-write ingest into tocsin-collector: durable samples per second, collector pinned to
# one core and then given both, for two request shapes. Each case runs RUNS times on a fresh
# data directory; the median is reported.
#   bench/ingest.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --locked -q -p tocsin-collector -p tocsin-loadgen
work=$(mktemp -d)
trap 'pkill -f "tocsin-collector --listen 127.0.0.1:19799" || true; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
cp rules/*.yaml "$work/rules/"
port=19799
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
for cores in 0 0,1; do
  for shape in "--series 500 --samples 4" "--series 2000 --samples 1"; do
    rates=()
    for _ in $(seq "$runs"); do
      rm -rf "$work/data"
      taskset -c "$cores" ./target/release/tocsin-collector --listen 127.0.0.1:$port \
        --data-dir "$work/data" --rules "$work/rules" >"$work/out" 2>"$work/err" &
      pid=$!
      for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
      r=$(./target/release/tocsin-loadgen --url http://127.0.0.1:$port/api/v1/write \
            --agents 64 --rounds 40 --concurrency 8 $shape --json 2>/dev/null)
      rates+=("$(echo "$r" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["samples_per_second"]), round(d["latency_ms_p99"],1))')")
      kill -TERM $pid; wait $pid || true
    done
    median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
    echo "collector cores=$cores shape=[$shape] runs: $(printf '%s; ' "${rates[@]}") median samples/s, p99 ms: $median"
  done
done
