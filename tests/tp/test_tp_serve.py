"""`cllm serve -tp 2` on the CPU: answers as one rank does, exports every
rank's collective statistics, and when a worker process dies /health and
requests answer 503 within seconds and the server exits non-zero."""
import http.client
import json
import os
import signal
import threading
import time

from conftest import Server, children, generate

COMPLETION = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}


def test_serves_like_one_rank():
    ref = generate(prompt="Once upon a time", max_tokens=32)
    assert ref.returncode == 0, ref.stderr
    s = Server(["-tp", "2", "--dist-timeout", "10"])
    try:
        s.wait_healthy()
        st, body = s.post("/v1/completions", COMPLETION)
        assert st == 200, body
        text = json.loads(body)["choices"][0]["text"]
        assert text == ref.stdout.rstrip("\n"), (text, ref.stdout)
        st, body = s.get("/metrics")
        m = body.decode()
        for rank in (0, 1):
            assert f'cllm:dist_collective_calls_total{{group="tp",model_name="stories",op="all_reduce",rank="{rank}",transport="tcp"}}' in m, m
        assert 'op="broadcast",rank="1",transport="tcp"' in m  # the commands rank 0 sent
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
    s = Server(["-tp", "2", "--dist-timeout", "10"])
    try:
        s.wait_healthy()
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
    s = Server(["-tp", "2", "--dist-timeout", "10"])
    try:
        s.wait_healthy()
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
        try:  # the server answers 503, or is already closing its listener on its way out
            st, body = s.post("/v1/completions", COMPLETION, timeout=10) if s.proc.poll() is None else (503, b"")
        except OSError:
            st, body = 503, b"(listener closed: exiting)"
        assert st == 503, body
        rc = s.proc.wait(15)
        assert rc == 1, "".join(s.log)
    finally:
        s.kill()
