#!/usr/bin/env bash
# A short run of every fuzz target, from the seeds (CI). A crash, leak or timeout fails it.
#   fuzz/ci.sh [SECONDS_PER_TARGET]
# Uses the nightly toolchain when there is one; otherwise the stable one with RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs a few unstable compiler flags). Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked -q cargo-fuzz
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for t in remote_write rule_file config; do
  mkdir -p "corpus/$t"
  # Starts from the committed seeds; what it finds stays in corpus/ (not committed).
  cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 2>&1 | tail -3
  echo "fuzz $t: ${secs}s clean"
done
