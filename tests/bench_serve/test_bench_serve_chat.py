"""`cllm bench serve --backend openai-chat` (vLLM's openai-chat backend):
text prompts in chat messages to /v1/chat/completions.

Truth: a live `cllm serve` (stories260K with minimind's ChatML template, CPU)
and its Prometheus token counters; a stdlib fake OpenAI chat server that
records the request bodies, whose prompt texts are re-tokenized with PyPI
`tokenizers`; numpy's statistics over the raw timings in the JSON result."""
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server_e2e"))
from conftest import BIN, MODEL_DIR, Server, make_chat_model_dir  # noqa: E402
from test_bench_serve import bench, check_stats, counters, summary  # noqa: E402

# vLLM's result-file keys (vllm/benchmarks/serve.py: result_json + the metrics' fields)
VLLM_KEYS = ["date", "backend", "model_id", "tokenizer_id", "num_prompts", "request_rate", "burstiness",
             "max_concurrency", "duration", "completed", "total_input_tokens", "total_output_tokens",
             "request_throughput", "output_throughput", "total_token_throughput", "input_lens", "output_lens",
             "ttfts", "itls", "errors"] + [f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
                                           for s in ("mean", "median", "std", "p99")]

ARGS = ["--random-input-len", "16", "--random-output-len", "16"]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """stories260K with minimind's (ChatML) chat_template added."""
    return make_chat_model_dir(tmp_path_factory.mktemp("stories_chat"))


@pytest.fixture(scope="module")
def chat_server(chat_dir):
    s = Server(chat_dir, extra=["--max-model-len", "256", "--max-num-seqs", "16"])
    yield s
    assert s.stop() == 0, "".join(s.log)


def test_chat_backend_against_cllm_serve(chat_server, tmp_path):
    s = chat_server
    p0, g0 = counters(s)
    out = tmp_path / "r.json"
    p = bench(s.url, "--backend", "openai-chat", "--num-prompts", "12", *ARGS, "--max-concurrency", "4",
              json_path=out)
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(out.read_text())
    missing = [k for k in VLLM_KEYS if k not in d]
    assert not missing, missing
    assert d["backend"] == "openai-chat" and d["endpoint"] == "/v1/chat/completions"
    assert d["completed"] == 12 and d["failed"] == 0 and not any(d["errors"])
    assert d["output_lens"] == [16] * 12 and d["total_output_tokens"] == 192  # ignore_eos + max_completion_tokens
    assert d["total_input_tokens"] == sum(d["input_lens"])
    # input tokens are the server's: the prompt processed = the text + the chat template's tokens
    p1, g1 = counters(s)
    # (+ the initial single-prompt test run, which sends request 0 again)
    assert p1 - p0 == sum(d["input_lens"]) + d["input_lens"][0]
    assert g1 - g0 == 192 + 16
    st, _, body = s.request("POST", "/tokenize", {"model": "stories", "messages": [{"role": "user", "content": ""}]})
    assert st == 200
    template_tokens = json.loads(body)["count"]  # ChatML around an empty message
    assert template_tokens > 20
    for n_in, n_text in zip(d["input_lens"], d["prompt_text_lens"]):
        # token merges across the text/template boundary shift the sum by a few tokens
        assert abs(n_in - n_text - template_tokens) <= 8, (n_in, n_text, template_tokens)
    # the drawn text encodes to the drawn length, except where byte-fallback ids decode to U+FFFD
    assert sum(n == 16 for n in d["prompt_text_lens"]) >= 6, d["prompt_text_lens"]
    check_stats(d)
    for i in range(12):  # the role-only first delta is not a token: 16 content deltas, 15 gaps
        assert len(d["itls"][i]) == 15
    sm = summary(p.stdout)
    assert sm["Successful requests"] == "12" and sm["Total input tokens"] == str(d["total_input_tokens"])
    assert sm["Total generated tokens"] == "192"


def test_chat_endpoint_selects_the_chat_backend(chat_server, tmp_path):
    out, out2 = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--num-prompts", "6", *ARGS, "--random-range-ratio", "0.5", "--seed", "3",
              "--ready-check-timeout-sec", "0"]
    p = bench(chat_server.url, "--endpoint", "/v1/chat/completions", *common, json_path=out)
    assert p.returncode == 0, p.stderr
    p2 = bench(chat_server.url, "--backend", "openai-chat", *common, "--request-rate", "50", json_path=out2)
    assert p2.returncode == 0, p2.stderr
    d, d2 = json.loads(out.read_text()), json.loads(out2.read_text())
    assert d["backend"] == "openai-chat" and d["completed"] == 6
    assert d["output_lens"] == d["requested_output_lens"] and len(set(d["output_lens"])) > 1
    # the same seed draws the same texts: the server counts the same prompt tokens
    assert d2["input_lens"] == d["input_lens"] and d2["prompt_text_lens"] == d["prompt_text_lens"]


def test_chat_on_a_model_without_template(tmp_path):
    s = Server(MODEL_DIR)  # stories260K has no chat_template: every request fails with the server's 400
    try:
        out = tmp_path / "r.json"
        p = bench(s.url, "--backend", "openai-chat", "--num-prompts", "3", *ARGS, "--ready-check-timeout-sec", "0",
                  json_path=out)
        assert p.returncode == 1
        assert "no chat template" in p.stderr and "HTTP 400" in p.stderr
        d = json.loads(out.read_text())
        assert d["failed"] == 3 and d["completed"] == 0
    finally:
        assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("args, rc, msg", [
    (["--backend", "openai-chat", "--endpoint", "/v1/completions"], 2, "must end with 'chat/completions'"),
    (["--backend", "openai", "--endpoint", "/v1/chat/completions"], 2, "--backend openai-chat"),
    (["--backend", "tgi"], 2, "--backend tgi is not supported"),
    (["--backend", "openai-chat"], 1, "--tokenizer"),  # model 'm' is no directory: no tokenizer
    (["--backend", "openai-chat", "--tokenizer", "/nonexistent"], 1, "tokenizer"),
])
def test_chat_usage_errors(args, rc, msg):
    p = subprocess.run([BIN, "bench", "serve", "--model", "m", "--num-prompts", "2", *args],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == rc and msg in p.stderr, p.stderr


class FakeChat:
    """An OpenAI-style chat streaming server: a role-only delta first, then,
    `delay` s later, `chunks` content deltas and a usage chunk whose
    prompt_tokens is PyPI tokenizers' count of the content + 7. Records the
    request bodies."""

    def __init__(self, chunks, delay, tok):
        self.bodies = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, ev):
                self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                self.wfile.flush()

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append((self.path, body))
                n_prompt = len(tok.encode(body["messages"][0]["content"], add_special_tokens=False).ids) + 7
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                head = {"object": "chat.completion.chunk"}
                self.send({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
                time.sleep(delay)
                for k in range(chunks):
                    self.send({**head, "choices": [{"index": 0, "delta": {"content": f" w{k}"},
                                                    "finish_reason": "length" if k == chunks - 1 else None}]})
                self.send({**head, "choices": [],
                           "usage": {"prompt_tokens": n_prompt, "completion_tokens": chunks,
                                     "total_tokens": n_prompt + chunks}})
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_chat_requests_and_usage_against_a_fake_server(tmp_path):
    tok = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    fake = FakeChat(chunks=5, delay=0.05, tok=tok)
    try:
        out = tmp_path / "r.json"
        p = bench(fake.url, "--backend", "openai-chat", "--num-prompts", "6", "--random-input-len", "24",
                  "--random-output-len", "5", "--random-range-ratio", "0.5", "--max-concurrency", "1",
                  json_path=out)
        assert p.returncode == 0, p.stderr
        d = json.loads(out.read_text())
        bodies = fake.bodies[1:]  # [0] is the initial test run (request 0 again)
        assert len(bodies) == 6 and fake.bodies[0] == bodies[0]
        for i, (path, b) in enumerate(bodies):  # --max-concurrency 1: in order
            assert path == "/v1/chat/completions"
            assert b["model"] == "stories" and b["stream"] is True and b["ignore_eos"] is True
            assert b["stream_options"] == {"include_usage": True}
            assert b["max_completion_tokens"] == d["requested_output_lens"][i] and "max_tokens" not in b
            assert [m["role"] for m in b["messages"]] == ["user"] and isinstance(b["messages"][0]["content"], str)
            n_text = len(tok.encode(b["messages"][0]["content"], add_special_tokens=False).ids)
            assert d["prompt_text_lens"][i] == n_text  # the bench's own tokenizer agrees with PyPI's
            assert d["input_lens"][i] == n_text + 7  # input tokens: the server's usage.prompt_tokens
        assert d["total_input_tokens"] == sum(d["input_lens"])
        assert d["output_lens"] == [5] * 6
        assert all(t >= 0.05 for t in d["ttfts"])  # TTFT at the first content delta, not the role delta
        assert all(len(x) == 4 for x in d["itls"])
        check_stats(d)
    finally:
        fake.close()
