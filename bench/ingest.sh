#!/usr/bin/env bash
# Remote-write ingest side by side: tocsin-collector (durable: answered after the fsynced commit),
# Prometheus with its remote-write receiver on (answered after the append to its head and
# write-ahead log, which is fsynced per segment, not per request) and VictoriaMetrics
# single-node (Debian's `victoria-metrics`, or the binary VM_BIN names; answered once the
# samples are in its in-memory buffers, flushed to disk within a few seconds, no fsync per
# request), same payloads from the same load generator, each server pinned to one core and then
# given more, for two request shapes. Each case runs RUNS times on a fresh data directory; the
# median is reported, and the ratios. Core sweep: 1, 2, 4, … up to `nproc` cores (CPUs 0..N-1),
# with each server's scaling factor (samples/s at N cores over 1 core) side by side. The first
# round of requests creates every series (64 agents × 2000 = 128k with one sample per series):
# its p99 latency is reported apart.
#   bench/ingest.sh [RUNS] [SERVERS]      e.g. bench/ingest.sh 3 "tocsin victoriametrics"
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
servers=${2:-tocsin prometheus victoriametrics}
command -v prometheus >/dev/null || { echo "needs prometheus (Debian package)" >&2; exit 1; }
VM_BIN=${VM_BIN:-$(command -v victoria-metrics || true)}
[ -n "$VM_BIN" ] || { echo "needs victoria-metrics (Debian package) or VM_BIN" >&2; exit 1; }
cargo build --release --locked -q -p tocsin-collector -p tocsin-loadgen
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
cp rules/*.yaml "$work/rules/"
printf 'global: {}\nscrape_configs: []\n' >"$work/prometheus.yml"
port=19799
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
echo "victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo "$VM_BIN")"

start() { # server cores
  rm -rf "$work/data"
  case $1 in
    tocsin)
      taskset -c "$2" ./target/release/tocsin-collector --listen 127.0.0.1:$port \
        --data-dir "$work/data" --rules "$work/rules" >"$work/out" 2>"$work/err" &
      pid=$! ;;
    victoriametrics)
      taskset -c "$2" "$VM_BIN" -storageDataPath="$work/data" -httpListenAddr=127.0.0.1:$port \
        >"$work/out" 2>"$work/err" &
      pid=$! ;;
    prometheus)
      taskset -c "$2" prometheus --config.file="$work/prometheus.yml" \
        --storage.tsdb.path="$work/data" --web.listen-address=127.0.0.1:$port \
        --web.enable-remote-write-receiver >"$work/out" 2>"$work/err" &
      pid=$! ;;
  esac
  for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready" && return
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return
    sleep 0.05
  done
  echo "$1 did not start" >&2; cat "$work/err" >&2; exit 1
}

sweep=()
n=1
while [ "$n" -le "$(nproc)" ]; do sweep+=("$n"); n=$((n * 2)); done
[ "${sweep[-1]}" = "$(nproc)" ] || sweep+=("$(nproc)")
declare -A rate=()
for n in "${sweep[@]}"; do
  cores=0-$((n - 1))
  for shape in "--series 500 --samples 4" "--series 2000 --samples 1"; do
    declare -A med=()
    for server in $servers; do
      rates=()
      for _ in $(seq "$runs"); do
        start $server "$cores"
        r=$(./target/release/tocsin-loadgen --url http://127.0.0.1:$port/api/v1/write \
              --agents 64 --rounds 40 --concurrency 8 $shape --json 2>/dev/null)
        rates+=("$(echo "$r" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["samples_per_second"]), round(d["latency_ms_p99"],1), round(d["first_round_latency_ms_p99"],1), d["failed"])')")
        kill -TERM $pid; wait $pid || true; pid=
      done
      median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
      med[$server]=${median%% *}
      rate[$server $n $shape]=${med[$server]}
      echo "$server cores=$n shape=[$shape] runs (samples/s p99-ms first-round-p99-ms failed): $(printf '%s; ' "${rates[@]}") median: $median"
    done
    for peer in $servers; do
      [ "$peer" = tocsin ] && continue
      echo "  ratio tocsin/$peer: $(awk -v a="${med[tocsin]}" -v b="${med[$peer]}" 'BEGIN {printf "%.2f", a/b}')"
    done
  done
done
echo "scaling (median samples/s at N cores / at 1 core):"
for shape in "--series 500 --samples 4" "--series 2000 --samples 1"; do
  for n in "${sweep[@]}"; do
    line="  cores=$n shape=[$shape]"
    for server in $servers; do
      line+=" $server $(awk -v a="${rate[$server $n $shape]}" -v b="${rate[$server 1 $shape]}" 'BEGIN {printf "%.2f", a/b}')"
    done
    echo "$line"
  done
done
