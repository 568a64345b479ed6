/* cllm generate --input prompts.jsonl: every line is one request
 * ({"prompt": "..."} or {"prompt_token_ids": [...]}, plus vLLM
 * SamplingParams by name); all requests go through the continuous-batching
 * engine together; one JSON result per line, in input order, to --output
 * (default stdout). A bad line gives {"error": "line N: ..."} in its place
 * (and on stderr); the other lines still run. Sampling defaults: vLLM's,
 * then the model's generation_config.json, then the line. */
#include "cli/cli.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct line_req {
    json_t *in;            /* parsed line (owned) */
    json_t *result;        /* output object (owned) */
    char *error;           /* owned */
    uint64_t id;
    bool added, done;
    int n, num_done, num_prompt, num_gen;
    char **text;           /* (n) */
    size_t *text_len;
} line_req;

static char *fmt_err(int line, const char *msg) {
    size_t n = strlen(msg) + 32;
    char *s = malloc(n);
    if (s) snprintf(s, n, "line %d: %s", line, msg);
    return s;
}

#define MAX_LOGIT_BIAS 1024

/* Read a vLLM field into the params; returns an error message or NULL.
 * logit_bias: {"<token id>": bias} (at most MAX_LOGIT_BIAS entries; biases
 * clamped to [-100, 100]) into bias_ids / bias_vals. */
static const char *parse_params(json_t *o, cllm_request_params *p, const char **stops, int32_t *stop_ids,
                                int32_t *bias_ids, float *bias_vals) {
    const char *key;
    json_t *v;
    static char msg[256];
    json_object_foreach(o, key, v) {
#define NUM(name, field, cast)                                                           \
    if (!strcmp(key, name)) {                                                            \
        if (!json_is_number(v)) goto bad_type;                                           \
        p->field = (cast)json_number_value(v);                                           \
        continue;                                                                        \
    }
        NUM("max_tokens", max_tokens, int)
        NUM("temperature", temperature, float)
        NUM("top_p", top_p, float)
        NUM("top_k", top_k, int)
        NUM("min_p", min_p, float)
        NUM("min_tokens", min_tokens, int)
        NUM("n", n, int)
        NUM("logprobs", logprobs, int)
        NUM("presence_penalty", presence_penalty, float)
        NUM("frequency_penalty", frequency_penalty, float)
        NUM("repetition_penalty", repetition_penalty, float)
#undef NUM
        if (!strcmp(key, "seed")) {
            if (json_is_null(v)) continue;
            if (!json_is_integer(v)) goto bad_type;
            p->seed = (uint64_t)json_integer_value(v), p->has_seed = true;
        } else if (!strcmp(key, "ignore_eos") || !strcmp(key, "skip_special_tokens") ||
                   !strcmp(key, "include_stop_str_in_output")) {
            if (!json_is_boolean(v)) goto bad_type;
            bool b = json_is_true(v);
            if (key[0] == 'i' && key[1] == 'g') p->ignore_eos = b;
            else if (key[0] == 's') p->skip_special_tokens = b;
            else p->include_stop_str_in_output = b;
        } else if (!strcmp(key, "stop")) {
            if (json_is_string(v)) stops[0] = json_string_value(v), p->num_stop = 1;
            else if (json_is_array(v) && json_array_size(v) <= 16) {
                for (size_t i = 0; i < json_array_size(v); i++) {
                    if (!json_is_string(json_array_get(v, i))) goto bad_type;
                    stops[i] = json_string_value(json_array_get(v, i));
                }
                p->num_stop = (int)json_array_size(v);
            } else goto bad_type;
            p->stop = stops;
        } else if (!strcmp(key, "stop_token_ids")) {
            if (!json_is_array(v) || json_array_size(v) > 64) goto bad_type;
            for (size_t i = 0; i < json_array_size(v); i++) {
                if (!json_is_integer(json_array_get(v, i))) goto bad_type;
                stop_ids[i] = (int32_t)json_integer_value(json_array_get(v, i));
            }
            p->stop_token_ids = stop_ids, p->num_stop_token_ids = (int)json_array_size(v);
        } else if (!strcmp(key, "logit_bias")) {
            if (json_is_null(v)) continue;
            if (!json_is_object(v) || json_object_size(v) > MAX_LOGIT_BIAS) goto bad_type;
            const char *tk;
            json_t *bv;
            int nb = 0;
            json_object_foreach(v, tk, bv) {
                char *end;
                long id = strtol(tk, &end, 10);
                if (!*tk || *end || !json_is_number(bv) || id < INT32_MIN || id > INT32_MAX) goto bad_type;
                double b = json_number_value(bv); /* clamped to [-100, 100] as the server and vLLM do */
                bias_ids[nb] = (int32_t)id, bias_vals[nb++] = (float)(b < -100 ? -100 : b > 100 ? 100 : b);
            }
            p->logit_bias_token_ids = bias_ids, p->logit_bias_values = bias_vals, p->num_logit_bias = nb;
        } else if (strcmp(key, "prompt") && strcmp(key, "prompt_token_ids")) {
            snprintf(msg, sizeof msg, "unknown field \"%s\"", key);
            return msg;
        }
        continue;
    bad_type:
        snprintf(msg, sizeof msg, "field \"%s\" has the wrong type or size", key);
        return msg;
    }
    return NULL;
}

/* Parse line and add it to the engine; sets r->error on failure. */
static void add_line(cllm_engine *e, line_req *r, int lineno, const char *text) {
    json_error_t je;
    r->in = json_loads(text, 0, &je);
    if (!json_is_object(r->in)) {
        char m[300];
        snprintf(m, sizeof m, "not a JSON object (%s)", je.text);
        r->error = fmt_err(lineno, m);
        return;
    }
    cllm_request_params p = cllm_request_default_params();
    cllm_sampling_params gs = cllm_sampling_default_params();
    cllm_config_apply_generation(cllm_engine_model_config(e), &gs);
    p.temperature = gs.temperature, p.top_p = gs.top_p, p.top_k = gs.top_k, p.min_p = gs.min_p;
    const char *stops[16];
    int32_t stop_ids[64], bias_ids[MAX_LOGIT_BIAS];
    float bias_vals[MAX_LOGIT_BIAS];
    const char *msg = parse_params(r->in, &p, stops, stop_ids, bias_ids, bias_vals);
    if (msg) { r->error = fmt_err(lineno, msg); return; }
    json_t *pt = json_object_get(r->in, "prompt"), *pi = json_object_get(r->in, "prompt_token_ids");
    int32_t *ids = NULL;
    size_t nid = 0;
    if (pi) {
        if (!json_is_array(pi)) { r->error = fmt_err(lineno, "\"prompt_token_ids\" must be an array of integers"); return; }
        nid = json_array_size(pi);
        ids = malloc(sizeof(int32_t) * (nid + 1));
        for (size_t i = 0; ids && i < nid; i++) {
            json_t *x = json_array_get(pi, i);
            if (!json_is_integer(x)) { free(ids); r->error = fmt_err(lineno, "\"prompt_token_ids\" must hold integers"); return; }
            ids[i] = (int32_t)json_integer_value(x);
        }
    } else if (!json_is_string(pt)) {
        r->error = fmt_err(lineno, "give \"prompt\" (a string) or \"prompt_token_ids\"");
        return;
    }
    cllm_status st = cllm_engine_add_request(e, pi ? NULL : json_string_value(pt), ids, nid, &p, &r->id);
    free(ids);
    if (st != CLLM_OK) { r->error = fmt_err(lineno, cllm_last_error()); return; }
    r->added = true;
    r->n = p.n;
    r->result = json_object();
    json_object_set_new(r->result, "prompt", pi ? json_null() : json_string(json_string_value(pt)));
    json_t *outs = json_array();
    for (int k = 0; k < p.n; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer(k));
        json_object_set_new(o, "token_ids", json_array());
        if (p.logprobs >= 0) json_object_set_new(o, "logprobs", json_array());
        json_array_append_new(outs, o);
    }
    json_object_set_new(r->result, "outputs", outs);
    r->text = calloc((size_t)p.n, sizeof(char *));
    r->text_len = calloc((size_t)p.n, sizeof(size_t));
}

static void on_output(line_req *r, const cllm_request_output *o) {
    json_t *c = json_array_get(json_object_get(r->result, "outputs"), (size_t)o->index);
    json_t *ids = json_object_get(c, "token_ids"), *lps = json_object_get(c, "logprobs");
    for (int i = 0; i < o->num_new_tokens; i++) {
        json_array_append_new(ids, json_integer(o->new_token_ids[i]));
        if (lps && o->logprobs) {
            const cllm_logprob_entry *l = &o->logprobs[i];
            json_t *top = json_array();
            for (int j = 0; j < l->num_top; j++)
                json_array_append_new(top, json_pack("{s:i,s:f}", "token_id", l->top_ids[j], "logprob", (double)l->top_logprobs[j]));
            json_array_append_new(lps, json_pack("{s:i,s:f,s:o}", "token_id", l->token_id, "logprob", (double)l->logprob,
                                                 "top_logprobs", top));
        }
    }
    if (o->text_delta_len) {
        char *t = realloc(r->text[o->index], r->text_len[o->index] + o->text_delta_len + 1);
        if (t) {
            memcpy(t + r->text_len[o->index], o->text_delta, o->text_delta_len);
            r->text_len[o->index] += o->text_delta_len;
            t[r->text_len[o->index]] = 0;
            r->text[o->index] = t;
        }
    }
    r->num_prompt = o->num_prompt_tokens;
    if (o->finished) {
        json_object_set_new(c, "text", json_stringn(r->text[o->index] ? r->text[o->index] : "", r->text_len[o->index]));
        json_object_set_new(c, "finish_reason", json_string(o->finish_reason));
        r->num_gen += o->num_output_tokens;
        if (++r->num_done == r->n) r->done = true;
    }
}

static void write_line(FILE *f, line_req *r) {
    json_t *j = r->error ? json_pack("{s:s}", "error", r->error) : r->result;
    if (!r->error)
        json_object_set_new(r->result, "usage", json_pack("{s:i,s:i,s:i}", "prompt_tokens", r->num_prompt,
                                                          "completion_tokens", r->num_gen, "total_tokens",
                                                          r->num_prompt + r->num_gen));
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    fprintf(f, "%s\n", s ? s : "{}");
    free(s);
    if (r->error) json_decref(j);
}

static void free_line(line_req *r) {
    json_decref(r->in);
    json_decref(r->result);
    free(r->error);
    for (int k = 0; r->text && k < r->n; k++) free(r->text[k]);
    free(r->text);
    free(r->text_len);
}

int cllm_cli_generate_jsonl(const cllm_engine_params *ep, const char *input, const char *output) {
    FILE *in = fopen(input, "r");
    if (!in) { fprintf(stderr, "cllm: error: cannot open --input %s\n", input); return 1; }
    FILE *out = output ? fopen(output, "w") : stdout;
    if (!out) { fprintf(stderr, "cllm: error: cannot write --output %s\n", output); fclose(in); return 1; }
    cllm_engine *e = NULL;
    if (cllm_engine_create(ep, &e) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        fclose(in);
        if (out != stdout) fclose(out);
        return 1;
    }
    line_req *L = NULL;
    int nl = 0, cap = 0, bad = 0, rc = 0;
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t got;
    while ((got = getline(&buf, &bcap, in)) >= 0) {
        if (nl == cap) {
            cap = cap ? 2 * cap : 256;
            L = realloc(L, sizeof *L * (size_t)cap);
        }
        memset(&L[nl], 0, sizeof L[nl]);
        L[nl].in = json_stringn(buf, (size_t)got); /* raw text until added */
        nl++;
    }
    free(buf);
    fclose(in);
    int next_add = 0, next_write = 0, in_flight = 0, n_added = 0;
    int *added = malloc(sizeof(int) * (size_t)(nl + 1)); /* lines added, in id order */
    int max_waiting = ep->max_num_waiting > 0 ? ep->max_num_waiting : 4096;
    int max_in_flight = max_waiting / 2 > 0 ? max_waiting / 2 : 1;
    while (next_write < nl) {
        while (next_add < nl && in_flight < max_in_flight) {
            line_req *r = &L[next_add];
            json_t *raw = r->in;
            r->in = NULL;
            add_line(e, r, next_add + 1, json_string_value(raw));
            json_decref(raw);
            if (r->error) { fprintf(stderr, "cllm: %s\n", r->error); bad++; }
            else in_flight++, added[n_added++] = next_add;
            next_add++;
        }
        while (next_write < next_add && (L[next_write].error || L[next_write].done)) {
            write_line(out, &L[next_write]);
            free_line(&L[next_write]);
            next_write++;
        }
        if (!cllm_engine_has_unfinished(e)) continue;
        const cllm_request_output *o;
        int no;
        if (cllm_engine_step(e, &o, &no) != CLLM_OK) {
            fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
            rc = 1;
            break;
        }
        for (int i = 0; i < no; i++) {
            /* request ids grow with the line number: binary search */
            int lo = 0, hi = n_added - 1, hit = -1;
            while (lo <= hi) {
                int mid = (lo + hi) / 2;
                if (L[added[mid]].id == o[i].request_id) { hit = added[mid]; break; }
                if (L[added[mid]].id < o[i].request_id) lo = mid + 1;
                else hi = mid - 1;
            }
            if (hit < 0) continue;
            on_output(&L[hit], &o[i]);
            if (L[hit].done) in_flight--;
        }
    }
    for (int i = next_write; i < nl; i++) free_line(&L[i]);
    free(L);
    free(added);
    cllm_engine_stats s;
    cllm_engine_get_stats(e, &s);
    fprintf(stderr, "[%d requests (%d bad), %llu prompt + %llu generated tokens, %llu preemptions, prefix hits %llu/%llu]\n",
            nl, bad, (unsigned long long)s.prompt_tokens_total, (unsigned long long)s.generation_tokens_total,
            (unsigned long long)s.num_preemptions, (unsigned long long)s.prefix_cache_hits,
            (unsigned long long)s.prefix_cache_queries);
    cllm_engine_destroy(e);
    if (out != stdout) fclose(out);
    return rc ? rc : (bad ? 1 : 0);
}
