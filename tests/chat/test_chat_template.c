/* Chat template tests against outside truth:
 *  1. golden/chat_dev.json: transformers' apply_chat_template outputs for the
 *     templates in shared/tokenizers/<name>/tokenizer_config.json;
 *  2. tests/chat/cases.json: outputs of Python jinja2 with transformers'
 *     environment (made by gen_cases.py) for our own contexts and unit templates;
 *  3. bad input: syntax errors with positions, raise_exception messages,
 *     runaway templates that must stop.
 * Usage: test_chat_template <shared_dir> <cases.json> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm.h"
#include "tokenizer/chat_template.h"

static int failures = 0, checks = 0;

static void show_diff(const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i]) i++;
    fprintf(stderr, "    first difference at byte %zu\n    want: ...%.80s\n    got:  ...%.80s\n", i,
            want + (i > 20 ? i - 20 : 0), got + (i > 20 ? i - 20 : 0));
}

/* render and compare; want_err non-NULL: expect failure whose message contains it ("" = any) */
static void check(const char *label, const char *src, json_t *ctx, const char *want, const char *want_err) {
    checks++;
    cllm_chat_template *t = NULL;
    cllm_status st = cllm_chat_template_create(src, &t);
    if (st != CLLM_OK) {
        if (want_err && strstr(cllm_last_error(), want_err)) { return; }
        fprintf(stderr, "FAIL %s: compile: %s\n", label, cllm_last_error());
        failures++;
        return;
    }
    char *out = NULL;
    st = cllm_chat_template_render(t, ctx, &out);
    if (want_err) {
        if (st == CLLM_OK) { fprintf(stderr, "FAIL %s: expected error '%s', rendered '%s'\n", label, want_err, out); failures++; }
        else if (!strstr(cllm_last_error(), want_err)) { fprintf(stderr, "FAIL %s: error '%s' lacks '%s'\n", label, cllm_last_error(), want_err); failures++; }
    } else if (st != CLLM_OK) {
        fprintf(stderr, "FAIL %s: render: %s\n", label, cllm_last_error());
        failures++;
    } else if (strcmp(out, want) != 0) {
        fprintf(stderr, "FAIL %s: output differs\n", label);
        show_diff(want, out);
        failures++;
    }
    free(out);
    cllm_chat_template_destroy(t);
}

static const char *token_str(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : "";
}

static int run_golden(const char *shared) {
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/chat_dev.json", shared);
    json_error_t e;
    json_t *g = json_load_file(path, 0, &e);
    if (!g) { fprintf(stderr, "cannot load %s: %s\n", path, e.text); return -1; }
    const char *name;
    json_t *cases;
    int n = 0;
    json_object_foreach(g, name, cases) {
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer_config.json", shared, name);
        json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
        if (!cfg) { fprintf(stderr, "FAIL cannot load %s: %s\n", path, e.text); failures++; continue; }
        const char *src = json_string_value(json_object_get(cfg, "chat_template"));
        if (!src) { fprintf(stderr, "FAIL %s: no chat_template string\n", name); failures++; json_decref(cfg); continue; }
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c) {
            json_t *ctx = json_deep_copy(json_object_get(c, "input"));
            json_object_set_new(ctx, "bos_token", json_string(token_str(cfg, "bos_token")));
            json_object_set_new(ctx, "eos_token", json_string(token_str(cfg, "eos_token")));
            char label[256];
            snprintf(label, sizeof label, "golden %s #%zu", name, i);
            json_t *r = json_object_get(c, "rendered"), *er = json_object_get(c, "error");
            check(label, src, ctx, r ? json_string_value(r) : NULL, er ? (json_is_string(er) ? json_string_value(er) : "") : NULL);
            json_decref(ctx);
            n++;
        }
        json_decref(cfg);
    }
    json_decref(g);
    return n;
}

static int run_cases(const char *path, const char *shared) {
    json_error_t e;
    json_t *all = json_load_file(path, 0, &e);
    if (!all) { fprintf(stderr, "cannot load %s: %s\n", path, e.text); return -1; }
    json_t *templates = json_object_get(all, "templates"), *cases = json_object_get(all, "cases");
    size_t i;
    json_t *c;
    int n = 0;
    json_array_foreach(cases, i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        const char *tname = json_string_value(json_object_get(c, "template_ref"));
        json_t *cfg = NULL;
        if (tname) { /* a real template from shared/tokenizers */
            char p[1024];
            snprintf(p, sizeof p, "%s/tokenizers/%s/tokenizer_config.json", shared, tname);
            cfg = json_load_file(p, JSON_DECODE_INT_AS_REAL, &e);
            src = cfg ? json_string_value(json_object_get(cfg, "chat_template")) : NULL;
            if (!src) src = json_string_value(json_object_get(templates, tname));
        }
        if (!src) { fprintf(stderr, "FAIL case %zu: no template\n", i); failures++; json_decref(cfg); continue; }
        char label[256];
        snprintf(label, sizeof label, "case %zu (%s)", i, json_string_value(json_object_get(c, "name")));
        json_t *r = json_object_get(c, "rendered"), *er = json_object_get(c, "error");
        check(label, src, json_object_get(c, "context"), r ? json_string_value(r) : NULL,
              er ? json_string_value(er) : NULL);
        json_decref(cfg);
        n++;
    }
    json_decref(all);
    return n;
}

static void run_bad_input(void) {
    json_t *ctx = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", "hi");
    check("syntax: unclosed if", "{% if x %}abc", ctx, NULL, "line 1, column 14");
    check("syntax: bad token", "hello\n{{ 1 + }}", ctx, NULL, "line 2");
    check("syntax: unknown tag", "{% frobnicate %}", ctx, NULL, "frobnicate");
    check("syntax: unterminated string", "{{ 'abc }}", ctx, NULL, "unterminated string");
    check("syntax: deep nesting", "{{ ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))) }}", ctx, NULL, "nested too deeply");
    check("runtime: raise", "{{ raise_exception('Bad role: ' + messages[0].role) }}", ctx, NULL, "Bad role: user");
    check("runtime: undefined attr", "{{ foo.bar }}", ctx, NULL, "'foo' is undefined");
    check("runtime: macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", ctx, NULL, "recursion");
    check("runtime: huge range", "{% for i in range(100000000) %}x{% endfor %}", ctx, NULL, "range too big");
    check("runtime: output bomb", "{% set s = 'xxxxxxxxxxxxxxxx' %}{% for i in range(1000000) %}{% for j in range(1000000) %}{{ s }}{% endfor %}{% endfor %}", ctx, NULL, "");
    check("runtime: string bomb", "{{ 'ab' * 1000000000000 }}", ctx, NULL, "too large");
    check("runtime: list append refused", "{% set l = [] %}{{ l.append(1) }}", ctx, NULL, "unsafe");
    /* regressions found by fuzz/chat_template_fuzz.c */
    check("fuzz: huge format index", "{{ '{0999999999999999999999}'.format('x') }}", ctx, NULL, "format");
    check("fuzz: long number literal", "{% set ns.88888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888.5 = 1 %}", ctx, NULL, "");
    json_decref(ctx);
    /* NULL handling */
    checks++;
    cllm_chat_template *t = NULL;
    if (cllm_chat_template_create(NULL, &t) != CLLM_ERR_INVALID_ARG) { fprintf(stderr, "FAIL NULL source accepted\n"); failures++; }
    cllm_chat_template_destroy(NULL);
    if (cllm_chat_template_create("{{ messages }}", &t) == CLLM_OK) {
        char *out;
        json_t *arr = json_array();
        checks++;
        if (cllm_chat_template_render(t, arr, &out) != CLLM_ERR_INVALID_ARG) { fprintf(stderr, "FAIL non-object context accepted\n"); failures++; }
        json_decref(arr);
        cllm_chat_template_destroy(t);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s <shared_dir> <cases.json>\n", argv[0]); return 2; }
    int ng = run_golden(argv[1]);
    int nc = run_cases(argv[2], argv[1]);
    run_bad_input();
    if (ng <= 0 || nc <= 0) { fprintf(stderr, "FAIL: no golden (%d) or own cases (%d) loaded\n", ng, nc); return 1; }
    printf("chat templates: %d golden cases, %d own cases, %d checks, %d failures\n", ng, nc, checks, failures);
    return failures ? 1 : 0;
}
