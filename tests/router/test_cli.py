"""Bad flags of `cllm router` and `cllm serve --data-parallel-size`: one line naming the flag, a non-zero exit,
nothing started; --dry-run prints the data-parallel plan with each replica's GPUs."""
import os
import subprocess

import pytest

from conftest import BIN, MODEL_DIR


def run(args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("args, rc, words", [
    (["router"], 2, "--worker-urls"),
    (["router", "--worker-urls"], 2, "--worker-urls"),
    (["router", "--worker-urls", "127.0.0.1:1", "--policy", "random"], 2, "round_robin, least_load or prefix_aware"),
    (["router", "--worker-urls", "127.0.0.1:1", "--max-rpc-retries", "-1"], 2, "--max-rpc-retries"),
    (["router", "--worker-urls", "127.0.0.1:1", "--health-check-interval", "0"], 2, "--health-check-interval"),
    (["router", "--worker-urls", "127.0.0.1:1", "--bogus", "1"], 2, "unknown flag '--bogus'"),
    (["router", "--worker-urls", "ftp://127.0.0.1:1", "--port", "0"], 1, "ftp://127.0.0.1:1"),
    (["router", "--worker-urls", "http://127.0.0.1:1/v1", "--port", "0"], 1, "no path"),
    (["router", "--worker-urls", "127.0.0.1:1", "http://127.0.0.1:1/", "--port", "0"], 1, "twice"),
    (["serve", "--model", MODEL_DIR, "--data-parallel-size", "0"], 2, "--data-parallel-size"),
    (["serve", "--model", MODEL_DIR, "-dp"], 2, "-dp needs a value"),
    (["serve", "--model", MODEL_DIR, "--policy", "least_load"], 2, "--data-parallel-size"),
    (["serve", "--model", MODEL_DIR, "-dp", "2", "--listen-fd", "3"], 2, "exclude each other"),
    (["serve", "--model", MODEL_DIR, "-dp", "2", "--policy", "nope"], 2, "--policy 'nope'"),
])
def test_bad_flags(args, rc, words):
    r = run(args)
    assert r.returncode == rc, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    assert "listening" not in r.stderr


def test_dry_run_plan_with_gpus():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    r = run(["serve", "--model", MODEL_DIR, "-dp", "2", "--device", "cuda", "-tp", "2", "--dry-run", "--port", "9000"],
            env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "over 2 data-parallel replicas" in out[0] and ":9000" in out[0]
    assert "replica 0: CUDA_VISIBLE_DEVICES=4,5 cllm serve --model" in out[1] and "-tp 2" in out[1]
    assert "replica 1: CUDA_VISIBLE_DEVICES=6,7 cllm serve" in out[2]
    assert "--port 9000" not in r.stdout.split("\n", 1)[1]  # the replicas get their own sockets
    env["CUDA_VISIBLE_DEVICES"] = "4,5,6"
    r = run(["serve", "--model", MODEL_DIR, "-dp", "2", "--device", "cuda", "-tp", "2", "--dry-run"], env)
    assert r.returncode == 1 and "lists 3 device(s)" in r.stdout, r.stdout


def test_dry_run_plan_passes_the_registry_on():
    # the replicas resolve NAME themselves: they need the same --registry file
    registry = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "models.yaml")
    r = run(["serve", "qwen3-8b", "--registry", registry, "-dp", "2", "--device", "cpu", "--dry-run"])
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    for line in out[1:3]:
        assert "cllm serve qwen3-8b" in line and f"--registry {registry}" in line, r.stdout
