"""vLLM's output classes: ``RequestOutput``, ``CompletionOutput``, ``Logprob``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union


@dataclass
class Logprob:
    """One token's log-probability (natural log). rank: 1-based rank in the
    vocabulary when known (the top-k alternatives), else None. decoded_token:
    the token's text."""

    logprob: float
    rank: Optional[int] = None
    decoded_token: Optional[str] = None


# Per position: token id -> Logprob (the sampled token plus the top-k).
SampleLogprobs = List[Dict[int, Logprob]]
PromptLogprobs = List[Optional[Dict[int, Logprob]]]


@dataclass
class CompletionOutput:
    """One completion of a request (vLLM ``CompletionOutput``).

    index: 0..n-1. text: the generated text (stop strings removed unless
    include_stop_str_in_output). token_ids: generated ids. cumulative_logprob:
    sum of the sampled tokens' logprobs, None unless logprobs were requested.
    logprobs: per generated token, or None. finish_reason: "stop", "length",
    "abort", or None while running. stop_reason: the stop string or stop token
    id that ended it, None for EOS or length.
    """

    index: int
    text: str
    token_ids: List[int]
    cumulative_logprob: Optional[float]
    logprobs: Optional[SampleLogprobs]
    finish_reason: Optional[str] = None
    stop_reason: Union[int, str, None] = None

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestMetrics:
    """Timing of one request, seconds since it was added (first_token_time: TTFT)."""

    first_token_time: Optional[float] = None


@dataclass
class RequestOutput:
    """The output of one request (vLLM ``RequestOutput``).

    prompt: the prompt text (None when it was given as token ids).
    prompt_token_ids: the ids the model saw. prompt_logprobs: per prompt token
    (the first is None), when requested. outputs: the completions (a streaming
    DELTA output holds only those that changed). finished: every completion
    is done.
    """

    request_id: str
    prompt: Optional[str]
    prompt_token_ids: List[int]
    prompt_logprobs: Optional[PromptLogprobs]
    outputs: List[CompletionOutput]
    finished: bool
    metrics: Optional[RequestMetrics] = field(default=None, repr=False)
    num_cached_tokens: Optional[int] = field(default=None, repr=False)
