/* CORS decisions (server/cors.h) against the behaviour of Starlette's
 * CORSMiddleware as vLLM configures it: the flags' parsing and errors,
 * preflight statuses and headers, and the headers of ordinary responses,
 * for the default (every origin), listed origins, credentials, and long or
 * odd values. */
#include "server/cors.h"
#include "test_util.h"

#include <stdlib.h>

static bool has_line(const char *hdrs, const char *line) {
    char want[1024];
    snprintf(want, sizeof want, "%s\r\n", line);
    return strstr(hdrs, want) != NULL;
}

static int preflight(const srv_cors *c, const char *origin, const char *method, const char *headers, char *hdrs,
                     char *body) {
    return srv_cors_preflight(c, origin, method, headers, hdrs, 4096, body, 96);
}

static void test_defaults(void) {
    srv_cors c;
    srv_cors_params p = {0};
    CHECK(srv_cors_init(&c, &p) == CLLM_OK, "defaults");
    char h[4096], b[96];
    /* every origin, method, header: "*", the requested headers mirrored */
    CHECK(preflight(&c, "http://a.example", "POST", "Authorization, X-Custom", h, b) == 200 && !strcmp(b, "OK"), "%s", b);
    CHECK(has_line(h, "Access-Control-Allow-Origin: *") && !strstr(h, "Vary"), "%s", h);
    CHECK(has_line(h, "Access-Control-Allow-Methods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"), "%s", h);
    CHECK(has_line(h, "Access-Control-Allow-Headers: Authorization, X-Custom"), "%s", h);
    CHECK(has_line(h, "Access-Control-Max-Age: 600") && !strstr(h, "Credentials"), "%s", h);
    CHECK(preflight(&c, "http://a.example", "BREW", NULL, h, b) == 400 && !strcmp(b, "Disallowed CORS method"), "%s", b);
    CHECK(!strstr(h, "Access-Control-Allow-Headers"), "no requested headers: none mirrored: %s", h);
    /* ordinary responses: "*", or the origin with Vary when the request carries a cookie */
    CHECK(srv_cors_response_headers(&c, "http://a.example", false, h, sizeof h) > 0 &&
          !strcmp(h, "Access-Control-Allow-Origin: *\r\n"), "%s", h);
    srv_cors_response_headers(&c, "http://a.example", true, h, sizeof h);
    CHECK(!strcmp(h, "Access-Control-Allow-Origin: http://a.example\r\nVary: Origin\r\n"), "%s", h);
    /* an origin too long to echo: "*" without a cookie, nothing with one */
    char *long_origin = malloc(SRV_CORS_MAX_ORIGIN + 40);
    memset(long_origin, 'a', SRV_CORS_MAX_ORIGIN + 39);
    long_origin[SRV_CORS_MAX_ORIGIN + 39] = 0;
    srv_cors_response_headers(&c, long_origin, false, h, sizeof h);
    CHECK(!strcmp(h, "Access-Control-Allow-Origin: *\r\n"), "%s", h);
    CHECK(srv_cors_response_headers(&c, long_origin, true, h, sizeof h) == 0 && h[0] == 0, "%s", h);
    /* requested headers too long to mirror: refused, not truncated */
    char *many = malloc(SRV_CORS_MAX_REQUEST_HEADERS + 10);
    memset(many, 'x', SRV_CORS_MAX_REQUEST_HEADERS + 9);
    many[SRV_CORS_MAX_REQUEST_HEADERS + 9] = 0;
    CHECK(preflight(&c, "http://a.example", "POST", many, h, b) == 400 && !strcmp(b, "Disallowed CORS headers"), "%s", b);
    /* a small output buffer drops whole lines, never half of one */
    CHECK(srv_cors_response_headers(&c, "http://a.example", true, h, 20) == 0 && h[0] == 0, "%s", h);
    free(long_origin), free(many);
    srv_cors_free(&c);
}

static void test_listed(void) {
    srv_cors c;
    srv_cors_params p = {.allowed_origins = "[\"https://app.example.com\", \"http://localhost:3000\"]",
                         .allowed_methods = "[\"get\", \"POST\"]", .allowed_headers = "[\"Authorization\"]"};
    CHECK(srv_cors_init(&c, &p) == CLLM_OK, "listed");
    char h[4096], b[96];
    CHECK(preflight(&c, "http://localhost:3000", "POST", "authorization,Content-Type", h, b) == 200, "%s", b);
    CHECK(has_line(h, "Access-Control-Allow-Origin: http://localhost:3000") && has_line(h, "Vary: Origin"), "%s", h);
    CHECK(has_line(h, "Access-Control-Allow-Methods: GET, POST"), "methods upper-cased: %s", h);
    CHECK(has_line(h, "Access-Control-Allow-Headers: accept, accept-language, authorization, content-language, "
                      "content-type"), "the list plus the safelisted four, sorted: %s", h);
    CHECK(preflight(&c, "https://evil.example", "PUT", "X-Other", h, b) == 400 &&
          !strcmp(b, "Disallowed CORS origin, method, headers"), "%s", b);
    CHECK(!strstr(h, "Access-Control-Allow-Origin"), "a refused origin is not named: %s", h);
    CHECK(preflight(&c, "https://app.example.com", "POST", "authorization, , accept", h, b) == 400, "empty name: %s", b);
    CHECK(preflight(&c, "https://app.example.com.evil", "POST", NULL, h, b) == 400, "exact origins only: %s", b);
    CHECK(srv_cors_response_headers(&c, "https://app.example.com", false, h, sizeof h) > 0 &&
          !strcmp(h, "Access-Control-Allow-Origin: https://app.example.com\r\nVary: Origin\r\n"), "%s", h);
    CHECK(srv_cors_response_headers(&c, "https://evil.example", false, h, sizeof h) == 0, "%s", h);
    srv_cors_free(&c);
}

static void test_credentials(void) {
    srv_cors c;
    srv_cors_params p = {.allow_credentials = true};
    CHECK(srv_cors_init(&c, &p) == CLLM_OK, "credentials");
    char h[4096], b[96];
    /* with credentials the preflight names the origin (a browser refuses "*" with credentials) */
    CHECK(preflight(&c, "http://a.example", "POST", NULL, h, b) == 200, "%s", b);
    CHECK(has_line(h, "Access-Control-Allow-Origin: http://a.example") && has_line(h, "Vary: Origin") &&
          has_line(h, "Access-Control-Allow-Credentials: true"), "%s", h);
    srv_cors_response_headers(&c, "http://a.example", false, h, sizeof h);
    CHECK(!strcmp(h, "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\n"), "%s", h);
    srv_cors_free(&c);
}

static void test_errors(void) {
    static const struct { const char *o, *m, *h, *flag; } bad[] = {
        {"*", NULL, NULL, "--allowed-origins"},          {"[\"a\", 3]", NULL, NULL, "--allowed-origins"},
        {NULL, "{\"GET\": 1}", NULL, "--allowed-methods"}, {NULL, NULL, "[\"x\"", "--allowed-headers"},
        {NULL, NULL, "\"*\"", "--allowed-headers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        srv_cors c;
        srv_cors_params p = {.allowed_origins = bad[i].o, .allowed_methods = bad[i].m, .allowed_headers = bad[i].h};
        CHECK(srv_cors_init(&c, &p) == CLLM_ERR_INVALID_ARG && strstr(cllm_last_error(), bad[i].flag) &&
              strstr(cllm_last_error(), "JSON list of strings"), "case %zu: %s", i, cllm_last_error());
    }
    srv_cors c; /* "*" among listed origins allows every origin */
    srv_cors_params p = {.allowed_origins = "[\"http://x\", \"*\"]", .allowed_methods = "[]"};
    CHECK(srv_cors_init(&c, &p) == CLLM_OK && c.all_origins && !c.all_methods && c.n_methods == 0, "mixed");
    char h[4096], b[96];
    CHECK(preflight(&c, "http://y", "GET", NULL, h, b) == 400 && !strcmp(b, "Disallowed CORS method"), "%s", b);
    srv_cors_free(&c);
}

int main(void) {
    test_defaults();
    test_listed();
    test_credentials();
    test_errors();
    TEST_DONE();
}
