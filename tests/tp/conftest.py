"""Helpers for the tensor-parallel end-to-end tests (CPU, several processes).

Environment (set by CTest): CLLM_BIN, CLLM_MODEL_DIR (stories260K),
CLLM_SHARED_DIR.
"""
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

BIN = os.environ.get("CLLM_BIN", "build/cllm")
MODEL_DIR = os.environ.get("CLLM_MODEL_DIR", "models/stories260K")
SHARED = os.environ.get("CLLM_SHARED_DIR", "../shared")

PROMPT = "Once upon a time, there was a little girl"


def generate(extra=(), prompt=PROMPT, max_tokens=48, env=None, model=MODEL_DIR, timeout=120):
    """Greedy `cllm generate`; returns the CompletedProcess."""
    args = [BIN, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(max_tokens),
            "--temperature", "0", "--num-threads", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def free_port():
    """A free port below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0
    could be taken by another test's listener between this check and the rendezvous binding it."""
    import random
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in [20000, 32000)")


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


class Server:
    """`cllm serve` on a free loopback port."""

    def __init__(self, extra=(), model=MODEL_DIR):
        args = [BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
                "--served-model-name", "stories", "--num-threads", "1", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log = []
        self._port = None
        self._ready = threading.Event()
        for f in (self.proc.stderr, self.proc.stdout):
            threading.Thread(target=self._drain, args=(f,), daemon=True).start()
        if not self._ready.wait(60):
            self.kill()
            raise RuntimeError("cllm serve did not report its port:\n" + "".join(self.log))
        self.url = f"http://127.0.0.1:{self._port}"

    def _drain(self, f):
        for line in f:
            self.log.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self._port = int(m.group(1))
                self._ready.set()

    def health(self, timeout=5):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_healthy(self, timeout=90):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("cllm serve exited:\n" + "".join(self.log))
            try:
                if self.health()[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise RuntimeError("cllm serve never became healthy:\n" + "".join(self.log))

    def post(self, path, body, timeout=60):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path, timeout=30):
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


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
