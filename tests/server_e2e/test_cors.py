"""CORS through a real `cllm serve` (and `cllm router`), as a browser exercises it: the preflight is answered
before routing and the API key, every answer to a request with an Origin (streams, 401s, 404s included) carries
Access-Control-Allow-Origin, a request without one gets no CORS header, and --allowed-origins /
--allowed-methods / --allowed-headers / --allow-credentials narrow it as vLLM's flags do. (server/cors.h; the
decisions themselves are unit-tested in tests/server/test_cors.c.)"""
import http.client
import json
import subprocess

from conftest import BIN, MODEL_DIR, Server


def call(server, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


PREFLIGHT = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_default_allows_every_origin():
    s = Server(extra=["--api-key", "k"])
    try:
        st, h, body = call(s, "OPTIONS", "/v1/completions", PREFLIGHT)  # no API key: preflights carry none
        assert st == 200 and body == "OK", (st, body)
        assert h["access-control-allow-origin"] == "*"
        assert h["access-control-allow-headers"] == "authorization, content-type"
        assert "POST" in h["access-control-allow-methods"] and h["access-control-max-age"] == "600"
        origin = {"Origin": "http://app.example"}
        auth = {**origin, "Authorization": "Bearer k", "Content-Type": "application/json"}
        st, h, body = call(s, "POST", "/v1/completions", auth,
                           {"prompt": "Once", "max_tokens": 3, "stream": True})
        assert st == 200 and body.endswith("data: [DONE]\n\n") and h["access-control-allow-origin"] == "*"
        for method, path, hdrs, want in (("GET", "/v1/models", origin, 401), ("GET", "/nowhere", auth, 404),
                                         ("GET", "/v1/models", auth, 200)):
            st, h, _ = call(s, method, path, hdrs)
            assert st == want and h.get("access-control-allow-origin") == "*", (path, st, h)
        st, h, _ = call(s, "GET", "/v1/models", {"Authorization": "Bearer k"})  # no Origin: no CORS header
        assert st == 200 and not any(k.startswith("access-control") for k in h), h
        st, h, _ = call(s, "GET", "/v1/models", {**auth, "Cookie": "a=b"})  # a cookie: the origin, not "*"
        assert h["access-control-allow-origin"] == "http://app.example" and h["vary"] == "Origin", h
        # an OPTIONS without Access-Control-Request-Method is not a preflight: routed (405), with the header
        st, h, _ = call(s, "OPTIONS", "/v1/completions", origin)
        assert st == 405 and h["access-control-allow-origin"] == "*", (st, h)
    finally:
        assert s.stop() == 0


def test_listed_origins_methods_headers_and_credentials():
    s = Server(extra=["--allowed-origins", '["http://app.example"]', "--allowed-methods", '["POST", "GET"]',
                      "--allowed-headers", '["Authorization"]', "--allow-credentials"])
    try:
        st, h, body = call(s, "OPTIONS", "/v1/completions", PREFLIGHT)
        assert st == 200 and h["access-control-allow-origin"] == "http://app.example" and h["vary"] == "Origin"
        assert h["access-control-allow-credentials"] == "true" and h["access-control-allow-methods"] == "POST, GET"
        st, _, body = call(s, "OPTIONS", "/v1/completions", {**PREFLIGHT, "Origin": "http://evil.example",
                                                             "Access-Control-Request-Method": "DELETE",
                                                             "Access-Control-Request-Headers": "x-other"})
        assert st == 400 and body == "Disallowed CORS origin, method, headers", (st, body)
        st, h, _ = call(s, "GET", "/v1/models", {"Origin": "http://app.example"})
        assert st == 200 and h["access-control-allow-origin"] == "http://app.example"
        st, h, _ = call(s, "GET", "/v1/models", {"Origin": "http://evil.example"})
        assert st == 200 and "access-control-allow-origin" not in h  # served; the browser hides it
    finally:
        assert s.stop() == 0


def test_bad_cors_flags_say_what_to_fix():
    for flag, value in (("--allowed-origins", "*"), ("--allowed-headers", '["a", 1]')):
        r = subprocess.run([BIN, "serve", "--model", MODEL_DIR, "--port", "0", flag, value], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and flag in r.stderr and "JSON list of strings" in r.stderr, r.stderr
    r = subprocess.run([BIN, "serve", "--model", MODEL_DIR, "--allowed-origins", '["http://a"]', "--allow-credentials",
                        "--dry-run"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--allowed-origins '[\"http://a\"]'" in r.stdout and "--allow-credentials" in r.stdout


def test_router_answers_preflights(tmp_path):
    import re
    s = Server()
    router = subprocess.Popen([BIN, "router", "--worker-urls", s.url, "--host", "127.0.0.1", "--port", "0",
                               "--allowed-origins", '["http://app.example"]'],
                              stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in router.stderr:
            m = re.search(r"router listening on http://[^:]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break

        class R:
            pass
        r = R()
        r.port = port
        st, h, body = call(r, "OPTIONS", "/v1/chat/completions", PREFLIGHT)
        assert st == 200 and h["access-control-allow-origin"] == "http://app.example", (st, h, body)
        st, h, _ = call(r, "POST", "/v1/completions", {"Origin": "http://app.example",
                                                       "Content-Type": "application/json"},
                        {"prompt": "Once", "max_tokens": 2})
        assert st == 200 and h["access-control-allow-origin"] == "http://app.example", (st, h)
    finally:
        router.terminate()
        router.wait(30)
        assert s.stop() == 0
