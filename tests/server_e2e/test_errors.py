"""Bad input: each case gets an OpenAI error body with the right status, and
the server keeps serving afterwards."""
import json

import pytest


def error_of(st, body, want_status):
    assert st == want_status, body
    e = json.loads(body)
    assert set(e["error"]) >= {"message", "type", "param", "code"}
    assert e["error"]["message"]
    return e["error"]


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 2})
    assert st == 200, body


def test_malformed_json(server):
    st, _, body = server.request("POST", "/v1/completions", raw=b'{"prompt": "x", ')
    error_of(st, body, 400)


def test_wrong_type(server):
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": "many"})
    assert error_of(st, body, 400)["param"] == "max_tokens"


def test_missing_prompt(server):
    st, _, body = server.request("POST", "/v1/completions", {"max_tokens": 4})
    assert error_of(st, body, 400)["param"] == "prompt"


def test_missing_messages(server):
    st, _, body = server.request("POST", "/v1/chat/completions", {"model": "stories"})
    error_of(st, body, 400)


def test_empty_messages(server):
    st, _, body = server.request("POST", "/v1/chat/completions", {"messages": []})
    error_of(st, body, 400)


def test_unknown_role(server):
    st, _, body = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]})
    assert "role" in error_of(st, body, 400)["param"]


def test_context_length(server):
    prompt = " ".join(["dog"] * 300)  # well over --max-model-len 256
    st, _, body = server.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 10})
    e = error_of(st, body, 400)
    assert "maximum context length is 256 tokens" in e["message"]
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 300})
    e = error_of(st, body, 400)
    assert "256" in e["message"] and "300 in the completion" in e["message"]


def test_negative_max_tokens(server):
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": -5})
    assert error_of(st, body, 400)["param"] == "max_tokens"


def test_absurd_temperature(server):
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "x", "temperature": 1e9})
    assert error_of(st, body, 400)["param"] == "temperature"


def test_absurd_n(server):
    st, _, body = server.request("POST", "/v1/completions", {"prompt": "x", "n": 100000})
    assert error_of(st, body, 400)["param"] == "n"


def test_token_id_out_of_vocab(server):
    st, _, body = server.request("POST", "/v1/completions", {"prompt": [1, 99999], "max_tokens": 2})
    error_of(st, body, 400)


def test_invalid_utf8(server):
    st, _, body = server.request("POST", "/v1/completions", raw=b'{"prompt": "\xff\xfe bad", "max_tokens": 2}')
    error_of(st, body, 400)


def test_body_too_large(server):
    big = b'{"prompt": "' + b"a" * (33 << 20) + b'"}'
    st, _, body = server.request("POST", "/v1/completions", raw=big)
    error_of(st, body, 413)


def test_unknown_model(server):
    st, _, body = server.request("POST", "/v1/completions", {"model": "gpt-9", "prompt": "x"})
    e = error_of(st, body, 404)
    assert "gpt-9" in e["message"]


def test_unknown_route(server):
    st, _, body = server.request("GET", "/v1/nothing")
    error_of(st, body, 404)


def test_wrong_method(server):
    st, hdr, body = server.request("GET", "/v1/completions")
    error_of(st, body, 405)
    st, _, body = server.request("POST", "/v1/models", {})
    error_of(st, body, 405)


def test_openai_client_raises_bad_request(client):
    import openai
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="stories", prompt="x", max_tokens=-1)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
