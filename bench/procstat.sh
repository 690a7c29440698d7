# Sourced by the footprint scripts: a process's CPU seconds (user + system, dead threads
# included) and RSS from /proc, a free local port, the median of numbers on stdin.
TICK=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Builds the collector and starts one on a free local port, its files under DIR: sets CP (its
# port) and COLLECTOR_PID.
start_collector() {
    cargo build --release --locked -q -p tocsin-collector
    CP=$(free_port)
    target/release/tocsin-collector --listen 127.0.0.1:$CP --data-dir "$1/data" --rules rules \
        >"$1/c.out" 2>"$1/c.log" &
    COLLECTOR_PID=$!
    sleep 1
}
