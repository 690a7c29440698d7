#!/usr/bin/env bash
# A short run of every fuzz target, from the seeds (CI). A crash, leak, out-of-memory or timeout
# fails it: libFuzzer writes the input to artifacts/, and the end of its output and the input
# (base64) are printed; so does a target that does not compile. A failure of the tooling with
# no input written (cargo-fuzz itself, a build killed for memory or disk) is printed the same
# way and reported, but is not a finding about the code.
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
log=$(mktemp)
stamp=$(mktemp)
trap 'rm -f "$log" "$stamp"' EXIT
failed=0
for t in remote_write rule_file config; do
  mkdir -p "corpus/$t" "artifacts/$t"
  touch "$stamp"
  # Starts from the committed seeds; what it finds stays in corpus/ (not committed).
  if cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 >"$log" 2>&1; then
    tail -1 "$log"
    echo "fuzz $t: ${secs}s clean"
  else
    grep -v '^"' "$log" | tail -60
    found=0
    for a in $(find "artifacts/$t" -type f -newer "$stamp"); do
      found=1
      echo "failing input $a (base64):"
      base64 -w 0 "$a"
      echo
    done
    # A fuzz target that no longer compiles is a finding too.
    grep -q 'error\[E[0-9]*\]' "$log" && found=1
    if [ "$found" -eq 1 ]; then
      failed=1
      echo "fuzz $t: FAILED"
    else
      df -h . | tail -1
      echo "fuzz $t: the fuzzer stopped without writing a failing input (tooling, see above)"
    fi
  fi
done
exit "$failed"
