"""Each program of examples/ runs on the CPU and prints what it should."""
import ast
import os
import re

import pytest

from cllm import LLM, SamplingParams
from conftest import SOURCE_DIR, STORIES, run_python

EXAMPLES = os.path.join(SOURCE_DIR, "examples")


def _run(name, *args):
    p = run_python([os.path.join(EXAMPLES, name), "--device", "cpu", *args], timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _generated(stdout):
    """{prompt: text} of the 'Prompt: ..., Generated text: ...' lines."""
    pairs = re.findall(r"^Prompt: ('.*?'|\".*?\"), Generated text: (.*)$", stdout, re.M)
    return {ast.literal_eval(p): ast.literal_eval(t) for p, t in pairs}


@pytest.fixture(scope="module")
def greedy():
    llm = LLM(STORIES, device="cpu")
    outs = llm.generate(["Once upon a time", "The little dog"], SamplingParams(temperature=0, max_tokens=12),
                        use_tqdm=False)
    return {o.prompt: o.outputs[0].text for o in outs}


def test_offline_inference():
    got = _generated(_run("offline_inference.py", "--max-tokens", "12"))
    assert len(got) == 3 and all(got.values())


def test_tensor_parallel(greedy):
    out = _run("tensor_parallel.py", "--max-tokens", "12", "--tensor-parallel-size", "2")
    assert _generated(out) == greedy  # two ranks give the one-rank greedy text
    assert re.search(r"^rank 0: \d+ all-reduces", out, re.M) and re.search(r"^rank 1: \d+ all-reduces", out, re.M)


def test_chat():
    out = _run("chat.py", "--max-tokens", "8")
    assert "Prompt: '<s>System: You tell short stories.\\nUser: Tell me about a dog.\\nAssistant:'" in out
    assert len(re.findall(r"^Reply: '.+'$", out, re.M)) == 3


def test_streaming(greedy):
    out = _run("streaming.py", "--max-tokens", "12")
    assert _generated(out) == greedy
    deltas = re.findall(r"^\[req-0\] (.*)$", out, re.M)
    assert len(deltas) > 3 and "".join(ast.literal_eval(d) for d in deltas) == greedy["Once upon a time"]
