"""Helpers for the router end-to-end tests: `cllm serve` replicas and `cllm router` (or
`cllm serve --data-parallel-size`) on loopback, raw HTTP clients, Prometheus parsing.

Environment (set by CTest): CLLM_BIN, CLLM_MODEL_DIR (stories260K).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

BIN = os.environ.get("CLLM_BIN", "build/cllm")
MODEL_DIR = os.environ.get("CLLM_MODEL_DIR", "models/stories260K")


def free_port():
    """A free port below Linux's ephemeral range (32768-60999), so that a replica can be restarted on it without
    another test's outgoing connection having taken it."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in [20000, 32000)")


def slow_model_dir(d):
    """stories260K's tokenizer with a larger random-weight llama (--load-format dummy): ~10 ms per decoded token on
    one CPU thread, so that a stream or a long request is still running when a replica is killed."""
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    with open(os.path.join(MODEL_DIR, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
               num_key_value_heads=8, head_dim=64, max_position_embeddings=1024)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


class Proc:
    """A cllm process whose output is kept; `pattern` (a regex with the port as group 1) marks it listening."""

    def __init__(self, args, pattern, env=None):
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.log = []
        self.port = None
        self._ready = threading.Event()
        self._pattern = re.compile(pattern)
        for f in (self.proc.stderr, self.proc.stdout):
            threading.Thread(target=self._drain, args=(f,), daemon=True).start()
        if not self._ready.wait(60):
            self.kill()
            raise RuntimeError(f"{args[1]} did not report its port:\n" + self.text())
        self.url = f"http://127.0.0.1:{self.port}"

    def _drain(self, f):
        for line in f:
            self.log.append(line)
            m = self._pattern.search(line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()

    def text(self):
        return "".join(self.log)

    def health(self, timeout=5):
        return get(self.url, "/health", timeout)

    def wait_healthy(self, timeout=60, check=None):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[1]} exited ({self.proc.returncode}):\n" + self.text())
            try:
                st, body = self.health()
                if st == 200 and (check is None or check(json.loads(body))):
                    return time.time() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.args[1]} never became healthy:\n" + self.text())

    def stop(self, timeout=30):
        """SIGTERM, then the exit status (0 when it shut down cleanly: under ASan, also no leak)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Replica(Proc):
    """`cllm serve` on a fixed port (so that a restart keeps its URL)."""

    def __init__(self, port=None, model=MODEL_DIR, extra=()):
        self.model, self.extra = model, list(extra)
        port = port or free_port()
        super().__init__([BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
                          "--served-model-name", "stories", "--num-threads", "1", *extra],
                         r"listening on http://[^:]+:(\d+)")
        self.wait_healthy()

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


def get(base, path, timeout=30, headers=None):
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(base, path, body, timeout=60, headers=None):
    """(status, headers, body bytes)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


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


def metrics(base):
    """{name{labels}: value} of a Prometheus text."""
    st, body = get(base, "/metrics")
    assert st == 200, body
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def metric_sum(base, name):
    return sum(v for k, v in metrics(base).items() if k == name or k.startswith(name + "{"))


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
