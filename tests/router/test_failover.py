"""A replica killed mid-run behind `cllm router`: every request is still answered (the non-streaming one that was
running there is retried on the other replica), the stream cut mid-way ends with an OpenAI error event and
`data: [DONE]` (never half an event, never a hang), the stream on the other replica is untouched, the router's
/health shows the replica down; restarted on its port, it is back in the rotation within the health interval."""
import json
import os
import signal
import threading
import time

from conftest import (Replica, Router, Stream, check_events, metric_sum, post, router_health, router_metric, served,
                      slow_model_dir, wait_for)

LONG = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True, "temperature": 0}
MID = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 120, "ignore_eos": True, "temperature": 0}


def test_replica_killed_mid_run_then_restarted(tmp_path):
    slow = slow_model_dir(tmp_path)
    extra = ["--load-format", "dummy"]
    reps = [Replica(model=slow, extra=extra), Replica(model=slow, extra=extra)]
    router = None
    try:
        router = Router([r.url for r in reps], ["--health-check-interval", "0.3", "--health-check-timeout", "2"])
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        # one stream and one long non-streaming request on each replica (round robin alternates)
        streams = [Stream(router.url, LONG, timeout=60) for _ in range(2)]
        assert sorted(s.replica for s in streams) == sorted(r.url for r in reps)
        for s in streams:
            assert s.next_event() is not None  # tokens are flowing
        results = [None, None]

        def run(i):
            results[i] = post(router.url, "/v1/completions", MID, timeout=60)

        threads = []
        for i in range(2):
            threads.append(threading.Thread(target=run, args=(i,)))
            threads[-1].start()
            wait_for(lambda: metric_sum(router.url, "cllm:router_requests_in_flight") == 3 + i, 5,
                     f"non-streaming request {i} in flight")
        victim, survivor = reps[0], reps[1]
        wait_for(lambda: router_metric(router, "cllm:router_requests_in_flight", victim) == 2, 5,
                 "the victim holds a stream and a non-streaming request")
        t0 = time.time()
        victim.kill(signal.SIGKILL)
        # the stream on the victim ends with an error event and [DONE]; the other one finishes normally
        for s in streams:
            text, errors, done = check_events(s.rest())
            assert done, s.events[-3:]
            if s.replica == victim.url:
                assert len(errors) == 1 and errors[0]["type"] == "service_unavailable", errors
                assert victim.url in errors[0]["message"], errors
            else:
                assert not errors, (errors, s.events[-3:])  # the survivor's stream must not be cut
                last = json.loads(s.events[-2])["choices"][0]
                assert not errors and last["finish_reason"] == "length", (errors, last)
        assert time.time() - t0 < 30
        # both non-streaming requests are answered in full (the victim's one retried on the survivor)
        for t in threads:
            t.join(60)
        for st, hdr, body in results:
            assert st == 200, body
            assert json.loads(body)["usage"]["completion_tokens"] == MID["max_tokens"]
            assert hdr["X-Cllm-Replica"] == survivor.url or hdr["X-Cllm-Replica"] == victim.url
        assert [hdr["X-Cllm-Replica"] for _, hdr, _ in results].count(survivor.url) == 2
        assert router_metric(router, "cllm:router_request_retries_total", survivor) >= 1
        assert router_metric(router, "cllm:router_request_failures_total", victim) >= 2
        # the router shows it down and routes everything to the survivor
        st, h = router_health(router)
        assert st == 200 and h["healthy_replicas"] == 1
        down = h["replica_states"][0]
        assert not down["healthy"] and down["last_error"], down
        before = served(survivor)
        for _ in range(4):
            st, hdr, body = post(router.url, "/v1/completions", {**MID, "max_tokens": 2})
            assert st == 200 and hdr["X-Cllm-Replica"] == survivor.url, body
        assert served(survivor) - before == 4
        # restarted on its port: back in the rotation within the health interval (+ its start)
        reps[0] = victim.restart()
        back = wait_for(lambda: router_health(router)[1]["replica_states"][0]["healthy"], 10, "the victim is back")
        assert back < 2.0, back
        before = [served(r) for r in reps]
        for _ in range(4):
            st, _, body = post(router.url, "/v1/completions", {**MID, "max_tokens": 2})
            assert st == 200, body
        assert [served(r) - b for r, b in zip(reps, before)] == [2, 2]
        assert router.stop() == 0, router.text()
        for r in reps:
            assert r.stop() == 0, r.text()
    finally:
        if router:
            router.kill()
        for r in reps:
            r.kill()


def test_hung_replica_is_failed_over(tmp_path):
    """A replica that stops answering (SIGSTOP: its sockets stay open) fails its health check by timeout: the
    request running there is retried elsewhere instead of hanging."""
    slow = slow_model_dir(tmp_path)
    extra = ["--load-format", "dummy"]
    reps = [Replica(model=slow, extra=extra), Replica(model=slow, extra=extra)]
    router = None
    try:
        router = Router([r.url for r in reps], ["--health-check-interval", "0.2", "--health-check-timeout", "0.5"])
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        result = []
        th = threading.Thread(target=lambda: result.append(post(router.url, "/v1/completions", MID, timeout=60)))
        th.start()  # round robin: the first request goes to replica 0
        wait_for(lambda: router_metric(router, "cllm:router_requests_in_flight", reps[0]) == 1, 5, "in flight")
        os.kill(reps[0].proc.pid, signal.SIGSTOP)
        try:
            th.join(30)
            assert result, "the request hung"
            st, hdr, body = result[0]
            assert st == 200 and hdr["X-Cllm-Replica"] == reps[1].url, body
            assert json.loads(body)["usage"]["completion_tokens"] == MID["max_tokens"]
            st, h = router_health(router)
            assert not h["replica_states"][0]["healthy"] and "timed out" in h["replica_states"][0]["last_error"].lower()
        finally:
            os.kill(reps[0].proc.pid, signal.SIGCONT)
        wait_for(lambda: router_health(router)[1]["replica_states"][0]["healthy"], 5, "back after SIGCONT")
        assert router.stop() == 0, router.text()
    finally:
        if router:
            router.kill()
        for r in reps:
            r.kill()


class _BusyReplica:
    """A fake replica on loopback whose /health stops answering in time while a stream is running (a busy server),
    though the stream's events keep coming every 50 ms."""

    def __init__(self, events=60, every=0.05, health_delay=3.0):
        import http.server
        outer = self
        self.streaming = threading.Event()

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/health" and outer.streaming.is_set():
                    time.sleep(health_delay)
                body = b'{"status":"ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.streaming.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                for i in range(events):
                    fin = "length" if i == events - 1 else None
                    ev = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "stories",
                          "choices": [{"index": 0, "text": "a", "finish_reason": fin}]}
                    self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(every)
                self.wfile.write(b"data: [DONE]\n\n")
                outer.streaming.clear()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_busy_replica_keeps_its_streams():
    """A health check that times out on a replica whose stream is still sending events (a busy process, not a hung
    one) takes it out of the rotation but does not cut the stream: it ends normally. (Under a heavily loaded machine
    such a timeout once cut the survivor's stream in the test above.)"""
    rep = _BusyReplica()
    router = None
    try:
        router = Router([rep.url], ["--health-check-interval", "0.1", "--health-check-timeout", "0.3"])
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 1)
        s = Stream(router.url, {**MID, "max_tokens": 60}, timeout=30)
        assert s.status == 200 and s.replica == rep.url
        wait_for(lambda: not router_health(router)[1]["replica_states"][0]["healthy"], 5,
                 "the replica's /health timed out")
        text, errors, done = check_events(s.rest())
        assert done and not errors and text == "a" * 60, (errors, s.events[-3:])
        assert json.loads(s.events[-2])["choices"][0]["finish_reason"] == "length"
        st, h = router_health(router)
        assert "timed out" in h["replica_states"][0]["last_error"].lower() or h["replica_states"][0]["healthy"], h
        assert router.stop() == 0, router.text()
    finally:
        if router:
            router.kill()
        rep.close()


def test_retry_limits():
    """--max-rpc-retries 0 (or an --rpc-timeout already passed): a request whose replica refuses the connection is
    answered 502 naming it, not retried; with retries it is answered by the other replica. Either way the replica
    leaves the rotation at once (before its next health check)."""
    for flags, want in ((["--max-rpc-retries", "0"], 502), (["--rpc-timeout", "0"], 502), ([], 200)):
        reps = [Replica(), Replica()]
        router = Router([r.url for r in reps], ["--health-check-interval", "60", *flags])
        try:
            router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
            reps[0].kill()  # the router does not know yet: its next check is a minute away
            st, hdr, body = post(router.url, "/v1/completions", {**MID, "max_tokens": 2})  # round robin: replica 0
            assert st == want, body
            if want == 502:
                err = json.loads(body)["error"]
                assert reps[0].url in err["message"] and "connect" in err["message"].lower(), err
                assert router_metric(router, "cllm:router_request_retries_total", reps[1]) == 0
            else:
                assert hdr["X-Cllm-Replica"] == reps[1].url
                assert router_metric(router, "cllm:router_request_retries_total", reps[1]) == 1
            st, h = router_health(router)
            assert st == 200 and not h["replica_states"][0]["healthy"], h
            st, hdr, body = post(router.url, "/v1/completions", {**MID, "max_tokens": 2})
            assert st == 200 and hdr["X-Cllm-Replica"] == reps[1].url, body
            assert router.stop() == 0, router.text()
        finally:
            router.kill()
            for r in reps:
                r.kill()
