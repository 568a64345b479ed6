/* Values of the Jinja-subset engine: arena, constructors, Python-compatible
 * str()/repr()/json.dumps() printing, equality and ordering, UTF-8 helpers.
 * Printing follows CPython 3 (float repr = shortest round-trip, str repr
 * quote choice and escapes, json.dumps with ensure_ascii=False). */
#include "tokenizer/jinja_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

jv jv_undef_v = {.t = JV_UNDEF}, jv_none_v = {.t = JV_NONE};
jv jv_true_v = {.t = JV_BOOL, .u.b = 1}, jv_false_v = {.t = JV_BOOL, .u.b = 0};

/* ---- arena ---- */
struct jinja_chunk { jinja_chunk *next; size_t cap, used; max_align_t data[]; };

void *jinja_alloc(jinja_arena *a, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (a->limit_bytes && a->used_bytes + bytes > a->limit_bytes) return NULL;
    jinja_chunk *c = a->head;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > 60000 ? bytes : 65536 - sizeof(jinja_chunk);
        c = malloc(sizeof(jinja_chunk) + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        if (bytes > 60000 && a->head) { /* big block: keep the current chunk on top */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += bytes;
    a->used_bytes += bytes;
    memset(p, 0, bytes);
    return p;
}

void jinja_arena_free(jinja_arena *a) {
    jinja_chunk *c = a->head;
    while (c) {
        jinja_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

void *jinja_fail(jinja_ctx *cx, const char *fmt, ...) {
    if (!cx->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cx->err, sizeof cx->err, fmt, ap);
        va_end(ap);
        cx->failed = 1;
    }
    return NULL;
}

static void *cx_alloc(jinja_ctx *cx, size_t n) {
    void *p = jinja_alloc(&cx->arena, n);
    if (!p) jinja_fail(cx, "template rendering used more than %zu bytes of memory", cx->arena.limit_bytes);
    return p;
}

/* ---- buffers ---- */
void jbuf_init(jbuf *b, jinja_ctx *cx) { memset(b, 0, sizeof *b); b->cx = cx; }

int jbuf_put(jbuf *b, const char *s, size_t n) {
    if (b->failed) return -1;
    if (b->len + n > b->cx->max_output_bytes) {
        b->failed = 1;
        jinja_fail(b->cx, "rendered text exceeds the limit of %zu bytes", b->cx->max_output_bytes);
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = cx_alloc(b->cx, cap);
        if (!p) { b->failed = 1; return -1; }
        if (b->len) memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}
int jbuf_puts(jbuf *b, const char *s) { return jbuf_put(b, s, strlen(s)); }
int jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    return jbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- constructors ---- */
jv *jv_int(jinja_ctx *cx, int64_t i) {
    jv *v = cx_alloc(cx, sizeof *v);
    if (v) { v->t = JV_INT; v->u.i = i; }
    return v;
}
jv *jv_float(jinja_ctx *cx, double f) {
    jv *v = cx_alloc(cx, sizeof *v);
    if (v) { v->t = JV_FLOAT; v->u.f = f; }
    return v;
}
jv *jv_str(jinja_ctx *cx, const char *s, size_t len) {
    if (len > cx->max_output_bytes)
        return jinja_fail(cx, "string of %zu bytes exceeds the limit of %zu bytes", len, cx->max_output_bytes);
    jv *v = cx_alloc(cx, sizeof *v + len + 1);
    if (!v) return NULL;
    char *p = (char *)(v + 1);
    if (len) memcpy(p, s, len);
    v->t = JV_STR;
    v->u.s.s = p;
    v->u.s.len = len;
    return v;
}
jv *jv_cstr(jinja_ctx *cx, const char *s) { return jv_str(cx, s, strlen(s)); }
jv *jv_list(jinja_ctx *cx, jv_type t, size_t cap) {
    jv *v = cx_alloc(cx, sizeof *v);
    if (!v) return NULL;
    v->t = t;
    if (cap) {
        v->u.l.v = cx_alloc(cx, cap * sizeof(jv *));
        if (!v->u.l.v) return NULL;
        v->u.l.cap = cap;
    }
    return v;
}
int jv_list_push(jinja_ctx *cx, jv *l, jv *x) {
    if (!x) return -1;
    if (l->u.l.n == l->u.l.cap) {
        size_t cap = l->u.l.cap ? l->u.l.cap * 2 : 4;
        jv **nv = cx_alloc(cx, cap * sizeof(jv *));
        if (!nv) return -1;
        if (l->u.l.n) memcpy(nv, l->u.l.v, l->u.l.n * sizeof(jv *));
        l->u.l.v = nv;
        l->u.l.cap = cap;
    }
    l->u.l.v[l->u.l.n++] = x;
    return 0;
}
jv *jv_dict(jinja_ctx *cx, jv_type t) {
    jv *v = cx_alloc(cx, sizeof *v);
    if (v) v->t = t;
    return v;
}
static int dict_find(const jv *d, const jv *k) {
    for (size_t i = 0; i < d->u.d.n; i++)
        if (jv_equal(d->u.d.k[i], k)) return (int)i;
    return -1;
}
int jv_dict_set(jinja_ctx *cx, jv *d, jv *k, jv *v) {
    if (!k || !v) return -1;
    int i = dict_find(d, k);
    if (i >= 0) { d->u.d.v[i] = v; return 0; }
    if (d->u.d.n == d->u.d.cap) {
        size_t cap = d->u.d.cap ? d->u.d.cap * 2 : 4;
        jv **nk = cx_alloc(cx, cap * sizeof(jv *)), **nv = cx_alloc(cx, cap * sizeof(jv *));
        if (!nk || !nv) return -1;
        if (d->u.d.n) {
            memcpy(nk, d->u.d.k, d->u.d.n * sizeof(jv *));
            memcpy(nv, d->u.d.v, d->u.d.n * sizeof(jv *));
        }
        d->u.d.k = nk;
        d->u.d.v = nv;
        d->u.d.cap = cap;
    }
    d->u.d.k[d->u.d.n] = k;
    d->u.d.v[d->u.d.n++] = v;
    return 0;
}
jv *jv_dict_get(jv *d, jv *k) {
    int i = dict_find(d, k);
    return i >= 0 ? d->u.d.v[i] : NULL;
}
jv *jv_dict_gets(jv *d, const char *k) {
    size_t n = strlen(k);
    for (size_t i = 0; i < d->u.d.n; i++) {
        jv *key = d->u.d.k[i];
        if (key->t == JV_STR && key->u.s.len == n && memcmp(key->u.s.s, k, n) == 0) return d->u.d.v[i];
    }
    return NULL;
}
jv *jv_undef_named(jinja_ctx *cx, const char *name, const char *owner) {
    jv *v = cx_alloc(cx, sizeof *v);
    if (v) { v->t = JV_UNDEF; v->u.ud.name = name; v->u.ud.owner = owner; }
    return v;
}

/* ---- semantics ---- */
int jv_is_seq(const jv *v) { return v->t == JV_LIST || v->t == JV_TUPLE; }

const char *jv_type_name(const jv *v) {
    switch (v->t) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_METHOD: return "builtin_function_or_method";
    case JV_FUNC: return "function";
    case JV_MACRO: return "Macro";
    }
    return "object";
}

int jv_truthy(const jv *v) {
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.s.len != 0;
    case JV_LIST: case JV_TUPLE: return v->u.l.n != 0;
    case JV_DICT: return v->u.d.n != 0;
    default: return 1;
    }
}

static int is_num(const jv *v) { return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL; }
static double num_val(const jv *v) { return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : v->u.b; }
static int64_t int_val(const jv *v) { return v->t == JV_INT ? v->u.i : v->u.b; }

int jv_equal(const jv *a, const jv *b) {
    if (a == b) return 1;
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) return int_val(a) == int_val(b);
        return num_val(a) == num_val(b);
    }
    if (a->t == JV_UNDEF || b->t == JV_UNDEF) return a->t == b->t;
    if (jv_is_seq(a) && jv_is_seq(b)) {
        if (a->t != b->t || a->u.l.n != b->u.l.n) return 0;
        for (size_t i = 0; i < a->u.l.n; i++)
            if (!jv_equal(a->u.l.v[i], b->u.l.v[i])) return 0;
        return 1;
    }
    if (a->t != b->t) return 0;
    switch (a->t) {
    case JV_NONE: return 1;
    case JV_STR: return a->u.s.len == b->u.s.len && memcmp(a->u.s.s, b->u.s.s, a->u.s.len) == 0;
    case JV_DICT:
        if (a->u.d.n != b->u.d.n) return 0;
        for (size_t i = 0; i < a->u.d.n; i++) {
            jv *o = jv_dict_get((jv *)b, a->u.d.k[i]);
            if (!o || !jv_equal(a->u.d.v[i], o)) return 0;
        }
        return 1;
    case JV_METHOD: return a->u.m.self == b->u.m.self && strcmp(a->u.m.name, b->u.m.name) == 0;
    case JV_FUNC: return strcmp(a->u.fn.name, b->u.fn.name) == 0;
    default: return 0; /* identity already checked */
    }
}

int jv_compare(const jv *a, const jv *b, int *out) {
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) {
            int64_t x = int_val(a), y = int_val(b);
            *out = x < y ? -1 : x > y;
        } else {
            double x = num_val(a), y = num_val(b);
            *out = x < y ? -1 : x > y; /* NaN compares equal-ish; Python gives False both ways */
        }
        return 1;
    }
    if (a->t == JV_STR && b->t == JV_STR) { /* UTF-8 byte order == code point order */
        size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int c = memcmp(a->u.s.s, b->u.s.s, n);
        *out = c < 0 ? -1 : c > 0 ? 1 : a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
        return 1;
    }
    if (jv_is_seq(a) && a->t == b->t) {
        for (size_t i = 0; i < a->u.l.n && i < b->u.l.n; i++) {
            if (jv_equal(a->u.l.v[i], b->u.l.v[i])) continue;
            return jv_compare(a->u.l.v[i], b->u.l.v[i], out);
        }
        *out = a->u.l.n < b->u.l.n ? -1 : a->u.l.n > b->u.l.n;
        return 1;
    }
    return 0;
}

/* ---- UTF-8 ---- */
int utf8_decode(const char *s, size_t len, size_t *pos) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + *pos, (utf8proc_ssize_t)(len - *pos), &cp);
    if (n <= 0) { (*pos)++; return 0xFFFD; } /* invalid byte: consume one */
    *pos += (size_t)n;
    return cp;
}
int utf8_encode(uint32_t cp, char *out) {
    return (int)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}
size_t utf8_count(const char *s, size_t len) {
    size_t n = 0, pos = 0;
    while (pos < len) { utf8_decode(s, len, &pos); n++; }
    return n;
}
size_t utf8_offset(const char *s, size_t len, size_t cp_index) {
    size_t pos = 0;
    while (cp_index-- && pos < len) utf8_decode(s, len, &pos);
    return pos;
}
int py_isspace(int cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0)
        return 1;
    if (cp < 0x1680) return 0;
    return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* ---- printing ---- */
void jv_format_float(double f, char *out, size_t cap) {
    if (isnan(f)) { snprintf(out, cap, "nan"); return; }
    if (isinf(f)) { snprintf(out, cap, f < 0 ? "-inf" : "inf"); return; }
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* shortest round-trip */
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f) break;
    }
    /* digits: [-]d.ddde[+-]XX */
    char mant[40];
    int neg = digits[0] == '-';
    const char *p = digits + neg;
    int nm = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = 0;
    int exp = atoi(p + 1);
    while (nm > 1 && mant[nm - 1] == '0') mant[--nm] = 0;
    char *o = out;
    size_t left = cap;
#define EMIT(...) do { int k_ = snprintf(o, left, __VA_ARGS__); if (k_ < 0 || (size_t)k_ >= left) return; o += k_; left -= (size_t)k_; } while (0)
    if (neg) EMIT("-");
    if (exp < -4 || exp >= 16) {
        EMIT("%c", mant[0]);
        if (nm > 1) EMIT(".%s", mant + 1);
        EMIT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        EMIT("0.");
        for (int i = 0; i < -exp - 1; i++) EMIT("0");
        EMIT("%s", mant);
    } else {
        for (int i = 0; i <= exp; i++) EMIT("%c", i < nm ? mant[i] : '0');
        EMIT(".");
        if (nm > exp + 1) EMIT("%s", mant + exp + 1);
        else EMIT("0");
    }
#undef EMIT
}

static int repr_str(jbuf *b, const char *s, size_t len) {
    int has_sq = memchr(s, '\'', len) != NULL, has_dq = memchr(s, '"', len) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    jbuf_put(b, &q, 1);
    size_t pos = 0;
    while (pos < len) {
        size_t start = pos;
        int cp = utf8_decode(s, len, &pos);
        if (cp == q || cp == '\\') { char e[2] = {'\\', (char)cp}; jbuf_put(b, e, 2); }
        else if (cp == '\n') jbuf_puts(b, "\\n");
        else if (cp == '\r') jbuf_puts(b, "\\r");
        else if (cp == '\t') jbuf_puts(b, "\\t");
        else if (cp < 0x20 || cp == 0x7f) jbuf_printf(b, "\\x%02x", cp);
        else if (cp < 0x7f) { char c = (char)cp; jbuf_put(b, &c, 1); }
        else {
            utf8proc_category_t cat = utf8proc_category(cp);
            int printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                              cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO ||
                              cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
                              cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
            if (printable) jbuf_put(b, s + start, pos - start);
            else if (cp < 0x100) jbuf_printf(b, "\\x%02x", cp);
            else if (cp < 0x10000) jbuf_printf(b, "\\u%04x", cp);
            else jbuf_printf(b, "\\U%08x", cp);
        }
    }
    return jbuf_put(b, &q, 1);
}

int jv_repr(jbuf *b, const jv *v) {
    if (b->cx->depth > b->cx->max_depth) { b->failed = 1; jinja_fail(b->cx, "value nested too deeply to print"); return -1; }
    switch (v->t) {
    case JV_STR: return repr_str(b, v->u.s.s, v->u.s.len);
    case JV_LIST: case JV_TUPLE: {
        b->cx->depth++;
        jbuf_puts(b, v->t == JV_LIST ? "[" : "(");
        for (size_t i = 0; i < v->u.l.n && !b->failed; i++) {
            if (i) jbuf_puts(b, ", ");
            jv_repr(b, v->u.l.v[i]);
        }
        if (v->t == JV_TUPLE && v->u.l.n == 1) jbuf_puts(b, ",");
        b->cx->depth--;
        return jbuf_puts(b, v->t == JV_LIST ? "]" : ")");
    }
    case JV_DICT: {
        b->cx->depth++;
        jbuf_puts(b, "{");
        for (size_t i = 0; i < v->u.d.n && !b->failed; i++) {
            if (i) jbuf_puts(b, ", ");
            jv_repr(b, v->u.d.k[i]);
            jbuf_puts(b, ": ");
            jv_repr(b, v->u.d.v[i]);
        }
        b->cx->depth--;
        return jbuf_puts(b, "}");
    }
    default: return jv_to_str(b, v);
    }
}

int jv_to_str(jbuf *b, const jv *v) {
    char tmp[64];
    switch (v->t) {
    case JV_UNDEF: return 0;
    case JV_NONE: return jbuf_puts(b, "None");
    case JV_BOOL: return jbuf_puts(b, v->u.b ? "True" : "False");
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT: jv_format_float(v->u.f, tmp, sizeof tmp); return jbuf_puts(b, tmp);
    case JV_STR: return jbuf_put(b, v->u.s.s, v->u.s.len);
    case JV_NS: return jbuf_puts(b, "<Namespace>");
    case JV_METHOD: return jbuf_printf(b, "<built-in method %s>", v->u.m.name);
    case JV_FUNC: return jbuf_printf(b, "<function %s>", v->u.fn.name);
    case JV_MACRO: return jbuf_puts(b, "<Macro>");
    default: return jv_repr(b, v);
    }
}

jv *jv_stringify(jinja_ctx *cx, jv *v) {
    if (!v) return NULL;
    if (v->t == JV_STR) return v;
    jbuf b;
    jbuf_init(&b, cx);
    if (jv_to_str(&b, v) < 0 || b.failed) return NULL;
    return jv_str(cx, b.p ? b.p : "", b.len);
}

static int json_str(jbuf *b, const char *s, size_t len) {
    jbuf_put(b, "\"", 1);
    size_t i = 0, run = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        char tmp[8];
        if (c == '"') e = "\\\"";
        else if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == '\b') e = "\\b";
        else if (c == '\f') e = "\\f";
        else if (c < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", c); e = tmp; }
        if (e) {
            jbuf_put(b, s + run, i - run);
            jbuf_puts(b, e);
            run = i + 1;
        }
    }
    jbuf_put(b, s + run, len - run);
    return jbuf_put(b, "\"", 1);
}

static int json_newline(jbuf *b, int indent, int level) {
    jbuf_put(b, "\n", 1);
    for (int i = 0; i < indent * level && !b->failed; i++) jbuf_put(b, " ", 1);
    return b->failed ? -1 : 0;
}

static int json_key(jbuf *b, const jv *k) {
    char tmp[64];
    switch (k->t) {
    case JV_STR: return json_str(b, k->u.s.s, k->u.s.len);
    case JV_INT: jbuf_printf(b, "\"%lld\"", (long long)k->u.i); return 0;
    case JV_FLOAT: jv_format_float(k->u.f, tmp, sizeof tmp); return jbuf_printf(b, "\"%s\"", tmp);
    case JV_BOOL: return jbuf_puts(b, k->u.b ? "\"true\"" : "\"false\"");
    case JV_NONE: return jbuf_puts(b, "\"null\"");
    default:
        b->failed = 1;
        jinja_fail(b->cx, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
        return -1;
    }
}

static int cmp_keys(const void *x, const void *y) {
    const jv *a = *(jv *const *)x, *b = *(jv *const *)y;
    int c = 0;
    jv_compare(a, b, &c);
    return c;
}

int jv_tojson(jbuf *b, const jv *v, int indent, const char *isep, const char *ksep, int sort_keys, int level) {
    char tmp[64];
    if (b->failed) return -1;
    if (level > b->cx->max_depth) { b->failed = 1; jinja_fail(b->cx, "value nested too deeply for tojson"); return -1; }
    switch (v->t) {
    case JV_NONE: return jbuf_puts(b, "null");
    case JV_BOOL: return jbuf_puts(b, v->u.b ? "true" : "false");
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT:
        if (isnan(v->u.f)) return jbuf_puts(b, "NaN");
        if (isinf(v->u.f)) return jbuf_puts(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        jv_format_float(v->u.f, tmp, sizeof tmp);
        return jbuf_puts(b, tmp);
    case JV_STR: return json_str(b, v->u.s.s, v->u.s.len);
    case JV_LIST: case JV_TUPLE:
        if (v->u.l.n == 0) return jbuf_puts(b, "[]");
        jbuf_puts(b, "[");
        for (size_t i = 0; i < v->u.l.n && !b->failed; i++) {
            if (i) jbuf_puts(b, isep);
            if (indent >= 0) json_newline(b, indent, level + 1);
            jv_tojson(b, v->u.l.v[i], indent, isep, ksep, sort_keys, level + 1);
        }
        if (indent >= 0) json_newline(b, indent, level);
        return jbuf_puts(b, "]");
    case JV_DICT: {
        if (v->u.d.n == 0) return jbuf_puts(b, "{}");
        size_t n = v->u.d.n;
        size_t *order = jinja_alloc(&b->cx->arena, n * sizeof(size_t));
        jv **keys = jinja_alloc(&b->cx->arena, n * sizeof(jv *));
        if (!order || !keys) { b->failed = 1; jinja_fail(b->cx, "out of memory in tojson"); return -1; }
        for (size_t i = 0; i < n; i++) keys[i] = v->u.d.k[i];
        if (sort_keys) {
            for (size_t i = 0; i < n; i++)
                if (keys[i]->t != JV_STR) { b->failed = 1; jinja_fail(b->cx, "tojson(sort_keys=true) needs string keys"); return -1; }
            qsort(keys, n, sizeof(jv *), cmp_keys);
        }
        jbuf_puts(b, "{");
        for (size_t i = 0; i < n && !b->failed; i++) {
            if (i) jbuf_puts(b, isep);
            if (indent >= 0) json_newline(b, indent, level + 1);
            json_key(b, keys[i]);
            jbuf_puts(b, ksep);
            jv_tojson(b, jv_dict_get((jv *)v, keys[i]), indent, isep, ksep, sort_keys, level + 1);
        }
        if (indent >= 0) json_newline(b, indent, level);
        return jbuf_puts(b, "}");
    }
    default:
        b->failed = 1;
        jinja_fail(b->cx, "Object of type %s is not JSON serializable", v->t == JV_UNDEF ? "Undefined" : jv_type_name(v));
        return -1;
    }
}
