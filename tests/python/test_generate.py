"""LLM.generate against the CLI, the reference continuations and the
engine's own logprobs; n > 1, stop rules, logprobs, parameter errors."""
import json
import math
import os

import pytest

import cllm
from cllm import LLM, SamplingParams
from conftest import BABYLLAMA, LLAMA3_TINY, SHARED_DIR, STORIES, cli_generate

GREEDY = SamplingParams(temperature=0, max_tokens=48)
PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They", "Tom had a red ball"]


@pytest.mark.parametrize("model", [STORIES, BABYLLAMA, LLAMA3_TINY])
def test_greedy_text_equals_cli(model):
    llm = LLM(model, device="cpu", max_model_len=256)
    outs = llm.generate(PROMPTS, GREEDY, use_tqdm=False)
    assert [o.prompt for o in outs] == PROMPTS
    for prompt, out in zip(PROMPTS, outs):
        assert out.finished and len(out.outputs) == 1
        c = out.outputs[0]
        assert c.text == cli_generate(model, prompt, 48, ["--max-model-len", "256"]), prompt
        assert c.finish_reason in ("stop", "length")
        assert len(c.token_ids) == 48 or c.finish_reason == "stop"
        assert out.prompt_token_ids == llm.get_tokenizer().encode(prompt)


@pytest.mark.parametrize("name", ["stories260K", "babyllama-tok105"])
def test_reference_greedy(name):
    """The shared reference continuations (independent numpy forward pass), token for token."""
    model = os.path.join(SHARED_DIR, "models", name)
    with open(os.path.join(model, "reference_greedy.json")) as f:
        cases = json.load(f)["cases"]
    llm = LLM(model, device="cpu")
    outs = llm.generate([{"prompt_token_ids": c["prompt_ids"]} for c in cases],
                        SamplingParams(temperature=0, max_tokens=64, ignore_eos=True), use_tqdm=False)
    texts = llm.generate([c["prompt"] for c in cases], SamplingParams(temperature=0, max_tokens=64, ignore_eos=True),
                         use_tqdm=False)
    for case, out, text_out in zip(cases, outs, texts):
        assert out.prompt is None
        assert out.outputs[0].token_ids == case["greedy_64_ids"], case["prompt"]
        assert text_out.prompt_token_ids == case["prompt_ids"]
        assert text_out.outputs[0].token_ids == case["greedy_64_ids"], case["prompt"]
        assert out.outputs[0].text == text_out.outputs[0].text


def test_token_ids_and_text_prompts_agree(llm):
    tok = llm.get_tokenizer()
    ids = tok.encode(PROMPTS[0])
    a, b, c = llm.generate([PROMPTS[0], ids, {"prompt_token_ids": ids}], GREEDY, use_tqdm=False)
    assert a.outputs[0].token_ids == b.outputs[0].token_ids == c.outputs[0].token_ids
    assert b.prompt is None and b.prompt_token_ids == ids
    # a single list of ids is one prompt; prompt_token_ids= is vLLM's older keyword
    (d,) = llm.generate(ids, GREEDY, use_tqdm=False)
    (e,) = llm.generate(prompt_token_ids=[ids], sampling_params=GREEDY, use_tqdm=False)
    assert d.outputs[0].token_ids == e.outputs[0].token_ids == a.outputs[0].token_ids


def test_one_params_per_prompt(llm):
    ps = [SamplingParams(temperature=0, max_tokens=k) for k in (3, 9)]
    outs = llm.generate(PROMPTS[:2], ps, use_tqdm=False)
    assert [len(o.outputs[0].token_ids) for o in outs] == [3, 9]
    with pytest.raises(ValueError, match="2 sampling_params for 3 prompts"):
        llm.generate(PROMPTS[:3], ps, use_tqdm=False)


def test_n_completions_follow_their_seeds(llm):
    """n=4 at seed s: completion k is sampled as a single request with seed s+k (the engine's fan-out)."""
    sp = SamplingParams(n=4, temperature=1.2, max_tokens=24, seed=1234)
    (out,) = llm.generate(PROMPTS[0], sp, use_tqdm=False)
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    texts = [c.text for c in out.outputs]
    assert len(set(texts)) > 1, texts  # at temperature 1.2 they differ
    for k in range(4):
        (single,) = llm.generate(PROMPTS[0], SamplingParams(temperature=1.2, max_tokens=24, seed=1234 + k),
                                 use_tqdm=False)
        assert single.outputs[0].token_ids == out.outputs[k].token_ids
    (again,) = llm.generate(PROMPTS[0], sp, use_tqdm=False)
    assert [c.text for c in again.outputs] == texts


def test_unseeded_requests_follow_the_llm_seed():
    a = LLM(STORIES, device="cpu", seed=7, max_model_len=128)
    b = LLM(STORIES, device="cpu", seed=7, max_model_len=128)
    sp = SamplingParams(temperature=1.0, max_tokens=20)
    ta = [o.outputs[0].text for o in a.generate(PROMPTS, sp, use_tqdm=False)]
    tb = [o.outputs[0].text for o in b.generate(PROMPTS, sp, use_tqdm=False)]
    assert ta == tb


def test_stop_strings(llm):
    (full,) = llm.generate(PROMPTS[0], GREEDY, use_tqdm=False)
    text = full.outputs[0].text
    stop = "little"
    assert stop in text
    (cut,) = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=48, stop=[stop, "zzz"]), use_tqdm=False)
    c = cut.outputs[0]
    assert c.text == text[: text.index(stop)]
    assert c.finish_reason == "stop" and c.stop_reason == stop
    (inc,) = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=48, stop=stop,
                                                    include_stop_str_in_output=True), use_tqdm=False)
    assert inc.outputs[0].text == text[: text.index(stop) + len(stop)]


def test_stop_token_ids_and_max_tokens_none(llm):
    (full,) = llm.generate(PROMPTS[0], GREEDY, use_tqdm=False)
    ids = full.outputs[0].token_ids
    (cut,) = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=48, stop_token_ids=[ids[5]]),
                          use_tqdm=False)
    c = cut.outputs[0]
    assert c.token_ids == ids[: ids.index(ids[5]) + 1]
    assert c.finish_reason == "stop" and c.stop_reason == ids[5]
    (long,) = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=None, ignore_eos=True),
                           use_tqdm=False)
    assert len(long.prompt_token_ids) + len(long.outputs[0].token_ids) == 256  # up to max_model_len
    assert long.outputs[0].finish_reason == "length"


def test_logprobs(llm):
    k = 3
    (out,) = llm.generate(PROMPTS[1], SamplingParams(temperature=0, max_tokens=12, logprobs=k), use_tqdm=False)
    c = out.outputs[0]
    assert len(c.logprobs) == len(c.token_ids) == 12
    total = 0.0
    for tid, pos in zip(c.token_ids, c.logprobs):
        assert tid in pos and len(pos) == k  # greedy: the sampled token is the top one
        best = max(pos.values(), key=lambda l: l.logprob)
        assert pos[tid] is best and best.rank == 1
        assert sorted(l.rank for l in pos.values()) == [1, 2, 3]
        assert all(l.logprob <= 0 for l in pos.values())
        assert sum(math.exp(l.logprob) for l in pos.values()) <= 1 + 1e-5
        assert pos[tid].decoded_token == llm.get_tokenizer().decode([tid])
        total += pos[tid].logprob
    assert c.cumulative_logprob == pytest.approx(total, rel=1e-6)
    # no logprobs requested: None, as vLLM
    (plain,) = llm.generate(PROMPTS[1], SamplingParams(temperature=0, max_tokens=4), use_tqdm=False)
    assert plain.outputs[0].logprobs is None and plain.outputs[0].cumulative_logprob is None


def test_prompt_logprobs_agree_with_sample_logprobs(llm):
    """The logprob of generated token i equals that token's prompt logprob when
    prompt + output is scored as a prompt (same model, same positions)."""
    (out,) = llm.generate(PROMPTS[2], SamplingParams(temperature=0, max_tokens=8, logprobs=0), use_tqdm=False)
    ids = out.prompt_token_ids + out.outputs[0].token_ids
    (scored,) = llm.generate({"prompt_token_ids": ids}, SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=2),
                             use_tqdm=False)
    plp = scored.prompt_logprobs
    assert len(plp) == len(ids) and plp[0] is None
    assert all(ids[i] in plp[i] for i in range(1, len(ids)))
    n = len(out.prompt_token_ids)
    for j, tid in enumerate(out.outputs[0].token_ids):
        assert plp[n + j][tid].logprob == pytest.approx(out.outputs[0].logprobs[j][tid].logprob, abs=1e-4)


def test_logit_bias(llm):
    """logit_bias: +100 forces a token (keys may be strings, as JSON gives them; biases clamp to 100), -100 bans
    the greedy first token; the logprobs stay raw (not 0 for the forced token)."""
    plain = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True),
                         use_tqdm=False)[0].outputs[0]
    forced = plain.token_ids[1]
    sp = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, logprobs=0, logit_bias={str(forced): 1e9})
    assert sp.logit_bias == {forced: 100.0}
    out = llm.generate(PROMPTS[0], sp, use_tqdm=False)[0].outputs[0]
    assert list(out.token_ids) == [forced] * 4
    assert out.logprobs[2][forced].logprob < -0.01
    out = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True,
                                                  logit_bias={plain.token_ids[0]: -100}), use_tqdm=False)[0].outputs[0]
    assert out.token_ids[0] != plain.token_ids[0]
    with pytest.raises(ValueError, match="logit_bias"):
        SamplingParams(logit_bias={"x": 1.0})


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"top_p": 0.0}, "top_p must be in"),
    ({"n": 0}, "n must be at least 1"),
    ({"logprobs": 21}, "logprobs must be"),
    ({"presence_penalty": 5.0}, "presence_penalty"),
    ({"min_tokens": 8, "max_tokens": 4}, "min_tokens"),
    ({"max_tokens": 0}, "max_tokens must be at least 1"),
])
def test_bad_sampling_params_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_engine_side_errors(llm):
    with pytest.raises(ValueError, match="maximum context length is 256"):
        llm.generate("hello " * 300, GREEDY, use_tqdm=False)
    with pytest.raises(cllm.CllmValueError, match="stop_token_ids") as e:
        llm.generate(PROMPTS[0], SamplingParams(stop_token_ids=[10**6]), use_tqdm=False)
    assert e.value.status == "CLLM_ERR_INVALID_ARG"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        llm.generate([[1, 10**6]], GREEDY, use_tqdm=False)
    with pytest.raises(ValueError, match="logit_bias: token id 1000000 is not in the vocabulary"):
        llm.generate(PROMPTS[0], SamplingParams(logit_bias={10**6: 2.0}), use_tqdm=False)
    with pytest.raises(NotImplementedError):
        SamplingParams(allowed_token_ids=[1, 2])
    assert not llm.llm_engine.has_unfinished_requests()
    # the engine still works after the errors
    assert llm.generate(PROMPTS[0], GREEDY, use_tqdm=False)[0].outputs[0].text


def test_engine_argument_errors():
    with pytest.raises(OSError) as e:
        LLM("/nonexistent/model/dir", device="cpu")
    assert isinstance(e.value, cllm.CllmError)
    with pytest.raises(ValueError, match="pipeline_parallel_size"):
        LLM(STORIES, pipeline_parallel_size=0)
    with pytest.raises(ValueError, match="needs a mixture-of-experts model"):
        LLM(STORIES, device="cpu", tensor_parallel_size=2, enable_expert_parallel=True)
    with pytest.raises(TypeError):
        LLM(STORIES, no_such_argument=1)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        LLM(STORIES, device="cpu", max_model_len=1 << 20)
    with pytest.raises(ValueError, match="dtype"):
        LLM(STORIES, dtype="int3")
    with pytest.raises(ValueError, match="tensor.parallel.size 3 does not divide"):
        LLM(STORIES, device="cpu", tensor_parallel_size=3)  # 3 does not divide the heads: the engine says so
