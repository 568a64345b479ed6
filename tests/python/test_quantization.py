"""LLM(quantization="fp8") (vLLM's argument; the engine's --quantization fp8): the layers' linears
quantized to float8_e4m3fn per output channel on load. On the CPU backend the quantized weights run
dequantized, so greedy generation of the trained stories260K stays close to the unquantized model's
(teacher-forced top-1 agreement, the bound set from the C test's measurement 0.91 with margin), also at
tensor_parallel_size 2 (the scales read whole rows, so both layouts hold the same weights and generate
the same tokens); a bad value raises ValueError."""
import pytest

from cllm import LLM, SamplingParams

from conftest import STORIES

PROMPTS = ["Once upon a time", "The little dog", "Lily wanted to", "One day, a boy named Tim went to the park"]


def greedy(llm, prompts, n=32):
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    return [list(o.prompt_token_ids) + list(o.outputs[0].token_ids) for o in outs]


def top1(llm, seqs):
    scored = llm.generate([{"prompt_token_ids": s} for s in seqs],
                          SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=1))
    return [[next(t for t, lp in d.items() if lp.rank == 1) for d in o.prompt_logprobs[1:]] for o in scored]


def test_fp8_close_to_unquantized_and_same_at_tp2():
    ref = LLM(STORIES, device="cpu", num_threads=1, max_model_len=256)
    seqs = greedy(ref, PROMPTS)
    want = top1(ref, seqs)
    q = LLM(STORIES, device="cpu", num_threads=1, max_model_len=256, quantization="fp8")
    got = top1(q, seqs)
    same = sum(a == b for w, g in zip(want, got) for a, b in zip(w, g))
    total = sum(len(w) for w in want)
    print(f"quantization=fp8 teacher-forced top-1 agreement with the unquantized model: {same}/{total}")
    assert same >= 0.8 * total
    gen1 = greedy(q, PROMPTS)
    del q
    q2 = LLM(STORIES, device="cpu", num_threads=1, max_model_len=256, quantization="fp8", tensor_parallel_size=2)
    assert greedy(q2, PROMPTS) == gen1


def test_bad_quantization_value():
    with pytest.raises(ValueError, match="quantization must be one of"):
        LLM(STORIES, device="cpu", quantization="awq")
