"""Helpers for the router end-to-end tests: `cllm serve` replicas and `cllm router` (or
`cllm serve --data-parallel-size`) on loopback, streams read event by event, the router's
metrics per replica (over tests/pyhelpers/cllm_procs.py: the processes, HTTP, Prometheus text).

Environment (set by CTest): CLLM_BIN, CLLM_MODEL_DIR (stories260K).
"""
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyhelpers"))
from cllm_procs import (BIN, MODEL_DIR, Proc, Server, free_port, get, make_slow_model_dir,  # noqa: E402,F401
                        metric_sum, metrics, post)


def slow_model_dir(d):
    """A larger random-weight llama (--load-format dummy) with stories260K's tokenizer: ~10 ms per decoded token
    on one CPU thread, so that a stream or a long request is still running when a replica is killed."""
    return make_slow_model_dir(d, hidden=512, intermediate_size=1536, max_position_embeddings=1024)


class Replica(Server):
    """`cllm serve` on a fixed port (so that a restart keeps its URL)."""

    def __init__(self, port=None, model=MODEL_DIR, extra=()):
        super().__init__(model, extra, port=port or free_port())

    def restart(self):
        return Replica(self.port, self.model, self.extra)


class Router(Proc):
    """`cllm router --port 0` over the given replica URLs."""

    def __init__(self, urls, extra=()):
        super().__init__([BIN, "router", "--worker-urls", *urls, "--host", "127.0.0.1", "--port", "0", *extra],
                         r"router listening on http://[^:]+:(\d+)")


class DataParallel(Proc):
    """`cllm serve --data-parallel-size N --port 0`."""

    def __init__(self, n, model=MODEL_DIR, extra=()):
        super().__init__([BIN, "serve", "--model", model, "--data-parallel-size", str(n), "--host", "127.0.0.1",
                          "--port", "0", "--served-model-name", "stories", "--num-threads", "1", *extra],
                         r"router listening on http://[^:]+:(\d+)")


class Stream:
    """A streaming completion read event by event (http.client)."""

    def __init__(self, base, body, timeout=30):
        port = int(base.rsplit(":", 1)[1])
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                          headers={"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.replica = self.resp.getheader("X-Cllm-Replica")
        self.events = []

    def next_event(self):
        """The next event's data line, or None at the end of the body."""
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line.startswith("data: "):
                self.events.append(line[6:])
                return line[6:]

    def rest(self):
        while self.next_event() is not None:
            pass
        self.conn.close()
        return self.events


def check_events(events):
    """Every event but [DONE] is one JSON object (no half event); returns (text, errors, done)."""
    text, errors = "", []
    for e in events:
        if e == "[DONE]":
            continue
        o = json.loads(e)
        if "error" in o:
            errors.append(o["error"])
        else:
            text += o["choices"][0]["text"]
    return text, errors, bool(events) and events[-1] == "[DONE]"


def served(replica):
    """Requests a replica finished (cllm:request_success_total over every reason)."""
    return metric_sum(replica.url, "cllm:request_success_total")


def router_metric(router, name, replica):
    return metrics(router.url).get(f'{name}{{replica="{replica.url}"}}', 0.0)


def router_health(router):
    st, body = router.health()
    return st, json.loads(body)


def wait_for(cond, timeout, what, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return time.time() - t0
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def generate(prompt, max_tokens, model=MODEL_DIR):
    """Greedy `cllm generate` text (the reference)."""
    r = subprocess.run([BIN, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(max_tokens),
                        "--temperature", "0", "--num-threads", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
