#!/bin/sh
# Detection-to-notification latency: tocsin (1 s HTTP probe, and the pidfd-driven process probe)
# vs Prometheus + blackbox_exporter + Alertmanager tuned to the limit (1 s / 1 s / group_wait 0s)
# and at a common production setting (15 s / 15 s / 30 s), all watching the same services in
# the same run. Each trial kills a different service at a random phase.
#   bench/latency.sh [TRIALS=20] [--skip-production]
set -eu
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
shift || true
for t in prometheus prometheus-alertmanager prometheus-blackbox-exporter python3; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done
cargo build --release --locked -q -p tocsin-collector -p tocsin-agent
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), alertmanager $(prometheus-alertmanager --version 2>&1 | head -1 | awk '{print $3}'), blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | head -1 | awk '{print $3}')"
exec python3 bench/latency.py --bin target/release --rules rules --trials "$TRIALS" "$@"
