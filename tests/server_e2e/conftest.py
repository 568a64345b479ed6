"""Fixtures for the `cllm serve` end-to-end tests.

Environment (set by CTest): CLLM_BIN (the cllm program), CLLM_MODEL_DIR (the
bundled stories260K), CLLM_SHARED_DIR (shared data: the minimind chat template,
reference greedy continuations).
"""
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
SHARED = os.environ.get("CLLM_SHARED_DIR", "../shared")


class Server:
    """A `cllm serve` process on a free loopback port (--port 0)."""

    def __init__(self, model=MODEL_DIR, extra=(), name="stories"):
        self.name = name
        args = [BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
                "--served-model-name", name, "--num-threads", "1", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log = []
        self._port = None
        self._ready = threading.Event()
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
        if not self._ready.wait(60):
            self.kill()
            raise RuntimeError("cllm serve did not report its port:\n" + "".join(self.log))
        self.url = f"http://127.0.0.1:{self._port}"
        self.wait_healthy()

    def _drain(self, f):
        for line in f:
            self.log.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self._port = int(m.group(1))
                self._ready.set()

    def wait_healthy(self, timeout=60):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("cllm serve exited:\n" + "".join(self.log))
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise RuntimeError("cllm serve never became healthy:\n" + "".join(self.log))

    def request(self, method, path, body=None, headers=None, raw=None, timeout=60):
        """(status, headers, body bytes). body: a JSON value; raw: bytes sent as is."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def metrics(self):
        """{name{labels}: value} of the Prometheus text."""
        st, _, body = self.request("GET", "/metrics")
        assert st == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def metric(self, name):
        """Sum of the samples of one metric (over its labels)."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def chat_template():
    with open(os.path.join(SHARED, "tokenizers", "minimind", "tokenizer_config.json")) as f:
        return json.load(f)["chat_template"]


def make_chat_model_dir(d):
    """Copy stories260K into directory d (a pathlib.Path) with minimind's
    (ChatML, Qwen3-style) chat_template added; returns str(d)."""
    for f in os.listdir(MODEL_DIR):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = chat_template()
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(d)


def make_slow_model_dir(d, hidden=1024, layers=8):
    """stories260K's tokenizer with a wider, deeper llama config (random weights:
    serve it with --load-format dummy): ~10 ms per token on one core, so that
    shutdown and disconnect tests catch requests still running."""
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    cfg = json.load(open(os.path.join(MODEL_DIR, "config.json")))
    cfg.update(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, head_dim=hidden // 8,
               num_attention_heads=8, num_key_value_heads=8)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory):
    return make_slow_model_dir(tmp_path_factory.mktemp("slow"))


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory):
    """stories260K with minimind's (ChatML, Qwen3-style) chat_template added."""
    return make_chat_model_dir(tmp_path_factory.mktemp("stories_chat"))


@pytest.fixture(scope="session")
def server(chat_model_dir):
    s = Server(chat_model_dir, extra=["--max-model-len", "256", "--max-num-seqs", "16"])
    yield s
    rc = s.stop()
    assert rc == 0, "".join(s.log)


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)
