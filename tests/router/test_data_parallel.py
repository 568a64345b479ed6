"""`cllm serve --data-parallel-size 2` on one node: two replica processes behind the router in the parent, answers
equal to `cllm generate`, both replicas used; a replica killed is restarted (new pid, reported) and back in the
rotation while every request is answered; the replicas die with the parent (SIGTERM: cleanly; SIGKILL: they
notice); a replica that cannot start stops the parent with its error."""
import json
import signal
import subprocess
import time

from conftest import (BIN, DataParallel, alive, generate, post, router_health, router_metric, wait_for)

PROMPT = "Once upon a time, there was a little girl"
BODY = {"model": "stories", "prompt": PROMPT, "max_tokens": 24, "temperature": 0}


def pids(dp):
    return [r["pid"] for r in router_health(dp)[1]["replica_states"]]


def test_data_parallel_serves_restarts_and_stops():
    ref = generate(PROMPT, 24)
    dp = DataParallel(2, extra=["--health-check-interval", "0.2"])
    try:
        dp.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        first = pids(dp)
        assert all(p and alive(p) for p in first) and first[0] != first[1]
        seen = set()
        for _ in range(4):
            st, hdr, body = post(dp.url, "/v1/completions", BODY)
            assert st == 200 and json.loads(body)["choices"][0]["text"] == ref, body
            seen.add(hdr["X-Cllm-Replica"])
        assert len(seen) == 2, seen
        # kill replica 0: every request is still answered, and it comes back as a new process
        dp_log_before = len(dp.log)
        import os
        os.kill(first[0], signal.SIGKILL)
        for _ in range(8):
            st, _, body = post(dp.url, "/v1/completions", BODY)
            assert st == 200 and json.loads(body)["choices"][0]["text"] == ref, body
        wait_for(lambda: (lambda h: h["replica_states"][0]["healthy"] and h["replica_states"][0]["pid"] not in
                          (None, first[0]))(router_health(dp)[1]), 15, "replica 0 restarted and healthy")
        h = router_health(dp)[1]
        assert h["replica_states"][0]["restarts"] == 1 and h["replica_states"][1]["restarts"] == 0
        assert h["replica_states"][1]["pid"] == first[1]
        log = "".join(dp.log[dp_log_before:])
        assert f"replica 0 (pid {first[0]}) was killed by signal 9" in log and "restarting it in" in log, log
        assert "[dp0] cllm serve: listening on" in log  # the replica's own output comes through, prefixed
        assert router_metric(dp, "cllm:router_replica_restarts_total",
                             type("R", (), {"url": h["replica_states"][0]["url"]})) == 1
        # back in the rotation: it serves again
        seen = set()
        for _ in range(4):
            st, hdr, body = post(dp.url, "/v1/completions", BODY)
            assert st == 200, body
            seen.add(hdr["X-Cllm-Replica"])
        assert len(seen) == 2
        # SIGTERM: the parent stops its replicas and exits 0
        now = pids(dp)
        dp.proc.send_signal(signal.SIGTERM)
        assert dp.proc.wait(30) == 0, dp.text()
        wait_for(lambda: not any(alive(p) for p in now), 5, "the replicas exited with the parent")
        for i, pid in enumerate(now):  # cleanly (under ASan: no leak either)
            assert f"replica {i} (pid {pid}) exited with status 0" in dp.text(), dp.text()
    finally:
        dp.kill()


def test_replicas_die_with_a_killed_parent():
    dp = DataParallel(2, extra=["--health-check-interval", "0.2"])
    try:
        dp.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        kids = pids(dp)
        dp.proc.kill()
        dp.proc.wait(10)
        wait_for(lambda: not any(alive(p) for p in kids), 5, "the replicas noticed their parent is gone")
    finally:
        dp.kill()


def test_replica_that_cannot_start_stops_the_parent(tmp_path):
    r = subprocess.run([BIN, "serve", "--model", str(tmp_path / "missing"), "--data-parallel-size", "2", "--port", "0",
                        "--num-threads", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "data-parallel replica" in last and "before it was ever healthy" in last, r.stderr
    assert "[dp0]" in r.stderr or "[dp1]" in r.stderr  # the replica's own error is shown
