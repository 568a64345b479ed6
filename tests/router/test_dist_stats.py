"""GET /v1/distributed/stats: on `cllm serve -tp 2`, every rank's collective counts (the tensor-parallel
all-reduces on both ranks, rank 0's commands), engine steps and KV usage; with expert parallelism, the MoE load
per expert and per rank; through `cllm router`, each replica's health, the router's counters and each replica's
own statistics (or why they are missing)."""
import json
import os
import time

from conftest import Replica, Router, free_port, get, post, router_metric, wait_for

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
BODY = {"model": "stories", "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}
OPS = {"all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "recv", "all_to_allv", "barrier"}


def stats(url):
    st, body = get(url, "/v1/distributed/stats")
    assert st == 200, body
    return json.loads(body)


def group(s, rank, name):
    return next((g for g in s["ranks"][rank]["groups"] if g["group"] == name), None)


def test_tensor_parallel_stats_and_router_view():
    rep = Replica(extra=["-tp", "2", "--dist-timeout", "10"])
    single = Replica()
    router = None
    try:
        st, _, body = post(rep.url, "/v1/completions", BODY)
        assert st == 200, body
        usage = json.loads(body)["usage"]
        # the engine thread refreshes every rank's statistics once it goes idle, just after the answer
        wait_for(lambda: all(group(stats(rep.url), r, "tp") and group(stats(rep.url), r, "tp")["ops"]["all_reduce"]
                             ["calls"] > 0 for r in (0, 1)), 10, "both ranks' tp all-reduces")
        s = stats(rep.url)
        assert s["object"] == "distributed_stats" and s["model"] == "stories"
        assert (s["world_size"], s["tensor_parallel_size"], s["pipeline_parallel_size"]) == (2, 2, 1)
        assert [r["rank"] for r in s["ranks"]] == [0, 1] and s["moe"] is None and s["pipeline"] is None
        for r in (0, 1):
            tp = group(s, r, "tp")
            assert (tp["group_rank"], tp["group_size"], tp["transport"]) == (r, 2, "tcp")
            assert set(tp["ops"]) == OPS
            ar = tp["ops"]["all_reduce"]
            assert ar["calls"] > 0 and ar["bytes"] > 0 and ar["seconds"] >= 0
        # the two ranks ran the same collectives
        assert group(s, 0, "tp")["ops"]["all_reduce"]["calls"] == group(s, 1, "tp")["ops"]["all_reduce"]["calls"]
        assert group(s, 0, "world")["ops"]["broadcast"]["calls"] > 0  # rank 0's commands to the worker
        e = s["engine"]
        assert e["num_steps"] >= usage["completion_tokens"] and e["step_seconds_total"] > 0
        assert e["step_ms_max"] >= e["step_ms_mean"] > 0
        assert e["num_kv_blocks"] > 0 and e["num_free_kv_blocks"] == e["num_kv_blocks"] and e["kv_cache_usage"] == 0
        assert e["prompt_tokens_total"] == usage["prompt_tokens"]
        assert e["generation_tokens_total"] == usage["completion_tokens"]
        assert s["collectives_age_seconds"] is not None and s["collectives_age_seconds"] >= 0
        # one rank: no groups, the engine part all the same
        s1 = stats(single.url)
        assert s1["world_size"] == 1 and s1["ranks"] == [{"rank": 0, "groups": []}] and "engine" in s1
        # /load, what least_load polls
        st, body = get(rep.url, "/load")
        assert st == 200 and json.loads(body) == {"num_requests_running": 0, "num_requests_waiting": 0,
                                                  "num_requests_in_flight": 0, "kv_cache_usage": 0.0}
        # the router: each replica's health and statistics, its own counters; a dead replica says why
        dead = f"http://127.0.0.1:{free_port()}"
        router = Router([rep.url, single.url, dead], ["--health-check-interval", "0.2", "--health-check-timeout", "1"])
        router.wait_healthy(check=lambda h: h["healthy_replicas"] == 2)
        for _ in range(2):
            st, _, body = post(router.url, "/v1/completions", BODY)
            assert st == 200, body
        rs = stats(router.url)
        assert rs["object"] == "router_distributed_stats"
        assert rs["router"]["replicas"] == 3 and rs["router"]["healthy_replicas"] == 2
        assert rs["router"]["requests_total"] == 2 and rs["router"]["failures_total"] == 0
        got = {r["url"]: r for r in rs["replicas"]}
        assert got[rep.url]["healthy"] and got[rep.url]["stats"]["world_size"] == 2
        assert got[rep.url]["stats"]["ranks"][1]["groups"], got[rep.url]
        assert got[single.url]["stats"]["world_size"] == 1 and got[single.url]["stats_error"] is None
        assert not got[dead]["healthy"] and got[dead]["stats"] is None and got[dead]["stats_error"], got[dead]
        assert got[rep.url]["requests"] + got[single.url]["requests"] == 2
        assert router.stop() == 0, router.text()
        assert rep.stop() == 0, rep.text()
        assert single.stop() == 0, single.text()
    finally:
        if router:
            router.kill()
        rep.kill()
        single.kill()


def test_expert_parallel_load_per_rank():
    rep = Replica(model=os.path.join(FIXTURES, "qwen3moe-tiny"),
                  extra=["-tp", "2", "--enable-expert-parallel", "--dist-timeout", "10"])
    try:
        st, _, body = post(rep.url, "/v1/completions", {**BODY, "ignore_eos": True})
        assert st == 200, body
        u = json.loads(body)["usage"]
        # one MoE layer, top-2: every forwarded token routes twice (as tests/tp checks on /metrics)
        want = 2 * (u["prompt_tokens"] + u["completion_tokens"] - 1)
        wait_for(lambda: (stats(rep.url)["moe"] or {}).get("tokens_per_expert") and
                 sum(stats(rep.url)["moe"]["tokens_per_expert"]) == want, 10, "the MoE load")
        s = stats(rep.url)
        m = s["moe"]
        assert m["num_experts"] == 8 and len(m["tokens_per_expert"]) == 8 and sum(m["tokens_per_rank"]) == want
        assert [r["moe_tokens"] for r in s["ranks"]] == m["tokens_per_rank"] and all(m["tokens_per_rank"])
        assert m["load_imbalance"] >= 1.0 and s["expert_parallel"] is True
        assert group(s, 0, "tp")["ops"]["all_to_allv"]["calls"] > 0
        assert rep.stop() == 0, rep.text()
    finally:
        rep.kill()


def test_pipeline_bubbles_per_stage():
    rep = Replica(extra=["-pp", "2", "--dist-timeout", "10"])
    try:
        st, _, body = post(rep.url, "/v1/completions", BODY)
        assert st == 200, body
        wait_for(lambda: all(group(stats(rep.url), r, "pp") and group(stats(rep.url), r, "pp")["ops"]["recv"]
                             ["calls"] > 0 for r in (0, 1)), 10, "both stages' pp receives")
        s = stats(rep.url)
        assert (s["world_size"], s["tensor_parallel_size"], s["pipeline_parallel_size"]) == (2, 1, 2)
        stages = s["pipeline"]["stages"]
        assert [(g["stage"], g["ranks"]) for g in stages] == [(0, [0]), (1, [1])], stages
        for g in stages:
            pp = group(s, g["ranks"][0], "pp")
            # the stage's idle time is its receives' time, and it is part of the step time
            assert g["idle_seconds"] == pp["ops"]["recv"]["seconds"] and g["idle_seconds"] > 0, g
            assert 0 < g["bubble_fraction"] <= 1, g
            assert abs(g["bubble_fraction"] - g["idle_seconds"] / s["engine"]["step_seconds_total"]) < 1e-9
        assert s["moe"] is None
        assert rep.stop() == 0, rep.text()
    finally:
        rep.kill()
