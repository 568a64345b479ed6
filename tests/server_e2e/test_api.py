"""`cllm serve` through the official openai client and raw HTTP: completions,
chat, streaming, n, logprobs, stop, seeds, tokenize. Truth: the reference
greedy continuation of stories260K (independent numpy forward pass), Hugging
Face `tokenizers` for token counts, jinja2 for the chat template."""
import json
import os
import subprocess

import pytest
from conftest import MODEL_DIR, SHARED

REF = os.path.join(SHARED, "models", "stories260K", "reference_greedy.json")


def reference_case():
    with open(REF) as f:
        return json.load(f)["cases"][1]  # "Once upon a time, a big dog"


def hf_tokenizer(model_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))


def render_chat(template, messages, add_generation_prompt=True):
    """transformers' apply_chat_template rendering (jinja2 sandbox, trim/lstrip blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token="<s>", eos_token="</s>", tools=None)


def sse_events(body):
    """Split an SSE body into its data payloads, checking the framing."""
    text = body.decode()
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    events = text.split("\n\n")
    assert events[-1] == ""
    out = []
    for e in events[:-1]:
        assert e.startswith("data: "), e
        out.append(e[len("data: "):])
    assert out[-1] == "[DONE]"
    return [json.loads(e) for e in out[:-1]]


def test_health_and_models(server, client):
    st, _, body = server.request("GET", "/health")
    assert st == 200
    models = client.models.list()
    assert [m.id for m in models.data] == ["stories"]
    st, _, body = server.request("GET", "/v1/models")
    assert json.loads(body)["data"][0]["max_model_len"] == 256


def test_completion_greedy_matches_reference(client):
    case = reference_case()
    r = client.completions.create(model="stories", prompt=case["prompt"], max_tokens=64, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].text == case["greedy_64_text"]
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(case["prompt_ids"])
    assert r.usage.completion_tokens == 64
    assert r.object == "text_completion" and r.id.startswith("cmpl-")


def test_completion_token_ids_prompt(client):
    case = reference_case()
    r = client.completions.create(model="stories", prompt=case["prompt_ids"], max_tokens=16, temperature=0,
                                  extra_body={"ignore_eos": True})
    tok = hf_tokenizer(MODEL_DIR)
    assert r.choices[0].text == tok.decode(case["prompt_ids"] + case["greedy_64_ids"][:16])[len(
        tok.decode(case["prompt_ids"])):]


def test_prompt_list_gives_one_choice_per_prompt(client):
    case = reference_case()
    r = client.completions.create(model="stories", prompt=[case["prompt"], "Lily"], max_tokens=8, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert case["greedy_64_text"].startswith(r.choices[0].text)


def test_streaming_completion_equals_blocking(client):
    case = reference_case()
    chunks = list(client.completions.create(model="stories", prompt=case["prompt"], max_tokens=32, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert case["greedy_64_text"].startswith(text) and len(text) > 20
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 32
    assert chunks[-1].usage.prompt_tokens == len(case["prompt_ids"])


def test_sse_wire_format_with_curl(server):
    body = json.dumps({"model": "stories", "prompt": "Once", "max_tokens": 5, "stream": True, "temperature": 0})
    out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
                          server.url + "/v1/completions"], capture_output=True, timeout=60)
    assert out.returncode == 0
    events = sse_events(out.stdout)
    assert all(e["object"] == "text_completion" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert events[-1]["choices"][0]["finish_reason"] in ("length", "stop")


def test_chat_prompt_is_the_rendered_template(server, client, chat_model_dir):
    from conftest import chat_template
    messages = [{"role": "system", "content": "You are a storyteller."},
                {"role": "user", "content": "Tell me about a dog."}]
    want = hf_tokenizer(chat_model_dir).encode(render_chat(chat_template(), messages), add_special_tokens=False).ids
    st, _, body = server.request("POST", "/tokenize", {"messages": messages})
    assert st == 200, body
    assert json.loads(body)["tokens"] == want
    r = client.chat.completions.create(model="stories", messages=messages, max_tokens=12, temperature=0)
    assert r.usage.prompt_tokens == len(want)
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.object == "chat.completion"


def test_chat_streaming(client):
    messages = [{"role": "user", "content": "Once upon a time"}]
    blocking = client.chat.completions.create(model="stories", messages=messages, max_tokens=16, temperature=0)
    chunks = list(client.chat.completions.create(model="stories", messages=messages, max_tokens=16, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == blocking.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == blocking.choices[0].finish_reason


def test_n_choices(client):
    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=8, n=3, temperature=1.0,
                                  seed=1)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 24
    chunks = list(client.completions.create(model="stories", prompt="Once", max_tokens=6, n=2, stream=True, seed=3))
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}


def test_completion_logprobs(client):
    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=6, temperature=0,
                                  logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 6 == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert l <= 0 and len(top) == 3
        assert abs(max(top.values()) - l) < 1e-4  # greedy picks the most likely token


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="stories", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 2
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4


def test_logit_bias(client):
    """OpenAI's logit_bias through the official client: +100 on a token makes greedy and sampled decoding pick it
    every time (n=2, streamed too); with -100 on it and +100 on another, the other wins; the logprobs stay the
    model's raw ones (vLLM's default raw_logprobs), so the forced token's logprob is not 0. (The engine test checks
    the values against the runner's logits.)"""
    tok = hf_tokenizer(MODEL_DIR)
    a, b = tok.encode("Once upon a time, a big dog", add_special_tokens=False).ids[-2:]

    def after(prompt, ids):  # the text ids add after prompt (incremental detokenization keeps leading spaces)
        p = tok.encode(prompt, add_special_tokens=False).ids
        return tok.decode(p + ids)[len(tok.decode(p)):]

    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=6, temperature=0,
                                  logprobs=1, logit_bias={str(a): 100}, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert r.choices[0].text == after("Once upon a time", [a] * 6), r.choices[0].text
    assert all(l < -0.01 for l in lp.token_logprobs[1:]), lp.token_logprobs  # raw: the repetition is unlikely
    chunks = list(client.completions.create(model="stories", prompt="Once", max_tokens=5, n=2, temperature=1.0,
                                            seed=5, stream=True, logit_bias={str(a): 100},
                                            extra_body={"ignore_eos": True}))
    texts = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + ch.text
    assert texts == {0: after("Once", [a] * 5), 1: after("Once", [a] * 5)}, texts
    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=4, temperature=0,
                                  logit_bias={str(a): -100, str(b): 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == after("Once upon a time", [b] * 4), r.choices[0].text


def test_vllm_prompt_extras(client):
    """vLLM's extras: truncate_prompt_tokens keeps the last k prompt tokens (the echo shows what the model saw);
    add_special_tokens false drops the BOS; include_stop_str_in_output keeps the stop string."""
    tok = hf_tokenizer(MODEL_DIR)
    prompt = "Once upon a time, a big dog"
    ids = tok.encode(prompt).ids  # with BOS, as the server encodes a completions prompt
    r = client.completions.create(model="stories", prompt=prompt, max_tokens=4, temperature=0,
                                  extra_body={"truncate_prompt_tokens": 3, "ignore_eos": True})
    assert r.usage.prompt_tokens == 3
    want = client.completions.create(model="stories", prompt=ids[-3:], max_tokens=4, temperature=0,
                                     extra_body={"ignore_eos": True})
    assert r.choices[0].text == want.choices[0].text
    e = client.completions.create(model="stories", prompt=prompt, max_tokens=1, temperature=0, echo=True,
                                  extra_body={"truncate_prompt_tokens": 3})
    assert e.choices[0].text.startswith(tok.decode(ids[-3:])), e.choices[0].text
    r = client.completions.create(model="stories", prompt=prompt, max_tokens=1,
                                  extra_body={"add_special_tokens": False})
    assert r.usage.prompt_tokens == len(ids) - 1 == len(tok.encode(prompt, add_special_tokens=False).ids)
    case = reference_case()
    full = case["greedy_64_text"]
    r = client.completions.create(model="stories", prompt=case["prompt"], max_tokens=64, temperature=0,
                                  stop=["hungry"], extra_body={"include_stop_str_in_output": True})
    assert r.choices[0].text == full[:full.index("hungry") + len("hungry")]
    import openai
    for extra in ({"best_of": 3}, {"suffix": "The end."}, {"use_beam_search": True}, {"allowed_token_ids": [5]}):
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="stories", prompt=prompt, max_tokens=2, extra_body=extra)


def test_structured_outputs_are_refused_not_ignored(client):
    import openai
    for kw in ({"response_format": {"type": "json_object"}},
               {"extra_body": {"guided_json": {"type": "object"}}}):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="stories", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=4, **kw)
        assert "structured outputs" in str(e.value)
    r = client.chat.completions.create(model="stories", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       response_format={"type": "text"})
    assert r.choices[0].message.content is not None


def test_stop_string(client):
    case = reference_case()
    full = case["greedy_64_text"]
    stop = "hungry"
    r = client.completions.create(model="stories", prompt=case["prompt"], max_tokens=64, temperature=0, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_seed_reproducible(client):
    kw = dict(model="stories", prompt="Once upon a time", max_tokens=24, temperature=1.0,
              extra_body={"ignore_eos": True})
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    assert a == b
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)}
    assert len(others | {a}) > 1


def test_tokenize_detokenize(server):
    tok = hf_tokenizer(MODEL_DIR)
    text = "Once upon a time, a big dog"
    st, _, body = server.request("POST", "/tokenize", {"prompt": text})
    ids = json.loads(body)["tokens"]
    assert st == 200 and ids == tok.encode(text).ids
    st, _, body = server.request("POST", "/detokenize", {"tokens": ids})
    assert st == 200 and json.loads(body)["prompt"] == tok.decode(ids, skip_special_tokens=False)


def test_metrics_counts_tokens(server, client):
    before = server.metric("cllm:generation_tokens_total")
    client.completions.create(model="stories", prompt="Once", max_tokens=7, temperature=0,
                              extra_body={"ignore_eos": True})
    m = server.metrics()
    assert server.metric("cllm:generation_tokens_total") - before >= 7
    assert any(k.startswith("cllm:time_to_first_token_seconds_count") for k in m)
    assert any(k.startswith("cllm:e2e_request_latency_seconds_bucket") for k in m)
