#!/usr/bin/env python3
"""Garbage flood: the collector's peak memory under a minute of hostile requests while a real
agent ships every second beside them.

Hostile clients, all on 127.0.0.1, each kind in its own threads for DURATION seconds:
  - unauthenticated: 15 MiB bodies without a token (refused before they are read);
  - zip bombs: snappy bodies declaring 1 GiB (refused on the declared size) and ~3 MiB bodies
    of 30 million empty samples, sent with the ingest token, as a compromised agent could
    (decoded, a few at a time, bounded by max_samples);
  - garbage: random bytes with the token;
  - slowloris: 200 connections sending a header byte every 5 s, reopened when closed.
Reported: the collector's peak RSS (VmHWM) and its RSS before the flood, the hostile requests
answered by status, and the longest the agent's host went without a sample arriving
(lastSeenAgeSeconds polled every 0.5 s; a gap would show as more than two intervals).
Then the same flood against VictoriaMetrics (Debian's victoria-metrics, single node, no
authentication: it reads and decodes every body) with the same agent shipping to it, for its
peak RSS side by side.

    python3 bench/flood.py [DURATION=60]      (after cargo build --release -p tocsin-collector -p tocsin-agent)
"""
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
TOKEN = "flood-token"


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def empty_samples_bomb(copies=900_000):
    """One TimeSeries of 30M empty Sample messages, snappy-compressed by hand: a literal of the
    first pair, then copies of it (offset 2, 64 bytes each)."""
    inner = 2 + 64 * copies
    raw_len = 1 + len(varint(inner)) + inner
    head = b"\x0a" + varint(inner) + b"\x12\x00"
    body = bytearray(varint(raw_len))
    body.append((len(head) - 1) << 2)  # literal
    body += head
    copy = bytes([((64 - 1) << 2) | 2, 2, 0])  # copy, 2-byte offset 2, length 64
    body += copy * copies
    return bytes(body)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status_of(conn_args, body, token):
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
    }
    if token:
        headers["Authorization"] = "Bearer " + token
    c = http.client.HTTPConnection(*conn_args, timeout=30)
    try:
        c.request("POST", "/api/v1/write", body=body, headers=headers)
        return c.getresponse().status
    except OSError:
        return 0  # the collector closed the connection while the body was still being sent
    finally:
        c.close()


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def start_tocsin(tmp, cport):
    with open(os.path.join(tmp, "collector.yaml"), "w") as f:
        f.write(f"ingest:\n  token: {TOKEN}\n")
    os.mkdir(os.path.join(tmp, "rules"))
    p = subprocess.Popen(
        [f"{ROOT}/target/release/tocsin-collector", "--config", f"{tmp}/collector.yaml",
         "--listen", f"127.0.0.1:{cport}", "--data-dir", f"{tmp}/data", "--rules", f"{tmp}/rules"],
        stdout=subprocess.PIPE, stderr=open(f"{tmp}/collector.log", "w"))
    p.stdout.readline()
    return p


def start_victoriametrics(tmp, cport):
    p = subprocess.Popen(
        ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{cport}", f"-storageDataPath={tmp}/vm",
         "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/vm.log", "w"))
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{cport}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return p


def main():
    run("tocsin", start_tocsin)
    run("VictoriaMetrics", start_victoriametrics)


def run(name, start):
    tmp = tempfile.mkdtemp()
    cport, aport = free_port(), free_port()
    collector = start(tmp, cport)
    with open(os.path.join(tmp, "agent.yaml"), "w") as f:
        f.write(f"host: flood-host\ninterval: 1s\nstate_dir: {tmp}/agent\n"
                f"collector: {{ url: \"http://127.0.0.1:{cport}/api/v1/write\", token: {TOKEN} }}\n")
    agent = subprocess.Popen(
        [f"{ROOT}/target/release/tocsin-agent", "--config", f"{tmp}/agent.yaml",
         "--listen", f"127.0.0.1:{aport}"],
        stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/agent.log", "w"))
    addr = ("127.0.0.1", cport)

    def host_age():
        if name != "tocsin":
            return 0.0  # no liveness API: the agent's own send errors tell instead
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{cport}/api/v1/hosts", timeout=5) as r:
                hosts = json.load(r)["data"]["hosts"]
            return next((h["lastSeenAgeSeconds"] for h in hosts if h["host"] == "flood-host"), None)
        except OSError:
            return None

    deadline = time.time() + 20
    while host_age() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    rss_before = rss_kib(collector.pid, "VmRSS")
    stop = time.time() + DURATION
    counts, lock = {}, threading.Lock()

    def count(kind, code):
        with lock:
            counts[(kind, code)] = counts.get((kind, code), 0) + 1

    big = b"\0" * (15 << 20)
    bomb = empty_samples_bomb()
    declared_huge = varint(1 << 30)

    def loop(kind, body, token):
        while time.time() < stop:
            count(kind, status_of(addr, body, token))

    def garbage():
        while time.time() < stop:
            count("garbage", status_of(addr, random.randbytes(64 << 10), TOKEN))

    def slowloris(n):
        socks = []
        while time.time() < stop:
            while len(socks) < n:
                try:
                    s = socket.create_connection(addr, timeout=5)
                    s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\n")
                    socks.append(s)
                    count("slowloris", "opened")
                except OSError:
                    count("slowloris", "refused")
                    break
            alive = []
            for s in socks:
                try:
                    s.sendall(b"X")
                    alive.append(s)
                except OSError:
                    count("slowloris", "closed by the server")
                    s.close()
            socks = alive
            time.sleep(5)
        for s in socks:
            s.close()

    threads = [threading.Thread(target=loop, args=("unauthenticated 15 MiB", big, None)) for _ in range(4)]
    threads += [threading.Thread(target=loop, args=("30M empty samples", bomb, TOKEN)) for _ in range(2)]
    threads += [threading.Thread(target=loop, args=("declares 1 GiB", declared_huge, TOKEN))]
    threads += [threading.Thread(target=garbage)]
    threads += [threading.Thread(target=slowloris, args=(200,))]
    for t in threads:
        t.start()
    worst_age = 0.0
    while time.time() < stop:
        age = host_age()
        if age is not None:
            worst_age = max(worst_age, age)
        time.sleep(0.5)
    for t in threads:
        t.join()
    peak = rss_kib(collector.pid, "VmHWM")
    sent = sum(1 for line in open(f"{tmp}/agent.log") if "batch rejected" in line)
    failed = sum(1 for line in open(f"{tmp}/agent.log") if "will retry" in line or "failed" in line)
    agent.terminate()
    collector.terminate()
    agent.wait()
    collector.wait()
    print(f"{name}: flood of {DURATION:.0f} s; RSS before {rss_before / 1024:.0f} MiB, "
          f"peak {peak / 1024:.0f} MiB")
    for (kind, code), n in sorted(counts.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        print(f"  {kind:24} {code!s:24} {n}")
    print(f"  agent: batches rejected {sent}, failed sends logged {failed}"
          + (f"; its host longest without a sample arriving {worst_age:.1f} s (interval 1 s)"
             if name == "tocsin" else ""))


if __name__ == "__main__":
    main()
