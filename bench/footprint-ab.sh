#!/bin/sh
# Two agent builds side by side with prometheus-node-exporter, in the same run: each agent
# samples this host every second and ships to one local collector, node_exporter is scraped
# every second; CPU per cycle (user + system, from /proc/PID/stat) over CYCLES cycles after a
# 10 s warm-up, and RSS at the end. footprint.sh counts ticks over 60 cycles (0.17 ms per
# cycle); 300 cycles resolve 0.03 ms, and running both builds at once puts them on the same
# machine state. Build each agent with packaging/build-agent.sh.
#   bench/footprint-ab.sh AGENT_A AGENT_B [CYCLES=300]
set -eu
cd "$(dirname "$0")/.."
A=$1; B=$2; N=${3:-300}
command -v prometheus-node-exporter >/dev/null || { echo "needs prometheus-node-exporter" >&2; exit 1; }
TMP=$(mktemp -d)
PIDS=
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$TMP"' EXIT
. bench/procstat.sh
start_collector "$TMP"
PIDS="$COLLECTOR_PID"
AP=$(free_port); "$A" --collector "http://127.0.0.1:$CP/api/v1/write" --listen 127.0.0.1:$AP \
    --interval 1s --host agent-a --state-dir "$TMP/a" >"$TMP/a.log" 2>&1 &
PA=$!
BP=$(free_port); "$B" --collector "http://127.0.0.1:$CP/api/v1/write" --listen 127.0.0.1:$BP \
    --interval 1s --host agent-b --state-dir "$TMP/b" >"$TMP/b.log" 2>&1 &
PB=$!
NP=$(free_port); prometheus-node-exporter --web.listen-address=127.0.0.1:$NP >"$TMP/ne.log" 2>&1 &
PN=$!
PIDS="$PIDS $PA $PB $PN"
sleep 10
a0=$(cpu_s $PA); b0=$(cpu_s $PB); n0=$(cpu_s $PN)
i=0
while [ $i -lt "$N" ]; do curl -s -o /dev/null "http://127.0.0.1:$NP/metrics"; sleep 1; i=$((i + 1)); done
a1=$(cpu_s $PA); b1=$(cpu_s $PB); n1=$(cpu_s $PN)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $N cycles"
awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v n0="$n0" -v n1="$n1" -v n="$N" \
    -v ra="$(rss_mb $PA)" -v rb="$(rss_mb $PB)" -v rn="$(rss_mb $PN)" 'BEGIN {
    a = (a1 - a0) * 1000 / n; b = (b1 - b0) * 1000 / n; e = (n1 - n0) * 1000 / n
    printf "                     CPU ms/cycle   RSS MB   CPU ratio to node_exporter\n"
    printf "agent A              %12.3f %8.1f %8.3f\n", a, ra, a / e
    printf "agent B              %12.3f %8.1f %8.3f\n", b, rb, b / e
    printf "node_exporter        %12.3f %8.1f\n", e, rn
}'
