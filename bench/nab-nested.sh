#!/usr/bin/env bash
# Nested leave-one-group-out (docs/DYNAMIC.md): the library's detector (nab_eval) run once per
# candidate configuration over the NAB tuning subset, then for each group the candidate chosen
# on the other groups, and the group scored with it.
#   bench/nab-nested.sh NAB_DIR OUT_DIR SPEC...
# A SPEC is a list of detector settings, as TOCSIN_DET takes them ("" for the shipped defaults):
#   bench/nab-nested.sh ../shared/datasets/nab /tmp/nested "" shift_k=15 shift_decay=0.8
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,7p "$0"; exit 2; }
nab=$(cd "$1" && pwd)
out=$2
shift 2
score=../shared/tools/nab_score.py
[ -f "$score" ] || score="$nab/../../tools/nab_score.py"
cargo build --release --locked -q -p tocsin-baseline --example nab_eval
dirs=()
i=0
for spec in "$@"; do
  d="$out/c$i"
  rm -rf "$d" && mkdir -p "$d"
  TOCSIN_DET="$spec" ./target/release/examples/nab_eval "$nab/data" "$d"
  echo "c$i: ${spec:-shipped defaults}"
  dirs+=("$d")
  i=$((i + 1))
done
python3 bench/nab_nested.py "$score" "$nab/data" "$nab/windows.json" "${dirs[@]}"
