#!/usr/bin/env bash
# Replays every CSV under DATA_DIR through the shipped dynamic rule (bench/nab.yaml) with
# `tocsin-collector backtest`, writing one result CSV per input at the same relative path
# under OUT_DIR. Score them with:
#   python3 ../shared/tools/nab_score.py --data DATA_DIR --labels DATA_DIR/../windows.json --results OUT_DIR
#   bench/nab.sh DATA_DIR OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
cargo build --release --locked -q -p tocsin-collector
find "$data" -name '*.csv' | sort | while read -r f; do
  rel=${f#"$data"/}
  mkdir -p "$out/$(dirname "$rel")"
  ./target/release/tocsin-collector backtest --rules bench/nab.yaml --rule Unusual \
    --csv "$f" --out "$out/$rel" 2>/dev/null
done
echo "results in $out"
