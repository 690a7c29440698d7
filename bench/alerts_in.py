#!/usr/bin/env python3
"""Alerts posted as to an Alertmanager (POST /api/v2/alerts), side by side.

The same alerts are posted to tocsin-collector and to a real Alertmanager, each sending to the
same local webhook receiver, grouped by alertname with no wait:
  * latency: one new alert (a new group) posted, until the receiver has it; --trials times;
  * throughput: --alerts alerts posted in batches of 64 (Prometheus' batch size) over one
    connection, first as new alerts, then again (as Prometheus posts firing alerts every
    minute), then ended (endsAt just past, a mass recovery): alerts per second acknowledged.
    tocsin answers once the alerts are durable (fsync); Alertmanager answers from memory (its
    state is snapshotted every 15 minutes).

    bench/alerts_in.py --bin target/release [--trials 30] [--alerts 10000]
"""

import argparse
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from latency import free_port, wait_for


class Receiver:
    """Webhook receiver: when each (stack, alertname) was first heard firing."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                now = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.end_headers()
                stack = self.path.strip("/")
                for a in json.loads(body).get("alerts", []):
                    if a.get("status") == "firing":
                        with recv.lock:
                            recv.seen.setdefault((stack, a["labels"]["alertname"]), now)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, stack, name):
        with self.lock:
            return self.seen.get((stack, name))


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def alert(name, ends_in=3600, **labels):
    now = time.time()
    return {
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} from the benchmark"},
        "startsAt": rfc3339(now if ends_in > 0 else now - 60),
        "endsAt": rfc3339(now + ends_in),
        "generatorURL": "http://prometheus:9090/graph",
    }


# New alerts; the same posted again (as Prometheus does every minute); then all of them ended.
ROUNDS = ("new", "again", "ended")


def post(conn, alerts):
    body = json.dumps(alerts)
    conn.request("POST", "/api/v2/alerts", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    if r.status != 200:
        raise SystemExit(f"POST answered {r.status}: {text[:200]!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="directory with tocsin-collector")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--alerts", type=int, default=10000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tocsin-alerts-in-")
    procs = []

    def start(argv, name):
        log = open(os.path.join(work, name + ".log"), "w")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    try:
        run(args, work, start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        subprocess.run(["rm", "-rf", work])


def run(args, work, start):
    recv = Receiver()
    hook = f"http://127.0.0.1:{recv.port}"
    cport, amport = free_port(), free_port()
    os.makedirs(f"{work}/rules")
    with open(f"{work}/collector.yaml", "w") as f:
        f.write(
            f"listen: 127.0.0.1:{cport}\ndata_dir: {work}/tocsin-data\nrules: [{work}/rules]\n"
            f"external_alerts: {{ max_alerts: {args.alerts + args.trials + 10} }}\n"
            f"receivers:\n  - name: hook\n    webhook: {{ url: {hook}/tocsin }}\n"
            "route:\n  receivers: [hook]\n  group_by: [alertname]\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\n"
        )
    with open(f"{work}/am.yml", "w") as f:
        f.write(
            "route:\n  receiver: hook\n  group_by: [alertname]\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\n"
            f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}/am\n"
        )
    start([f"{args.bin}/tocsin-collector", "-c", f"{work}/collector.yaml"], "collector")
    start(
        ["prometheus-alertmanager", f"--config.file={work}/am.yml", f"--storage.path={work}/am",
         f"--web.listen-address=127.0.0.1:{amport}", "--cluster.listen-address="],
        "am",
    )

    def up(port, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path)
        return c.getresponse().status == 200

    wait_for("collector", 20, lambda: up(cport, "/healthz"))
    wait_for("alertmanager", 20, lambda: up(amport, "/-/ready"))
    stacks = {"tocsin": cport, "am": amport}
    conns = {s: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for s, p in stacks.items()}

    latency = {s: [] for s in stacks}
    for i in range(args.trials):
        for s in stacks:
            name = f"Lat{i}"
            t0 = time.monotonic()
            post(conns[s], [alert(name)])
            wait_for(f"{s} to tell {name}", 10, lambda: recv.get(s, name) is not None)
            latency[s].append(recv.get(s, name) - t0)

    def view_cost():
        # What the collector's API snapshot cost so far (seconds, refreshes); None from a
        # build without the metric.
        c = http.client.HTTPConnection("127.0.0.1", cport, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        got = {}
        for line in text.splitlines():
            for part in ("sum", "count"):
                if line.startswith(f"tocsin_api_view_refresh_duration_seconds_{part} "):
                    got[part] = float(line.split()[1])
        return (got["sum"], got["count"]) if len(got) == 2 else None

    rate, view = {}, {}
    for s in stacks:
        for round_ in ROUNDS:
            # The last round ends them all (endsAt just past): a mass recovery.
            ends_in = -1 if round_ == "ended" else 3600
            batch = [alert("Bulk", ends_in, instance=f"host-{i}") for i in range(args.alerts)]
            v0 = view_cost() if s == "tocsin" else None
            t0 = time.monotonic()
            for k in range(0, len(batch), 64):
                post(conns[s], batch[k : k + 64])
            took = time.monotonic() - t0
            rate[(s, round_)] = len(batch) / took
            v1 = view_cost() if v0 else None
            if v1:
                spent, n = v1[0] - v0[0], v1[1] - v0[1]
                view[round_] = (n, spent / max(n, 1), spent / took)

    med = {s: statistics.median(v) for s, v in latency.items()}
    print(f"latency, {args.trials} trials (posted to heard, median / max):")
    for s in stacks:
        print(f"  {s:7s} {med[s] * 1000:8.1f} ms  {max(latency[s]) * 1000:8.1f} ms")
    print(f"  ratio tocsin / Alertmanager (median): {med['tocsin'] / med['am']:.2f}")
    print(f"throughput, {args.alerts} alerts in batches of 64 (alerts/s):")
    for round_ in ROUNDS:
        t, a = rate[("tocsin", round_)], rate[("am", round_)]
        print(f"  {round_:5s} tocsin {t:9.0f}   Alertmanager {a:9.0f}   ratio {t / a:.2f}")
    for round_, (n, each, share) in view.items():
        print(
            f"  {round_:5s} tocsin's API snapshot: {n:.0f} refreshes, {each * 1000:.2f} ms each, "
            f"{share * 100:.1f} % of the round"
        )


if __name__ == "__main__":
    sys.exit(main())
