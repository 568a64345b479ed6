"""The tokenizer ``LLM.get_tokenizer()`` returns: cllm's C tokenizer (equal to
Hugging Face ``tokenizers`` on tokenizer.json) with the methods of a
transformers tokenizer that vLLM users call."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _cllm


class Tokenizer:
    """A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json).

    Tokenizer(path) loads a directory or a tokenizer.json file; an engine's
    tokenizer comes from LLM.get_tokenizer() and keeps that engine alive.
    Errors: CllmOSError (missing file), CllmValueError (malformed or
    unsupported tokenizer.json).
    """

    def __init__(self, path: Optional[str] = None, *, _native: Any = None):
        self._tok = _native if _native is not None else _cllm.Tokenizer(str(path))
        self._piece_cache: Dict[int, str] = {}

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> "Tokenizer":
        """transformers' spelling of Tokenizer(path)."""
        return cls(path)

    # ---- encode / decode ----
    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> List[int]:
        """Token ids of text (BOS etc. added by the post-processor when add_special_tokens)."""
        return self._tok.encode(text, add_special_tokens)

    def decode(self, token_ids: Union[int, Sequence[int]], skip_special_tokens: bool = False, **kwargs: Any) -> str:
        """Text of token ids (transformers' default keeps special tokens)."""
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        return self._tok.decode(list(token_ids), skip_special_tokens)

    def batch_decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> List[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def __call__(self, text: Union[str, Sequence[str]], add_special_tokens: bool = True, **kwargs: Any) -> dict:
        """{"input_ids": ids} (a list of lists for a list of texts), as a transformers BatchEncoding."""
        if isinstance(text, str):
            return {"input_ids": self.encode(text, add_special_tokens)}
        return {"input_ids": [self.encode(t, add_special_tokens) for t in text]}

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Union[Optional[str], List[Optional[str]]]:
        if isinstance(ids, int):
            return self._tok.id_to_token(ids)
        return [self._tok.id_to_token(i) for i in ids]

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[Optional[int], List[Optional[int]]]:
        if isinstance(tokens, str):
            return self._tok.token_to_id(tokens)
        return [self._tok.token_to_id(t) for t in tokens]

    def _piece(self, token_id: int) -> str:
        """The text of one token alone (Logprob.decoded_token), cached."""
        s = self._piece_cache.get(token_id)
        if s is None:
            s = self._tok.decode([token_id], False)
            self._piece_cache[token_id] = s
        return s

    # ---- vocabulary ----
    @property
    def vocab_size(self) -> int:
        return self._tok.vocab_size()

    def __len__(self) -> int:
        return self._tok.vocab_size()

    @property
    def bos_token_id(self) -> Optional[int]:
        return self._tok.bos_id()

    @property
    def eos_token_id(self) -> Optional[int]:
        return self._tok.eos_id()

    @property
    def bos_token(self) -> Optional[str]:
        i = self._tok.bos_id()
        return None if i is None else self._tok.id_to_token(i)

    @property
    def eos_token(self) -> Optional[str]:
        i = self._tok.eos_id()
        return None if i is None else self._tok.id_to_token(i)

    def is_special(self, token_id: int) -> bool:
        return self._tok.is_special(token_id)

    # ---- chat ----
    @property
    def chat_template(self) -> Optional[str]:
        """tokenizer_config.json's chat_template, or None."""
        return self._tok.chat_template()

    def apply_chat_template(
        self,
        conversation: List[Dict[str, Any]],
        tools: Optional[List[Dict[str, Any]]] = None,
        documents: Optional[List[Dict[str, Any]]] = None,
        chat_template: Optional[str] = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        **kwargs: Any,
    ) -> Union[str, List[int]]:
        """transformers' apply_chat_template: render the conversation with the
        model's chat template (or chat_template) and, if tokenize, encode it
        without adding special tokens (the template writes them).

        continue_final_message: end the prompt inside the last message (no
        end-of-turn after it), to let the model continue it. Extra kwargs are
        template variables. Raises ValueError: no template, the template
        raised (its message), or a bad conversation.
        """
        if add_generation_prompt and continue_final_message:
            raise ValueError("continue_final_message and add_generation_prompt are mutually exclusive")
        if chat_template is None and self.chat_template is None:
            raise ValueError("this model has no chat template (tokenizer_config.json has no chat_template); "
                             "pass chat_template=")
        ctx: Dict[str, Any] = dict(kwargs)
        ctx["messages"] = list(conversation)
        ctx["add_generation_prompt"] = add_generation_prompt
        if tools is not None:
            ctx["tools"] = tools
        if documents is not None:
            ctx["documents"] = documents
        text = self._tok.render_chat(json.dumps(ctx, ensure_ascii=False), chat_template)
        if continue_final_message:
            text = _cut_after_final_message(text, conversation)
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _cut_after_final_message(text: str, conversation: List[Dict[str, Any]]) -> str:
    """Truncate a rendered chat right after the final message's content
    (transformers' continue_final_message)."""
    if not conversation:
        raise ValueError("continue_final_message needs at least one message")
    content = conversation[-1].get("content")
    if isinstance(content, list):  # content parts: the last text part
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = texts[-1] if texts else ""
    content = (content or "").strip()
    pos = text.rfind(content) if content else -1
    if pos < 0:
        raise ValueError("continue_final_message: the final message's content is not in the rendered chat")
    return text[: pos + len(content)]
