# SPDX-License-Identifier: MIT
"""Measures fluid's REST API against a running server (bench/api.sh starts
one): create-to-first-exec, exec round trip, and a short concurrent load.
Prints bench/run's JSON result lines. Standard library only."""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["FLUID_URL"])
TOKEN = os.environ["FLUID_TOKEN"]
QUICK = os.environ.get("FLUID_BENCH_QUICK") == "1"


def call(method, path, body=None, conn=None):
    own = conn is None
    c = conn or http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Authorization": "Bearer " + TOKEN,
                                                "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read()
    if own:
        c.close()
    if r.status >= 300:
        raise RuntimeError("%s %s: %d %s" % (method, path, r.status, raw[:200]))
    return json.loads(raw) if raw else {}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))] if v else 0


def report(name, unit, samples, **extra):
    line = {"name": name, "unit": unit, "n": len(samples),
            "p50": round(pct(samples, 50), 2), "p95": round(pct(samples, 95), 2)}
    line.update(extra)
    print(json.dumps(line), flush=True)


def warm(n):
    for _ in range(1200):
        st = call("GET", "/v1/status")
        if st.get("engine", {}).get("warm_pool", 0) >= n:
            return
        time.sleep(0.1)


def create():
    return call("POST", "/v1/sandboxes", {"source_vm_name": "tiny", "agent_id": "bench"})["sandbox"]["id"]


def main():
    warm(2)
    samples = []
    for _ in range(5 if QUICK else 15):
        warm(2)
        t = time.monotonic()
        sid = create()
        call("POST", "/v1/sandboxes/%s/run" % sid, {"command": "true"})
        samples.append((time.monotonic() - t) * 1000)
        call("DELETE", "/v1/sandboxes/" + sid)
    report("api_create_to_exec", "ms", samples)

    sid = create()
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
    samples = []
    for _ in range(30 if QUICK else 100):
        t = time.monotonic()
        call("POST", "/v1/sandboxes/%s/run" % sid, {"command": "true"}, conn)
        samples.append((time.monotonic() - t) * 1000)
    conn.close()
    report("api_exec_rtt", "ms", samples)

    ids = [sid] + [create() for _ in range(9)]
    duration = 10 if QUICK else 20
    lat, errors, lock = [], [0], threading.Lock()
    stop = time.monotonic() + duration

    def worker(i):
        c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
        n = 0
        while time.monotonic() < stop:
            target = ids[(i + n) % len(ids)]
            t = time.monotonic()
            try:
                if n % 2:
                    call("POST", "/v1/sandboxes/%s/run" % target, {"command": "true"}, c)
                else:
                    call("GET", "/v1/sandboxes/" + target, None, c)
                ms = (time.monotonic() - t) * 1000
                with lock:
                    lat.append(ms)
            except Exception as e:  # counted, and the run fails below
                with lock:
                    errors[0] += 1
                print("load error: %s" % e, file=sys.stderr)
                c.close()
                c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=300)
            n += 1
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    report("api_load", "ms", lat, p99=round(pct(lat, 99), 2),
           throughput_rps=round(len(lat) / elapsed, 1), errors=errors[0], sandboxes=len(ids),
           clients=len(threads), seconds=round(elapsed, 1))
    for i in ids:
        call("DELETE", "/v1/sandboxes/" + i)
    return 1 if errors[0] else 0


if __name__ == "__main__":
    sys.exit(main())
