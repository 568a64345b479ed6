/* Cross-origin resource sharing (see cors.h). */
#include "server/cors.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const ALL_METHODS[] = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"};
static const char *const SAFELISTED[] = {"accept", "accept-language", "content-language", "content-type"};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Append s to list (n entries) unless present; 0 on OOM. */
static int add_unique(char ***list, int *n, const char *s) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*list)[i], s)) return 1;
    char **l = realloc(*list, sizeof *l * (size_t)(*n + 1));
    if (!l) return 0;
    *list = l;
    if (!(l[*n] = strdup(s))) return 0;
    (*n)++;
    return 1;
}

/* "A, B, C" of list, malloc'ed. */
static char *join(char **list, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(list[i]) + 2;
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    *p = 0;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? ", " : "", list[i]);
    return s;
}

/* One flag's JSON list (NULL: ["*"]) into list with case folded by fold
 * (toupper / tolower / NULL); *all when it holds "*". */
static cllm_status parse_list(const char *flag, const char *json, int (*fold)(int), char ***list, int *n, bool *all) {
    *all = false;
    if (!json) {
        *all = true;
        return CLLM_OK;
    }
    json_error_t je;
    json_t *a = json_loads(json, JSON_DECODE_ANY, &je);
    bool ok = json_is_array(a);
    for (size_t i = 0; ok && i < json_array_size(a); i++) ok = json_is_string(json_array_get(a, i));
    if (!ok) {
        json_decref(a);
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s must be a JSON list of strings, as '[\"*\"]' or "
                          "'[\"https://app.example.com\"]', got '%.80s'", flag, json);
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *v = json_string_value(json_array_get(a, i));
        if (!strcmp(v, "*")) {
            *all = true;
            continue;
        }
        char *f = strdup(v);
        if (!f) break;
        for (char *p = f; fold && *p; p++) *p = (char)fold((unsigned char)*p);
        int r = add_unique(list, n, f);
        free(f);
        if (!r) {
            json_decref(a);
            return CLLM_ERR_OOM;
        }
    }
    json_decref(a);
    return CLLM_OK;
}

cllm_status srv_cors_init(srv_cors *c, const srv_cors_params *p) {
    memset(c, 0, sizeof *c);
    c->credentials = p->allow_credentials;
    cllm_status st = parse_list("--allowed-origins", p->allowed_origins, NULL, &c->origins, &c->n_origins,
                                &c->all_origins);
    if (st == CLLM_OK)
        st = parse_list("--allowed-methods", p->allowed_methods, toupper, &c->methods, &c->n_methods, &c->all_methods);
    if (st == CLLM_OK)
        st = parse_list("--allowed-headers", p->allowed_headers, tolower, &c->headers, &c->n_headers,
                        &c->all_headers);
    for (size_t i = 0; st == CLLM_OK && c->all_methods && i < sizeof ALL_METHODS / sizeof *ALL_METHODS; i++)
        if (!add_unique(&c->methods, &c->n_methods, ALL_METHODS[i])) st = CLLM_ERR_OOM;
    for (size_t i = 0; st == CLLM_OK && i < sizeof SAFELISTED / sizeof *SAFELISTED; i++)
        if (!add_unique(&c->headers, &c->n_headers, SAFELISTED[i])) st = CLLM_ERR_OOM;
    if (st == CLLM_OK) {
        qsort(c->headers, (size_t)c->n_headers, sizeof *c->headers, cmp_str);
        c->methods_line = join(c->methods, c->n_methods);
        c->headers_line = join(c->headers, c->n_headers);
        if (!c->methods_line || !c->headers_line) st = CLLM_ERR_OOM;
    }
    if (st != CLLM_OK) srv_cors_free(c);
    return st == CLLM_ERR_OOM ? cllm_error(st, "out of memory reading the CORS flags") : st;
}

void srv_cors_free(srv_cors *c) {
    for (int i = 0; i < c->n_origins; i++) free(c->origins[i]);
    for (int i = 0; i < c->n_methods; i++) free(c->methods[i]);
    for (int i = 0; i < c->n_headers; i++) free(c->headers[i]);
    free(c->origins), free(c->methods), free(c->headers), free(c->methods_line), free(c->headers_line);
    memset(c, 0, sizeof *c);
}

static bool in_list(char *const *list, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(list[i]) == len && !strncmp(list[i], s, len)) return true;
    return false;
}

static bool origin_allowed(const srv_cors *c, const char *origin) {
    return c->all_origins || in_list(c->origins, c->n_origins, origin, strlen(origin));
}

/* Bounded appender: out stays NUL-terminated, *n its length; a line that
 * does not fit is dropped whole and *n set to (size_t)-1 (then every later
 * line is dropped too). */
static void put(char *out, size_t size, size_t *n, const char *name, const char *value) {
    if (*n == (size_t)-1) return;
    int k = *n < size ? snprintf(out + *n, size - *n, "%s: %s\r\n", name, value) : -1;
    if (k < 0 || (size_t)k >= size - *n) {
        if (*n < size) out[*n] = 0;
        *n = (size_t)-1;
        return;
    }
    *n += (size_t)k;
}

size_t srv_cors_response_headers(const srv_cors *c, const char *origin, bool has_cookie, char *out, size_t size) {
    size_t n = 0;
    if (size) out[0] = 0;
    bool echoable = strlen(origin) <= SRV_CORS_MAX_ORIGIN;
    if (c->all_origins && !has_cookie) {
        put(out, size, &n, "Access-Control-Allow-Origin", "*");
    } else if (echoable && origin_allowed(c, origin)) {
        put(out, size, &n, "Access-Control-Allow-Origin", origin);
        put(out, size, &n, "Vary", "Origin");
    }
    if (c->credentials) put(out, size, &n, "Access-Control-Allow-Credentials", "true");
    if (n == (size_t)-1) { /* all or nothing */
        if (size) out[0] = 0;
        return 0;
    }
    return n;
}

/* Every comma-separated name of requested (trimmed, case-insensitive) is in
 * c->headers. */
static bool headers_allowed(const srv_cors *c, const char *requested) {
    const char *p = requested;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        bool found = false;
        for (int i = 0; i < c->n_headers && !found; i++)
            found = strlen(c->headers[i]) == len && !strncasecmp(c->headers[i], p, len);
        if (!found) return false;
        if (!e) return true;
        p = e + 1;
    }
}

int srv_cors_preflight(const srv_cors *c, const char *origin, const char *method, const char *headers, char *hdrs,
                       size_t hsize, char *body, size_t bsize) {
    size_t n = 0;
    if (hsize) hdrs[0] = 0;
    const bool explicit_origin = !c->all_origins || c->credentials;
    char fail[64] = "";
    if (origin_allowed(c, origin) && strlen(origin) <= SRV_CORS_MAX_ORIGIN) {
        put(hdrs, hsize, &n, "Access-Control-Allow-Origin", explicit_origin ? origin : "*");
    } else {
        strcat(fail, "origin");
        if (!explicit_origin) put(hdrs, hsize, &n, "Access-Control-Allow-Origin", "*");
    }
    if (explicit_origin) put(hdrs, hsize, &n, "Vary", "Origin");
    put(hdrs, hsize, &n, "Access-Control-Allow-Methods", c->methods_line);
    put(hdrs, hsize, &n, "Access-Control-Max-Age", "600");
    if (!in_list(c->methods, c->n_methods, method, strlen(method))) strcat(fail, fail[0] ? ", method" : "method");
    if (headers) {
        if (c->all_headers && strlen(headers) <= SRV_CORS_MAX_REQUEST_HEADERS)
            put(hdrs, hsize, &n, "Access-Control-Allow-Headers", headers); /* every header: mirror the request */
        else if (c->all_headers || !headers_allowed(c, headers))
            strcat(fail, fail[0] ? ", headers" : "headers");
    }
    if (!c->all_headers) put(hdrs, hsize, &n, "Access-Control-Allow-Headers", c->headers_line);
    if (c->credentials) put(hdrs, hsize, &n, "Access-Control-Allow-Credentials", "true");
    if (n == (size_t)-1 && !fail[0]) strcat(fail, "headers"); /* hsize too small for the answer: refuse */
    snprintf(body, bsize, fail[0] ? "Disallowed CORS %s" : "OK", fail);
    return fail[0] ? 400 : 200;
}
