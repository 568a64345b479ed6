"""tensor_parallel_size=2 from Python on CPU: the package starts its own
`cllm worker` processes (cllm/bin/cllm; CTest leaves CLLM_WORKER_EXE unset)
and the text equals one rank's; the workers go when the LLM goes."""
import gc
import os
import time

import pytest

from cllm import LLM, SamplingParams
from conftest import BABYLLAMA, STORIES

PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They", "Tom had a red ball"]


def _children():
    """pids of this process's live (not zombie) children."""
    me, kids = os.getpid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == me and stat[0] != "Z":
            kids.append(int(pid))
    return kids


@pytest.mark.parametrize("model", [STORIES, BABYLLAMA])
def test_tp2_equals_tp1(model, capfd):
    assert "CLLM_WORKER_EXE" not in os.environ  # the package finds its own executable
    sp = SamplingParams(temperature=0, max_tokens=40, logprobs=2)
    one = LLM(model, device="cpu", max_model_len=256).generate(PROMPTS, sp, use_tqdm=False)
    before = set(_children())
    llm = LLM(model, device="cpu", max_model_len=256, tensor_parallel_size=2)
    workers = set(_children()) - before
    assert len(workers) == 1  # rank 1
    assert "CLLM_WORKER_EXE" not in os.environ  # set only while the workers start
    llm.generate(PROMPTS[0], sp, use_tqdm=False)
    err = capfd.readouterr().err  # the worker's stderr is ours
    assert "tensor parallel 2 x pipeline parallel 1: 2 ranks" in err, err
    assert "cannot start the parent watch thread" not in err, err
    two = llm.generate(PROMPTS, sp, use_tqdm=False)
    for a, b in zip(one, two):
        assert a.outputs[0].text == b.outputs[0].text
        assert a.outputs[0].token_ids == b.outputs[0].token_ids
        for pa, pb in zip(a.outputs[0].logprobs, b.outputs[0].logprobs):
            assert pa.keys() == pb.keys()
            for t in pa:
                assert pa[t].logprob == pytest.approx(pb[t].logprob, abs=1e-4)
    stats = llm.llm_engine.get_distributed_stats()
    assert {s["rank"] for s in stats if s["name"] == "tp"} == {0, 1}
    assert all(s["ops"]["all_reduce"]["calls"] > 0 for s in stats if s["name"] == "tp")
    llm.llm_engine.check_health()
    del llm, two
    gc.collect()
    deadline = time.time() + 10
    while workers & set(_children()) and time.time() < deadline:
        time.sleep(0.05)
    assert not workers & set(_children()), "the worker outlived its LLM"


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


@pytest.mark.parametrize("model,kwargs", [
    (STORIES, dict(pipeline_parallel_size=2)),
    (STORIES, dict(tensor_parallel_size=2, pipeline_parallel_size=2, pp_micro_batches=3)),
    (os.path.join(FIXTURES, "qwen3moe-tiny"), dict(tensor_parallel_size=2, enable_expert_parallel=True)),
])
def test_pipeline_and_expert_parallel_equal_one_rank(model, kwargs):
    sp = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    one = [o.outputs[0].token_ids for o in LLM(model, device="cpu", max_model_len=256).generate(PROMPTS, sp, use_tqdm=False)]
    llm = LLM(model, device="cpu", max_model_len=256, **kwargs)
    many = [o.outputs[0].token_ids for o in llm.generate(PROMPTS, sp, use_tqdm=False)]
    assert many == one
