"""`cllm router` over two `cllm serve` replicas: each policy places requests as it says (asserted on the replicas'
own request counters), answers equal `cllm generate`'s greedy text, streams pass through event by event, client
errors pass through unchanged, the API key is checked and forwarded."""
import json

import pytest

from conftest import (Replica, Router, Stream, check_events, generate, get, metric_sum, post, router_health, served,
                      router_metric, slow_model_dir, wait_for)

PROMPT = "Once upon a time, there was a little girl"
BODY = {"model": "stories", "prompt": PROMPT, "max_tokens": 24, "temperature": 0}


@pytest.fixture(scope="module")
def replicas():
    reps = [Replica(), Replica()]
    yield reps
    for r in reps:
        assert r.stop() == 0, r.text()


def test_round_robin_spreads_and_answers_like_generate(replicas):
    ref = generate(PROMPT, 24)
    router = Router([r.url for r in replicas], ["--health-check-interval", "0.3"])
    try:
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        before = [served(r) for r in replicas]
        seen = []
        for _ in range(6):
            st, hdr, body = post(router.url, "/v1/completions", BODY)
            assert st == 200, body
            assert json.loads(body)["choices"][0]["text"] == ref
            seen.append(hdr["X-Cllm-Replica"])
        assert [served(r) - b for r, b in zip(replicas, before)] == [3, 3]
        assert seen[0::2] == [replicas[0].url] * 3 and seen[1::2] == [replicas[1].url] * 3, seen
        # a stream comes through event by event and says the same
        s = Stream(router.url, BODY)
        assert s.status == 200 and s.replica in (replicas[0].url, replicas[1].url)
        text, errors, done = check_events(s.rest())
        assert text == ref and not errors and done
        assert len(s.events) > 10  # one event per token, not one blob
        # the router's own counters agree (6 + 1 attempts, no failure)
        assert sum(router_metric(router, "cllm:router_requests_total", r) for r in replicas) == 7
        assert metric_sum(router.url, "cllm:router_request_failures_total") == 0
        assert metric_sum(router.url, "cllm:router_request_latency_seconds_count") == 7
        # the other routes go to a replica too
        st, body = get(router.url, "/v1/models")
        assert st == 200 and json.loads(body)["data"][0]["id"] == "stories"
        st, _, body = post(router.url, "/tokenize", {"model": "stories", "prompt": "Once upon"})
        assert st == 200 and json.loads(body)["count"] == 3, body
        # a client error passes through as the replica answered it, without a retry
        st, _, body = post(router.url, "/v1/completions", {**BODY, "max_tokens": -5})
        assert st == 400 and json.loads(body)["error"]["param"] == "max_tokens", body
        assert metric_sum(router.url, "cllm:router_request_retries_total") == 0
        # the router's /health lists both replicas
        st, h = router_health(router)
        assert st == 200 and h["healthy_replicas"] == 2 and h["policy"] == "round_robin"
        assert [x["url"] for x in h["replica_states"]] == [r.url for r in replicas]
        assert router.stop() == 0, router.text()
    finally:
        router.kill()


def test_prefix_aware_keeps_a_prefix_on_one_replica(replicas):
    router = Router([r.url for r in replicas], ["--policy", "prefix_aware", "--prefix-bytes", "96",
                                                "--health-check-interval", "0.3", "--load-poll-interval", "0.1"])
    try:
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        shared = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park "
                  "with her friends and her dog.")
        before = [served(r) for r in replicas]
        hits0 = [metric_sum(r.url, "cllm:prefix_cache_hits_total") for r in replicas]
        homes = set()
        for tail in (" One day", " Every morning", " Then she saw", " But the sun"):
            st, hdr, body = post(router.url, "/v1/completions", {**BODY, "prompt": shared + tail, "max_tokens": 4})
            assert st == 200, body
            homes.add(hdr["X-Cllm-Replica"])
        assert len(homes) == 1, homes
        delta = [served(r) - b for r, b in zip(replicas, before)]
        home = [r.url for r in replicas].index(homes.pop())
        assert delta[home] == 4 and delta[1 - home] == 0, delta
        # the later requests found the shared prefix's KV blocks cached on that replica
        assert metric_sum(replicas[home].url, "cllm:prefix_cache_hits_total") > hits0[home]
        # other prefixes spread: some prefix lands on the other replica (rendezvous hashing; 24 tries)
        other = None
        for k in range(24):
            st, hdr, body = post(router.url, "/v1/completions",
                                 {**BODY, "prompt": f"Story number {k}: a bird and a cat were friends. " * 3,
                                  "max_tokens": 2})
            assert st == 200, body
            if hdr["X-Cllm-Replica"] != replicas[home].url:
                other = k
                break
        assert other is not None, "24 different prefixes all went to one replica"
        assert router.stop() == 0, router.text()
    finally:
        router.kill()


def test_least_load_avoids_the_busy_replica(tmp_path):
    slow = slow_model_dir(tmp_path)
    reps = [Replica(model=slow, extra=["--load-format", "dummy"]),
            Replica(model=slow, extra=["--load-format", "dummy"])]
    router = None
    streams = []
    try:
        router = Router([r.url for r in reps], ["--policy", "least_load", "--health-check-interval", "0.3",
                                                "--load-poll-interval", "0.05"])
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        # replica 0 gets two long streams from another client, not through the router
        long = {"model": "stories", "prompt": "Once", "max_tokens": 600, "ignore_eos": True, "temperature": 0}
        streams = [Stream(reps[0].url, long, timeout=60) for _ in range(2)]
        for s in streams:
            assert s.next_event() is not None
        wait_for(lambda: router_health(router)[1]["replica_states"][0]["running"] == 2, 10,
                 "the router sees replica 0's two running requests")
        before = [served(r) for r in reps]
        for _ in range(4):
            st, hdr, body = post(router.url, "/v1/completions", {**BODY, "max_tokens": 4})
            assert st == 200, body
            assert hdr["X-Cllm-Replica"] == reps[1].url
        after = [served(r) for r in reps]
        assert after[1] - before[1] == 4 and after[0] - before[0] == 0, (before, after)
        assert metric_sum(reps[0].url, "cllm:num_requests_running") == 2  # the streams were still running
        assert router.stop() == 0, router.text()
    finally:
        for s in streams:
            s.conn.close()
        if router:
            router.kill()
        for r in reps:
            r.kill()


def test_api_key_checked_and_forwarded():
    rep = Replica(extra=["--api-key", "sekret"])
    router = Router([rep.url], ["--api-key", "sekret", "--health-check-interval", "0.3"])
    try:
        router.wait_healthy()
        st, _, body = post(router.url, "/v1/completions", BODY)
        assert st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
        st, _, body = post(router.url, "/v1/completions", BODY, headers={"Authorization": "Bearer sekret"})
        assert st == 200, body
        assert served(rep) == 1
        assert router.stop() == 0, router.text()
        assert rep.stop() == 0, rep.text()
    finally:
        router.kill()
        rep.kill()


def test_no_healthy_replica():
    from conftest import free_port
    router = Router([f"127.0.0.1:{free_port()}"], ["--health-check-interval", "0.2"])
    try:
        wait_for(lambda: router_health(router)[1]["replica_states"][0]["last_error"] != "not checked yet", 5,
                 "a health check ran")
        st, h = router_health(router)
        assert st == 503 and h["healthy_replicas"] == 0 and h["error"]["type"] == "service_unavailable"
        assert "connect" in h["replica_states"][0]["last_error"].lower(), h
        st, hdr, body = post(router.url, "/v1/completions", BODY)
        assert st == 503 and "no replica is healthy" in json.loads(body)["error"]["message"]
        assert hdr.get("Retry-After") == "1"
        assert metric_sum(router.url, "cllm:router_requests_unrouted_total") == 1
        assert router.stop() == 0, router.text()
    finally:
        router.kill()
