"""`cllm bench serve` against a live `cllm serve` (stories260K on CPU, free
port). Truth: the server's own Prometheus token counters (prompt/generation
tokens it processed), the server's context-length rule for which requests
must fail, and numpy's statistics over the raw per-request timings the JSON
result carries."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server_e2e"))
from conftest import BIN, MODEL_DIR, Server  # noqa: E402


def bench(server_url, *args, json_path=None, timeout=300):
    cmd = [BIN, "bench", "serve", "--base-url", server_url, "--model", "stories", "--tokenizer", MODEL_DIR, *args]
    if json_path:
        cmd += ["--output-json", str(json_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode >= 0, f"killed by signal {-p.returncode}:\n{p.stderr}"
    return p


def summary(stdout):
    """{label: value} of the vLLM-style result block."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9 ()/.:-]+?):\s+(\S+)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


@pytest.fixture(scope="module")
def server():
    s = Server(MODEL_DIR, extra=["--max-model-len", "128", "--max-num-seqs", "16"])
    yield s
    assert s.stop() == 0, "".join(s.log)


def counters(server):
    return server.metric("cllm:prompt_tokens_total"), server.metric("cllm:generation_tokens_total")


def check_stats(d):
    """The JSON's summary figures equal numpy's over its raw timings."""
    ok = [i for i, e in enumerate(d["errors"]) if not e]
    ttft = np.array([d["ttfts"][i] for i in ok]) * 1e3
    e2el = np.array([d["e2els"][i] for i in ok]) * 1e3
    itl = np.array([x for i in ok for x in d["itls"][i]]) * 1e3
    outl = np.array([d["output_lens"][i] for i in ok])
    tpot = ((e2el - ttft) / (outl - 1))[outl > 1]
    for name, v in (("ttft", ttft), ("e2el", e2el), ("itl", itl), ("tpot", tpot)):
        assert d[f"mean_{name}_ms"] == pytest.approx(np.mean(v), rel=1e-9, abs=1e-9)
        assert d[f"median_{name}_ms"] == pytest.approx(np.median(v), rel=1e-9, abs=1e-9)
        assert d[f"std_{name}_ms"] == pytest.approx(np.std(v), rel=1e-6, abs=1e-9)
        assert d[f"p99_{name}_ms"] == pytest.approx(np.percentile(v, 99), rel=1e-9, abs=1e-9)
    assert (ttft > 0).all() and (e2el >= ttft).all()
    for i in ok:
        assert len(d["itls"][i]) <= d["output_lens"][i] - 1
    dur = d["duration"]
    assert d["request_throughput"] == pytest.approx(d["completed"] / dur)
    assert d["output_throughput"] == pytest.approx(d["total_output_tokens"] / dur)
    assert d["total_token_throughput"] == pytest.approx((d["total_input_tokens"] + d["total_output_tokens"]) / dur)


def test_max_concurrency_run(server, tmp_path):
    p0, g0 = counters(server)
    out = tmp_path / "r.json"
    p = bench(server.url, "--num-prompts", "20", "--random-input-len", "16", "--random-output-len", "16",
              "--max-concurrency", "4", json_path=out)
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(out.read_text())
    assert d["completed"] == 20 and d["failed"] == 0 and d["max_concurrency"] == 4
    assert d["input_lens"] == [16] * 20 and d["output_lens"] == [16] * 20
    assert d["total_input_tokens"] == 320 and d["total_output_tokens"] == 320
    # the server processed exactly these tokens (+ the initial single-prompt test run: 16 + 16)
    p1, g1 = counters(server)
    assert (p1 - p0, g1 - g0) == (320 + 16, 320 + 16)
    check_stats(d)
    s = summary(p.stdout)
    assert s["Successful requests"] == "20" and s["Failed requests"] == "0"
    assert s["Total input tokens"] == "320" and s["Total generated tokens"] == "320"
    assert float(s["Mean TTFT (ms)"]) == pytest.approx(d["mean_ttft_ms"], abs=0.006)
    assert float(s["P99 E2EL (ms)"]) == pytest.approx(d["p99_e2el_ms"], abs=0.006)
    for label in ("Benchmark duration (s)", "Request throughput (req/s)", "Output token throughput (tok/s)",
                  "Total Token throughput (tok/s)", "Median TPOT (ms)", "Median ITL (ms)"):
        assert label in s, p.stdout


def test_request_rate_and_range_ratio(server, tmp_path):
    p0, g0 = counters(server)
    out = tmp_path / "r.json"
    p = bench(server.url, "--num-prompts", "20", "--random-input-len", "16", "--random-output-len", "16",
              "--random-range-ratio", "0.5", "--request-rate", "100", "--seed", "7",
              "--ready-check-timeout-sec", "0", json_path=out)
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(out.read_text())
    assert d["completed"] == 20 and d["request_rate"] == 100
    assert all(8 <= n <= 24 for n in d["input_lens"]) and len(set(d["input_lens"])) > 1
    assert all(8 <= n <= 24 for n in d["output_lens"]) and len(set(d["output_lens"])) > 1
    assert d["output_lens"] == d["requested_output_lens"]  # ignore_eos: exactly max_tokens each
    p1, g1 = counters(server)
    assert (p1 - p0, g1 - g0) == (sum(d["input_lens"]), sum(d["output_lens"]))
    check_stats(d)
    # the same seed draws the same dataset
    out2 = tmp_path / "r2.json"
    bench(server.url, "--num-prompts", "20", "--random-input-len", "16", "--random-output-len", "16",
          "--random-range-ratio", "0.5", "--seed", "7", "--ready-check-timeout-sec", "0", json_path=out2)
    d2 = json.loads(out2.read_text())
    assert d2["input_lens"] == d["input_lens"] and d2["output_lens"] == d["output_lens"]


def test_requests_over_the_context_fail_and_are_counted(tmp_path):
    s = Server(MODEL_DIR, extra=["--max-model-len", "32"])
    try:
        out = tmp_path / "r.json"
        p = bench(s.url, "--num-prompts", "24", "--random-input-len", "16", "--random-output-len", "16",
                  "--random-range-ratio", "0.0", "--ready-check-timeout-sec", "0", "--max-concurrency", "4",
                  json_path=out)
        assert p.returncode == 0, p.stderr  # 16 + 16 fits max_model_len 32 exactly
        p = bench(s.url, "--num-prompts", "24", "--random-input-len", "24", "--random-output-len", "8",
                  "--random-range-ratio", "0.5", "--ready-check-timeout-sec", "0", "--max-concurrency", "4",
                  json_path=out)
        d = json.loads(out.read_text())
        # the server refuses prompt + max_tokens > 32; which ones is known from the drawn lengths
        too_long = [i for i in range(24) if d["input_lens"][i] + d["requested_output_lens"][i] > 32]
        assert 0 < len(too_long) < 24
        assert d["failed"] == len(too_long) and d["completed"] == 24 - len(too_long)
        assert [i for i, e in enumerate(d["errors"]) if e] == too_long
        assert all("maximum context length" in d["errors"][i] and "HTTP 400" in d["errors"][i] for i in too_long)
        assert p.returncode == 1
        assert "failed; first error:" in p.stderr and "maximum context length" in p.stderr
        assert summary(p.stdout)["Failed requests"] == str(len(too_long))
        assert d["total_input_tokens"] == sum(d["input_lens"][i] for i in range(24) if i not in too_long)
        assert all(d["output_lens"][i] == d["requested_output_lens"][i] for i in range(24) if i not in too_long)
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_api_key(tmp_path):
    s = Server(MODEL_DIR, extra=["--api-key", "sekret"])
    try:
        args = ["--num-prompts", "4", "--random-input-len", "8", "--random-output-len", "4"]
        p = bench(s.url, *args, "--ready-check-timeout-sec", "0")
        assert p.returncode == 1 and "HTTP 401" in p.stderr
        p = bench(s.url, *args, "--api-key", "sekret")
        assert p.returncode == 0, p.stderr
        assert summary(p.stdout)["Successful requests"] == "4"
    finally:
        assert s.stop() == 0, "".join(s.log)


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def test_dead_port(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "r.json"
    p = bench(url, "--num-prompts", "6", "--random-input-len", "8", "--random-output-len", "4",
              "--ready-check-timeout-sec", "0", json_path=out)
    assert p.returncode == 1
    s = summary(p.stdout)
    assert s["Successful requests"] == "0" and s["Failed requests"] == "6"
    assert "6 of 6 requests failed" in p.stderr and "connect" in p.stderr.lower()
    d = json.loads(out.read_text())
    assert d["completed"] == 0 and d["failed"] == 6 and all(d["errors"])
    # default: the initial test run fails within --ready-check-timeout-sec and nothing is measured
    p = bench(url, "--num-prompts", "6", "--ready-check-timeout-sec", "1")
    assert p.returncode == 1 and "initial test run failed" in p.stderr
    assert "Serving Benchmark Result" not in p.stdout


@pytest.mark.parametrize("args, msg", [
    (["--bogus", "1"], "unknown flag"),
    (["--num-prompts", "0"], "--num-prompts"),
    (["--request-rate", "fast"], "--request-rate"),
    (["--random-range-ratio", "1.5"], "--random-range-ratio"),
    (["--endpoint", "/v1/chat/completions", "--backend", "vllm"], "use --backend openai-chat"),
])
def test_usage_errors(args, msg):
    p = subprocess.run([BIN, "bench", "serve", "--model", "m", *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and msg in p.stderr, p.stderr
    p = subprocess.run([BIN, "bench", "serve"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--model is required" in p.stderr


class FakeSSE:
    """A minimal OpenAI-style streaming server (stdlib http.server): each
    request gets `chunks` text chunks (the first holding U+0000, as random
    weights produced on the H200) and, if `usage`, a final usage chunk."""

    def __init__(self, chunks, usage):
        import http.server
        import threading

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for k in range(chunks):
                    text = "\u0000x" if k == 0 else " y"
                    ev = {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
                    self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                if usage:
                    ev = {"choices": [], "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"],
                                                   "total_tokens": len(body["prompt"]) + body["max_tokens"]}}
                    self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_nul_text_and_usage_from_another_server(tmp_path):
    fake = FakeSSE(chunks=5, usage=True)
    try:
        out = tmp_path / "r.json"
        p = bench(fake.url, "--num-prompts", "8", "--random-input-len", "8", "--random-output-len", "5",
                  "--max-concurrency", "2", json_path=out)
        assert p.returncode == 0, p.stderr
        d = json.loads(out.read_text())
        assert d["completed"] == 8 and d["output_lens"] == [5] * 8
        assert all(len(x) == 4 for x in d["itls"])  # 5 chunks: 4 gaps
        check_stats(d)
    finally:
        fake.close()
    fake = FakeSSE(chunks=3, usage=False)  # no usage chunk: counts content chunks, says so
    try:
        p = bench(fake.url, "--num-prompts", "4", "--random-input-len", "8", "--random-output-len", "5",
                  json_path=out)
        assert p.returncode == 0, p.stderr
        assert "no usage chunk" in p.stderr
        assert json.loads(out.read_text())["output_lens"] == [3] * 4
    finally:
        fake.close()
