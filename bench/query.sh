#!/usr/bin/env bash
# Query latency side by side: tocsin-collector's query API and Prometheus over the same
# history (HOSTS hosts × SERIES series, HOURS hours at 10 s, written to both by remote-write in
# time order), the same queries interleaved, REPS repetitions each: median and p99 per query
# and the ratio. Then ingest while queries run: the load generator's acknowledged samples per
# second into the collector alone, and with the query set looping against it.
#   bench/query.sh [HOSTS] [SERIES] [HOURS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-100}
series=${2:-100}
hours=${3:-24}
reps=${4:-20}
command -v prometheus >/dev/null || { echo "needs prometheus (Debian package)" >&2; exit 1; }
cargo build --release --locked -q -p tocsin-collector -p tocsin-querybench -p tocsin-loadgen
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
printf 'checkpoint_interval: 1m\nself_metrics: { interval: 0s }\n' >"$work/collector.yaml"
printf 'global: {}\nscrape_configs: []\n' >"$work/prometheus.yml"
ours=19801
theirs=19802
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
echo "data: $hosts hosts x $series series, $hours h at 10 s = $((hosts * series * hours * 360)) samples"

wait_ready() { # url
  for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return; sleep 0.1; done
  echo "not ready: $1" >&2; exit 1
}
./target/release/tocsin-collector --config "$work/collector.yaml" --listen 127.0.0.1:$ours \
  --data-dir "$work/tocsin" --rules "$work/rules" >"$work/c.out" 2>"$work/c.err" &
pids+=($!)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:$theirs --web.enable-remote-write-receiver \
  >"$work/p.out" 2>"$work/p.err" &
pids+=($!)
wait_ready "http://127.0.0.1:$ours/healthz"
wait_ready "http://127.0.0.1:$theirs/-/ready"
end=$(( $(date +%s) / 60 * 60 - 60 ))
for t in "tocsin $ours" "prometheus $theirs"; do
  set -- $t
  printf '%s load: ' "$1"
  ./target/release/tocsin-querybench load --url "http://127.0.0.1:$2/api/v1/write" \
    --hosts "$hosts" --series "$series" --hours "$hours" --end "$end"
done
echo "store sizes: tocsin $(du -sh "$work/tocsin" | cut -f1), prometheus $(du -sh "$work/prom" | cut -f1)"
echo
echo "| query | points | tocsin median ms | tocsin p99 ms | Prometheus median ms | Prometheus p99 ms | ratio (median) |"
echo "|---|---|---|---|---|---|---|"
./target/release/tocsin-querybench run --ours "http://127.0.0.1:$ours" \
  --theirs "http://127.0.0.1:$theirs" --end "$end" --hosts "$hosts" --reps "$reps"

echo
echo "ingest into the collector (loadgen --agents 64 --series 500 --samples 4 --rounds 20):"
ingest() {
  ./target/release/tocsin-loadgen --url "http://127.0.0.1:$ours/api/v1/write" --agents 64 \
    --series 500 --samples 4 --rounds 20 --concurrency 8 --json \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["samples_per_second"]))'
}
ingest >/dev/null   # creates the load generator's series: the runs below only append
alone=$(ingest)
./target/release/tocsin-querybench loop --base "http://127.0.0.1:$ours" --end "$end" \
  --hosts "$hosts" --seconds 600 >"$work/loop.out" &
loop=$!
pids+=($loop)
sleep 2
busy=$(ingest)
kill $loop 2>/dev/null || true
again=$(ingest)
echo "  alone: $alone and $again samples/s; while the query set loops against the same collector: $busy samples/s"
