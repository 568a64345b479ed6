/* Filters of the Jinja-subset engine (jinja2 3.1 builtin filters, plus
 * transformers' tojson override: json.dumps(x, ensure_ascii=False,
 * indent=None, separators=None, sort_keys=False)). */
#include "tokenizer/jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { jv **args; int nargs; const char **kwn; jv **kwv; int nkw; } fargs;

static jv *A(fargs *a, int i, const char *name) {
    if (i >= 0 && i < a->nargs) return a->args[i];
    for (int k = 0; name && k < a->nkw; k++) if (strcmp(a->kwn[k], name) == 0) return a->kwv[k];
    return NULL;
}

static jv *str_of(jinja_ctx *cx, jv *x) { return jv_stringify(cx, x); }

/* attribute path "a.b" or integer index, as jinja's make_attrgetter */
static jv *get_path(jinja_ctx *cx, jv *x, jv *attr) {
    if (attr->t == JV_INT) return jinja_getitem(cx, x, attr);
    if (attr->t != JV_STR) return jinja_fail(cx, "attribute must be a string");
    const char *s = attr->u.s.s;
    size_t len = attr->u.s.len, st = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') continue;
        jv *k;
        int digits = i > st;
        for (size_t q = st; q < i; q++) digits &= s[q] >= '0' && s[q] <= '9';
        if (digits && i - st < 18) k = jv_int(cx, strtoll(s + st, NULL, 10));
        else k = jv_str(cx, s + st, i - st);
        if (!k || !(x = jinja_getitem(cx, x, k))) return NULL;
        if (x->t == JV_UNDEF && i < len) return x; /* jinja stops on undefined */
        st = i + 1;
    }
    return x;
}

/* sort key comparison with case folding of strings */
typedef struct { jinja_ctx *cx; int case_sensitive; int failed; } cmpctx;
static int cmp_vals(cmpctx *c, jv *a, jv *b) {
    int r;
    if (!c->case_sensitive && a->t == JV_STR && b->t == JV_STR) {
        a = jinja_str_case(c->cx, a, 'l');
        b = jinja_str_case(c->cx, b, 'l');
        if (!a || !b) { c->failed = 1; return 0; }
    }
    if (!jv_compare(a, b, &r)) {
        if (!c->failed) jinja_fail(c->cx, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
        c->failed = 1;
        return 0;
    }
    return r;
}
/* stable merge sort of items by keys */
static int msort(cmpctx *c, jv **items, jv **keys, size_t n, jv **ti, jv **tk, int reverse) {
    if (n < 2) return 0;
    size_t h = n / 2;
    msort(c, items, keys, h, ti, tk, reverse);
    msort(c, items + h, keys + h, n - h, ti, tk, reverse);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int r = cmp_vals(c, keys[j], keys[i]);
        if (reverse) r = -r;
        if (r < 0) { ti[k] = items[j]; tk[k++] = keys[j++]; }
        else { ti[k] = items[i]; tk[k++] = keys[i++]; }
    }
    while (i < h) { ti[k] = items[i]; tk[k++] = keys[i++]; }
    while (j < n) { ti[k] = items[j]; tk[k++] = keys[j++]; }
    memcpy(items, ti, n * sizeof(jv *));
    memcpy(keys, tk, n * sizeof(jv *));
    return c->failed ? -1 : 0;
}

static jv *copy_list(jinja_ctx *cx, jv *items) {
    jv *l = jv_list(cx, JV_LIST, items->u.l.n);
    for (size_t i = 0; l && i < items->u.l.n; i++) if (jv_list_push(cx, l, items->u.l.v[i]) < 0) return NULL;
    return l;
}

static jv *do_sort(jinja_ctx *cx, jv *x, fargs *a) {
    jv *items = jinja_iterable(cx, x), *rev = A(a, 0, "reverse"), *cs = A(a, 1, "case_sensitive"), *attr = A(a, 2, "attribute");
    if (!items || !(items = copy_list(cx, items))) return NULL;
    size_t n = items->u.l.n;
    if (!n) return items;
    jv **keys = jinja_alloc(&cx->arena, n * sizeof(jv *)), **ti = jinja_alloc(&cx->arena, n * sizeof(jv *)),
       **tk = jinja_alloc(&cx->arena, n * sizeof(jv *));
    if (!keys || !ti || !tk) return jinja_fail(cx, "out of memory");
    for (size_t i = 0; i < n; i++) if (!(keys[i] = attr ? get_path(cx, items->u.l.v[i], attr) : items->u.l.v[i])) return NULL;
    cmpctx c = {cx, cs && jv_truthy(cs), 0};
    if (msort(&c, items->u.l.v, keys, n, ti, tk, rev && jv_truthy(rev)) < 0) return NULL;
    return items;
}

static jv *select_impl(jinja_ctx *cx, jframe *f, jv *x, fargs *a, int by_attr, int keep) {
    jv *items = jinja_iterable(cx, x);
    if (!items) return NULL;
    int off = by_attr ? 1 : 0;
    jv *attr = by_attr ? A(a, 0, NULL) : NULL;
    if (by_attr && !attr) return jinja_fail(cx, "selectattr/rejectattr need an attribute name");
    jv *test = a->nargs > off ? a->args[off] : NULL;
    if (test && test->t != JV_STR) return jinja_fail(cx, "test name must be a string");
    char tname[64] = "";
    if (test) { if (test->u.s.len >= sizeof tname) return jinja_fail(cx, "no test named that"); memcpy(tname, test->u.s.s, test->u.s.len); tname[test->u.s.len] = 0; }
    jv *out = jv_list(cx, JV_LIST, 0);
    for (size_t i = 0; out && i < items->u.l.n; i++) {
        jv *v = items->u.l.v[i];
        if (attr && !(v = get_path(cx, v, attr))) return NULL;
        int r;
        if (!test) r = jv_truthy(v);
        else if (jinja_test(cx, tname, v, a->args + off + 1, a->nargs - off - 1, &r) < 0) return NULL;
        if ((r != 0) == keep && jv_list_push(cx, out, items->u.l.v[i]) < 0) return NULL;
    }
    (void)f;
    return out;
}

static jv *do_map(jinja_ctx *cx, jframe *f, jv *x, fargs *a, int line) {
    jv *items = jinja_iterable(cx, x), *attr = A(a, -1, "attribute"), *def = A(a, -1, "default");
    if (!items) return NULL;
    jv *out = jv_list(cx, JV_LIST, items->u.l.n);
    char fname[64] = "";
    if (!attr) {
        if (a->nargs < 1 || a->args[0]->t != JV_STR || a->args[0]->u.s.len >= sizeof fname) return jinja_fail(cx, "map needs a filter name or attribute=");
        memcpy(fname, a->args[0]->u.s.s, a->args[0]->u.s.len);
        fname[a->args[0]->u.s.len] = 0;
    }
    for (size_t i = 0; out && i < items->u.l.n; i++) {
        jv *v;
        if (attr) { v = get_path(cx, items->u.l.v[i], attr); if (v && v->t == JV_UNDEF && def) v = def; }
        else v = jinja_filter(cx, f, fname, items->u.l.v[i], a->args + 1, a->nargs - 1, a->kwn, a->kwv, a->nkw, line);
        if (jv_list_push(cx, out, v) < 0) return NULL;
    }
    return out;
}

static jv *do_tojson(jinja_ctx *cx, jv *x, fargs *a) {
    jv *ind = A(a, 0, "indent"), *seps = A(a, -1, "separators"), *sk = A(a, -1, "sort_keys"), *ea = A(a, -1, "ensure_ascii");
    int indent = -1;
    if (ind && ind->t != JV_NONE) {
        if (ind->t != JV_INT || ind->u.i < 0 || ind->u.i > 64) return jinja_fail(cx, "tojson indent must be an integer 0..64");
        indent = (int)ind->u.i;
    }
    if (ea && jv_truthy(ea)) return jinja_fail(cx, "tojson(ensure_ascii=true) is not supported");
    char isep[16] = ", ", ksep[16] = ": ";
    if (indent >= 0) strcpy(isep, ",");
    if (seps && seps->t != JV_NONE) {
        if (!jv_is_seq(seps) || seps->u.l.n != 2 || seps->u.l.v[0]->t != JV_STR || seps->u.l.v[1]->t != JV_STR ||
            seps->u.l.v[0]->u.s.len >= sizeof isep || seps->u.l.v[1]->u.s.len >= sizeof ksep)
            return jinja_fail(cx, "tojson separators must be two short strings");
        memcpy(isep, seps->u.l.v[0]->u.s.s, seps->u.l.v[0]->u.s.len); isep[seps->u.l.v[0]->u.s.len] = 0;
        memcpy(ksep, seps->u.l.v[1]->u.s.s, seps->u.l.v[1]->u.s.len); ksep[seps->u.l.v[1]->u.s.len] = 0;
    }
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    if (jv_tojson(&b, x, indent, isep, ksep, sk && jv_truthy(sk), 0) < 0 || b.failed) return NULL;
    return jv_str(cx, b.p, b.len);
}

static jv *do_indent(jinja_ctx *cx, jv *x, fargs *a) {
    jv *s = str_of(cx, x), *w = A(a, 0, "width"), *first = A(a, 1, "first"), *blank = A(a, 2, "blank");
    if (!s) return NULL;
    jbuf ind;
    jbuf_init(&ind, cx);
    jbuf_put(&ind, "", 0);
    if (w && w->t == JV_STR) jbuf_put(&ind, w->u.s.s, w->u.s.len);
    else {
        int64_t n = w ? (w->t == JV_INT ? w->u.i : -1) : 4;
        if (n < 0 || n > 256) return jinja_fail(cx, "indent width must be an integer 0..256 or a string");
        for (int64_t i = 0; i < n; i++) jbuf_put(&ind, " ", 1);
    }
    jbuf tmp;
    jbuf_init(&tmp, cx);
    jbuf_put(&tmp, s->u.s.s, s->u.s.len);
    jbuf_put(&tmp, "\n", 1);
    if (tmp.failed || ind.failed) return NULL;
    jv *lines = jinja_str_splitlines(cx, jv_str(cx, tmp.p, tmp.len), 0);
    if (!lines) return NULL;
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    if (first && jv_truthy(first)) jbuf_put(&b, ind.p, ind.len);
    for (size_t i = 0; i < lines->u.l.n && !b.failed; i++) {
        jv *l = lines->u.l.v[i];
        if (i) {
            jbuf_put(&b, "\n", 1);
            if (l->u.s.len || (blank && jv_truthy(blank))) jbuf_put(&b, ind.p, ind.len);
        }
        jbuf_put(&b, l->u.s.s, l->u.s.len);
    }
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

static jv *do_round(jinja_ctx *cx, jv *x, fargs *a) {
    jv *p = A(a, 0, "precision"), *m = A(a, 1, "method");
    if (x->t != JV_INT && x->t != JV_FLOAT && x->t != JV_BOOL) return jinja_fail(cx, "round needs a number, not %s", jv_type_name(x));
    int64_t prec = p ? (p->t == JV_INT ? p->u.i : 0) : 0;
    if (prec < -300 || prec > 300) return jinja_fail(cx, "round precision out of range");
    double v = x->t == JV_FLOAT ? x->u.f : x->t == JV_INT ? (double)x->u.i : x->u.b, scale = pow(10.0, (double)prec);
    const char *method = "common";
    char mb[16] = "";
    if (m && m->t == JV_STR && m->u.s.len < sizeof mb) { memcpy(mb, m->u.s.s, m->u.s.len); method = mb; }
    if (!strcmp(method, "common")) {
        if (x->t != JV_FLOAT) return x; /* round(int, n) keeps the int for n >= 0 */
        if (prec >= 0) { char buf[400]; snprintf(buf, sizeof buf, "%.*f", (int)prec, v); return jv_float(cx, strtod(buf, NULL)); }
        return jv_float(cx, nearbyint(v * scale) / scale);
    }
    if (!strcmp(method, "ceil")) return jv_float(cx, ceil(v * scale) / scale);
    if (!strcmp(method, "floor")) return jv_float(cx, floor(v * scale) / scale);
    return jinja_fail(cx, "method must be 'common', 'ceil' or 'floor'");
}

static jv *do_number(jinja_ctx *cx, jv *x, fargs *a, int to_int) {
    jv *def = A(a, 0, "default");
    if (!def) def = to_int ? jv_int(cx, 0) : jv_float(cx, 0.0);
    switch (x->t) {
    case JV_INT: return to_int ? x : jv_float(cx, (double)x->u.i);
    case JV_BOOL: return to_int ? jv_int(cx, x->u.b) : jv_float(cx, x->u.b);
    case JV_FLOAT:
        if (!to_int) return x;
        if (!isfinite(x->u.f) || fabs(x->u.f) > 9.2e18) return def;
        return jv_int(cx, (int64_t)x->u.f);
    case JV_STR: {
        jv *t = jinja_str_strip(cx, x, NULL, 3);
        if (!t) return NULL;
        char buf[64];
        if (t->u.s.len == 0 || t->u.s.len >= sizeof buf) return def;
        size_t k = 0;
        for (size_t i = 0; i < t->u.s.len; i++) if (t->u.s.s[i] != '_') buf[k++] = t->u.s.s[i];
        buf[k] = 0;
        char *end;
        if (to_int) {
            long long v = strtoll(buf, &end, 10);
            if (*end == 0) return jv_int(cx, v);
        }
        double d = strtod(buf, &end);
        if (*end != 0 || (buf[0] != '-' && buf[0] != '+' && buf[0] != '.' && (buf[0] < '0' || buf[0] > '9') &&
                          strcasecmp(buf, "inf") && strcasecmp(buf, "nan") && strcasecmp(buf, "infinity"))) return def;
        if (!to_int) return jv_float(cx, d);
        if (!isfinite(d) || fabs(d) > 9.2e18) return def;
        return jv_int(cx, (int64_t)d);
    }
    default: return def;
    }
}

static jv *sum_minmax(jinja_ctx *cx, jv *x, fargs *a, int which) {
    jv *items = jinja_iterable(cx, x);
    if (!items) return NULL;
    jv *attr = A(a, which == 0 ? 0 : -1, "attribute"), *acc = which == 0 ? (A(a, 1, "start") ? A(a, 1, "start") : jv_int(cx, 0)) : NULL;
    jv *cs = A(a, which == 0 ? -1 : 0, "case_sensitive");
    cmpctx c = {cx, cs && jv_truthy(cs), 0};
    for (size_t i = 0; i < items->u.l.n; i++) {
        jv *v = items->u.l.v[i], *k = attr ? get_path(cx, v, attr) : v;
        if (!k) return NULL;
        if (which == 0) { if (!(acc = jinja_binop(cx, '+', acc, k))) return NULL; continue; }
        if (!acc) { acc = v; continue; }
        jv *ka = attr ? get_path(cx, acc, attr) : acc;
        int r = cmp_vals(&c, k, ka);
        if (c.failed) return NULL;
        if ((which == 1 && r < 0) || (which == 2 && r > 0)) acc = v;
    }
    return acc ? acc : jv_undef_named(cx, "min/max of an empty sequence", NULL);
}

jv *jinja_filter(jinja_ctx *cx, jframe *f, const char *name, jv *x, jv **args, int nargs,
                 const char **kwn, jv **kwv, int nkw, int line) {
    fargs a = {args, nargs, kwn, kwv, nkw};
#define IS(s) (strcmp(name, s) == 0)
    if (IS("default") || IS("d")) {
        jv *def = A(&a, 0, "default_value"), *boolean = A(&a, 1, "boolean");
        if (!def) def = jv_str(cx, "", 0);
        if (x->t == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(x))) return def;
        return x;
    }
    if (IS("tojson")) return do_tojson(cx, x, &a);
    if (IS("safe") || IS("string") || IS("forceescape") || IS("striptags")) return IS("safe") && x->t != JV_UNDEF ? x : str_of(cx, x);
    if (IS("trim")) { jv *s = str_of(cx, x); return s ? jinja_str_strip(cx, s, A(&a, 0, "chars"), 3) : NULL; }
    if (IS("upper") || IS("lower") || IS("title") || IS("capitalize")) {
        jv *s = str_of(cx, x);
        return s ? jinja_str_case(cx, s, IS("upper") ? 'u' : IS("lower") ? 'l' : IS("title") ? 'j' : 'c') : NULL;
    }
    if (IS("replace")) {
        jv *s = str_of(cx, x), *c = A(&a, 2, "count");
        if (!s) return NULL;
        if (nargs < 2) return jinja_fail(cx, "replace filter needs old and new (line %d)", line);
        jv *o = str_of(cx, args[0]), *n = str_of(cx, args[1]);
        return o && n ? jinja_str_replace(cx, s, o, n, c && c->t == JV_INT ? c->u.i : -1) : NULL;
    }
    if (IS("length") || IS("count")) {
        switch (x->t) {
        case JV_STR: return jv_int(cx, (int64_t)utf8_count(x->u.s.s, x->u.s.len));
        case JV_LIST: case JV_TUPLE: return jv_int(cx, (int64_t)x->u.l.n);
        case JV_DICT: case JV_NS: return jv_int(cx, (int64_t)x->u.d.n);
        case JV_UNDEF: return jv_int(cx, 0);
        default: return jinja_fail(cx, "object of type '%s' has no len() (line %d)", jv_type_name(x), line);
        }
    }
    if (IS("first") || IS("last")) {
        jv *items = jinja_iterable(cx, x);
        if (!items) return NULL;
        if (!items->u.l.n) return jv_undef_named(cx, "first/last of an empty sequence", NULL);
        return items->u.l.v[IS("first") ? 0 : items->u.l.n - 1];
    }
    if (IS("join")) {
        jv *sep = A(&a, 0, "d"), *attr = A(&a, 1, "attribute"), *items = jinja_iterable(cx, x);
        if (!items) return NULL;
        if (!sep) sep = jv_str(cx, "", 0);
        if (!(sep = str_of(cx, sep))) return NULL;
        if (attr) {
            jv *l = jv_list(cx, JV_LIST, items->u.l.n);
            for (size_t i = 0; l && i < items->u.l.n; i++) if (jv_list_push(cx, l, get_path(cx, items->u.l.v[i], attr)) < 0) return NULL;
            items = l;
        }
        return items ? jinja_str_join(cx, sep, items) : NULL;
    }
    if (IS("list")) { jv *items = jinja_iterable(cx, x); return items ? copy_list(cx, items) : NULL; }
    if (IS("items")) {
        if (x->t == JV_UNDEF) return jv_list(cx, JV_LIST, 0);
        if (x->t != JV_DICT) return jinja_fail(cx, "items filter needs a mapping, not %s (line %d)", jv_type_name(x), line);
        return jinja_call_method(cx, x, "items", NULL, 0, NULL, NULL, 0);
    }
    if (IS("dictsort")) {
        if (x->t != JV_DICT) return jinja_fail(cx, "dictsort needs a mapping (line %d)", line);
        jv *items = jinja_call_method(cx, x, "items", NULL, 0, NULL, NULL, 0), *by = A(&a, 1, "by");
        jv *idx = jv_int(cx, by && by->t == JV_STR && by->u.s.len == 5 && !memcmp(by->u.s.s, "value", 5) ? 1 : 0);
        jv *sargs[3] = {A(&a, 2, "reverse") ? A(&a, 2, "reverse") : JV_BOOLV(0), A(&a, 0, "case_sensitive") ? A(&a, 0, "case_sensitive") : JV_BOOLV(0), idx};
        fargs sa = {sargs, 3, NULL, NULL, 0};
        return items && idx ? do_sort(cx, items, &sa) : NULL;
    }
    if (IS("sort")) return do_sort(cx, x, &a);
    if (IS("reverse")) {
        if (x->t == JV_STR) return jinja_slice(cx, x, JV_NONEV, JV_NONEV, jv_int(cx, -1));
        jv *items = jinja_iterable(cx, x);
        if (!items) return NULL;
        jv *l = jv_list(cx, JV_LIST, items->u.l.n);
        for (size_t i = items->u.l.n; l && i-- > 0;) if (jv_list_push(cx, l, items->u.l.v[i]) < 0) return NULL;
        return l;
    }
    if (IS("unique")) {
        jv *items = jinja_iterable(cx, x), *cs = A(&a, 0, "case_sensitive"), *attr = A(&a, 1, "attribute");
        if (!items) return NULL;
        jv *out = jv_list(cx, JV_LIST, 0), *seen = jv_list(cx, JV_LIST, 0);
        for (size_t i = 0; out && seen && i < items->u.l.n; i++) {
            jv *k = attr ? get_path(cx, items->u.l.v[i], attr) : items->u.l.v[i];
            if (!k) return NULL;
            if (k->t == JV_STR && !(cs && jv_truthy(cs)) && !(k = jinja_str_case(cx, k, 'l'))) return NULL;
            int dup;
            if (jinja_contains(cx, seen, k, &dup) < 0) return NULL;
            if (dup) continue;
            if (jv_list_push(cx, seen, k) < 0 || jv_list_push(cx, out, items->u.l.v[i]) < 0) return NULL;
        }
        return out;
    }
    if (IS("select") || IS("reject")) return select_impl(cx, f, x, &a, 0, IS("select"));
    if (IS("selectattr") || IS("rejectattr")) return select_impl(cx, f, x, &a, 1, IS("selectattr"));
    if (IS("map")) return do_map(cx, f, x, &a, line);
    if (IS("attr")) { jv *n = A(&a, 0, "name"); if (!n || n->t != JV_STR) return jinja_fail(cx, "attr needs a name"); jv *s = str_of(cx, n); return s ? jinja_getattr(cx, x, s->u.s.s) : NULL; }
    if (IS("int")) return do_number(cx, x, &a, 1);
    if (IS("float")) return do_number(cx, x, &a, 0);
    if (IS("abs")) {
        if (x->t == JV_INT) return x->u.i == INT64_MIN ? jinja_fail(cx, "integer overflow") : jv_int(cx, x->u.i < 0 ? -x->u.i : x->u.i);
        if (x->t == JV_FLOAT) return jv_float(cx, fabs(x->u.f));
        if (x->t == JV_BOOL) return jv_int(cx, x->u.b);
        return jinja_fail(cx, "bad operand type for abs(): '%s' (line %d)", jv_type_name(x), line);
    }
    if (IS("round")) return do_round(cx, x, &a);
    if (IS("indent")) return do_indent(cx, x, &a);
    if (IS("sum")) return sum_minmax(cx, x, &a, 0);
    if (IS("min")) return sum_minmax(cx, x, &a, 1);
    if (IS("max")) return sum_minmax(cx, x, &a, 2);
    if (IS("format")) { jv *s = str_of(cx, x); return s ? jinja_printf(cx, s, args, nargs) : NULL; }
    if (IS("wordcount")) {
        jv *s = str_of(cx, x);
        if (!s) return NULL;
        int64_t n = 0, in = 0;
        for (size_t i = 0; i < s->u.s.len; i++) {
            unsigned char c = (unsigned char)s->u.s.s[i];
            int w = c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
            if (w && !in) n++;
            in = w;
        }
        return jv_int(cx, n);
    }
    if (IS("e") || IS("escape")) {
        jv *s = str_of(cx, x);
        if (!s) return NULL;
        jbuf b;
        jbuf_init(&b, cx);
        jbuf_put(&b, "", 0);
        for (size_t i = 0; i < s->u.s.len; i++) {
            char c = s->u.s.s[i];
            if (c == '&') jbuf_puts(&b, "&amp;");
            else if (c == '<') jbuf_puts(&b, "&lt;");
            else if (c == '>') jbuf_puts(&b, "&gt;");
            else if (c == '"') jbuf_puts(&b, "&#34;");
            else if (c == '\'') jbuf_puts(&b, "&#39;");
            else jbuf_put(&b, &c, 1);
        }
        return b.failed ? NULL : jv_str(cx, b.p, b.len);
    }
    return jinja_fail(cx, "no filter named '%s' (line %d)", name, line);
#undef IS
}
