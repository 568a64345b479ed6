"""get_tokenizer() against Hugging Face `tokenizers`; chat templates against
the jinja2 renders of tests/chat/cases.json; LLM.chat."""
import json
import os

import pytest

import cllm
from cllm import SamplingParams, Tokenizer
from conftest import SHARED_DIR, SOURCE_DIR, STORIES

TEXTS = ["Once upon a time", "  spaces\tand\nnewlines  ", "héllo wörld 😀 ünïcode", "<s> special </s> text", ""]


@pytest.mark.parametrize("path", [STORIES, os.path.join(SHARED_DIR, "tokenizers", "llama3"),
                                  os.path.join(SHARED_DIR, "tokenizers", "mistral-v0.3")])
def test_encode_decode_equal_hugging_face(path):
    tokenizers = pytest.importorskip("tokenizers")  # installed by tools/install_deps.sh
    hf = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tok = Tokenizer(path)
    for text in TEXTS:
        for special in (True, False):
            ids = tok.encode(text, add_special_tokens=special)
            assert ids == hf.encode(text, add_special_tokens=special).ids, (text, special)
            for skip in (True, False):
                assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
    assert tok.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    assert tok("a b")["input_ids"] == tok.encode("a b")
    piece = hf.id_to_token(100)
    assert tok.convert_ids_to_tokens(100) == piece and tok.convert_tokens_to_ids(piece) == 100


def test_llm_tokenizer_is_the_models(llm):
    tok = llm.get_tokenizer()
    assert tok.encode("Once upon a time") == Tokenizer(STORIES).encode("Once upon a time")
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.bos_token == "<s>"
    assert tok.chat_template is None


def test_tokenizer_errors(tmp_path):
    with pytest.raises(OSError):
        Tokenizer(str(tmp_path / "missing"))
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ValueError):
        Tokenizer(str(tmp_path))
    tok = Tokenizer(STORIES)
    with pytest.raises(ValueError, match="negative|invalid"):
        tok.decode([-5])
    with pytest.raises(TypeError):
        tok.encode(b"bytes")


def _chat_cases():
    with open(os.path.join(SOURCE_DIR, "tests", "chat", "cases.json"), encoding="utf-8") as f:
        return [c for c in json.load(f)["cases"] if c.get("template_ref") and "rendered" in c]


def test_chat_templates_equal_jinja2_renders():
    """Every real-template case of tests/chat/cases.json (rendered by jinja2 as
    transformers does) through Tokenizer.apply_chat_template."""
    cases = _chat_cases()
    assert len(cases) > 100
    toks = {}
    for case in cases:
        ref = case["template_ref"]
        if ref not in toks:
            d = os.path.join(SHARED_DIR, "tokenizers", ref)
            with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
                template = json.load(f)["chat_template"]
            has_tok = os.path.exists(os.path.join(d, "tokenizer.json"))
            toks[ref] = (Tokenizer(d if has_tok else STORIES), template)
        tok, template = toks[ref]
        ctx = dict(case["context"])
        messages = ctx.pop("messages")
        got = tok.apply_chat_template(messages, chat_template=template, tokenize=False, **ctx)
        assert got == case["rendered"], case["name"]


def test_apply_chat_template_tokenize_and_errors():
    tok = Tokenizer(os.path.join(SHARED_DIR, "tokenizers", "llama3"))
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
    assert tok.apply_chat_template(conv) == tok.encode(text, add_special_tokens=False)
    assert text.count("<|begin_of_text|>") == 1
    cont = tok.apply_chat_template(conv, tokenize=False, continue_final_message=True)
    assert cont.endswith("Hello there") and text.startswith(cont)
    with pytest.raises(ValueError, match="roles must alternate"):
        tok.apply_chat_template(conv, chat_template="{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ValueError, match="syntax"):
        tok.apply_chat_template(conv, chat_template="{% if %}")
    with pytest.raises(ValueError, match="no chat template"):
        Tokenizer(STORIES).apply_chat_template(conv)


TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" \
           "{% if add_generation_prompt %}assistant:{% endif %}"


def test_llm_chat_equals_generate_of_the_rendered_prompt(llm):
    conv = [{"role": "user", "content": "Tell me a story."}]
    sp = SamplingParams(temperature=0, max_tokens=16)
    (out,) = llm.chat(conv, sp, chat_template=TEMPLATE, use_tqdm=False)
    assert out.prompt == "<s>user: Tell me a story.\nassistant:"
    tok = llm.get_tokenizer()
    ids = tok.encode(out.prompt, add_special_tokens=False)
    assert out.prompt_token_ids == ids and ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    (ref,) = llm.generate({"prompt_token_ids": ids}, sp, use_tqdm=False)
    assert out.outputs[0].text == ref.outputs[0].text
    # a list of conversations, batched
    outs = llm.chat([conv, [{"role": "user", "content": "Hi"}]], sp, chat_template=TEMPLATE, use_tqdm=False)
    assert len(outs) == 2 and outs[0].outputs[0].text == out.outputs[0].text
    with pytest.raises(ValueError, match="no chat template"):
        llm.chat(conv, sp, use_tqdm=False)
    assert isinstance(cllm.CllmValueError("x"), ValueError)
