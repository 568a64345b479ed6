"""Fixtures for the `cllm serve` end-to-end tests (the server process and the
HTTP helpers: tests/pyhelpers/cllm_procs.py).

Environment (set by CTest): CLLM_BIN (the cllm program), CLLM_MODEL_DIR (the
bundled stories260K), CLLM_SHARED_DIR (shared data: the minimind chat template,
reference greedy continuations).
"""
import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyhelpers"))
from cllm_procs import BIN, MODEL_DIR, SHARED, Server, make_slow_model_dir  # noqa: E402,F401


def chat_template():
    with open(os.path.join(SHARED, "tokenizers", "minimind", "tokenizer_config.json")) as f:
        return json.load(f)["chat_template"]


def make_chat_model_dir(d):
    """Copy stories260K into directory d (a pathlib.Path) with minimind's
    (ChatML, Qwen3-style) chat_template added; returns str(d)."""
    for f in os.listdir(MODEL_DIR):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = chat_template()
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory):
    return make_slow_model_dir(tmp_path_factory.mktemp("slow"))


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory):
    """stories260K with minimind's (ChatML, Qwen3-style) chat_template added."""
    return make_chat_model_dir(tmp_path_factory.mktemp("stories_chat"))


@pytest.fixture(scope="session")
def server(chat_model_dir):
    s = Server(chat_model_dir, extra=["--max-model-len", "256", "--max-num-seqs", "16"])
    yield s
    rc = s.stop()
    assert rc == 0, "".join(s.log)


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)
