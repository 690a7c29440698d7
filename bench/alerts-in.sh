#!/bin/sh
# Alerts posted as to an Alertmanager: tocsin-collector and a real Alertmanager side by side
# (latency from post to webhook, and posts acknowledged per second).
#   bench/alerts-in.sh [TRIALS=30] [ALERTS=10000]
set -eu
cd "$(dirname "$0")/.."
command -v prometheus-alertmanager >/dev/null || { echo "needs prometheus-alertmanager" >&2; exit 1; }
cargo build --release --locked -q -p tocsin-collector
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "alertmanager $(prometheus-alertmanager --version 2>&1 | head -1 | awk '{print $3}')"
exec python3 bench/alerts_in.py --bin target/release --trials "${1:-30}" --alerts "${2:-10000}"
