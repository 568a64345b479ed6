"""`cllm serve` applies the model's generation_config.json sampling defaults to
requests that leave those fields unset (vLLM's default `--generation-config
auto`); fields given in the request win. Truth: the reference greedy
continuation of stories260K (independent numpy forward pass)."""
import json
import os
import shutil

import pytest
from conftest import MODEL_DIR, SHARED, Server

REF = os.path.join(SHARED, "models", "stories260K", "reference_greedy.json")


def reference_case():
    with open(REF) as f:
        return json.load(f)["cases"][1]  # "Once upon a time, a big dog"


def model_with_generation_config(tmp_path, extra):
    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    gc = json.loads((d / "generation_config.json").read_text())
    gc.update(extra)
    (d / "generation_config.json").write_text(json.dumps(gc))
    return str(d)


def complete(server, **fields):
    case = reference_case()
    body = {"model": "stories", "prompt": case["prompt"], "max_tokens": 64, "ignore_eos": True}
    body.update(fields)
    st, _, out = server.request("POST", "/v1/completions", body)
    assert st == 200, out
    return json.loads(out)["choices"][0]["text"]


@pytest.fixture
def served(tmp_path, request):
    s = Server(model_with_generation_config(tmp_path, request.param), extra=["--max-model-len", "128"])
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("served", [{"temperature": 0.0}], indirect=True)
def test_generation_config_temperature_zero_is_greedy(served):
    greedy = reference_case()["greedy_64_text"]
    # no temperature in the request: generation_config's 0.0 applies (default would be 1.0)
    assert all(complete(served, seed=s) == greedy for s in range(3))
    # the request's own temperature wins
    sampled = [complete(served, temperature=1.0, seed=s) for s in range(4)]
    assert any(t != greedy for t in sampled)


@pytest.mark.parametrize("served", [{"top_k": 1, "temperature": 1.0}], indirect=True)
def test_generation_config_top_k(served):
    greedy = reference_case()["greedy_64_text"]
    # top_k 1 from generation_config makes sampling greedy whatever the seed
    assert all(complete(served, seed=s) == greedy for s in range(3))
    # an explicit top_k -1 (disabled) overrides it
    assert any(complete(served, top_k=-1, seed=s) != greedy for s in range(4))


def test_no_sampling_fields_keeps_openai_defaults(tmp_path):
    """The bundled generation_config.json names no sampling field: temperature
    stays 1.0, so seeded samples differ from the greedy text."""
    s = Server(model_with_generation_config(tmp_path, {}), extra=["--max-model-len", "128"])
    try:
        greedy = reference_case()["greedy_64_text"]
        assert any(complete(s, seed=k) != greedy for k in range(4))
    finally:
        assert s.stop() == 0, "".join(s.log)
