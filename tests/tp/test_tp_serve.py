"""`cllm serve -tp 2` on the CPU: answers as one rank does, exports every
rank's collective statistics, and when a worker process dies /health and
requests answer 503 within seconds and the server exits non-zero."""
import http.client
import json
import re
import os
import signal
import threading
import time

import pytest

from conftest import Server, children, generate

COMPLETION = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}


@pytest.mark.parametrize("layout", [["-tp", "2"], ["-pp", "2"]])
def test_serves_like_one_rank(layout):
    ref = generate(prompt="Once upon a time", max_tokens=32)
    assert ref.returncode == 0, ref.stderr
    s = Server(extra=[*layout, "--dist-timeout", "10"])
    try:
        st, _, body = s.request("POST", "/v1/completions", COMPLETION)
        assert st == 200, body
        text = json.loads(body)["choices"][0]["text"]
        assert text == ref.stdout.rstrip("\n"), (text, ref.stdout)
        if layout[0] == "-tp":
            want = [f'cllm:dist_collective_calls_total{{group="tp",model_name="stories",op="all_reduce",rank="{r}",'
                    'transport="tcp"}' for r in (0, 1)]
        else:  # the pipeline's hidden states: stage 0 sends, stage 1 receives (and sends the rows back)
            want = ['cllm:dist_collective_calls_total{group="pp",model_name="stories",op="send",rank="0",transport="tcp"}',
                    'cllm:dist_collective_calls_total{group="pp",model_name="stories",op="recv",rank="1",transport="tcp"}']
        want.append('op="broadcast",rank="1",transport="tcp"')  # the commands rank 0 sent
        # the engine thread refreshes every rank's statistics once it goes idle, just after the answer
        t0 = time.time()
        while True:
            m = s.request("GET", "/metrics")[2].decode()
            if all(w in m for w in want) or time.time() - t0 > 10:
                break
            time.sleep(0.05)
        for w in want:
            assert w in m, (w, m)
    finally:
        s.kill()


def _kill_worker(s):
    kids = children(s.proc.pid)
    assert kids, "no worker processes found"
    os.kill(kids[0], signal.SIGKILL)


def _wait_503_and_exit(s, t0, within=10):
    saw = None
    while time.time() - t0 < within:
        if s.proc.poll() is not None:
            break
        try:
            st, body = s.health(timeout=2)
            if st == 503:
                saw = json.loads(body)
                break
        except OSError:
            break
        time.sleep(0.05)
    rc = s.proc.wait(within)
    return saw, rc


def test_worker_killed_while_idle():
    s = Server(extra=["-tp", "2", "--dist-timeout", "10"])
    try:
        t0 = time.time()
        _kill_worker(s)
        saw, rc = _wait_503_and_exit(s, t0)
        assert rc == 1, "".join(s.log)
        assert time.time() - t0 < 10
        log = "".join(s.log)
        assert "rank 1" in log and ("exited" in log or "killed" in log or "closed" in log), log
        if saw is not None:
            assert saw["error"]["code"] == 503 or "503" in json.dumps(saw), saw
    finally:
        s.kill()


def test_worker_killed_mid_request():
    s = Server(extra=["-tp", "2", "--dist-timeout", "10"])
    try:
        port = int(s.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/completions", body=json.dumps({**COMPLETION, "max_tokens": 480, "n": 4,
                                                                 "ignore_eos": True, "stream": True}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.readline()  # tokens are flowing
        assert first.startswith(b"data: "), first
        t0 = time.time()
        _kill_worker(s)
        rest = resp.read().decode(errors="replace")  # must end, not hang (the socket timeout is 30 s)
        conn.close()
        assert time.time() - t0 < 10
        # a stream that had started ends with an error event, then [DONE], instead of hanging
        assert '"error"' in rest and rest.rstrip().endswith("data: [DONE]"), rest[-2000:]
        # the error event says what a client can act on: this replica is unavailable (retry elsewhere), as the 503s
        errs = [json.loads(l[6:])["error"] for l in rest.splitlines() if l.startswith("data: {") and '"error"' in l]
        assert errs and errs[-1]["type"] == "service_unavailable", errs
        try:  # the server answers 503, or is already closing its listener on its way out
            st, _, body = (s.request("POST", "/v1/completions", COMPLETION, timeout=10) if s.proc.poll() is None
                           else (503, {}, b""))
        except OSError:
            st, body = 503, b"(listener closed: exiting)"
        assert st == 503, body
        rc = s.proc.wait(15)
        assert rc == 1, "".join(s.log)
    finally:
        s.kill()


def test_moe_expert_load_metrics():
    """Expert parallelism over 2 ranks: /metrics counts every (token, expert) assignment once per MoE layer, and
    each rank's experts' share."""
    fixture = os.path.join(os.path.dirname(__file__), "..", "fixtures", "qwen3moe-tiny")
    s = Server(fixture, extra=["-tp", "2", "--enable-expert-parallel", "--dist-timeout", "10"])
    try:
        st, _, body = s.request("POST", "/v1/completions", {**COMPLETION, "max_tokens": 12, "ignore_eos": True})
        assert st == 200, body
        u = json.loads(body)["usage"]
        # one MoE layer (layer 1 is in mlp_only_layers), top-2: every forwarded token routes twice
        want = 2 * (u["prompt_tokens"] + u["completion_tokens"] - 1)
        t0 = time.time()
        while True:
            m = s.request("GET", "/metrics")[2].decode()
            per_expert = [int(float(x)) for x in re.findall(r'^cllm:moe_expert_tokens_total\{expert="\d+",[^}]*\} (\S+)$', m, re.M)]
            per_rank = [int(float(x)) for x in re.findall(r'^cllm:moe_rank_tokens_total\{[^}]*rank="\d+"\} (\S+)$', m, re.M)]
            if sum(per_expert) == want or time.time() - t0 > 10:
                break
            time.sleep(0.05)
        assert len(per_expert) == 8 and sum(per_expert) == want, (per_expert, want, m)
        assert len(per_rank) == 2 and sum(per_rank) == want and all(r > 0 for r in per_rank), per_rank
        assert re.search(r'^cllm:moe_expert_load_imbalance\{[^}]*\} [0-9.]+$', m, re.M), m
    finally:
        s.kill()
