"""`cllm serve` before the model is ready.

The server binds its port first and loads the model on the engine thread
(server/http_server.h: cllm_server_start), so /health answers 503 while
loading (vLLM's /health is unavailable until the engine is up) and 200 once
ready; generate routes answer 503 meanwhile. A failed load ends the process
with exit code 1 and the load error (cllm_server_wait returns it).

Truth: HTTP itself (RFC 9110: 503 + Retry-After as delay-seconds), the
OpenAI error body shape ({"error": {"message", "type", ...}}), and the order
of events as a client sees them. The model that takes a while to load is a
12-layer, 1024-wide llama with random weights (--load-format dummy, built
from config.json alone) and the bundled stories260K tokenizer."""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

BIN = os.environ.get("CLLM_BIN", "build/cllm")
MODEL_DIR = os.environ.get("CLLM_MODEL_DIR", "models/stories260K")


class Proc:
    """`cllm serve` started without waiting for health: .port once it says 'listening on'."""

    def __init__(self, model, *extra):
        args = [BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--served-model-name", "m",
                "--num-threads", "1", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log = []
        self.port = None
        self._listening = threading.Event()
        for f in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(f,), daemon=True).start()

    def _drain(self, f):
        for line in f:
            self.log.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._listening.set()
        self._listening.set()  # exited before listening: wake the waiter

    def wait_listening(self, timeout=60):
        assert self._listening.wait(timeout) and self.port, "no 'listening on' line:\n" + "".join(self.log)

    def request(self, method, path, body=None, timeout=30):
        """(status, headers, body bytes), or None when the connection failed (process gone)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()
        except (urllib.error.URLError, ConnectionError):
            return None

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def check_503(resp, what):
    """A 503 with Retry-After (delay-seconds) and an OpenAI-style error body; returns the message."""
    assert resp is not None, f"{what}: connection failed"
    st, headers, body = resp
    assert st == 503, (what, st, body)
    ra = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, (what, headers)
    j = json.loads(body)
    assert isinstance(j["error"]["message"], str) and isinstance(j["error"]["type"], str), j
    return j["error"]["message"]


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """~150M random fp32 parameters: loading takes ~0.5 s (release) on one core, longer under ASan."""
    d = tmp_path_factory.mktemp("dummy_llama")
    for f in os.listdir(MODEL_DIR):
        if f != "model.safetensors":
            shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
               num_key_value_heads=8, head_dim=64, max_position_embeddings=512)
    # vocab_size stays the tokenizer's (512): sampled ids must be detokenizable
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def test_health_is_503_while_loading_then_200(slow_model):
    s = Proc(slow_model, "--load-format", "dummy", "--max-model-len", "128")
    try:
        s.wait_listening()
        events = []  # (route, response) in the order the client saw them
        t0 = time.time()
        while time.time() - t0 < 120:
            h = s.request("GET", "/health")
            events.append(("health", h))
            if h is not None and h[0] == 200:
                break
            c = s.request("POST", "/v1/completions", {"model": "m", "prompt": "Once", "max_tokens": 2})
            events.append(("completions", c))
            if c is not None and c[0] == 200:  # became ready between the two requests
                continue
            time.sleep(0.02)
        health = [r for k, r in events if k == "health"]
        assert health[-1] is not None and health[-1][0] == 200, "never healthy:\n" + "".join(s.log)
        # the listener was up before the model: the very first /health is a 503 "loading"
        assert "loading" in check_503(health[0], "first /health")
        n_503 = 0
        for r in health[:-1]:
            assert "loading" in check_503(r, "/health before ready")
            n_503 += 1
        assert n_503 >= 1
        loading = [r for k, r in events if k == "completions" and r is not None and r[0] == 503]
        assert loading, "no /v1/completions was answered while loading"
        for r in loading:
            msg = check_503(r, "/v1/completions while loading")
            assert "loading" in msg and "retry later" in msg, msg
        # serve writes "model ready" before /health turns 200; the reader threads may lag behind it
        t1 = time.time()
        while "model ready" not in "".join(s.log) and time.time() - t1 < 10:
            time.sleep(0.02)
        log = "".join(s.log)
        assert "model ready" in log, log
        assert log.index("listening on") < log.index("model ready"), log
        # ready: it stays healthy and generates
        assert s.request("GET", "/health")[0] == 200
        st, _, body = s.request("POST", "/v1/completions", {"model": "m", "prompt": "Once upon a time",
                                                            "max_tokens": 3, "ignore_eos": True}, timeout=120)
        assert st == 200, body
        j = json.loads(body)
        assert j["usage"]["completion_tokens"] == 3 and isinstance(j["choices"][0]["text"], str)
        assert j["choices"][0]["finish_reason"] == "length"
    finally:
        assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("corrupt", ["random_bytes", "truncated"])
def test_failed_load_exits_with_the_load_error(tmp_path, corrupt):
    d = tmp_path / "bad"
    d.mkdir()
    for f in os.listdir(MODEL_DIR):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    w = d / "model.safetensors"
    if corrupt == "random_bytes":
        w.write_bytes(os.urandom(5000))
    else:
        w.write_bytes(w.read_bytes()[:20000])  # header intact, tensor data cut short
    s = Proc(str(d))
    try:
        s.wait_listening()
        seen = []
        while s.proc.poll() is None:  # until the process gives up: never healthy
            r = s.request("GET", "/health", timeout=5)
            if r is not None:
                seen.append(r)
            time.sleep(0.01)
        rc = s.proc.wait(30)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
    assert rc == 1, "".join(s.log)
    for r in seen:  # a /health that got in before the exit says loading or failed, never OK
        msg = check_503(r, "/health of a failing load")
        assert "loading" in msg or "failed to load" in msg, msg
    time.sleep(0.1)  # let the drain threads read the last lines
    log = "".join(s.log)
    assert re.search(r"cllm serve: .*model\.safetensors: .*corrupt or truncated", log), log
    assert "Traceback" not in log and "AddressSanitizer" not in log and "runtime error" not in log
