"""``EngineArgs`` and ``LLMEngine``: vLLM's engine interface over cllm's C
engine (``cllm._cllm.Engine``). ``LLM`` and ``AsyncLLM`` are built on it.

LLMEngine turns the C engine's per-step deltas into vLLM ``RequestOutput``
objects: it keeps each request's prompt, text, token ids and logprobs, and
emits cumulative, delta or final-only outputs as the request's
``SamplingParams.output_kind`` says. It is not thread-safe (like vLLM's): one
thread drives it; AsyncLLM gives it a thread of its own.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from . import _cllm
from .outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from .sampling_params import RequestOutputKind, SamplingParams
from .tokenizer import Tokenizer

_DTYPES = {"auto": 0, "float32": 1, "float": 1, "bfloat16": 2, "float16": 3, "half": 3}
_DEVICES = {"cpu": 0, "cuda": 1}
_LOAD_FORMATS = {"auto": 0, "safetensors": 0, "dummy": 1}
_KV_CACHE_DTYPES = {"auto": 0, "fp8": 11, "fp8_e4m3": 11}  # cllm_dtype: AUTO, F8_E4M3
_QUANTIZATIONS = {"None": 0, "fp8": 1}  # cllm_quantization: NONE, FP8

# A prompt: text, token ids, or vLLM's TextPrompt / TokensPrompt dicts.
PromptType = Union[str, List[int], Dict[str, Any]]


def worker_executable() -> Optional[str]:
    """The `cllm` executable tensor-parallel workers run: $CLLM_WORKER_EXE if
    set, else the one shipped inside this package (cllm/bin/cllm), else None."""
    env = os.environ.get("CLLM_WORKER_EXE")
    if env:
        return env
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "cllm")
    return exe if os.access(exe, os.X_OK) else None


@dataclass
class EngineArgs:
    """Engine arguments, vLLM's names (see include/cllm.h cllm_engine_params).

    model: a directory or ORG/NAME (Hugging Face cache, then the Hub).
    device: "auto" (CUDA when the NVIDIA driver lists a GPU and cllm was built
    with CUDA, else CPU), "cpu" or "cuda". dtype: "auto" (CPU float32, CUDA bfloat16),
    "float32", "bfloat16", "float16". seed: dummy weights, and the sampling
    seed of requests that give none (reproducible runs, as vLLM's).
    max_num_seqs: None = 32 on CPU, 256 on CUDA. tensor_parallel_size x
    pipeline_parallel_size ranks (self-launched `cllm worker` processes);
    pp_micro_batches: micro-batches per step along the pipeline (None:
    pipeline_parallel_size). enable_expert_parallel: MoE experts spread whole
    over the tensor-parallel ranks. dist_timeout_s: seconds a collective or
    worker may stay silent. num_threads: CPU threads per rank (None: all).
    kv_cache_memory_bytes: KV-cache bytes per rank instead of profiling.
    kv_cache_dtype: "auto" (the activation dtype) or "fp8" / "fp8_e4m3"
    (float8_e4m3fn KV cache, one byte per element, scaled by the checkpoint's
    k_scale / v_scale, 1.0 when absent; CPU and CUDA).
    quantization: None or "fp8" (vLLM's): the layers' linears of a float
    checkpoint quantized to float8_e4m3fn per output channel on load; CUDA
    keeps them in FP8 (W8A8 GEMMs), the CPU runs them dequantized.
    """

    model: str
    tokenizer: Optional[str] = None
    revision: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    load_format: str = "auto"
    seed: Optional[int] = 0
    max_model_len: Optional[int] = None
    block_size: int = 16
    kv_cache_dtype: str = "auto"
    quantization: Optional[str] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks_override: Optional[int] = None
    kv_cache_memory_bytes: Optional[int] = None
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    pp_micro_batches: Optional[int] = None
    enable_expert_parallel: bool = False
    dist_timeout_s: float = 60.0
    num_threads: Optional[int] = None
    trust_remote_code: bool = False
    tokenizer_mode: str = "auto"
    disable_log_stats: bool = True

    def __post_init__(self) -> None:
        if self.tokenizer is not None and os.path.abspath(str(self.tokenizer)) != os.path.abspath(str(self.model)):
            raise NotImplementedError("tokenizer=: cllm reads the tokenizer from the model directory; "
                                      "a separate tokenizer is not supported")
        if self.tokenizer_mode != "auto":
            raise NotImplementedError(f"tokenizer_mode={self.tokenizer_mode!r}: only 'auto' (tokenizer.json)")
        for name, table in (("dtype", _DTYPES), ("load_format", _LOAD_FORMATS), ("kv_cache_dtype", _KV_CACHE_DTYPES),
                            ("quantization", _QUANTIZATIONS)):
            if str(getattr(self, name)) not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {getattr(self, name)!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        for name in ("tensor_parallel_size", "pipeline_parallel_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")

    def _engine_dict(self, device: str) -> dict:
        """The cllm_engine_params fields (device: "cpu" or "cuda")."""
        return {
            "model": str(self.model),
            "revision": self.revision,
            "device": _DEVICES[device],
            "dtype": _DTYPES[str(self.dtype)],
            "load_format": _LOAD_FORMATS[self.load_format],
            "seed": self.seed if self.seed is not None else 0,
            "max_model_len": self.max_model_len or 0,
            "block_size": self.block_size,
            "kv_cache_dtype": _KV_CACHE_DTYPES[str(self.kv_cache_dtype)],
            "quantization": _QUANTIZATIONS[str(self.quantization)],
            "max_num_seqs": self.max_num_seqs or (256 if device == "cuda" else 32),
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "num_gpu_blocks_override": self.num_gpu_blocks_override or 0,
            "kv_cache_memory_bytes": self.kv_cache_memory_bytes or 0,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enforce_eager": self.enforce_eager,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "pp_micro_batches": self.pp_micro_batches or 0,
            "enable_expert_parallel": bool(self.enable_expert_parallel),
            "dist_timeout_s": self.dist_timeout_s,
            "num_threads": self.num_threads or 0,
        }

    def create_native_engine(self) -> Any:
        """Start the C engine (loads the model; starts tensor-parallel workers).
        device "auto" tries CUDA and falls back to CPU when there is no GPU."""
        if self.tensor_parallel_size * self.pipeline_parallel_size > 1 and "CLLM_WORKER_EXE" not in os.environ:
            exe = worker_executable()
            if exe is None:
                raise RuntimeError("several ranks need the `cllm` executable (cllm/bin/cllm is missing "
                                   "from this installation); set CLLM_WORKER_EXE to one")
            os.environ["CLLM_WORKER_EXE"] = exe  # read by the engine when it spawns the workers
            try:
                return self._create(self.device)
            finally:
                del os.environ["CLLM_WORKER_EXE"]
        return self._create(self.device)

    def _create(self, device: str) -> Any:
        if device != "auto":
            return _cllm.Engine(self._engine_dict(device))
        if not _nvidia_gpu_present():
            return _cllm.Engine(self._engine_dict("cpu"))
        try:
            return _cllm.Engine(self._engine_dict("cuda"))
        except _cllm.CllmError as e:
            if getattr(e, "status", None) != "CLLM_ERR_NO_DEVICE":
                raise
        return _cllm.Engine(self._engine_dict("cpu"))


def _nvidia_gpu_present() -> bool:
    """Whether the NVIDIA driver lists a GPU (device "auto" then tries CUDA)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return os.path.exists("/dev/nvidia0")


def _split_prompt(prompt: PromptType) -> tuple:
    """(prompt text or None, token ids or None) of a prompt."""
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, dict):
        if "prompt_token_ids" in prompt:
            return prompt.get("prompt"), list(prompt["prompt_token_ids"])
        if "prompt" in prompt:
            return prompt["prompt"], None
        raise ValueError("a prompt dict needs 'prompt' (TextPrompt) or 'prompt_token_ids' (TokensPrompt)")
    if isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt):
        return None, list(prompt)
    raise TypeError(f"a prompt must be a str, a list of token ids or a prompt dict, got {type(prompt).__name__}")


class _Completion:
    """Accumulated state of one completion (index) of a request."""

    __slots__ = ("index", "text", "token_ids", "logprobs", "cum_lp", "finish_reason", "stop_reason",
                 "new_text", "new_ids", "new_lp", "changed")

    def __init__(self, index: int, want_lp: bool):
        self.index = index
        self.text, self.token_ids = "", []
        self.logprobs = [] if want_lp else None
        self.cum_lp = 0.0 if want_lp else None
        self.finish_reason = self.stop_reason = None
        self.new_text, self.new_ids, self.new_lp, self.changed = "", [], [], False


class _Request:
    __slots__ = ("request_id", "cid", "prompt", "prompt_ids", "params", "comps", "prompt_lp", "plp_sent",
                 "first_token_time")

    def __init__(self, request_id: str, cid: int, prompt: Optional[str], prompt_ids: List[int], params: SamplingParams):
        self.request_id, self.cid, self.prompt, self.prompt_ids, self.params = request_id, cid, prompt, prompt_ids, params
        self.comps = [_Completion(k, params.logprobs is not None) for k in range(params.n)]
        self.prompt_lp, self.plp_sent, self.first_token_time = None, False, None

    def finished(self) -> bool:
        return all(c.finish_reason is not None for c in self.comps)


class LLMEngine:
    """vLLM's LLMEngine over cllm's engine: add_request / step / abort_request.

    Outputs of aborted requests are dropped. Errors: ValueError (bad
    parameters, prompt too long: the engine's message), CllmError (a worker
    rank died: the engine then refuses every step; check_health says why).
    """

    def __init__(self, engine_args: EngineArgs):
        self.engine_args = engine_args
        self._engine = engine_args.create_native_engine()
        self._tokenizer = Tokenizer(_native=self._engine.tokenizer())
        self._by_cid: Dict[int, _Request] = {}
        self._by_id: Dict[str, _Request] = {}
        self._num_added = 0

    @classmethod
    def from_engine_args(cls, engine_args: EngineArgs) -> "LLMEngine":
        return cls(engine_args)

    def get_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len()

    def add_request(self, request_id: str, prompt: PromptType, params: Optional[SamplingParams] = None) -> None:
        """Queue a request. prompt: text (encoded with special tokens, as the
        engine does), token ids, or a TextPrompt/TokensPrompt dict."""
        params = params if params is not None else SamplingParams()
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        request_id = str(request_id)
        if request_id in self._by_id:
            raise ValueError(f"request id {request_id!r} is already running")
        text, ids = _split_prompt(prompt)
        if ids is None:
            ids = self._tokenizer.encode(text, add_special_tokens=True)
        if params.truncate_prompt_tokens is not None:
            ids = ids[-params.truncate_prompt_tokens:]
        seed = params.seed
        if seed is None and self.engine_args.seed is not None:
            seed = _mix_seed(self.engine_args.seed, self._num_added)
        self._num_added += 1
        cid = self._engine.add_request(ids, params._engine_dict(seed))
        req = _Request(request_id, cid, text, ids, params)
        self._by_cid[cid] = req
        self._by_id[request_id] = req

    def abort_request(self, request_id: Union[str, Iterable[str]]) -> None:
        """Abort requests (unknown ids are ignored); their KV blocks are freed now."""
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        for rid in ids:
            req = self._by_id.pop(str(rid), None)
            if req is not None:
                del self._by_cid[req.cid]
                self._engine.abort(req.cid)

    def has_unfinished_requests(self) -> bool:
        return bool(self._by_id)

    def get_num_unfinished_requests(self) -> int:
        return len(self._by_id)

    def check_health(self) -> None:
        """Raises CllmError when the engine cannot run any more."""
        self._engine.check_health()

    def get_stats(self) -> dict:
        return self._engine.stats()

    def get_distributed_stats(self) -> list:
        return self._engine.distributed_stats()

    def step(self) -> List[RequestOutput]:
        """Run one engine step (the model runs with the GIL released); returns
        the outputs of the requests that progressed, per their output_kind."""
        if not self._by_id and not self._engine.has_unfinished():
            return []
        touched: Dict[str, _Request] = {}
        for (cid, index, new_ids, delta, lps, plps, finished, reason, _np, _no, ttft) in self._engine.step():
            req = self._by_cid.get(cid)
            if req is None:  # aborted
                continue
            c = req.comps[index]
            c.changed = True
            c.new_ids += new_ids
            c.token_ids += new_ids
            if req.params.detokenize:
                c.new_text += delta
                c.text += delta
            if lps is not None and c.logprobs is not None:
                for tid, lp, top in lps:
                    entry = self._logprob_dict(tid, lp, top)
                    c.new_lp.append(entry)
                    c.logprobs.append(entry)
                    c.cum_lp += lp
            if plps is not None:
                req.prompt_lp = [None if e is None else self._logprob_dict(*e) for e in plps]
            if ttft and req.first_token_time is None:
                req.first_token_time = ttft
            if finished:
                c.finish_reason = reason
                c.stop_reason = self._stop_reason(req, c)
            touched[req.request_id] = req
        outputs = []
        for req in touched.values():
            out = self._make_output(req)
            if out is not None:
                outputs.append(out)
            if req.finished():
                del self._by_id[req.request_id]
                del self._by_cid[req.cid]
        return outputs

    # ---- helpers ----
    def _logprob_dict(self, tid: int, lp: float, top: list) -> Dict[int, Logprob]:
        tok = self._tokenizer
        d = {t: Logprob(l, rank + 1, tok._piece(t)) for rank, (t, l) in enumerate(top)}
        if tid not in d:
            d[tid] = Logprob(lp, None, tok._piece(tid))
        return d

    def _stop_reason(self, req: _Request, c: _Completion) -> Union[int, str, None]:
        """vLLM's stop_reason: the stop token id or stop string that ended c."""
        if c.finish_reason != "stop" or not c.token_ids:
            return None
        last = c.token_ids[-1]
        if last in req.params.stop_token_ids:
            return last
        if not req.params.stop or (not req.params.ignore_eos and last == self._tokenizer.eos_token_id):
            return None
        full = self._tokenizer.decode(c.token_ids, skip_special_tokens=req.params.skip_special_tokens)
        hits = [(full.find(s, max(0, len(c.text) - len(s))), s) for s in req.params.stop]
        hits = [h for h in hits if h[0] >= 0]
        return min(hits)[1] if hits else None

    def _make_output(self, req: _Request) -> Optional[RequestOutput]:
        kind = req.params.output_kind
        finished = req.finished()
        if kind == RequestOutputKind.FINAL_ONLY and not finished:
            return None
        comps = []
        for c in req.comps:
            if kind == RequestOutputKind.DELTA:
                if c.changed:
                    comps.append(CompletionOutput(c.index, c.new_text, list(c.new_ids), c.cum_lp,
                                                  list(c.new_lp) if c.logprobs is not None else None,
                                                  c.finish_reason, c.stop_reason))
            else:
                comps.append(CompletionOutput(c.index, c.text, list(c.token_ids), c.cum_lp,
                                              list(c.logprobs) if c.logprobs is not None else None,
                                              c.finish_reason, c.stop_reason))
            c.new_text, c.new_ids, c.new_lp, c.changed = "", [], [], False
        plp = req.prompt_lp
        if kind == RequestOutputKind.DELTA:
            plp = None if req.plp_sent else plp
            req.plp_sent = req.plp_sent or plp is not None
        return RequestOutput(req.request_id, req.prompt, list(req.prompt_ids), plp, comps, finished,
                             RequestMetrics(req.first_token_time))


def _mix_seed(seed: int, counter: int) -> int:
    """A 64-bit request seed from the engine seed and the request's number (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + counter + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def read_generation_config(model: str) -> Dict[str, Any]:
    """Sampling defaults of generation_config.json in a model directory
    (vLLM's --generation-config auto): temperature, top_p, top_k, min_p,
    repetition_penalty; {} when there is none."""
    path = os.path.join(str(model), "generation_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return {}
    keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
    return {k: cfg[k] for k in keys if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg.get(k), bool)}


__all__ = ["EngineArgs", "LLMEngine", "worker_executable", "read_generation_config", "PromptType"]
