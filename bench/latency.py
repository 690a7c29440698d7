#!/usr/bin/env python3
"""Detection-to-notification latency, side by side.

One set of local HTTP services (python3 -m http.server), each watched at the same time by
  * tocsin: agent HTTP probe and process probe every 1 s, the shipped rules, webhook receiver;
  * Prometheus + blackbox_exporter + Alertmanager tuned to the limit (1 s scrape, 1 s evaluation,
    `for: 0s`, group_wait 0s);
  * the same stack at a common production setting (15 s scrape, 15 s evaluation, group_wait 30s).
Each trial waits a random time (so the kill falls at a random phase of every schedule), kills
one service with SIGKILL and records when each webhook receiver gets the firing alert for it.
Every trial kills a different service, so each alert opens a new Alertmanager group and
group_wait (not group_interval) applies, as it does for a fresh outage.

    bench/latency.py --bin target/release [--trials 20] [--json OUT]
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, deadline_s, check):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def http_ok(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return 200 <= r.status < 300


class Receiver:
    """Webhook receiver: remembers, per stack, when the first firing alert for a key arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}  # (stack, key) -> arrival time
        self.errors = []
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                now = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.end_headers()
                try:
                    recv.record(self.path.strip("/"), now, json.loads(body))
                except (ValueError, KeyError, TypeError) as e:
                    recv.errors.append(f"{self.path}: {e}")

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, stack, now, body):
        for a in body.get("alerts", []):
            if a.get("status") != "firing":
                continue
            labels = a.get("labels", {})
            if labels.get("alertname") != "ServiceDown":
                continue
            if stack == "tocsin":
                key = labels.get("probe")
            else:
                key = labels.get("instance")
            with self.lock:
                self.seen.setdefault((stack, key), now)

    def get(self, stack, key):
        with self.lock:
            return self.seen.get((stack, key))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory with tocsin-collector and tocsin-agent")
    ap.add_argument("--rules", default="rules")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--json", help="write every measured latency here")
    ap.add_argument(
        "--skip-production", action="store_true", help="leave out the 15 s stack (quick runs)"
    )
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-latency-")
    procs = []

    def start(argv, name, **kw):
        log = open(os.path.join(work, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kw)
        procs.append(p)
        return p

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        run(args, work, start)
    finally:
        cleanup()
        subprocess.run(["rm", "-rf", work])


def run(args, work, start):
    recv = Receiver()
    hook = f"http://127.0.0.1:{recv.port}"
    n = args.trials

    # The watched services.
    ports = [free_port() for _ in range(n)]
    services = []
    for p in ports:
        services.append(
            start(["python3", "-m", "http.server", str(p), "--bind", "127.0.0.1"], f"svc-{p}", cwd=work)
        )
    for p in ports:
        wait_for(f"service on {p}", 20, lambda p=p: http_ok(f"http://127.0.0.1:{p}/"))

    # tocsin: collector with the shipped rules, webhook to the receiver; agent probing at 1 s.
    cport, aport = free_port(), free_port()
    with open(os.path.join(work, "collector.yaml"), "w") as f:
        f.write(
            f"listen: 127.0.0.1:{cport}\ndata_dir: {work}/tocsin-data\n"
            f"rules: [{os.path.abspath(args.rules)}]\n"
            f"receivers:\n  - name: hook\n    webhook: {{ url: {hook}/tocsin }}\n"
            "route:\n  receivers: [hook]\n"
        )
    with open(os.path.join(work, "agent.yaml"), "w") as f:
        f.write(
            f"host: bench\ninterval: 10s\nlisten: 127.0.0.1:{aport}\n"
            f"state_dir: {work}/agent-state\n"
            f"collector: {{ url: http://127.0.0.1:{cport}/api/v1/write }}\nprobes:\n"
        )
        for p in ports:
            f.write(
                f"  - {{ name: web-{p}, kind: http, target: http://127.0.0.1:{p}/, interval: 1s, timeout: 1s }}\n"
                f"  - {{ name: proc-{p}, kind: process, interval: 1s, "
                f"process: {{ cmdline: \"http.server {p} \" }} }}\n"
            )
    start([f"{args.bin}/tocsin-collector", "-c", f"{work}/collector.yaml"], "collector")
    wait_for("collector", 20, lambda: http_ok(f"http://127.0.0.1:{cport}/healthz"))
    start([f"{args.bin}/tocsin-agent", "-c", f"{work}/agent.yaml"], "agent")

    # Prometheus + blackbox_exporter + Alertmanager, twice: tuned and production.
    bport = free_port()
    with open(os.path.join(work, "blackbox.yml"), "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    start(
        ["prometheus-blackbox-exporter", f"--config.file={work}/blackbox.yml",
         f"--web.listen-address=127.0.0.1:{bport}"],
        "blackbox",
    )
    with open(os.path.join(work, "rules.yml"), "w") as f:
        f.write(
            "groups:\n  - name: probes\n    rules:\n"
            "      - alert: ServiceDown\n        expr: probe_success == 0\n        for: 0s\n"
        )
    targets = ", ".join(f'"http://127.0.0.1:{p}/"' for p in ports)
    stacks = {"prom-tuned": ("1s", "1s", "0s", "1s"), "prom-production": ("15s", "15s", "30s", "5m")}
    if args.skip_production:
        del stacks["prom-production"]
    prom_ports = {}
    for name, (scrape, evaluation, gwait, ginterval) in stacks.items():
        amport, pport = free_port(), free_port()
        with open(os.path.join(work, f"{name}-am.yml"), "w") as f:
            f.write(
                "route:\n  receiver: hook\n  group_by: [alertname, instance]\n"
                f"  group_wait: {gwait}\n  group_interval: {ginterval}\n  repeat_interval: 4h\n"
                f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}/{name}\n"
            )
        start(
            ["prometheus-alertmanager", f"--config.file={work}/{name}-am.yml",
             f"--storage.path={work}/{name}-am", f"--web.listen-address=127.0.0.1:{amport}",
             "--cluster.listen-address="],
            f"{name}-am",
        )
        with open(os.path.join(work, f"{name}.yml"), "w") as f:
            f.write(
                f"global:\n  scrape_interval: {scrape}\n  scrape_timeout: {scrape}\n"
                f"  evaluation_interval: {evaluation}\n"
                f"rule_files: [{work}/rules.yml]\n"
                f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [127.0.0.1:{amport}]\n"
                "scrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n"
                "    params: { module: [http_2xx] }\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
                "    relabel_configs:\n"
                "      - { source_labels: [__address__], target_label: __param_target }\n"
                "      - { source_labels: [__param_target], target_label: instance }\n"
                f"      - {{ target_label: __address__, replacement: 127.0.0.1:{bport} }}\n"
            )
        start(
            ["prometheus", f"--config.file={work}/{name}.yml", f"--storage.tsdb.path={work}/{name}-tsdb",
             f"--web.listen-address=127.0.0.1:{pport}"],
            name,
        )
        prom_ports[name] = pport

    # Every stack has seen every service up before the first kill.
    def all_up(pport):
        q = urllib.parse.quote("count(probe_success == 1)")
        with urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/query?query={q}", timeout=2) as r:
            res = json.load(r)["data"]["result"]
            return bool(res) and int(float(res[0]["value"][1])) == n

    for name, pport in prom_ports.items():
        wait_for(f"{name} to see every service up", 90, lambda pport=pport: all_up(pport))
    time.sleep(3)  # the agent's probes: every 1 s

    series = {k: [] for k in ("tocsin-http", "tocsin-process", *stacks)}
    deadlines = {"tocsin-http": 10, "tocsin-process": 10, "prom-tuned": 15, "prom-production": 120}
    for i, (p, svc) in enumerate(zip(ports, services)):
        time.sleep(random.uniform(0, 2 if args.skip_production else 15))
        t0 = time.time()
        svc.send_signal(signal.SIGKILL)
        svc.wait()
        keys = {
            "tocsin-http": ("tocsin", f"web-{p}"),
            "tocsin-process": ("tocsin", f"proc-{p}"),
            "prom-tuned": ("prom-tuned", f"http://127.0.0.1:{p}/"),
            "prom-production": ("prom-production", f"http://127.0.0.1:{p}/"),
        }
        pending = {k: v for k, v in keys.items() if k in series}
        while pending:
            for k, (stack, key) in list(pending.items()):
                at = recv.get(stack, key)
                if at is not None:
                    series[k].append(at - t0)
                    del pending[k]
                elif time.time() - t0 > deadlines[k]:
                    series[k].append(None)
                    del pending[k]
            time.sleep(0.01)
        got = "  ".join(
            f"{k} {v[-1]:.3f}s" if v[-1] is not None else f"{k} missed" for k, v in series.items()
        )
        print(f"trial {i + 1:2}/{n}: {got}", flush=True)

    if recv.errors:
        print("receiver errors:", *recv.errors[:5], sep="\n  ")

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))]

    print(f"\n{'setup':<18} {'trials':>6} {'missed':>6} {'median s':>9} {'p99 s':>8} {'max s':>8}")
    summary = {}
    for k, v in series.items():
        ok = [x for x in v if x is not None]
        if not ok:
            print(f"{k:<18} {len(v):>6} {len(v):>6}")
            continue
        med, p99 = statistics.median(ok), pct(ok, 0.99)
        summary[k] = {"median": med, "p99": p99, "max": max(ok), "missed": len(v) - len(ok)}
        print(f"{k:<18} {len(v):>6} {len(v) - len(ok):>6} {med:>9.3f} {p99:>8.3f} {max(ok):>8.3f}")
    t = summary.get("prom-tuned", {}).get("median")
    if t:
        for k in ("tocsin-http", "tocsin-process"):
            if k in summary:
                print(f"{k} median / prom-tuned median = {summary[k]['median'] / t:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"latencies": series, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
