"""cllm: an LLM inference engine in C, with vLLM's Python API.

    from cllm import LLM, SamplingParams
    llm = LLM("models/stories260K")
    out = llm.generate(["Once upon a time"], SamplingParams(temperature=0, max_tokens=32))
    print(out[0].outputs[0].text)

LLM (offline generate / chat), SamplingParams, RequestOutput /
CompletionOutput / Logprob, AsyncLLM (asyncio streaming), LLMEngine /
EngineArgs (step-level control), Tokenizer. Errors are CllmError subclasses
that are also the matching builtin (ValueError, OSError, MemoryError).
"""
from ._cllm import CLLM_VERSION as __version__
from ._cllm import CllmError, CllmMemoryError, CllmOSError, CllmValueError
from .async_llm import AsyncEngineArgs, AsyncLLM, EngineDeadError
from .engine import EngineArgs, LLMEngine
from .llm import LLM
from .outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from .sampling_params import RequestOutputKind, SamplingParams
from .tokenizer import Tokenizer

__all__ = [
    "LLM", "SamplingParams", "RequestOutputKind", "RequestOutput", "CompletionOutput", "Logprob", "RequestMetrics",
    "AsyncLLM", "AsyncEngineArgs", "EngineDeadError", "LLMEngine", "EngineArgs", "Tokenizer",
    "CllmError", "CllmValueError", "CllmOSError", "CllmMemoryError", "__version__",
]
