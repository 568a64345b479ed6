"""vLLM's ``SamplingParams`` for cllm: the same field names, defaults and meaning.

Every field the engine implements (``cllm_request_params`` in include/cllm.h) is
supported; ranges are checked at construction by the engine's own check
(``cllm_request_params_check``), so a bad value raises ``ValueError`` with the
engine's message. vLLM fields cllm does not implement raise
``NotImplementedError`` when set to anything but their neutral value.
"""
from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

from . import _cllm


class RequestOutputKind(enum.Enum):
    """What a streaming engine yields per step (vLLM's names).

    CUMULATIVE: the whole output so far; DELTA: only what is new since the last
    output; FINAL_ONLY: one output when the request finishes.
    """

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


# vLLM fields cllm accepts only at their neutral value.
_UNSUPPORTED = {
    "best_of": None,
    "allowed_token_ids": None,
    "bad_words": None,
    "logits_processors": None,
    "guided_decoding": None,
    "structured_outputs": None,
}


@dataclass
class SamplingParams:
    """Sampling parameters of one request (vLLM ``SamplingParams``).

    n: completions per prompt. temperature: 0 = greedy. top_p in (0, 1];
    top_k <= 0: off (vLLM's 0 or -1). min_p in [0, 1]. Penalties: presence
    and frequency in [-2, 2] (OpenAI semantics, output tokens), repetition > 0
    (prompt and output tokens). seed: per-request seed (None: from the LLM's
    seed). stop: strings that end a completion (not in the text unless
    include_stop_str_in_output). stop_token_ids: ids that end it (kept in
    token_ids). max_tokens: new tokens at most (None: up to max_model_len).
    logprobs: k -> per new token, the sampled token's logprob plus the top-k
    (k <= 20); the model's raw logprobs (before logit_bias and penalties, as
    vLLM's default raw_logprobs). logit_bias: {token id: bias} added to the
    logits before the penalties and every sampler step (ids in the
    vocabulary; biases clamped to [-100, 100] as vLLM does). prompt_logprobs: k -> per prompt token (the first is None).
    truncate_prompt_tokens: keep only the last k prompt tokens.
    output_kind: see RequestOutputKind (streaming engines only).

    Raises ValueError (the engine's message) for an out-of-range value,
    NotImplementedError for a vLLM feature cllm lacks.
    """

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[List[int]] = None
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    truncate_prompt_tokens: Optional[int] = None
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
    best_of: Optional[int] = None
    logit_bias: Optional[dict] = None
    allowed_token_ids: Optional[List[int]] = None
    bad_words: Optional[List[str]] = None
    logits_processors: Optional[list] = None
    guided_decoding: Any = None
    structured_outputs: Any = None
    extra_args: Optional[dict] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        elif self.stop is None:
            self.stop = []
        else:
            self.stop = list(self.stop)
        self.stop_token_ids = list(self.stop_token_ids or [])
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ValueError(f"logit_bias must be a dict of token id -> bias, got {type(self.logit_bias).__name__}")
            try:
                self.logit_bias = {int(t): min(100.0, max(-100.0, float(b))) for t, b in self.logit_bias.items()}
            except (TypeError, ValueError) as e:
                raise ValueError(f"logit_bias must map integer token ids to numbers: {e}") from None
        for name, neutral in _UNSUPPORTED.items():
            value = getattr(self, name)
            if value is not None and value != neutral and not (name == "best_of" and value == self.n):
                raise NotImplementedError(f"SamplingParams.{name} is not implemented by cllm")
        if not self.spaces_between_special_tokens:
            raise NotImplementedError("SamplingParams.spaces_between_special_tokens=False is not implemented by cllm")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.truncate_prompt_tokens is not None and self.truncate_prompt_tokens < 1:
            raise ValueError(f"truncate_prompt_tokens must be >= 1, got {self.truncate_prompt_tokens}")
        if not isinstance(self.output_kind, RequestOutputKind):
            raise ValueError(f"output_kind must be a RequestOutputKind, got {self.output_kind!r}")
        _cllm.check_request_params(self._engine_dict(seed=self.seed))

    def _engine_dict(self, seed: Optional[int]) -> dict:
        """The cllm_request_params fields of this request (seed: the one to use)."""
        return {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k if self.top_k > 0 else -1,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": seed,
            "stop": self.stop,
            "stop_token_ids": self.stop_token_ids,
            "logit_bias_token_ids": list((self.logit_bias or {}).keys()),
            "logit_bias_values": list((self.logit_bias or {}).values()),
            "ignore_eos": self.ignore_eos,
            "max_tokens": self.max_tokens if self.max_tokens is not None else 0,
            "min_tokens": self.min_tokens,
            "logprobs": self.logprobs if self.logprobs is not None else -1,
            "prompt_logprobs": self.prompt_logprobs if self.prompt_logprobs is not None else -1,
            "skip_special_tokens": self.skip_special_tokens,
            "include_stop_str_in_output": self.include_stop_str_in_output,
        }

    def clone(self) -> "SamplingParams":
        """A deep copy (vLLM's clone)."""
        return copy.deepcopy(self)
