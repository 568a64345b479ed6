/* Post-processors (see postprocessor.h), following
 * tokenizers/src/processors/{template,bert,roberta,sequence}.rs. */
#include "tokenizer/postprocessor.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define SEQ_A (-1)

/* A list of templates applied in order; each is ids with SEQ_A marking $A. */
struct cllm_postprocessor {
    struct tmpl { int32_t *items; size_t n; } *t;
    size_t n;
};

void cllm_postprocessor_free(cllm_postprocessor *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->t[i].items);
    free(p->t);
    free(p);
}

static cllm_status add_template(cllm_postprocessor *p, int32_t *items, size_t n) {
    struct tmpl *t = realloc(p->t, (p->n + 1) * sizeof *t);
    if (!t) { free(items); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
    p->t = t;
    p->t[p->n++] = (struct tmpl){items, n};
    return CLLM_OK;
}

static cllm_status parse_template(const json_t *j, cllm_postprocessor *p) {
    const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single)) return cllm_error(CLLM_ERR_FORMAT, "TemplateProcessing without a \"single\" template");
    size_t cap = 0, n = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *sp = json_object_get(json_array_get(single, i), "SpecialToken");
        const json_t *ids = sp ? json_object_get(json_object_get(specials, json_string_value(json_object_get(sp, "id")) ?
                                                                           json_string_value(json_object_get(sp, "id")) : ""), "ids")
                               : NULL;
        cap += sp ? json_array_size(ids) : 1;
    }
    int32_t *items = malloc((cap + 1) * sizeof *items);
    if (!items) return cllm_error(CLLM_ERR_OOM, "out of memory");
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *e = json_array_get(single, i);
        const json_t *sp = json_object_get(e, "SpecialToken"), *seq = json_object_get(e, "Sequence");
        if (seq) {
            const char *id = json_string_value(json_object_get(seq, "id"));
            if (!id || strcmp(id, "A")) { free(items); return cllm_error(CLLM_ERR_FORMAT, "TemplateProcessing single template may only use sequence $A"); }
            items[n++] = SEQ_A;
        } else if (sp) {
            const char *name = json_string_value(json_object_get(sp, "id"));
            const json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
            if (!name || !json_is_array(ids)) {
                free(items);
                return cllm_error(CLLM_ERR_FORMAT, "TemplateProcessing: special token \"%s\" missing from special_tokens", name ? name : "?");
            }
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_int_t v = json_integer_value(json_array_get(ids, k));
                if (v < 0 || v > INT32_MAX) { free(items); return cllm_error(CLLM_ERR_FORMAT, "TemplateProcessing: bad id for \"%s\"", name); }
                items[n++] = (int32_t)v;
            }
        } else {
            free(items);
            return cllm_error(CLLM_ERR_FORMAT, "TemplateProcessing: template item is neither SpecialToken nor Sequence");
        }
    }
    return add_template(p, items, n);
}

/* Bert/Roberta: cls $A sep, each given as [token, id]. */
static cllm_status parse_cls_sep(const json_t *j, const char *type, cllm_postprocessor *p) {
    json_int_t cls = json_integer_value(json_array_get(json_object_get(j, "cls"), 1));
    json_int_t sep = json_integer_value(json_array_get(json_object_get(j, "sep"), 1));
    if (cls < 0 || sep < 0 || !json_is_array(json_object_get(j, "cls")) || !json_is_array(json_object_get(j, "sep")))
        return cllm_error(CLLM_ERR_FORMAT, "%s needs \"cls\" and \"sep\" as [token, id]", type);
    int32_t *items = malloc(3 * sizeof *items);
    if (!items) return cllm_error(CLLM_ERR_OOM, "out of memory");
    items[0] = (int32_t)cls; items[1] = SEQ_A; items[2] = (int32_t)sep;
    return add_template(p, items, 3);
}

static cllm_status parse_into(const json_t *j, cllm_postprocessor *p) {
    if (!j || json_is_null(j)) return CLLM_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return cllm_error(CLLM_ERR_FORMAT, "post_processor without a \"type\"");
    if (!strcmp(type, "TemplateProcessing")) return parse_template(j, p);
    if (!strcmp(type, "ByteLevel")) return CLLM_OK; /* only adjusts offsets */
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) return parse_cls_sep(j, type, p);
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(j, "processors");
        if (!json_is_array(arr)) return cllm_error(CLLM_ERR_FORMAT, "Sequence post_processor without \"processors\"");
        for (size_t i = 0; i < json_array_size(arr); i++) CLLM_TRY(parse_into(json_array_get(arr, i), p));
        return CLLM_OK;
    }
    return cllm_error(CLLM_ERR_UNSUPPORTED, "post_processor type \"%s\" is not supported (supported: TemplateProcessing, "
                      "BertProcessing, RobertaProcessing, ByteLevel, Sequence)", type);
}

cllm_status cllm_postprocessor_parse(const json_t *j, cllm_postprocessor **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return CLLM_OK;
    cllm_postprocessor *p = calloc(1, sizeof *p);
    if (!p) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = parse_into(j, p);
    if (st != CLLM_OK) { cllm_postprocessor_free(p); return st; }
    *out = p;
    return CLLM_OK;
}

cllm_status cllm_postprocessor_apply(const cllm_postprocessor *p, const int32_t *ids, size_t n, cllm_ids *out) {
    cllm_ids cur = {0}, next = {0};
    for (size_t i = 0; i < n; i++) cllm_ids_push(&cur, ids[i]);
    for (size_t t = 0; p && t < p->n; t++) {
        next.n = 0;
        for (size_t k = 0; k < p->t[t].n; k++) {
            if (p->t[t].items[k] != SEQ_A) cllm_ids_push(&next, p->t[t].items[k]);
            else for (size_t i = 0; i < cur.n; i++) cllm_ids_push(&next, cur.v[i]);
        }
        cllm_ids tmp = cur; cur = next; next = tmp;
    }
    for (size_t i = 0; i < cur.n; i++) cllm_ids_push(out, cur.v[i]);
    bool oom = cur.oom || next.oom || out->oom;
    free(cur.v);
    free(next.v);
    return oom ? cllm_error(CLLM_ERR_OOM, "out of memory post-processing") : CLLM_OK;
}
