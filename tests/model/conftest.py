"""Shared helpers for the src/model tests: run the C driver and parse its JSON."""
import json
import os
import subprocess

import pytest

TOOL = os.environ.get("CLLM_MODEL_TOOL", "")
SHARED = os.environ.get("CLLM_SHARED_DIR", "")
DATA = os.environ.get("CLLM_TEST_DATA", os.path.join(os.path.dirname(__file__), "data"))

# cllm_status values (include/cllm.h); the tool exits with the status.
OK, INVALID_ARG, IO, FORMAT, UNSUPPORTED, OOM, NOT_FOUND, NETWORK = 0, 1, 2, 3, 4, 5, 6, 7


def run(*args, env=None, timeout=120):
    """Run model_tool; returns (exit code, parsed JSON stdout). A crash
    (signal) or a sanitizer report (non-status exit code) fails the test."""
    assert TOOL and os.path.exists(TOOL), "set CLLM_MODEL_TOOL to the model_tool binary"
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout)
    assert p.returncode >= 0, f"model_tool crashed (signal {-p.returncode}): {p.stderr[-3000:]}"
    assert p.returncode <= 12, f"model_tool exit {p.returncode} (sanitizer?): {p.stderr[-3000:]}"
    out = p.stdout.strip()
    try:
        js = json.loads(out) if out else None
    except json.JSONDecodeError:
        raise AssertionError(f"bad JSON from model_tool: {out[:2000]!r} stderr={p.stderr[-2000:]}")
    return p.returncode, js


@pytest.fixture
def tool():
    return run
