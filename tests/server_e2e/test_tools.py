"""Tool calling in `cllm serve` (vLLM's --enable-auto-tool-choice
--tool-call-parser): request-level rules and CLI errors. stories260K cannot
emit tool calls, so the parsing itself is tested in tests/tools/."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, MODEL_DIR, Server

# a ChatML template that leaves the (long) tool preamble out: stories260K has a
# 256-token context, too short for minimind's tool instructions
SHORT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

# short: stories260K has a 256-token context and the template's tool preamble is long
TOOLS = [{"type": "function", "function": {"name": "f"}}]
MSGS = [{"role": "user", "content": "Hi"}]


def chat(server, **kw):
    body = {"messages": MSGS, "max_tokens": 4, "temperature": 0, **kw}
    st, _, raw = server.request("POST", "/v1/chat/completions", body)
    return st, json.loads(raw) if raw else None


def test_required_needs_structured_outputs(server):
    st, b = chat(server, tools=TOOLS, tool_choice="required")
    assert st == 400, b
    assert b["error"]["param"] == "tool_choice" and "structured outputs" in b["error"]["message"]


def test_named_needs_structured_outputs(server):
    st, b = chat(server, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "f"}})
    assert st == 400, b
    assert "structured outputs" in b["error"]["message"] and "'f'" in b["error"]["message"]


def test_auto_without_flag(server):
    st, b = chat(server, tools=TOOLS, tool_choice="auto")
    assert st == 400, b
    assert b["error"]["message"] == ('"auto" tool choice requires --enable-auto-tool-choice and '
                                     '--tool-call-parser to be set')


@pytest.fixture(scope="module")
def short_model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("stories_short_chat")
    for f in os.listdir(MODEL_DIR):
        shutil.copy(os.path.join(MODEL_DIR, f), d / f)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = SHORT_TEMPLATE
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.fixture(scope="module")
def plain_server(short_model_dir):
    s = Server(model=short_model_dir, extra=("--max-model-len", "256"))
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def tool_server(short_model_dir):
    s = Server(model=short_model_dir,
               extra=("--max-model-len", "256", "--enable-auto-tool-choice", "--tool-call-parser", "hermes"))
    yield s
    assert s.stop() == 0, "".join(s.log)


def test_none_and_unset_still_generate(plain_server):
    for kw in ({"tool_choice": "none"}, {}):
        st, b = chat(plain_server, tools=TOOLS, **kw)
        assert st == 200, b
        m = b["choices"][0]["message"]
        assert isinstance(m["content"], str) and "tool_calls" not in m


def test_auto_with_parser(tool_server):
    """No tool call in the text: plain content, same text as with tool_choice none."""
    st, b = chat(tool_server, tools=TOOLS, tool_choice="auto", n=2)
    assert st == 200, b
    st2, plain = chat(tool_server, tools=TOOLS, tool_choice="none")
    assert st2 == 200, plain
    for c in b["choices"]:
        assert "tool_calls" not in c["message"] and c["finish_reason"] in ("stop", "length")
        assert c["message"]["content"] == plain["choices"][0]["message"]["content"]


def test_auto_streaming_matches(tool_server):
    st, b = chat(tool_server, tools=TOOLS)
    assert st == 200, b
    body = {"messages": MSGS, "max_tokens": 4, "temperature": 0, "tools": TOOLS, "stream": True}
    st, _, raw = tool_server.request("POST", "/v1/chat/completions", body)
    assert st == 200
    frames = [l[6:] for l in raw.decode().split("\n") if l.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == b["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == b["choices"][0]["finish_reason"]
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)


@pytest.mark.parametrize("args,want", [
    (["--enable-auto-tool-choice"], "--tool-call-parser"),
    (["--enable-auto-tool-choice", "--tool-call-parser", "pythonic"], "hermes, llama3_json, mistral"),
])
def test_cli_errors(args, want):
    r = subprocess.run([BIN, "serve", "--model", "models/none", "--port", "0", *args], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert want in r.stderr, r.stderr
