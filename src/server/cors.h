/* Cross-origin resource sharing for the HTTP front door (cllm serve and
 * cllm router): vLLM's --allowed-origins / --allowed-methods /
 * --allowed-headers / --allow-credentials, with the behaviour of the
 * Starlette CORSMiddleware that vLLM's API server installs (defaults: every
 * origin, method and header; no credentials), so that a web page on another
 * origin can call the API from a browser.
 *
 *   - A request without an Origin header gets no CORS header.
 *   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
 *     is answered here, before routing and authentication: 200 "OK", or 400
 *     "Disallowed CORS origin, method, headers" naming what failed, with
 *     Access-Control-Allow-Origin ("*", or the origin when origins are
 *     listed or credentials allowed, with "Vary: Origin"),
 *     -Allow-Methods, -Allow-Headers (the requested ones when every header
 *     is allowed, else the list plus the CORS-safelisted four),
 *     -Max-Age: 600 and -Allow-Credentials: true when allowed.
 *   - Any other request with an Origin: its response (errors included)
 *     carries Access-Control-Allow-Origin "*" when every origin is allowed
 *     (the origin itself, with "Vary: Origin", when it sent a Cookie), or
 *     the origin when it is listed (nothing when it is not: the browser
 *     then hides the answer), and -Allow-Credentials when allowed.
 *
 * Origins and methods compare exactly (methods upper case), headers case-
 * insensitively. An Origin longer than SRV_CORS_MAX_ORIGIN bytes is never
 * echoed back. Source: https://fetch.spec.whatwg.org/#http-cors-protocol,
 * starlette/middleware/cors.py, vllm/entrypoints/openai/cli_args.py. */
#ifndef CLLM_SERVER_CORS_H
#define CLLM_SERVER_CORS_H

#include "core/status.h"

#include <stdbool.h>
#include <stddef.h>

#define SRV_CORS_MAX_ORIGIN 512
#define SRV_CORS_MAX_REQUEST_HEADERS 2048

/* vLLM's flags: each list a JSON array of strings (NULL: ["*"]). */
typedef struct srv_cors_params {
    const char *allowed_origins;   /* --allowed-origins */
    const char *allowed_methods;   /* --allowed-methods */
    const char *allowed_headers;   /* --allowed-headers */
    bool allow_credentials;        /* --allow-credentials */
} srv_cors_params;

typedef struct srv_cors {
    bool all_origins, all_methods, all_headers, credentials;
    char **origins;   /* (n_origins) exact origins ("https://app.example.com") */
    int n_origins;
    char **methods;   /* (n_methods) upper case */
    int n_methods;
    char **headers;   /* (n_headers) lower case, the safelisted four included */
    int n_headers;
    char *methods_line; /* "DELETE, GET, ..." for Access-Control-Allow-Methods */
    char *headers_line; /* "accept, ..." for Access-Control-Allow-Headers (listed headers only) */
} srv_cors;

/* Parse p's three lists ("*" in a list allows all) into *c (caller-owned,
 * free with srv_cors_free). Errors: CLLM_ERR_INVALID_ARG naming the flag
 * ("--allowed-origins must be a JSON list of strings, ..."), CLLM_ERR_OOM. */
cllm_status srv_cors_init(srv_cors *c, const srv_cors_params *p);
void srv_cors_free(srv_cors *c);

/* Header lines ("Name: value\r\n"...) for the response to a request from
 * origin (non-NULL) that is not a preflight; has_cookie: it sent a Cookie.
 * Writes at most size bytes (NUL-terminated) into out; returns the length
 * (0: no header to add). */
size_t srv_cors_response_headers(const srv_cors *c, const char *origin, bool has_cookie, char *out, size_t size);

/* A preflight from origin asking for method (Access-Control-Request-Method)
 * and headers (Access-Control-Request-Headers, NULL if absent): the status
 * (200 or 400), its header lines into hdrs (hsize bytes) and its text body
 * ("OK" or "Disallowed CORS origin, method") into body (bsize bytes). */
int srv_cors_preflight(const srv_cors *c, const char *origin, const char *method, const char *headers, char *hdrs,
                       size_t hsize, char *body, size_t bsize);

#endif
