/* cllm bench serve: a load generator against a running OpenAI-compatible
 * server (cllm serve, vLLM), with vLLM's `vllm bench serve` flags, random
 * dataset and summary.
 *
 * Each request sends `prompt` as a list of random token ids (so prompt
 * lengths are exact), `max_tokens`, `ignore_eos: true`, `temperature: 0`,
 * `stream: true` and `stream_options.include_usage`. --backend openai-chat
 * (or an --endpoint ending in chat/completions) sends the prompt as text
 * instead, as vLLM's openai-chat backend: the random ids are decoded with
 * the --tokenizer and re-encoded until the text encodes to the drawn length
 * (vLLM's gen_prompt_decode_to_target_len), and each request is
 * `messages: [{"role": "user", "content": TEXT}]` with
 * `max_completion_tokens`; deltas are chat chunks (choices[0].delta), and
 * since the chat template adds tokens, input tokens are the server's
 * usage.prompt_tokens. All requests run on one
 * libcurl multi handle (no thread per request): arrivals follow a Poisson
 * process of --request-rate (inf: all at time 0), and at most
 * --max-concurrency are in flight. Per request, as vLLM measures them:
 * TTFT = first chunk with a `choices` entry (chat: with delta content) - send time; ITL = gaps between
 * later such chunks; E2E = last chunk - send time; TPOT = (E2E - TTFT) /
 * (output tokens - 1), output tokens from the final usage chunk.
 * Percentiles interpolate linearly (numpy.percentile's default).
 * Exit: 0 if every request succeeded, 1 if any failed (first error printed),
 * 2 on a usage error. */
#include "cli/args.h"
#include "cli/cli.h"
#include "cllm.h"
#include "core/status.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bs_opts {
    const char *base_url, *host, *model, *served_model_name, *tokenizer, *endpoint, *api_key, *json_path;
    const char *backend;          /* NULL (from --endpoint), "openai", "vllm" or "openai-chat" */
    bool chat;                    /* chat completions: text prompts in messages */
    long port, num_prompts, in_len, out_len, max_conc, seed;
    double range_ratio, rate, ready_timeout_s;
} bs_opts;

/* One request: its prompt, the HTTP transfer and what was measured. */
typedef struct bs_req {
    int32_t *ids;                 /* (in_len) prompt token ids, owned */
    int in_len, out_len;          /* prompt tokens (chat: of the text alone); requested max_tokens */
    bool chat;                    /* the stream holds chat chunks (choices[0].delta) */
    char *body;                   /* JSON request body, owned */
    CURL *h;
    char *buf;                    /* bytes of the response not yet split into lines */
    size_t len, cap;
    double t_start, t_last, ttft; /* seconds (monotonic) */
    bool got_first, done_marker;
    double *itl;                  /* (n_itl) seconds */
    int n_itl, cap_itl;
    long out_tokens;              /* usage.completion_tokens, -1 if none came */
    long prompt_tokens;           /* usage.prompt_tokens, -1 if none came */
    int n_chunks;
    char *err;                    /* owned; NULL on success */
    char curl_err[CURL_ERROR_SIZE];
} bs_req;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0); }
/* Integer in [lo, hi]. */
static long uniform_int(uint64_t *s, long lo, long hi) { return lo + (long)(splitmix(s) % (uint64_t)(hi - lo + 1)); }

static void set_err(bs_req *r, const char *fmt, const char *a, long n) {
    if (r->err) return; /* keep the first */
    char m[600];
    snprintf(m, sizeof m, fmt, a ? a : "", n);
    r->err = strdup(m);
}

/* ------------------------------------------------------------ SSE reading */

/* o[key] is a non-empty string. */
static bool has_text(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) > 0;
}

/* One SSE `data:` payload. Completions: every chunk with a choices entry is
 * a token chunk (vLLM's rule). Chat: only chunks whose choices[0].delta has
 * non-empty content (or reasoning_content) are, so that the role-only first
 * delta does not count as the first token. */
static void on_data_line(bs_req *r, const char *p, size_t n) {
    while (n && (*p == ' ')) p++, n--;
    if (n == 6 && !memcmp(p, "[DONE]", 6)) { r->done_marker = true; return; }
    double t = now_s();
    json_error_t je;
    json_t *j = json_loadb(p, n, JSON_ALLOW_NUL, &je); /* generated text may hold U+0000 */
    if (!json_is_object(j)) {
        set_err(r, "malformed SSE data (not a JSON object: %s)", je.text, 0);
        json_decref(j);
        return;
    }
    json_t *e = json_object_get(j, "error");
    json_t *ch = json_object_get(j, "choices");
    json_t *u = json_object_get(j, "usage");
    if (e) {
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        set_err(r, "error event in the stream: %s", json_is_string(m) ? json_string_value(m) : "(no message)", 0);
    } else if (json_is_array(ch) && json_array_size(ch) > 0) {
        json_t *delta = json_object_get(json_array_get(ch, 0), "delta");
        if (r->chat && !json_is_object(delta)) {
            set_err(r, "a chunk without choices[0].delta: not a chat completion stream (is --endpoint a chat "
                       "completions endpoint?)%s", NULL, 0);
            json_decref(j);
            return;
        }
        if (r->chat && !has_text(delta, "content") && !has_text(delta, "reasoning_content")) {
            json_decref(j); /* the role chunk (cllm sends it before the first token), a bare finish_reason */
            return;
        }
        if (!r->got_first) {
            r->got_first = true;
            r->ttft = t - r->t_start;
        } else {
            if (r->n_itl == r->cap_itl) {
                int cap = r->cap_itl ? 2 * r->cap_itl : 64;
                double *x = realloc(r->itl, sizeof(double) * (size_t)cap);
                if (!x) { set_err(r, "out of memory%s", NULL, 0); json_decref(j); return; }
                r->itl = x, r->cap_itl = cap;
            }
            r->itl[r->n_itl++] = t - r->t_last;
        }
        r->t_last = t;
        r->n_chunks++;
    } else if (json_is_object(u)) {
        json_t *c = json_object_get(u, "completion_tokens");
        json_t *pt = json_object_get(u, "prompt_tokens");
        if (json_is_integer(c)) r->out_tokens = (long)json_integer_value(c);
        if (json_is_integer(pt)) r->prompt_tokens = (long)json_integer_value(pt);
    }
    json_decref(j);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
    bs_req *r = ud;
    size_t n = size * nmemb;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b) return 0; /* curl reports a write error */
        r->buf = b, r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    long code = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) return n; /* an error body: kept whole for the message */
    size_t start = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->buf[i] != '\n') continue;
        size_t e = i;
        if (e > start && r->buf[e - 1] == '\r') e--;
        if (e - start >= 5 && !memcmp(r->buf + start, "data:", 5)) on_data_line(r, r->buf + start + 5, e - start - 5);
        start = i + 1;
    }
    memmove(r->buf, r->buf + start, r->len - start);
    r->len -= start;
    return n;
}

/* ------------------------------------------------------------ requests */

/* The request body; text: the chat prompt (chat backend only). */
static char *make_body(const bs_opts *o, const bs_req *r, const char *text) {
    const char *model = o->served_model_name ? o->served_model_name : o->model;
    if (o->chat) {
        json_t *content = json_string(text); /* NULL if the decoded text is not valid UTF-8 */
        if (!content) return NULL;
        json_t *j = json_pack("{s:s, s:[{s:s, s:o}], s:i, s:f, s:b, s:b, s:{s:b}}", "model", model, "messages",
                              "role", "user", "content", content, "max_completion_tokens", r->out_len,
                              "temperature", 0.0, "ignore_eos", 1, "stream", 1, "stream_options", "include_usage", 1);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return s;
    }
    json_t *ids = json_array();
    for (int i = 0; i < r->in_len; i++) json_array_append_new(ids, json_integer(r->ids[i]));
    json_t *j = json_pack("{s:s, s:o, s:i, s:f, s:b, s:b, s:{s:b}}", "model", model, "prompt", ids, "max_tokens",
                          r->out_len, "temperature", 0.0, "ignore_eos", 1, "stream", 1, "stream_options",
                          "include_usage", 1);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static void req_reset(bs_req *r) {
    free(r->itl);
    free(r->err);
    free(r->buf);
    r->itl = NULL, r->err = NULL, r->buf = NULL;
    r->n_itl = r->cap_itl = 0, r->len = r->cap = 0;
    r->got_first = r->done_marker = false;
    r->out_tokens = r->prompt_tokens = -1, r->n_chunks = 0, r->ttft = r->t_last = 0;
    r->curl_err[0] = 0;
}

static bool req_start(CURLM *m, const char *url, struct curl_slist *hdrs, bs_req *r) {
    req_reset(r);
    r->h = curl_easy_init();
    if (!r->h) { set_err(r, "curl_easy_init failed%s", NULL, 0); return false; }
    curl_easy_setopt(r->h, CURLOPT_URL, url);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, (void *)r);
    curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(r->h, CURLOPT_CONNECTTIMEOUT, 30L);
    r->t_start = now_s();
    if (curl_multi_add_handle(m, r->h) != CURLM_OK) {
        set_err(r, "curl_multi_add_handle failed%s", NULL, 0);
        curl_easy_cleanup(r->h);
        r->h = NULL;
        return false;
    }
    return true;
}

/* A transfer ended: decide success and record the error otherwise. */
static void req_finish(CURLM *m, bs_req *r, CURLcode res) {
    long code = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(m, r->h);
    curl_easy_cleanup(r->h);
    r->h = NULL;
    if (res != CURLE_OK) {
        char m2[400];
        snprintf(m2, sizeof m2, "%s%s%s", curl_easy_strerror(res), r->curl_err[0] ? ": " : "", r->curl_err);
        free(r->err), r->err = NULL;
        set_err(r, code ? "request failed: %s (HTTP %ld)" : "request failed: %s", m2, code);
    } else if (code != 200) {
        if (r->buf) r->buf[r->len] = 0;
        const char *msg = r->buf ? r->buf : "";
        json_t *j = r->buf ? json_loadb(r->buf, r->len, 0, NULL) : NULL;
        json_t *e = json_object_get(j, "error");
        json_t *em = json_is_object(e) ? json_object_get(e, "message") : NULL;
        if (json_is_string(em)) msg = json_string_value(em);
        else if (json_is_string(json_object_get(j, "message"))) msg = json_string_value(json_object_get(j, "message"));
        char m2[500];
        snprintf(m2, sizeof m2, "%.480s", msg);
        set_err(r, "%s (HTTP %ld)", m2, code);
        json_decref(j);
    } else if (!r->got_first) {
        set_err(r, "Never received a valid chunk to calculate TTFT.%s", NULL, 0);
    }
}

/* Run reqs[0..n) with arrival offsets arrival[] (seconds from start) and at
 * most max_conc in flight (<= 0: unbounded). Returns the duration (s). */
static double run_requests(const char *url, struct curl_slist *hdrs, bs_req *reqs, int n, const double *arrival,
                           long max_conc) {
    CURLM *m = curl_multi_init();
    double t0 = now_s();
    int next = 0, inflight = 0, done = 0;
    if (!m) {
        for (int i = 0; i < n; i++) set_err(&reqs[i], "curl_multi_init failed%s", NULL, 0);
        return 0;
    }
    while (done < n) {
        double t = now_s() - t0;
        while (next < n && arrival[next] <= t && (max_conc <= 0 || inflight < max_conc)) {
            if (req_start(m, url, hdrs, &reqs[next])) inflight++;
            else done++;
            next++;
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(m, &q))) {
            if (msg->msg != CURLMSG_DONE) continue;
            bs_req *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode res = msg->data.result;
            req_finish(m, r, res);
            inflight--, done++;
        }
        if (done >= n) break;
        t = now_s() - t0;
        bool can_start = next < n && (max_conc <= 0 || inflight < max_conc);
        if (can_start && arrival[next] <= t) continue;
        int wait_ms = 100;
        if (can_start) {
            double w = (arrival[next] - t) * 1e3;
            wait_ms = w < 100 ? (int)w : 100;
        }
        curl_multi_poll(m, NULL, 0, wait_ms, NULL);
    }
    double dur = now_s() - t0;
    curl_multi_cleanup(m);
    return dur;
}

/* ------------------------------------------------------------ dataset */

/* Token ids the prompts draw from: [0, vocab) minus special tokens, read
 * from DIR/config.json (vocab_size) and DIR/tokenizer.json (added tokens
 * with "special": true). dir NULL or unreadable: [0, 1000). */
static int32_t *allowed_ids(const char *dir, int *n_out) {
    long vocab = 0;
    char path[4096];
    json_t *cfg = NULL, *tok = NULL;
    if (dir) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        cfg = json_load_file(path, 0, NULL);
        json_t *v = json_object_get(cfg, "vocab_size");
        if (!json_is_integer(v)) v = json_object_get(json_object_get(cfg, "text_config"), "vocab_size");
        if (json_is_integer(v)) vocab = (long)json_integer_value(v);
    }
    if (vocab <= 0) {
        fprintf(stderr, "cllm bench serve: no vocab_size in %s/config.json; prompt token ids are drawn from [0, 1000) "
                        "(pass --tokenizer DIR to use the model's vocabulary)\n", dir ? dir : "(no --tokenizer)");
        vocab = 1000;
    }
    char *special = calloc((size_t)vocab, 1);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)vocab);
    if (!special || !ids) { free(special); free(ids); json_decref(cfg); return NULL; }
    if (dir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        tok = json_load_file(path, 0, NULL);
        json_t *at = json_object_get(tok, "added_tokens"), *x;
        size_t i;
        json_array_foreach(at, i, x) {
            json_t *id = json_object_get(x, "id");
            if (json_is_true(json_object_get(x, "special")) && json_is_integer(id) && json_integer_value(id) >= 0 &&
                json_integer_value(id) < vocab)
                special[json_integer_value(id)] = 1;
        }
    }
    int n = 0;
    for (long i = 0; i < vocab; i++) if (!special[i]) ids[n++] = (int32_t)i;
    free(special);
    json_decref(cfg);
    json_decref(tok);
    *n_out = n;
    return ids;
}

/* ------------------------------------------------------------ statistics */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bs_stat { double mean, median, std, p99; } bs_stat;

/* numpy's mean / median / std (ddof 0) / percentile(99, linear); v sorted in place; 0s when n == 0. */
static bs_stat stat_of(double *v, size_t n) {
    bs_stat s = {0};
    if (!n) return s;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    s.mean = sum / (double)n;
    for (size_t i = 0; i < n; i++) sq += (v[i] - s.mean) * (v[i] - s.mean);
    s.std = sqrt(sq / (double)n);
    double q[2] = {50, 99}, out[2];
    for (int k = 0; k < 2; k++) {
        double pos = q[k] / 100.0 * (double)(n - 1);
        size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
        out[k] = v[lo] + (pos - (double)lo) * (v[hi] - v[lo]);
    }
    s.median = out[0], s.p99 = out[1];
    return s;
}

static void print_stat(const char *header, const char *name, bs_stat s) {
    int len = (int)strlen(header), left = (50 - len) / 2, right = 50 - len - left;
    printf("%.*s%s%.*s\n", left, "--------------------------------------------------", header, right,
           "--------------------------------------------------");
    char k[64];
    snprintf(k, sizeof k, "Mean %s (ms):", name);
    printf("%-40s %-10.2f\n", k, s.mean);
    snprintf(k, sizeof k, "Median %s (ms):", name);
    printf("%-40s %-10.2f\n", k, s.median);
    snprintf(k, sizeof k, "P99 %s (ms):", name);
    printf("%-40s %-10.2f\n", k, s.p99);
}

static void json_stat(json_t *j, const char *key, bs_stat s) {
    char k[64];
    snprintf(k, sizeof k, "mean_%s_ms", key), json_object_set_new(j, k, json_real(s.mean));
    snprintf(k, sizeof k, "median_%s_ms", key), json_object_set_new(j, k, json_real(s.median));
    snprintf(k, sizeof k, "std_%s_ms", key), json_object_set_new(j, k, json_real(s.std));
    snprintf(k, sizeof k, "p99_%s_ms", key), json_object_set_new(j, k, json_real(s.p99));
}

/* Input tokens of a request: chat, the server's usage.prompt_tokens (the
 * template adds tokens) or, when none came, the prompt text's; else the ids sent. */
static long input_len(const bs_opts *o, const bs_req *r) {
    return o->chat && r->prompt_tokens >= 0 ? r->prompt_tokens : r->in_len;
}

/* Print vLLM's summary and write the JSON result. Returns the exit code. */
static int report(const bs_opts *o, bs_req *reqs, int n, double dur) {
    size_t n_itl = 0;
    for (int i = 0; i < n; i++) n_itl += (size_t)reqs[i].n_itl;
    double *ttft = calloc((size_t)n + 1, sizeof(double)), *tpot = calloc((size_t)n + 1, sizeof(double));
    double *e2el = calloc((size_t)n + 1, sizeof(double)), *itl = calloc(n_itl + 1, sizeof(double));
    if (!ttft || !tpot || !e2el || !itl) {
        fprintf(stderr, "cllm bench serve: error: out of memory\n");
        free(ttft), free(tpot), free(e2el), free(itl);
        return 1;
    }
    size_t nt = 0, np = 0, ni = 0, ne = 0;
    long completed = 0, failed = 0, tot_in = 0, tot_out = 0;
    const char *first_err = NULL;
    bool usage_missing = false;
    for (int i = 0; i < n; i++) {
        bs_req *r = &reqs[i];
        if (r->err) { failed++; if (!first_err) first_err = r->err; continue; }
        long out = r->out_tokens;
        if (out < 0) usage_missing = true, out = r->n_chunks, r->out_tokens = out;
        if (o->chat && r->prompt_tokens < 0) usage_missing = true;
        double lat = r->t_last - r->t_start;
        completed++, tot_in += input_len(o, r), tot_out += out;
        ttft[nt++] = r->ttft * 1e3;
        e2el[ne++] = lat * 1e3;
        if (out > 1) tpot[np++] = (lat - r->ttft) / (double)(out - 1) * 1e3;
        for (int k = 0; k < r->n_itl; k++) itl[ni++] = r->itl[k] * 1e3;
    }
    if (usage_missing)
        fprintf(stderr, "cllm bench serve: warning: the server sent no usage chunk (stream_options.include_usage); "
                        "output tokens are counted as content chunks%s\n",
                o->chat ? ", input tokens as the prompt text's tokens (without the chat template)" : "");
    if (failed)
        fprintf(stderr, "cllm bench serve: %ld of %d requests failed; first error: %s\n", failed, n, first_err);
    bs_stat s_ttft = stat_of(ttft, nt), s_tpot = stat_of(tpot, np), s_itl = stat_of(itl, ni),
            s_e2el = stat_of(e2el, ne);
    double rq = dur > 0 ? completed / dur : 0, otp = dur > 0 ? tot_out / dur : 0,
           ttp = dur > 0 ? (tot_in + tot_out) / dur : 0;
    printf("============ Serving Benchmark Result ============\n");
    printf("%-40s %-10ld\n", "Successful requests:", completed);
    printf("%-40s %-10ld\n", "Failed requests:", failed);
    if (o->max_conc > 0) printf("%-40s %-10ld\n", "Maximum request concurrency:", o->max_conc);
    printf("%-40s %-10.2f\n", "Benchmark duration (s):", dur);
    printf("%-40s %-10ld\n", "Total input tokens:", tot_in);
    printf("%-40s %-10ld\n", "Total generated tokens:", tot_out);
    printf("%-40s %-10.2f\n", "Request throughput (req/s):", rq);
    printf("%-40s %-10.2f\n", "Output token throughput (tok/s):", otp);
    printf("%-40s %-10.2f\n", "Total Token throughput (tok/s):", ttp);
    print_stat("Time to First Token", "TTFT", s_ttft);
    print_stat("Time per Output Token (excl. 1st token)", "TPOT", s_tpot);
    print_stat("Inter-token Latency", "ITL", s_itl);
    print_stat("End-to-end Latency", "E2EL", s_e2el);
    printf("==================================================\n");
    fflush(stdout);
    int rc = failed ? 1 : 0;
    if (o->json_path) {
        json_t *j = json_object();
        char date[32];
        time_t tt = time(NULL);
        struct tm tmv;
        strftime(date, sizeof date, "%Y%m%d-%H%M%S", localtime_r(&tt, &tmv));
        json_object_set_new(j, "date", json_string(date));
        json_object_set_new(j, "backend", json_string(o->chat ? "openai-chat" : "openai"));
        json_object_set_new(j, "base_url", json_string(o->base_url));
        json_object_set_new(j, "endpoint", json_string(o->endpoint));
        json_object_set_new(j, "model_id", json_string(o->model));
        json_object_set_new(j, "tokenizer_id", o->tokenizer ? json_string(o->tokenizer) : json_null());
        json_object_set_new(j, "num_prompts", json_integer(n));
        json_object_set_new(j, "random_input_len", json_integer(o->in_len));
        json_object_set_new(j, "random_output_len", json_integer(o->out_len));
        json_object_set_new(j, "random_range_ratio", json_real(o->range_ratio));
        json_object_set_new(j, "seed", json_integer(o->seed));
        /* vLLM writes float('inf') (not valid JSON); "inf" keeps the file parseable */
        json_object_set_new(j, "request_rate", isinf(o->rate) ? json_string("inf") : json_real(o->rate));
        json_object_set_new(j, "burstiness", json_real(1.0));
        json_object_set_new(j, "max_concurrency", o->max_conc > 0 ? json_integer(o->max_conc) : json_null());
        json_object_set_new(j, "duration", json_real(dur));
        json_object_set_new(j, "completed", json_integer(completed));
        json_object_set_new(j, "failed", json_integer(failed));
        json_object_set_new(j, "total_input_tokens", json_integer(tot_in));
        json_object_set_new(j, "total_output_tokens", json_integer(tot_out));
        json_object_set_new(j, "request_throughput", json_real(rq));
        json_object_set_new(j, "output_throughput", json_real(otp));
        json_object_set_new(j, "total_token_throughput", json_real(ttp));
        json_t *il = json_array(), *ol = json_array(), *tf = json_array(), *it = json_array(), *er = json_array();
        json_t *el = json_array(), *rl = json_array(), *tl = o->chat ? json_array() : NULL;
        for (int i = 0; i < n; i++) {
            bs_req *r = &reqs[i];
            json_array_append_new(il, json_integer(input_len(o, r)));
            if (tl) json_array_append_new(tl, json_integer(r->in_len));
            json_array_append_new(ol, json_integer(r->err ? 0 : r->out_tokens));
            json_array_append_new(rl, json_integer(r->out_len));
            json_array_append_new(tf, json_real(r->err ? 0.0 : r->ttft));
            json_array_append_new(el, json_real(r->err ? 0.0 : r->t_last - r->t_start));
            json_t *a = json_array();
            for (int k = 0; !r->err && k < r->n_itl; k++) json_array_append_new(a, json_real(r->itl[k]));
            json_array_append_new(it, a);
            json_array_append_new(er, json_string(r->err ? r->err : ""));
        }
        json_object_set_new(j, "input_lens", il);
        json_object_set_new(j, "output_lens", ol);
        json_object_set_new(j, "ttfts", tf);
        json_object_set_new(j, "itls", it);
        /* not in vLLM's file: e2e latencies (s), max_tokens sent */
        json_object_set_new(j, "e2els", el);
        json_object_set_new(j, "requested_output_lens", rl);
        if (tl) json_object_set_new(j, "prompt_text_lens", tl); /* chat: tokens of the text without the template */
        json_object_set_new(j, "errors", er);
        json_stat(j, "ttft", s_ttft);
        json_stat(j, "tpot", s_tpot);
        json_stat(j, "itl", s_itl);
        json_stat(j, "e2el", s_e2el);
        if (json_dump_file(j, o->json_path, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "cllm bench serve: error: cannot write %s\n", o->json_path);
            rc = 1;
        }
        json_decref(j);
    }
    free(ttft), free(tpot), free(e2el), free(itl);
    return rc;
}

/* ------------------------------------------------------------ driver */

static void usage(FILE *f) {
    fprintf(f,
            "usage: cllm bench serve --model NAME [--base-url http://127.0.0.1:8000 | --host H --port P]\n"
            "       [--backend openai|openai-chat] [--endpoint /v1/completions] [--served-model-name NAME]\n"
            "       [--tokenizer DIR] [--num-prompts 1000]\n"
            "       [--random-input-len 1024] [--random-output-len 128] [--random-range-ratio 0.0]\n"
            "       [--request-rate inf] [--max-concurrency N] [--seed 0] [--api-key KEY]\n"
            "       [--ready-check-timeout-sec 600] [--output-json F]\n"
            "Sends random token-id prompts (ignore_eos, streaming) to a running OpenAI-compatible server and\n"
            "prints vLLM's serving summary (TTFT, TPOT, ITL, E2EL). Token ids are drawn from the vocabulary of\n"
            "--tokenizer DIR (default: --model when it is a directory), special tokens excluded.\n"
            "--backend openai-chat (default when --endpoint ends in chat/completions; its default endpoint is\n"
            "/v1/chat/completions) sends each prompt as text, decoded with the --tokenizer, in one user message;\n"
            "input tokens are then the server's usage.prompt_tokens (chat template included).\n"
            "--request-rate: Poisson arrivals per second (inf: all at once). --ready-check-timeout-sec 0\n"
            "skips the initial single-prompt test run. Exit 0 if every request succeeded, else 1.\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* --backend and --endpoint -> o->chat and the endpoint, as vLLM checks them.
 * Returns -1 (go on) or 2 (usage error, message printed). */
static int resolve_backend(bs_opts *o) {
    if (o->backend && strcmp(o->backend, "openai") && strcmp(o->backend, "vllm") &&
        strcmp(o->backend, "openai-chat")) {
        fprintf(stderr, "cllm bench serve: --backend %s is not supported; use openai (or vllm: /v1/completions "
                        "with token-id prompts) or openai-chat (/v1/chat/completions with text prompts)\n",
                o->backend);
        return 2;
    }
    bool chat_endpoint = o->endpoint && ends_with(o->endpoint, "chat/completions");
    o->chat = o->backend ? !strcmp(o->backend, "openai-chat") : chat_endpoint;
    if (!o->endpoint) o->endpoint = o->chat ? "/v1/chat/completions" : "/v1/completions";
    else if (o->chat && !chat_endpoint) {
        fprintf(stderr, "cllm bench serve: --backend openai-chat needs a chat completions URL: --endpoint %s must end "
                        "with 'chat/completions'\n", o->endpoint);
        return 2;
    } else if (!o->chat && chat_endpoint) {
        fprintf(stderr, "cllm bench serve: --endpoint %s is a chat endpoint, which does not take the token-id prompts "
                        "of --backend %s; use --backend openai-chat (or --endpoint /v1/completions)\n",
                o->endpoint, o->backend);
        return 2;
    }
    return -1;
}

static int parse(int argc, char **argv, bs_opts *o) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!cllm_arg_value(argc, argv, &i, &v)) return 2;
        int ok = 1;
        if (!strcmp(a, "--base-url")) o->base_url = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) ok = cllm_arg_long(a, v, 1, 65535, &o->port);
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--served-model-name")) o->served_model_name = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
        else if (!strcmp(a, "--endpoint")) o->endpoint = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--api-key")) o->api_key = v;
        else if (!strcmp(a, "--output-json")) o->json_path = v;
        else if (!strcmp(a, "--num-prompts")) ok = cllm_arg_long(a, v, 1, 10000000, &o->num_prompts);
        else if (!strcmp(a, "--random-input-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o->in_len);
        else if (!strcmp(a, "--random-output-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o->out_len);
        else if (!strcmp(a, "--random-range-ratio")) ok = cllm_arg_double(a, v, 0, 0.999999, &o->range_ratio);
        else if (!strcmp(a, "--max-concurrency")) ok = cllm_arg_long(a, v, 1, 1L << 20, &o->max_conc);
        else if (!strcmp(a, "--seed")) ok = cllm_arg_long(a, v, 0, 1L << 62, &o->seed);
        else if (!strcmp(a, "--ready-check-timeout-sec")) ok = cllm_arg_double(a, v, 0, 86400, &o->ready_timeout_s);
        else if (!strcmp(a, "--request-rate")) {
            if (!strcmp(v, "inf")) o->rate = INFINITY;
            else ok = cllm_arg_double(a, v, 1e-9, 1e9, &o->rate);
        } else {
            fprintf(stderr, "cllm bench serve: unknown flag '%s' (cllm bench serve --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!o->model) { fprintf(stderr, "cllm bench serve: --model is required (the served model's name)\n"); return 2; }
    return resolve_backend(o);
}

/* Chat prompt text for r->ids (r->in_len ids), as vLLM's
 * gen_prompt_decode_to_target_len: decode, re-encode (no special tokens),
 * truncate or extend with random allowed ids until the text encodes to
 * r->in_len tokens (10 tries at most). r->ids/in_len become the text's final
 * encoding. Returns the text (cllm_free) or NULL (cllm_last_error says why). */
static char *chat_prompt(const cllm_tokenizer *tok, bs_req *r, const int32_t *allowed, int n_allowed, uint64_t *rng) {
    int target = r->in_len;
    for (int tries = 10;; tries--) {
        char *text = NULL;
        int32_t *enc = NULL;
        size_t len = 0, n = 0;
        if (cllm_tokenizer_decode(tok, r->ids, (size_t)r->in_len, false, &text, &len) != CLLM_OK) return NULL;
        if (cllm_tokenizer_encode(tok, text, len, false, &enc, &n) != CLLM_OK) { cllm_free(text); return NULL; }
        size_t keep = n < (size_t)target ? n : (size_t)target;
        size_t cap = n > (size_t)target ? n : (size_t)target;
        int32_t *ids = realloc(r->ids, sizeof(int32_t) * (cap ? cap : 1));
        if (!ids) { cllm_free(text); cllm_free(enc); cllm_error(CLLM_ERR_OOM, "out of memory"); return NULL; }
        r->ids = ids;
        if (tries <= 0 || n == (size_t)target) { /* done: the text and its encoding */
            memcpy(ids, enc, sizeof(int32_t) * n);
            r->in_len = (int)n;
            cllm_free(enc);
            return text;
        }
        memcpy(ids, enc, sizeof(int32_t) * keep);
        for (size_t k = keep; k < (size_t)target; k++) ids[k] = allowed[splitmix(rng) % (uint64_t)n_allowed];
        r->in_len = target;
        cllm_free(enc);
        cllm_free(text);
    }
}

/* Draw the random dataset (vLLM's RandomDataset bounds); chat: text prompts
 * by the tokenizer of dir. Returns false after printing why. */
static bool make_requests(const bs_opts *o, bs_req *reqs, int n) {
    int n_allowed = 0;
    const char *dir = o->tokenizer;
    if (!dir && access(o->model, R_OK) == 0) dir = o->model;
    cllm_tokenizer *tok = NULL;
    if (o->chat && (!dir || cllm_tokenizer_load(dir, &tok) != CLLM_OK)) {
        fprintf(stderr, "cllm bench serve: error: --backend openai-chat decodes the random token ids into text with "
                        "the model's tokenizer: %s\n",
                dir ? cllm_last_error() : "pass --tokenizer DIR (a directory with tokenizer.json)");
        return false;
    }
    int32_t *allowed = allowed_ids(dir, &n_allowed);
    if (!allowed || n_allowed == 0) {
        fprintf(stderr, "cllm bench serve: error: out of memory building %d prompts\n", n);
        free(allowed);
        cllm_tokenizer_destroy(tok);
        return false;
    }
    uint64_t rng = (uint64_t)o->seed * 0x2545F4914F6CDD1Dull + 1;
    long in_lo = (long)floor(o->in_len * (1 - o->range_ratio)), in_hi = (long)ceil(o->in_len * (1 + o->range_ratio));
    long out_lo = (long)floor(o->out_len * (1 - o->range_ratio)), out_hi = (long)ceil(o->out_len * (1 + o->range_ratio));
    if (in_lo < 1) in_lo = 1;
    if (out_lo < 1) out_lo = 1;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        bs_req *r = &reqs[i];
        r->chat = o->chat;
        r->in_len = (int)uniform_int(&rng, in_lo, in_hi);
        r->out_len = (int)uniform_int(&rng, out_lo, out_hi);
        r->ids = malloc(sizeof(int32_t) * (size_t)r->in_len);
        r->out_tokens = r->prompt_tokens = -1;
        if (!r->ids) {
            fprintf(stderr, "cllm bench serve: error: out of memory building %d prompts\n", n);
            ok = false;
            break;
        }
        for (int k = 0; k < r->in_len; k++) r->ids[k] = allowed[splitmix(&rng) % (uint64_t)n_allowed];
        char *text = NULL;
        if (tok && !(text = chat_prompt(tok, r, allowed, n_allowed, &rng))) {
            fprintf(stderr, "cllm bench serve: error: cannot make prompt %d's text: %s\n", i, cllm_last_error());
            ok = false;
            break;
        }
        r->body = make_body(o, r, text);
        cllm_free(text);
        if (!r->body) {
            fprintf(stderr, "cllm bench serve: error: cannot build request %d's JSON body (out of memory, or the "
                            "decoded prompt is not valid UTF-8)\n", i);
            ok = false;
        }
    }
    free(allowed);
    cllm_tokenizer_destroy(tok);
    return ok;
}

/* vLLM's initial test run: the first prompt, retried every second until it
 * succeeds or timeout_s passes. Returns true when it succeeded. */
static bool ready_check(const char *url, struct curl_slist *hdrs, const bs_req *first, double timeout_s) {
    bs_req t = {0};
    t.in_len = first->in_len, t.out_len = first->out_len, t.body = first->body, t.chat = first->chat;
    double t0 = now_s(), arrival = 0;
    bool ok = false;
    for (;;) {
        run_requests(url, hdrs, &t, 1, &arrival, 1);
        if (!t.err) { ok = true; break; }
        if (now_s() - t0 + 1.0 > timeout_s) break;
        sleep(1);
    }
    if (!ok)
        fprintf(stderr, "cllm bench serve: error: initial test run failed for %.0f s (--ready-check-timeout-sec): %s; "
                        "is the server up at %s and serving that model?\n", timeout_s, t.err, url);
    req_reset(&t);
    return ok;
}

/* cllm bench serve (dispatched from cli/bench.c): argv[1] is "serve". */
int cllm_cli_bench_serve(int argc, char **argv) {
    bs_opts o = {.host = "127.0.0.1", .port = 8000, .num_prompts = 1000,
                 .in_len = 1024, .out_len = 128, .rate = INFINITY, .ready_timeout_s = 600};
    int prc = parse(argc, argv, &o);
    if (prc >= 0) return prc;
    char base[512], url[1024];
    if (o.base_url) snprintf(base, sizeof base, "%s", o.base_url);
    else snprintf(base, sizeof base, "http://%s:%ld", o.host, o.port);
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') base[--bl] = 0;
    o.base_url = base;
    snprintf(url, sizeof url, "%s%s%s", base, o.endpoint[0] == '/' ? "" : "/", o.endpoint);
    if (!o.api_key) o.api_key = getenv("OPENAI_API_KEY");

    int n = (int)o.num_prompts, rc = 1;
    bs_req *reqs = calloc((size_t)n, sizeof *reqs);
    double *arrival = calloc((size_t)n, sizeof(double));
    struct curl_slist *hdrs = NULL;
    char auth[600];
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "cllm bench serve: error: curl_global_init failed\n");
        free(reqs), free(arrival);
        return 1;
    }
    if (!reqs || !arrival) {
        fprintf(stderr, "cllm bench serve: error: out of memory building %d prompts\n", n);
        goto done;
    }
    if (!make_requests(&o, reqs, n)) goto done;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    if (o.api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o.api_key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (o.ready_timeout_s > 0) {
        printf("Starting initial single prompt test run...\n");
        fflush(stdout);
        if (!ready_check(url, hdrs, &reqs[0], o.ready_timeout_s)) goto done;
        printf("Initial test run completed. Starting main benchmark run...\n");
    }
    uint64_t rng = (uint64_t)o.seed ^ 0xA0761D6478BD642Full;
    for (int i = 1; i < n; i++)
        arrival[i] = arrival[i - 1] + (isinf(o.rate) ? 0 : -log(1.0 - uniform01(&rng)) / o.rate);
    if (isinf(o.rate)) printf("Traffic request rate: inf\n");
    else printf("Traffic request rate: %g\n", o.rate);
    printf("Burstiness factor: 1.0 (Poisson process)\n");
    if (o.max_conc > 0) printf("Maximum request concurrency: %ld\n", o.max_conc);
    else printf("Maximum request concurrency: None\n");
    fflush(stdout);
    double dur = run_requests(url, hdrs, reqs, n, arrival, o.max_conc);
    rc = report(&o, reqs, n, dur);
done:
    for (int i = 0; reqs && i < n; i++) {
        req_reset(&reqs[i]);
        free(reqs[i].ids);
        free(reqs[i].body);
    }
    free(reqs);
    free(arrival);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    return rc;
}
