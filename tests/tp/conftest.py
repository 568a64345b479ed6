"""Helpers for the tensor-parallel end-to-end tests (CPU, several processes).

Environment (set by CTest): CLLM_BIN, CLLM_MODEL_DIR (stories260K),
CLLM_SHARED_DIR.
"""
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyhelpers"))
from cllm_procs import BIN, MODEL_DIR, SHARED, Server, free_port  # noqa: E402,F401

PROMPT = "Once upon a time, there was a little girl"


def generate(extra=(), prompt=PROMPT, max_tokens=48, env=None, model=MODEL_DIR, timeout=120):
    """Greedy `cllm generate`; returns the CompletedProcess."""
    args = [BIN, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(max_tokens),
            "--temperature", "0", "--num-threads", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def children(pid):
    """Direct child pids of pid (the self-launched workers)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def dist_env(rank, world, port, secret, style):
    """The environment a launcher gives rank `rank` (srun or torchrun style)."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("CLLM_DIST_", "OMPI_", "SLURM_", "PMI_")) or k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            del env[k]
    env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "CLLM_DIST_SECRET": secret})
    if style == "srun":
        env.update({"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NTASKS": str(world),
                    "SLURM_STEP_NUM_TASKS": str(world), "SLURM_STEP_TASKS_PER_NODE": str(world),
                    "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "1"})
    else:
        env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": str(world)})
    return env


def new_secret():
    return secrets.token_hex(32)
