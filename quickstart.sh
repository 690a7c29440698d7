#!/usr/bin/env bash
# Builds tocsin and runs a collector (SQLite under ./data, default rules plus a demo rule,
# alerts to ./data/alerts.log) with a local agent sampling this host every 10 s.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -p tocsin-collector -p tocsin-agent
mkdir -p data/textfile
./target/release/tocsin-collector --data-dir data --rules rules --rules examples/rules/demo.yaml &
collector=$!
trap 'kill $collector ${agent:-} 2>/dev/null || true; wait' EXIT INT TERM
for _ in $(seq 50); do curl -sf http://127.0.0.1:9760/healthz >/dev/null 2>&1 && break; sleep 0.1; done
./target/release/tocsin-agent --textfile-dir data/textfile --state-dir data/agent-state &
agent=$!
cat <<MSG

tocsin is running. Look at:
  web console       http://127.0.0.1:9760/
  active alerts     http://127.0.0.1:9760/api/v1/alerts
  known hosts       http://127.0.0.1:9760/api/v1/hosts
  collector health  http://127.0.0.1:9760/metrics
  agent health      http://127.0.0.1:9761/metrics
  alert log         data/alerts.log   (one JSON notification per line)
Try an alert:       echo 'demo_value 90' > data/textfile/demo.prom
Stop with Ctrl-C.
MSG
wait
