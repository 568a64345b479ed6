"""Dummy weights (vLLM --load-format dummy): deterministic per (seed, name),
independent of the thread count, N(0, 0.02) or 1 + N(0, 0.1) for norms."""
import numpy as np
import pytest

from conftest import INVALID_ARG, OK, UNSUPPORTED, run

SHAPE = (256, 300)


def dummy(seed, dtype, name, shape=SHAPE, threads=None):
    rc, js = run("dummy", seed, dtype, name, *shape, env={"OMP_NUM_THREADS": str(threads)} if threads else None)
    assert rc == OK, js
    return js


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_deterministic_and_thread_independent(dtype):
    a = dummy(7, dtype, "model.layers.0.self_attn.q_proj.weight", threads=1)
    b = dummy(7, dtype, "model.layers.0.self_attn.q_proj.weight", threads=2)
    assert a["hash"] == b["hash"] and a["first"] == b["first"]
    c = dummy(8, dtype, "model.layers.0.self_attn.q_proj.weight")
    d = dummy(7, dtype, "model.layers.0.self_attn.k_proj.weight")
    assert len({a["hash"], c["hash"], d["hash"]}) == 3
    assert a["dtype"] == dtype and a["nbytes"] == np.prod(SHAPE) * (4 if dtype == "float32" else 2)


def test_statistics():
    w = dummy(0, "float32", "model.layers.3.mlp.down_proj.weight")
    assert abs(w["mean"]) < 0.001 and w["std"] == pytest.approx(0.02, rel=0.03)
    n = dummy(0, "float32", "model.layers.3.input_layernorm.weight")
    assert n["mean"] == pytest.approx(1.0, abs=0.01) and n["std"] == pytest.approx(0.1, rel=0.03)


def test_release_and_has():
    w = dummy(0, "bfloat16", "x.weight", shape=(3, 5))
    assert w["live_count"] == 2 and w["live_after_release"] == 1 and not w["has"]
    w = dummy(0, "bfloat16", "scalar", shape=())
    assert w["nbytes"] == 2


def test_bad_dtype():
    rc, js = run("dummy", 0, "bf16", "x", 2)
    assert rc == OK
    rc, js = run("dummy", 0, "int8", "x", 2)
    assert rc == INVALID_ARG  # not a float dtype name at all
    rc, js = run("dummybench", 0, "float32", -5)
    assert rc == INVALID_ARG and "bad shape" in js["error"]


def test_speed():
    """Generation runs at memory speed: prints GB/s (release build: ~2 GB/s per core)."""
    rc, js = run("dummybench", 1, "bfloat16", 20_000_000)
    assert rc == OK
    print(js)
    assert js["GBps"] > 0.05  # sanity only (benchmarks are programs, not timed tests); ~2 GB/s per core in release
