"""vLLM's offline entry point, ``LLM``: generate and chat over cllm's engine."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Sequence, Union

from .engine import EngineArgs, LLMEngine, PromptType, read_generation_config
from .outputs import RequestOutput
from .sampling_params import RequestOutputKind, SamplingParams
from .tokenizer import Tokenizer

ChatMessages = List[Dict[str, Any]]


class LLM:
    """An LLM for offline inference (vLLM ``LLM``).

    LLM(model, tokenizer=None, *, dtype="auto", max_model_len=None,
    tensor_parallel_size=1, pipeline_parallel_size=1,
    enable_expert_parallel=False, gpu_memory_utilization=0.9,
    enforce_eager=False, seed=0, device="auto", **engine_args) loads the
    model (see EngineArgs for every argument); with tensor_parallel_size > 1
    it starts the other ranks as `cllm worker` processes (the executable
    shipped in this package, or $CLLM_WORKER_EXE). The engine, its KV cache
    and its workers are freed when the LLM (and any tokenizer taken from it)
    is garbage.

    Errors: TypeError (unknown argument), ValueError / CllmValueError (bad
    value: the engine's message), NotImplementedError (a vLLM feature cllm
    lacks), CllmOSError (model not found).
    """

    def __init__(self, model: str, tokenizer: Optional[str] = None, **kwargs: Any):
        self.llm_engine = LLMEngine(EngineArgs(model=model, tokenizer=tokenizer, **kwargs))
        self._counter = itertools.count()
        self._default_sampling = read_generation_config(model)

    def get_tokenizer(self) -> Tokenizer:
        """The model's tokenizer (encode / decode / apply_chat_template)."""
        return self.llm_engine.get_tokenizer()

    def get_default_sampling_params(self) -> SamplingParams:
        """SamplingParams with the model's generation_config.json defaults."""
        return SamplingParams(**self._default_sampling)

    def generate(
        self,
        prompts: Union[PromptType, Sequence[PromptType], None] = None,
        sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
        *,
        prompt_token_ids: Optional[Union[List[int], List[List[int]]]] = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        priority: Optional[List[int]] = None,
    ) -> List[RequestOutput]:
        """Generate completions for prompts, batched by the engine.

        prompts: a str, a list of token ids, a TextPrompt/TokensPrompt dict, or
        a list of those (prompt_token_ids=: vLLM's older keyword for ids).
        sampling_params: one for all prompts or one per prompt (None: the
        model's defaults). Returns one RequestOutput per prompt, in order.
        Ctrl-C (KeyboardInterrupt) aborts the requests of this call, freeing
        their KV blocks, and re-raises; the LLM stays usable.
        """
        if lora_request is not None:
            raise NotImplementedError("LoRA adapters are not implemented by cllm")
        plist = _prompt_list(prompts, prompt_token_ids)
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        if isinstance(sampling_params, SamplingParams):
            params = [sampling_params] * len(plist)
        else:
            params = list(sampling_params)
            if len(params) != len(plist):
                raise ValueError(f"{len(params)} sampling_params for {len(plist)} prompts: "
                                 "give one, or one per prompt")
        return self._run(plist, params, use_tqdm)

    def chat(
        self,
        messages: Union[ChatMessages, List[ChatMessages]],
        sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        chat_template: Optional[str] = None,
        chat_template_content_format: str = "auto",
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: Optional[List[Dict[str, Any]]] = None,
        chat_template_kwargs: Optional[Dict[str, Any]] = None,
        mm_processor_kwargs: Any = None,
    ) -> List[RequestOutput]:
        """Generate replies to conversations (vLLM ``LLM.chat``).

        messages: one conversation (a list of {"role", "content"} dicts) or a
        list of them. Each is rendered with the model's chat template (or
        chat_template, a Jinja string), as transformers' apply_chat_template,
        tokenized without special tokens (the template writes them) and
        generated; RequestOutput.prompt is the rendered text. Raises
        ValueError when there is no template or it rejects the messages.
        """
        if mm_processor_kwargs is not None:
            raise NotImplementedError("multi-modal inputs are not implemented by cllm")
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        tok = self.get_tokenizer()
        prompts = []
        for conv in conversations:
            text = tok.apply_chat_template(conv, tools=tools, chat_template=chat_template,
                                           add_generation_prompt=add_generation_prompt,
                                           continue_final_message=continue_final_message, tokenize=False,
                                           **(chat_template_kwargs or {}))
            prompts.append({"prompt": text, "prompt_token_ids": tok.encode(text, add_special_tokens=False)})
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm, lora_request=lora_request)

    def _run(self, prompts: List[PromptType], params: List[SamplingParams], use_tqdm: bool) -> List[RequestOutput]:
        eng = self.llm_engine
        ids = []
        results: Dict[str, RequestOutput] = {}
        bar = _progress(len(prompts)) if use_tqdm else None
        try:
            for prompt, sp in zip(prompts, params):
                if sp.output_kind != RequestOutputKind.FINAL_ONLY:
                    sp = sp.clone()
                    sp.output_kind = RequestOutputKind.FINAL_ONLY
                rid = str(next(self._counter))
                eng.add_request(rid, prompt, sp)
                ids.append(rid)
            pending = set(ids)
            while pending:
                for out in eng.step():
                    if out.request_id in pending and out.finished:
                        results[out.request_id] = out
                        pending.discard(out.request_id)
                        if bar is not None:
                            bar.update(1)
        except BaseException:
            # Ctrl-C, or an error: leave no request of this call in the engine
            eng.abort_request([r for r in ids if r not in results])
            raise
        finally:
            if bar is not None:
                bar.close()
        return [results[r] for r in ids]


def _prompt_list(prompts: Any, prompt_token_ids: Any) -> List[PromptType]:
    if prompts is None and prompt_token_ids is None:
        raise ValueError("give prompts (or prompt_token_ids)")
    if prompts is None:
        prompts = prompt_token_ids
    if isinstance(prompts, (str, dict)):
        return [prompts]
    prompts = list(prompts)
    if prompts and all(isinstance(t, int) for t in prompts):
        return [prompts]  # one prompt of token ids
    return prompts


def _progress(total: int) -> Any:
    """A tqdm progress bar when tqdm is installed, else None."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="Processed prompts", dynamic_ncols=True)
