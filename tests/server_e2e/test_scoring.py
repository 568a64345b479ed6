"""The scoring API as vLLM has it (issue #15, finding 1): echo + logprobs
returns the prompt's logprobs (the first null) then the generated ones,
streamed or not; max_tokens 0 with echo returns the prompt alone;
prompt_logprobs in completions and chat; /tokenize, /detokenize and
/tokenizer_info as vLLM's."""
import json
import math

IDS = [1, 403, 407, 261, 378, 390]  # "<s> Once upon a time"


def post(server, path, body):
    st, _, b = server.request("POST", path, body)
    return st, json.loads(b)


def test_echo_logprobs_scores_the_prompt(server):
    st, r = post(server, "/v1/completions", {"prompt": IDS, "echo": True, "logprobs": 1, "max_tokens": 1,
                                             "temperature": 0})
    assert st == 200, r
    lp = r["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(IDS) + 1
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(isinstance(x, float) and x <= 0 for x in lp["token_logprobs"][1:])
    for tok, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
        assert tok in top.values() and max(top.values()) >= tok  # the token itself is in its top dict
    assert lp["text_offset"] == sorted(lp["text_offset"])
    # the same numbers as prompt_logprobs (vLLM's extra) and as a longer generation's first step
    st, r2 = post(server, "/v1/completions", {"prompt": IDS, "prompt_logprobs": 0, "max_tokens": 1, "temperature": 0})
    plp = r2["choices"][0]["prompt_logprobs"]
    assert plp[0] is None and len(plp) == len(IDS)
    for i in range(1, len(IDS)):
        entry = plp[i][str(IDS[i])]
        assert math.isclose(entry["logprob"], lp["token_logprobs"][i], abs_tol=1e-6)
        assert entry["rank"] is None or entry["rank"] >= 1


def test_echo_with_max_tokens_0_returns_the_prompt_alone(server):
    st, r = post(server, "/v1/completions", {"prompt": "Once upon a time", "echo": True, "max_tokens": 0,
                                             "logprobs": 0})
    assert st == 200, r
    c = r["choices"][0]
    assert c["text"] == "Once upon a time" and c["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 0
    assert len(c["logprobs"]["token_logprobs"]) == r["usage"]["prompt_tokens"]
    st, r = post(server, "/v1/completions", {"prompt": "Once", "max_tokens": 0})
    assert st == 400 and r["error"]["param"] == "max_tokens"


def test_streamed_echo_carries_logprobs(server):
    st, hdr, body = server.request("POST", "/v1/completions", {"prompt": IDS, "echo": True, "logprobs": 1,
                                                               "max_tokens": 3, "temperature": 0, "stream": True})
    assert st == 200
    chunks = [json.loads(e[6:]) for e in body.decode().split("\n\n") if e.startswith("data: {")]
    first = chunks[0]["choices"][0]
    assert first["logprobs"]["token_logprobs"][0] is None
    assert len(first["logprobs"]["token_logprobs"]) == len(IDS)
    text = "".join(c["choices"][0]["text"] for c in chunks)
    st, r = post(server, "/v1/completions", {"prompt": IDS, "echo": True, "max_tokens": 3, "temperature": 0})
    assert text == r["choices"][0]["text"]


def test_prompt_logprobs_in_chat_and_not_with_stream(server):
    st, r = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                                  "prompt_logprobs": 1})
    assert st == 200, r
    assert r["prompt_logprobs"][0] is None and len(r["prompt_logprobs"]) == r["usage"]["prompt_tokens"]
    assert all(len(d) >= 1 for d in r["prompt_logprobs"][1:])
    st, r = post(server, "/v1/completions", {"prompt": "x", "prompt_logprobs": 1, "stream": True})
    assert st == 400 and r["error"]["param"] == "prompt_logprobs"
    st, r = post(server, "/v1/completions", {"prompt": "x", "prompt_logprobs": 99})
    assert st == 400 and r["error"]["param"] == "prompt_logprobs"


def test_tokenize_detokenize_tokenizer_info(server):
    st, r = post(server, "/tokenize", {"prompt": "Once upon a time", "return_token_strs": True})
    assert st == 200 and r["tokens"] == IDS[:5] and r["count"] == 5 and r["max_model_len"] == 256
    assert len(r["token_strs"]) == 5
    st, r2 = post(server, "/tokenize", {"prompt": "Once upon a time", "add_special_tokens": False})
    assert r2["tokens"] == IDS[1:5]
    st, r = post(server, "/detokenize", {"tokens": IDS[1:5]})
    assert st == 200 and r["prompt"] == "Once upon a time"
    st, r = post(server, "/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    assert st == 200 and r["count"] > 2
    st, _, b = server.request("GET", "/tokenizer_info")
    info = json.loads(b)
    assert st == 200 and info["eos_token"] == "</s>" and info["chat_template"]
    st, r = post(server, "/detokenize", {"tokens": [10 ** 6]})
    assert st == 400
