#!/bin/sh
# Agent footprint side by side with prometheus-node-exporter, same machine, same run:
# The agent is built as packaged (profile dist-agent: fat LTO, size-optimised, glibc linked
# statically). RSS after warm-up and CPU seconds per collection cycle (the agent samples and ships to a local
# collector every second; node_exporter is scraped every second). Medians of RUNS runs.
#   bench/footprint.sh [RUNS=3] [CYCLES=60]
set -eu
cd "$(dirname "$0")/.."
RUNS=${1:-3}
CYCLES=${2:-60}
command -v prometheus-node-exporter >/dev/null || { echo "needs prometheus-node-exporter" >&2; exit 1; }
AGENT=$(packaging/build-agent.sh)
TMP=$(mktemp -d)
CPID=
trap '[ -n "$CPID" ] && kill $CPID 2>/dev/null; rm -rf "$TMP"' EXIT
. bench/procstat.sh

start_collector "$TMP"
CPID=$COLLECTOR_PID
: >"$TMP/agent.txt"; : >"$TMP/ne.txt"
for run in $(seq "$RUNS"); do
    AP=$(free_port); NP=$(free_port)
    "$AGENT" --collector "http://127.0.0.1:$CP/api/v1/write" --listen 127.0.0.1:$AP \
        --interval 1s --host bench-$run --state-dir "$TMP/state-$run" >"$TMP/a.out" 2>"$TMP/a.log" &
    APID=$!
    prometheus-node-exporter --web.listen-address=127.0.0.1:$NP >"$TMP/n.log" 2>&1 &
    NPID=$!
    sleep 3
    curl -sf "http://127.0.0.1:$NP/metrics" >/dev/null
    A0=$(cpu_s $APID); N0=$(cpu_s $NPID)
    for i in $(seq "$CYCLES"); do
        curl -sf "http://127.0.0.1:$NP/metrics" >/dev/null
        sleep 1
    done
    A1=$(cpu_s $APID); N1=$(cpu_s $NPID)
    echo "$(awk -v a="$A0" -v b="$A1" -v n="$CYCLES" 'BEGIN {print (b-a)/n*1000}') $(rss_mb $APID)" >>"$TMP/agent.txt"
    echo "$(awk -v a="$N0" -v b="$N1" -v n="$CYCLES" 'BEGIN {print (b-a)/n*1000}') $(rss_mb $NPID)" >>"$TMP/ne.txt"
    kill $APID $NPID; wait $APID $NPID 2>/dev/null || true
done
AC=$(cut -d' ' -f1 "$TMP/agent.txt" | median); AR=$(cut -d' ' -f2 "$TMP/agent.txt" | median)
NC=$(cut -d' ' -f1 "$TMP/ne.txt" | median); NR_=$(cut -d' ' -f2 "$TMP/ne.txt" | median)
echo "runs=$RUNS cycles=$CYCLES (medians)"
printf "%-22s %12s %10s\n" "" "CPU ms/cycle" "RSS MB"
printf "%-22s %12.2f %10.1f\n" "tocsin-agent" "$AC" "$AR"
printf "%-22s %12.2f %10.1f\n" "node_exporter $(prometheus-node-exporter --version 2>&1 | awk 'NR==1 {print $3}')" "$NC" "$NR_"
awk -v ac="$AC" -v nc="$NC" -v ar="$AR" -v nr="$NR_" 'BEGIN {printf "ratio agent/node_exporter: CPU %.2f, RSS %.2f\n", ac/nc, ar/nr}'
