#!/usr/bin/env python3
"""What `cllm router` costs per request: one `cllm serve` replica (stories260K, CPU, one thread), measured directly
and through `cllm router` (that replica alone behind it), alternating rounds so that load on the machine falls on
both alike.

  1. keep-alive non-streaming 1-token completions, one at a time (the router's own latency: client -> router ->
     replica -> router -> client, against client -> replica -> client);
  2. `cllm bench serve` streams at --max-concurrency 16 (random input 16 / output 16 tokens).

Prints a table (median / p90 / p99 ms, requests/s) and writes JSON to $OUT (default /tmp/cllm_router_bench.json).
Usage: tools/bench_router.py [build dir] (env ROUNDS=6, N=500 requests per round and side)
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
BIN = os.path.join(BUILD, "cllm")
MODEL = os.path.join(ROOT, "models", "stories260K")
ROUNDS = int(os.environ.get("ROUNDS", "6"))
N = int(os.environ.get("N", "500"))


def start(args, pattern):
    p = subprocess.Popen([BIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = []
    ready = threading.Event()

    def drain():
        for line in p.stderr:
            m = re.search(pattern, line)
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()
    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(30):
        p.kill()
        sys.exit(f"{args[0]} did not start")
    return p, port[0]


def wait_healthy(port):
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"port {port} never became healthy")


def one_at_a_time(port, n):
    body = json.dumps({"model": "stories", "prompt": "Once upon", "max_tokens": 1, "temperature": 0})
    c = http.client.HTTPConnection("127.0.0.1", port)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t) * 1e3)
        assert r.status == 200, r.status
    return out


def bench_serve(port):
    r = subprocess.run([BIN, "bench", "serve", "--base-url", f"http://127.0.0.1:{port}", "--model", "stories",
                        "--tokenizer", MODEL, "--random-input-len", "16", "--random-output-len", "16",
                        "--num-prompts", "1600", "--max-concurrency", "16", "--ready-check-timeout-sec", "0"],
                       capture_output=True, text=True, timeout=300)
    get = lambda k: float(re.search(k + r":\s+([0-9.]+)", r.stdout).group(1))
    return get(r"Request throughput \(req/s\)"), get(r"Median E2EL \(ms\)"), get(r"P99 E2EL \(ms\)")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    rep, rport = start(["serve", "--model", MODEL, "--port", "0", "--num-threads", "1", "--served-model-name",
                        "stories"], r"listening on http://[^:]+:(\d+)")
    wait_healthy(rport)
    rt, tport = start(["router", "--worker-urls", f"127.0.0.1:{rport}", "--port", "0"],
                      r"router listening on http://[^:]+:(\d+)")
    wait_healthy(tport)
    try:
        lat = {"direct": [], "router": []}
        streams = {"direct": [], "router": []}
        for _ in range(ROUNDS):
            for side, port in (("direct", rport), ("router", tport)):
                lat[side] += one_at_a_time(port, N)
        for _ in range(2):
            for side, port in (("direct", rport), ("router", tport)):
                streams[side].append(bench_serve(port))
        res = {}
        print("| path | 1-token completions, one at a time: median / p90 / p99 ms | streams at concurrency 16: "
              "requests/s, median / p99 end-to-end ms (2 runs) |")
        print("| --- | --- | --- |")
        for side in ("direct", "router"):
            v = lat[side]
            res[side] = {"n": len(v), "median_ms": statistics.median(v), "p90_ms": pct(v, 0.9), "p99_ms": pct(v, 0.99),
                         "streams": streams[side]}
            s = "; ".join(f"{a:.0f} req/s, {b:.1f} / {c:.1f}" for a, b, c in streams[side])
            print(f"| {side} | {res[side]['median_ms']:.3f} / {res[side]['p90_ms']:.3f} / {res[side]['p99_ms']:.3f} "
                  f"| {s} |")
        print(f"router overhead, median: {res['router']['median_ms'] - res['direct']['median_ms']:.3f} ms per request")
        with open(os.environ.get("OUT", "/tmp/cllm_router_bench.json"), "w") as f:
            json.dump(res, f, indent=1)
    finally:
        for p in (rt, rep):
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
