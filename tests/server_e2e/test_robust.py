"""Robustness: client disconnects free KV blocks, overload gives 503 +
Retry-After, SIGTERM exits 0, the API key, the registry CLI, and (slow) a
load test of hundreds of concurrent streaming connections."""
import http.client
import json
import signal
import subprocess
import threading
import time

import pytest
from conftest import BIN, MODEL_DIR, Server

LONG = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0,
        "ignore_eos": True, "stream": True}


def open_stream(server, body):
    """Start a streaming request; returns (connection, response) after the headers."""
    host, port = server.url[len("http://"):].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    return c, r


def wait_for(pred, timeout=10.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def finished(server, reason):
    return server.metrics().get(f'cllm:request_success_total{{finished_reason="{reason}",model_name="stories"}}', 0)


def test_disconnect_mid_stream_frees_blocks(server):
    aborted0, length0 = finished(server, "abort"), finished(server, "length")
    conns = []
    for _ in range(4):
        c, r = open_stream(server, LONG)
        assert r.status == 200
        r.read1(64)  # some tokens arrived: the request holds KV blocks
        conns.append((c, r))
    assert wait_for(lambda: server.metric("cllm:kv_cache_usage_perc") > 0, 5)
    for c, r in conns:
        c.sock.close()  # hang up mid-stream
        c.close()
    assert wait_for(lambda: server.metric("cllm:kv_cache_usage_perc") == 0
                    and server.metric("cllm:num_requests_running") == 0, 5), server.metrics()
    # the tiny model may finish a stream before its client hangs up: every one is aborted or complete
    aborted, length = finished(server, "abort") - aborted0, finished(server, "length") - length0
    assert aborted >= 1 and aborted + length == 4, (aborted, length)


def test_overload_gives_503_with_retry_after():
    s = Server(extra=["--max-model-len", "256", "--max-num-seqs", "1", "--max-num-waiting", "1"])
    try:
        held = [open_stream(s, LONG) for _ in range(2)]  # one running, one waiting: the limit
        assert all(r.status == 200 for _, r in held)
        st, hdr, body = s.request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 4})
        assert st == 503, body
        assert hdr.get("Retry-After") == "1"
        assert json.loads(body)["error"]["message"]
        for c, _ in held:
            c.close()
        # capacity comes back once the held streams are gone
        assert wait_for(lambda: s.request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 2})[0] == 200)
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_in_flight_and_exits_0():
    s = Server(extra=["--max-model-len", "256", "--shutdown-timeout", "20"])
    body = dict(LONG, max_tokens=40)
    c, r = open_stream(s, body)
    assert r.status == 200
    s.proc.send_signal(signal.SIGTERM)
    data = r.read().decode()  # the in-flight stream finishes within the grace period
    assert data.endswith("data: [DONE]\n\n")
    assert '"finish_reason":"length"' in data.replace(" ", "")
    assert s.proc.wait(30) == 0


def test_sigint_with_idle_server_exits_0():
    s = Server()
    assert s.stop(signal.SIGINT) == 0


def test_api_key():
    s = Server(extra=["--api-key", "sekrit"])
    try:
        st, _, body = s.request("GET", "/v1/models")
        assert st == 401 and json.loads(body)["error"]["message"]
        st, _, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        assert st == 401
        st, _, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer sekrit"})
        assert st == 200
        assert s.request("GET", "/health")[0] == 200
        assert s.request("GET", "/metrics")[0] == 200
        import openai
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="sekrit", max_retries=0)
        assert ok.completions.create(model="stories", prompt="Once", max_tokens=2).choices
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="stories", prompt="Once", max_tokens=2)
    finally:
        assert s.stop() == 0


def test_registry_cli(tmp_path):
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  tiny:\n    model: {MODEL_DIR}\n    max-model-len: 128\n    max-num-seqs: 4\n"
                   f"    description: bundled demo\n")
    out = subprocess.run([BIN, "models", "--registry", str(reg)], capture_output=True, text=True)
    assert out.returncode == 0 and "tiny" in out.stdout and "bundled demo" in out.stdout
    out = subprocess.run([BIN, "serve", "tiny", "--registry", str(reg), "--port", "9123", "--dry-run"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"--model '{MODEL_DIR}'" in out.stdout and "--max-model-len 128" in out.stdout
    assert "--port 9123" in out.stdout and "--max-num-seqs 4" in out.stdout
    out = subprocess.run([BIN, "serve", "huge", "--registry", str(reg), "--dry-run"], capture_output=True, text=True)
    assert out.returncode != 0 and "tiny" in out.stderr  # lists the available names
    out = subprocess.run([BIN, "serve", "--port", "99999", "--model", MODEL_DIR], capture_output=True, text=True)
    assert out.returncode == 2 and "--port" in out.stderr


def test_port_in_use_is_an_error(server):
    port = server.url.rsplit(":", 1)[1]
    out = subprocess.run([BIN, "serve", "--model", MODEL_DIR, "--port", port], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "cannot listen" in out.stderr


@pytest.mark.slow
def test_load_many_concurrent_streams(server):
    """400 concurrent streaming connections on loopback: all complete, no errors; KV blocks,
    threads and file descriptors return to their idle levels."""
    import os
    n = 400
    pid = server.proc.pid
    fds0 = len(os.listdir(f"/proc/{pid}/fd"))
    threads0 = len(os.listdir(f"/proc/{pid}/task"))
    results = [None] * n
    errors = []

    def worker(i):
        try:
            c, r = open_stream(server, {"model": "stories", "prompt": "Once upon a time", "max_tokens": 16,
                                        "temperature": 0.8, "seed": i, "stream": True, "ignore_eos": True})
            data = r.read().decode()
            c.close()
            if r.status != 200 or not data.endswith("data: [DONE]\n\n"):
                errors.append((i, r.status, data[-300:]))
            results[i] = data
        except Exception as e:  # noqa: BLE001 - any failure is a test failure
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert all(results)
    for d in results[:20]:
        chunks = [json.loads(e[6:]) for e in d.split("\n\n") if e.startswith("data: {")]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert wait_for(lambda: server.metric("cllm:kv_cache_usage_perc") == 0
                    and server.metric("cllm:num_requests_running") == 0, 10)
    assert wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds0
                    and len(os.listdir(f"/proc/{pid}/task")) <= threads0, 10), \
        (fds0, os.listdir(f"/proc/{pid}/fd"), threads0, len(os.listdir(f"/proc/{pid}/task")))
    print(f"{n} streams in {time.time() - t0:.1f} s")


def test_model_that_fails_to_load_exits_1(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    out = subprocess.run([BIN, "serve", "--model", str(tmp_path), "--port", "0"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert "listening on" in out.stderr and "config.json" in out.stderr
