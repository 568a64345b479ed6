"""What the pytest suites that start `cllm serve` / `cllm router` share: a cllm process on loopback whose output
is kept (the port it reports, /health, requests, stop), plain HTTP requests, Prometheus text, a free port, a
slow random-weight model. tests/server_e2e (and through its conftest tests/bench_serve), tests/router and
tests/tp put this directory on sys.path in their conftest.py, tests/lm_eval in its test file.

Environment (set by CTest): CLLM_BIN, CLLM_MODEL_DIR (the bundled stories260K), CLLM_SHARED_DIR.
"""
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
SHARED = os.environ.get("CLLM_SHARED_DIR", "../shared")


def free_port():
    """A free port below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0 could be
    taken by another test's outgoing connection or listener before it is used (a replica restarted on it, a
    rendezvous binding it)."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in [20000, 32000)")


def request(base, method, path, body=None, headers=None, raw=None, timeout=60):
    """(status, headers, body bytes). body: a JSON value; raw: bytes sent as is."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get(base, path, timeout=30, headers=None):
    """(status, body bytes)."""
    st, _, body = request(base, "GET", path, headers=headers, timeout=timeout)
    return st, body


def post(base, path, body, timeout=60, headers=None):
    """(status, headers, body bytes)."""
    return request(base, "POST", path, body, headers=headers, timeout=timeout)


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
    """Sum of the samples of one metric (over its labels)."""
    return sum(v for k, v in metrics(base).items() if k == name or k.startswith(name + "{"))


class Proc:
    """A cllm process whose output is kept (.log); `pattern` (a regex with the port as group 1) marks it
    listening, then .port and .url are set."""

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
            raise RuntimeError(f"cllm {args[1]} did not report its port:\n" + self.text())
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

    def request(self, method, path, body=None, headers=None, raw=None, timeout=60):
        """(status, headers, body bytes); see request()."""
        return request(self.url, method, path, body, headers, raw, timeout)

    def health(self, timeout=5):
        return get(self.url, "/health", timeout)

    def metrics(self):
        return metrics(self.url)

    def metric(self, name):
        return metric_sum(self.url, name)

    def wait_healthy(self, timeout=60, check=None):
        """Seconds until /health answers 200 (and check(its JSON) holds)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cllm {self.args[1]} exited ({self.proc.returncode}):\n" + self.text())
            try:
                st, body = self.health()
                if st == 200 and (check is None or check(json.loads(body))):
                    return time.time() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cllm {self.args[1]} never became healthy:\n" + self.text())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal it (SIGTERM), then its exit status (0 when it shut down cleanly: under ASan, also no leak);
        None when it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Server(Proc):
    """`cllm serve` on loopback (port 0: a free one), one CPU thread, healthy once constructed."""

    def __init__(self, model=MODEL_DIR, extra=(), name="stories", port=0):
        self.model, self.extra, self.name = model, list(extra), name
        super().__init__([BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
                          "--served-model-name", name, "--num-threads", "1", *extra],
                         r"listening on http://[^:]+:(\d+)")
        self.wait_healthy()


def make_slow_model_dir(d, hidden=1024, layers=8, **config):
    """stories260K's tokenizer with a wider, deeper llama config (random weights: serve it with --load-format
    dummy; config: more config.json fields), ~10 ms per token on one core, so that shutdown, disconnect and
    failover tests catch requests still running. d: a pathlib.Path; returns str(d)."""
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    with open(os.path.join(MODEL_DIR, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, head_dim=hidden // 8,
               num_attention_heads=8, num_key_value_heads=8)
    cfg.update(config)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)
