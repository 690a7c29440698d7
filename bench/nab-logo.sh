#!/usr/bin/env bash
# The dynamic-threshold detector under the leave-one-group-out protocol (docs/DYNAMIC.md): the
# shipped rule (bench/nab.yaml) replayed over every file of the NAB tuning subset with
# bench/nab.sh, then each group (top-level folder) scored with the threshold optimised on the
# other groups, and the score at the shipped default warning cutoff (0.2) beside it.
#   bench/nab-logo.sh [NAB_DIR] [OUT_DIR]     (default ../shared/datasets/nab, a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(cd "${1:-../shared/datasets/nab}" && pwd)
out=${2:-$(mktemp -d)}
score=../shared/tools/nab_score.py
[ -f "$score" ] || score="$nab/../../tools/nab_score.py"
bench/nab.sh "$nab/data" "$out" >/dev/null
echo "== leave-one-group-out (threshold chosen on the other groups)"
python3 "$score" --data "$nab/data" --labels "$nab/windows.json" --results "$out" --logo
echo "== at the shipped warning cutoff 0.2 (no threshold fitted)"
python3 "$score" --data "$nab/data" --labels "$nab/windows.json" --results "$out" --threshold 0.2 | tail -1
echo "== threshold optimised on all files (in-sample, for reference only)"
python3 "$score" --data "$nab/data" --labels "$nab/windows.json" --results "$out" | tail -1
