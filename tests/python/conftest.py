"""Shared fixtures of the Python suite. CTest (tests/python/CMakeLists.txt)
runs it against the build-tree package (PYTHONPATH=build/python) and passes
CLLM_CLI (the `cllm` executable), CLLM_SHARED_DIR and CLLM_SOURCE_DIR."""
import os
import subprocess
import sys

import pytest

SOURCE_DIR = os.environ.get("CLLM_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SHARED_DIR = os.environ.get("CLLM_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
CLI = os.environ.get("CLLM_CLI", os.path.join(SOURCE_DIR, "build", "cllm"))
STORIES = os.path.join(SOURCE_DIR, "models", "stories260K")
BABYLLAMA = os.path.join(SHARED_DIR, "models", "babyllama-tok105")
LLAMA3_TINY = os.path.join(SOURCE_DIR, "tests", "fixtures", "llama3-tiny")


def cli_generate(model, prompt, max_tokens, extra=()):
    """Greedy text of `cllm generate` (stdout: the text and a newline)."""
    out = subprocess.run([CLI, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(max_tokens),
                          "--temperature", "0", *extra], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]


def run_python(code_or_args, timeout=120, **kw):
    """Run a Python subprocess with this suite's environment; returns CompletedProcess."""
    args = [sys.executable] + (["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def llm():
    import cllm

    return cllm.LLM(STORIES, max_model_len=256, device="cpu", num_threads=1)
