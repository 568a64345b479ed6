"""AsyncLLM: streamed deltas add up to LLM.generate's text; cumulative and
final-only outputs; concurrent requests; leaving early aborts; errors."""
import asyncio

import pytest

from cllm import LLM, AsyncLLM, RequestOutputKind, SamplingParams
from conftest import STORIES

PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They", "Tom had a red ball"]


@pytest.fixture(scope="module")
def engine():
    e = AsyncLLM(model=STORIES, device="cpu", max_model_len=256)
    yield e
    e.shutdown()


@pytest.fixture(scope="module")
def reference():
    llm = LLM(STORIES, device="cpu", max_model_len=256)
    return llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=40), use_tqdm=False)


def _params(kind, max_tokens=40, **kw):
    return SamplingParams(temperature=0, max_tokens=max_tokens, output_kind=kind, **kw)


async def _collect(engine, prompt, params, rid):
    return [out async for out in engine.generate(prompt, params, request_id=rid)]


def test_delta_stream_adds_up(engine, reference):
    outs = asyncio.run(_collect(engine, PROMPTS[0], _params(RequestOutputKind.DELTA), "d0"))
    assert len(outs) > 5 and outs[-1].finished and not any(o.finished for o in outs[:-1])
    assert all(o.request_id == "d0" for o in outs)
    text = "".join(c.text for o in outs for c in o.outputs)
    ids = [t for o in outs for c in o.outputs for t in c.token_ids]
    assert text == reference[0].outputs[0].text
    assert ids == reference[0].outputs[0].token_ids
    assert outs[-1].outputs[0].finish_reason == "length"


def test_cumulative_and_final_only(engine, reference):
    cum = asyncio.run(_collect(engine, PROMPTS[1], _params(RequestOutputKind.CUMULATIVE), "c1"))
    texts = [o.outputs[0].text for o in cum]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    assert texts[-1] == reference[1].outputs[0].text and len(cum) > 5
    fin = asyncio.run(_collect(engine, PROMPTS[1], _params(RequestOutputKind.FINAL_ONLY), "f1"))
    assert len(fin) == 1 and fin[0].finished and fin[0].outputs[0].text == texts[-1]


def test_concurrent_requests(engine, reference):
    async def main():
        return await asyncio.gather(*(_collect(engine, p, _params(RequestOutputKind.DELTA), f"r{i}")
                                      for i, p in enumerate(PROMPTS * 2)))
    results = asyncio.run(main())
    for i, outs in enumerate(results):
        assert "".join(c.text for o in outs for c in o.outputs) == reference[i % 4].outputs[0].text


def test_leaving_early_aborts(engine):
    async def main():
        n = 0
        async for _ in engine.generate(PROMPTS[2], _params(RequestOutputKind.DELTA, max_tokens=None, ignore_eos=True),
                                       request_id="early"):
            n += 1
            if n == 3:
                break
        for _ in range(200):  # the abort reaches the engine thread
            if not engine._engine.has_unfinished_requests():
                break
            await asyncio.sleep(0.01)
        return n
    assert asyncio.run(main()) == 3
    assert not engine._engine.has_unfinished_requests()


def test_errors(engine):
    async def too_long():
        return await _collect(engine, "hello " * 300, _params(RequestOutputKind.DELTA), "long")
    with pytest.raises(ValueError, match="maximum context length"):
        asyncio.run(too_long())
    # still serving
    outs = asyncio.run(_collect(engine, PROMPTS[0], _params(RequestOutputKind.FINAL_ONLY, max_tokens=4), "after"))
    assert len(outs[0].outputs[0].token_ids) == 4


def test_shutdown():
    e = AsyncLLM(model=STORIES, device="cpu", max_model_len=64)
    outs = asyncio.run(_collect(e, PROMPTS[0], _params(RequestOutputKind.FINAL_ONLY, max_tokens=4), "x"))
    assert outs[0].finished
    e.shutdown()
    assert not e.is_running
    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(_collect(e, PROMPTS[0], _params(RequestOutputKind.FINAL_ONLY), "y"))
