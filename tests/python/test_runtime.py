"""The GIL is released while the engine runs; Ctrl-C aborts a generate and
leaves the LLM usable (one rank and two); memory is returned: 50 engines
created and destroyed keep RSS bounded."""
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cllm import LLM, SamplingParams
from conftest import STORIES

LONG = SamplingParams(temperature=0, max_tokens=None, ignore_eos=True)


def test_gil_released_during_generate():
    """With a 1000 s switch interval a thread only gets the GIL when the holder
    releases it; the main thread wakes from its sleep while generate runs in a
    worker thread only if the engine's steps release the GIL."""
    llm = LLM(STORIES, device="cpu", max_model_len=512, num_threads=1)
    done = threading.Event()
    elapsed = []

    def work():
        t0 = time.time()
        llm.generate(["Once upon a time"] * 32, LONG, use_tqdm=False)
        elapsed.append(time.time() - t0)
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        t = threading.Thread(target=work)
        t.start()
        time.sleep(0.05)
        running_when_main_woke = not done.is_set()
    finally:
        sys.setswitchinterval(old)
    t.join()
    assert elapsed[0] > 0.1, "generate too short to tell"
    assert running_when_main_woke, "the main thread waited for the whole generate: the GIL was held"


CTRL_C_SCRIPT = r"""
import os, signal, sys, threading, time
from cllm import LLM, SamplingParams
tp = int(sys.argv[2])
llm = LLM(sys.argv[1], device="cpu", max_model_len=512, tensor_parallel_size=tp, num_threads=1)
short = SamplingParams(temperature=0, max_tokens=20)
ref = llm.generate("Once upon a time", short, use_tqdm=False)[0].outputs[0].text
long = SamplingParams(temperature=0, max_tokens=None, ignore_eos=True)
# as a terminal's Ctrl-C: SIGINT to the whole process group (workers included)
threading.Timer(0.5, lambda: os.killpg(0, signal.SIGINT)).start()
t0 = time.time()
try:
    for _ in range(10000):
        llm.generate(["Once upon a time"] * 32, long, use_tqdm=False)
    print("NOT INTERRUPTED")
    sys.exit(1)
except KeyboardInterrupt:
    print(f"interrupted after {time.time() - t0:.2f} s")
assert not llm.llm_engine.has_unfinished_requests()
again = llm.generate("Once upon a time", short, use_tqdm=False)[0].outputs[0].text
assert again == ref, (again, ref)
stats = llm.llm_engine.get_stats()
assert stats["num_running"] == 0 and stats["num_waiting"] == 0, stats
llm.llm_engine.check_health()
print("OK")
"""


@pytest.mark.parametrize("tp", [1, 2])
def test_ctrl_c_aborts_generate(tp):
    p = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, STORIES, str(tp)], capture_output=True, text=True,
                       timeout=120, start_new_session=True)  # its own process group
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr
    secs = float(p.stdout.split("interrupted after ")[1].split()[0])
    assert 0.4 < secs < 5.0, p.stdout


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_create_destroy_50_times_rss_bounded():
    sp = SamplingParams(temperature=0, max_tokens=8, logprobs=2)

    def cycle():
        llm = LLM(STORIES, device="cpu", max_model_len=256, num_threads=1)
        tok = llm.get_tokenizer()
        out = llm.generate(["Once upon a time", "The dog"], sp, use_tqdm=False)
        assert out[0].outputs[0].text and tok.decode(out[0].outputs[0].token_ids)
        del llm, tok, out
        gc.collect()

    for _ in range(10):  # warm-up: allocator pools, lazily loaded libraries
        cycle()
    base = _rss_bytes()
    keep = LLM(STORIES, device="cpu", max_model_len=256, num_threads=1)
    one_engine = _rss_bytes() - base  # what a leaked engine would cost at least
    del keep
    gc.collect()
    base = _rss_bytes()
    for _ in range(50):
        cycle()
    grown = _rss_bytes() - base
    print(f"one engine: {one_engine / 2**20:.1f} MiB, growth over 50 cycles: {grown / 2**20:.1f} MiB")
    assert one_engine > 512 * 1024, "an engine should cost memory (else this test cannot see a leak)"
    assert grown < max(8 << 20, 5 * one_engine), f"RSS grew {grown / 2**20:.1f} MiB over 50 create/destroy cycles"
