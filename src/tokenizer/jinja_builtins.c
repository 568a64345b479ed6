/* Builtins of the Jinja-subset engine: operators, attribute/item access,
 * slicing, tests, global functions and Python str/dict/list methods, with
 * jinja2 3.1 + CPython 3 semantics. Mutating list/dict methods are refused
 * as ImmutableSandboxedEnvironment does. Filters live in jinja_filters.c. */
#include "tokenizer/jinja_internal.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

static jv *undefined_error(jinja_ctx *cx, jv *u) {
    if (u->u.ud.owner) return jinja_fail(cx, "'%s' has no attribute '%s'", u->u.ud.owner, u->u.ud.name ? u->u.ud.name : "?");
    return jinja_fail(cx, "'%s' is undefined", u->u.ud.name ? u->u.ud.name : "value");
}

static int is_int_like(const jv *v) { return v->t == JV_INT || v->t == JV_BOOL; }
static int64_t ival(const jv *v) { return v->t == JV_INT ? v->u.i : v->u.b; }
static double fval(const jv *v) { return v->t == JV_FLOAT ? v->u.f : (double)ival(v); }
static int is_number(const jv *v) { return is_int_like(v) || v->t == JV_FLOAT; }

jv *jinja_iterable(jinja_ctx *cx, jv *x) {
    switch (x->t) {
    case JV_LIST: case JV_TUPLE: return x;
    case JV_UNDEF: return jv_list(cx, JV_LIST, 0);
    case JV_DICT: case JV_NS: {
        jv *l = jv_list(cx, JV_LIST, x->u.d.n);
        if (!l) return NULL;
        for (size_t i = 0; i < x->u.d.n; i++) if (jv_list_push(cx, l, x->u.d.k[i]) < 0) return NULL;
        return l;
    }
    case JV_STR: {
        jv *l = jv_list(cx, JV_LIST, 0);
        if (!l) return NULL;
        size_t pos = 0;
        while (pos < x->u.s.len) {
            size_t st = pos;
            utf8_decode(x->u.s.s, x->u.s.len, &pos);
            if (jv_list_push(cx, l, jv_str(cx, x->u.s.s + st, pos - st)) < 0) return NULL;
        }
        return l;
    }
    default: return jinja_fail(cx, "'%s' object is not iterable", jv_type_name(x));
    }
}

int jinja_contains(jinja_ctx *cx, jv *c, jv *x, int *out) {
    *out = 0;
    switch (c->t) {
    case JV_STR:
        if (x->t != JV_STR) { jinja_fail(cx, "'in <string>' requires string as left operand, not %s", jv_type_name(x)); return -1; }
        *out = x->u.s.len == 0 || memmem(c->u.s.s, c->u.s.len, x->u.s.s, x->u.s.len) != NULL;
        return 0;
    case JV_LIST: case JV_TUPLE:
        for (size_t i = 0; i < c->u.l.n; i++) if (jv_equal(c->u.l.v[i], x)) { *out = 1; break; }
        return 0;
    case JV_DICT: case JV_NS: *out = jv_dict_get(c, x) != NULL; return 0;
    case JV_UNDEF: return 0;
    default: jinja_fail(cx, "argument of type '%s' is not iterable", jv_type_name(c)); return -1;
    }
}

/* ---- attribute / item access ---- */
static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
    "upper", "lower", "replace", "title", "capitalize", "format", "find", "rfind", "count", "join", "splitlines",
    "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "index", "swapcase", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", "copy", "pop", "update", "setdefault",
    "clear", "popitem", NULL};
static const char *const LIST_METHODS[] = {"index", "count", "append", "extend", "insert", "pop", "remove",
    "reverse", "sort", "clear", "copy", NULL};

static const char *find_name(const char *const *tab, const char *name) {
    for (int i = 0; tab[i]; i++) if (strcmp(tab[i], name) == 0) return tab[i];
    return NULL;
}
static jv *method(jinja_ctx *cx, jv *self, const char *name) {
    jv *m = jv_dict(cx, JV_METHOD);
    if (m) { m->u.m.self = self; m->u.m.name = name; }
    return m;
}
static const char *owner_name(const jv *v) {
    switch (v->t) {
    case JV_DICT: return "dict object";
    case JV_LIST: return "list object";
    case JV_TUPLE: return "tuple object";
    case JV_STR: return "str object";
    case JV_INT: return "int object";
    case JV_FLOAT: return "float object";
    case JV_BOOL: return "bool object";
    case JV_NONE: return "None";
    case JV_NS: return "Namespace object";
    default: return "object";
    }
}

jv *jinja_getattr(jinja_ctx *cx, jv *obj, const char *name) {
    const char *m = NULL;
    switch (obj->t) {
    case JV_UNDEF: return undefined_error(cx, obj);
    case JV_DICT:
        if ((m = find_name(DICT_METHODS, name))) return method(cx, obj, m);
        /* fallthrough */
    case JV_NS: {
        jv *v = jv_dict_gets(obj, name);
        if (v) return v;
        break;
    }
    case JV_STR: if ((m = find_name(STR_METHODS, name))) return method(cx, obj, m); break;
    case JV_LIST: case JV_TUPLE: if ((m = find_name(LIST_METHODS, name))) return method(cx, obj, m); break;
    default: break;
    }
    jv *k = jv_cstr(cx, name);
    return k ? jv_undef_named(cx, k->u.s.s, owner_name(obj)) : NULL;
}

jv *jinja_getitem(jinja_ctx *cx, jv *obj, jv *key) {
    switch (obj->t) {
    case JV_UNDEF: return undefined_error(cx, obj);
    case JV_DICT: case JV_NS: {
        jv *v = jv_dict_get(obj, key);
        if (v) return v;
        break;
    }
    case JV_LIST: case JV_TUPLE:
        if (is_int_like(key)) {
            int64_t i = ival(key), n = (int64_t)obj->u.l.n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj->u.l.v[i];
        }
        break;
    case JV_STR:
        if (is_int_like(key)) {
            int64_t i = ival(key), n = (int64_t)utf8_count(obj->u.s.s, obj->u.s.len);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t a = utf8_offset(obj->u.s.s, obj->u.s.len, (size_t)i), b = a;
                utf8_decode(obj->u.s.s, obj->u.s.len, &b);
                return jv_str(cx, obj->u.s.s + a, b - a);
            }
        }
        break;
    default: break;
    }
    if (key->t == JV_STR && obj->t != JV_NS) {
        char name[64];
        if (key->u.s.len < sizeof name && !memchr(key->u.s.s, 0, key->u.s.len)) {
            memcpy(name, key->u.s.s, key->u.s.len);
            name[key->u.s.len] = 0;
            jv *v = jinja_getattr(cx, obj, name);
            if (!v || v->t != JV_UNDEF) return v;
        }
        return jv_undef_named(cx, jv_stringify(cx, key) ? jv_stringify(cx, key)->u.s.s : "?", owner_name(obj));
    }
    jv *ks = jv_stringify(cx, key);
    return ks ? jv_undef_named(cx, ks->u.s.s, owner_name(obj)) : NULL;
}

/* Python slice.indices() */
static int slice_indices(jinja_ctx *cx, jv *start, jv *stop, jv *step, int64_t n, int64_t *a, int64_t *b, int64_t *s) {
    jv *parts[3] = {start, stop, step};
    for (int i = 0; i < 3; i++)
        if (parts[i]->t != JV_NONE && !is_int_like(parts[i])) {
            jinja_fail(cx, "slice indices must be integers or None, not %s", jv_type_name(parts[i]));
            return -1;
        }
    *s = step->t == JV_NONE ? 1 : ival(step);
    if (*s == 0) { jinja_fail(cx, "slice step cannot be zero"); return -1; }
    if (*s < -INT64_MAX) *s = -INT64_MAX;
    int64_t lo = *s < 0 ? -1 : 0, hi = *s < 0 ? n - 1 : n;
    if (start->t == JV_NONE) *a = *s < 0 ? hi : lo;
    else { *a = ival(start); if (*a < 0) { *a += n; if (*a < lo) *a = lo; } else if (*a > hi) *a = hi; }
    if (stop->t == JV_NONE) *b = *s < 0 ? lo : hi;
    else { *b = ival(stop); if (*b < 0) { *b += n; if (*b < lo) *b = lo; } else if (*b > hi) *b = hi; }
    return 0;
}

jv *jinja_slice(jinja_ctx *cx, jv *obj, jv *start, jv *stop, jv *step) {
    if (obj->t == JV_UNDEF) return undefined_error(cx, obj);
    jv *items = obj;
    if (obj->t == JV_STR) items = jinja_iterable(cx, obj);
    else if (!jv_is_seq(obj)) return jinja_fail(cx, "'%s' object is not subscriptable", jv_type_name(obj));
    if (!items) return NULL;
    int64_t a, b, s, n = (int64_t)items->u.l.n;
    if (slice_indices(cx, start, stop, step, n, &a, &b, &s) < 0) return NULL;
    jv *out = jv_list(cx, obj->t == JV_TUPLE ? JV_TUPLE : JV_LIST, 0);
    if (!out) return NULL;
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s) {
        if (jv_list_push(cx, out, items->u.l.v[i]) < 0) return NULL;
        if ((s > 0 && i > INT64_MAX - s) || (s < 0 && i < INT64_MIN - s)) break;
    }
    if (obj->t != JV_STR) return out;
    jbuf buf;
    jbuf_init(&buf, cx);
    jbuf_put(&buf, "", 0);
    for (size_t i = 0; i < out->u.l.n; i++) jbuf_put(&buf, out->u.l.v[i]->u.s.s, out->u.l.v[i]->u.s.len);
    return buf.failed ? NULL : jv_str(cx, buf.p, buf.len);
}

/* ---- printf-style formatting (str % args, |format) ---- */
jv *jinja_printf(jinja_ctx *cx, jv *fmt, jv **args, int nargs) {
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    int ai = 0;
    const char *s = fmt->u.s.s;
    size_t n = fmt->u.s.len;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') { jbuf_put(&b, s + i, 1); continue; }
        if (++i >= n) return jinja_fail(cx, "incomplete format");
        char c = s[i];
        if (c == '%') { jbuf_put(&b, "%", 1); continue; }
        if (ai >= nargs) return jinja_fail(cx, "not enough arguments for format string");
        jv *a = args[ai++];
        if (c == 's') jv_to_str(&b, a);
        else if (c == 'r') jv_repr(&b, a);
        else if (c == 'd' || c == 'i') {
            if (!is_number(a)) return jinja_fail(cx, "%%d format: a real number is required, not %s", jv_type_name(a));
            jbuf_printf(&b, "%lld", (long long)(a->t == JV_FLOAT ? (int64_t)a->u.f : ival(a)));
        } else if (c == 'f') {
            if (!is_number(a)) return jinja_fail(cx, "%%f format: a real number is required, not %s", jv_type_name(a));
            jbuf_printf(&b, "%f", fval(a));
        } else return jinja_fail(cx, "unsupported format character '%c'", c);
    }
    if (ai < nargs) return jinja_fail(cx, "not all arguments converted during string formatting");
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

/* ---- operators ---- */
static jv *repeat(jinja_ctx *cx, jv *x, int64_t k) {
    if (k < 0) k = 0;
    if (x->t == JV_STR) {
        if (x->u.s.len && (uint64_t)k > cx->max_output_bytes / x->u.s.len) return jinja_fail(cx, "repeated string too large");
        jbuf b;
        jbuf_init(&b, cx);
        jbuf_put(&b, "", 0);
        for (int64_t i = 0; i < k && !b.failed; i++) jbuf_put(&b, x->u.s.s, x->u.s.len);
        return b.failed ? NULL : jv_str(cx, b.p, b.len);
    }
    if (x->u.l.n && (uint64_t)k > (cx->max_output_bytes / 8) / x->u.l.n) return jinja_fail(cx, "repeated list too large");
    jv *l = jv_list(cx, x->t, 0);
    for (int64_t i = 0; l && i < k; i++)
        for (size_t j = 0; j < x->u.l.n; j++) if (jv_list_push(cx, l, x->u.l.v[j]) < 0) return NULL;
    return l;
}

jv *jinja_binop(jinja_ctx *cx, int op, jv *a, jv *b) {
    if (a->t == JV_UNDEF) return undefined_error(cx, a);
    if (b->t == JV_UNDEF) return undefined_error(cx, b);
    if (is_int_like(a) && is_int_like(b)) {
        int64_t x = ival(a), y = ival(b), r;
        switch (op) {
        case '+': if (__builtin_add_overflow(x, y, &r)) goto ovf; return jv_int(cx, r);
        case '-': if (__builtin_sub_overflow(x, y, &r)) goto ovf; return jv_int(cx, r);
        case '*': if (__builtin_mul_overflow(x, y, &r)) goto ovf; return jv_int(cx, r);
        case '/': if (!y) goto zero; return jv_float(cx, (double)x / (double)y);
        case OP_FLOORDIV: case '%': {
            if (!y) goto zero;
            if (x == INT64_MIN && y == -1) goto ovf;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return jv_int(cx, op == '%' ? m : q);
        }
        case OP_POW:
            if (y < 0) return jv_float(cx, pow((double)x, (double)y));
            r = 1;
            for (int64_t i = 0; i < y; i++) {
                if (__builtin_mul_overflow(r, x, &r)) goto ovf;
                if (r == 0 || r == 1 || (r == -1 && x == -1)) { if (x == -1) r = (y % 2) ? -1 : 1; break; }
            }
            return jv_int(cx, r);
        }
    }
    if (is_number(a) && is_number(b)) {
        double x = fval(a), y = fval(b);
        switch (op) {
        case '+': return jv_float(cx, x + y);
        case '-': return jv_float(cx, x - y);
        case '*': return jv_float(cx, x * y);
        case '/': if (y == 0) goto zero; return jv_float(cx, x / y);
        case OP_FLOORDIV: if (y == 0) goto zero; return jv_float(cx, floor(x / y));
        case '%': { if (y == 0) goto zero; double m = fmod(x, y); if (m != 0 && ((m < 0) != (y < 0))) m += y; return jv_float(cx, m); }
        case OP_POW: return jv_float(cx, pow(x, y));
        }
    }
    if (op == '+' && a->t == JV_STR && b->t == JV_STR) {
        jbuf buf;
        jbuf_init(&buf, cx);
        jbuf_put(&buf, a->u.s.s, a->u.s.len);
        jbuf_put(&buf, b->u.s.s, b->u.s.len);
        return buf.failed ? NULL : jv_str(cx, buf.p, buf.len);
    }
    if (op == '+' && jv_is_seq(a) && a->t == b->t) {
        jv *l = jv_list(cx, a->t, a->u.l.n + b->u.l.n);
        for (size_t i = 0; l && i < a->u.l.n; i++) if (jv_list_push(cx, l, a->u.l.v[i]) < 0) return NULL;
        for (size_t i = 0; l && i < b->u.l.n; i++) if (jv_list_push(cx, l, b->u.l.v[i]) < 0) return NULL;
        return l;
    }
    if (op == '*' && (a->t == JV_STR || jv_is_seq(a)) && is_int_like(b)) return repeat(cx, a, ival(b));
    if (op == '*' && (b->t == JV_STR || jv_is_seq(b)) && is_int_like(a)) return repeat(cx, b, ival(a));
    if (op == '%' && a->t == JV_STR) {
        if (b->t == JV_TUPLE) return jinja_printf(cx, a, b->u.l.v, (int)b->u.l.n);
        return jinja_printf(cx, a, &b, 1);
    }
    {
        const char *ops = op == OP_FLOORDIV ? "//" : op == OP_POW ? "**" : op == '+' ? "+" : op == '-' ? "-"
                        : op == '*' ? "*" : op == '/' ? "/" : "%";
        return jinja_fail(cx, "unsupported operand type(s) for %s: '%s' and '%s'", ops, jv_type_name(a), jv_type_name(b));
    }
ovf:
    return jinja_fail(cx, "integer overflow");
zero:
    return jinja_fail(cx, "division by zero");
}

/* ---- tests ---- */
int jinja_test(jinja_ctx *cx, const char *name, jv *x, jv **args, int nargs, int *out) {
#define IS(s) (strcmp(name, s) == 0)
    jv *arg = nargs > 0 ? args[0] : NULL;
    int c;
    if (IS("defined")) *out = x->t != JV_UNDEF;
    else if (IS("undefined")) *out = x->t == JV_UNDEF;
    else if (IS("none")) *out = x->t == JV_NONE;
    else if (IS("string")) *out = x->t == JV_STR;
    else if (IS("number")) *out = is_number(x);
    else if (IS("integer")) *out = x->t == JV_INT;
    else if (IS("float")) *out = x->t == JV_FLOAT;
    else if (IS("boolean")) *out = x->t == JV_BOOL;
    else if (IS("true")) *out = x->t == JV_BOOL && x->u.b;
    else if (IS("false")) *out = x->t == JV_BOOL && !x->u.b;
    else if (IS("mapping")) *out = x->t == JV_DICT;
    else if (IS("sequence")) *out = x->t == JV_STR || jv_is_seq(x) || x->t == JV_DICT;
    else if (IS("iterable")) *out = x->t == JV_STR || jv_is_seq(x) || x->t == JV_DICT;
    else if (IS("callable")) *out = x->t == JV_METHOD || x->t == JV_FUNC || x->t == JV_MACRO;
    else if (IS("lower") || IS("upper")) {
        if (x->t != JV_STR) { *out = 0; return 0; } /* jinja: str(x).islower() */
        int cased = 0, ok = 1;
        size_t pos = 0;
        while (pos < x->u.s.len) {
            int cp = utf8_decode(x->u.s.s, x->u.s.len, &pos);
            utf8proc_category_t cat = utf8proc_category(cp);
            if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) { cased = 1; if (IS("lower")) ok = 0; }
            if (cat == UTF8PROC_CATEGORY_LL) { cased = 1; if (IS("upper")) ok = 0; }
        }
        *out = cased && ok;
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        if (!is_int_like(x) && x->t != JV_FLOAT) { jinja_fail(cx, "test '%s' needs a number, not %s", name, jv_type_name(x)); return -1; }
        if (IS("divisibleby")) {
            if (!arg || !is_number(arg)) { jinja_fail(cx, "test 'divisibleby' needs a number argument"); return -1; }
            jv *m = jinja_binop(cx, '%', x, arg);
            if (!m) return -1;
            *out = !jv_truthy(m);
        } else {
            double v = fval(x);
            int odd = x->t == JV_FLOAT ? fmod(fabs(v), 2.0) == 1.0 : (ival(x) % 2 != 0);
            *out = IS("odd") ? odd : !odd && (x->t != JV_FLOAT || fmod(v, 2.0) == 0.0);
        }
    } else if (IS("equalto") || IS("eq") || IS("==") || IS("ne") || IS("!=") || IS("sameas")) {
        if (!arg) { jinja_fail(cx, "test '%s' needs an argument", name); return -1; }
        if (IS("sameas")) *out = x == arg || (x->t == arg->t && (x->t == JV_NONE || (x->t == JV_BOOL && x->u.b == arg->u.b)));
        else *out = (IS("ne") || IS("!=")) ? !jv_equal(x, arg) : jv_equal(x, arg);
    } else if (IS("lt") || IS("<") || IS("le") || IS("<=") || IS("gt") || IS(">") || IS("ge") || IS(">=")
               || IS("lessthan") || IS("greaterthan")) {
        if (!arg) { jinja_fail(cx, "test '%s' needs an argument", name); return -1; }
        if (!jv_compare(x, arg, &c)) { jinja_fail(cx, "'%s' not supported between instances of '%s' and '%s'", name, jv_type_name(x), jv_type_name(arg)); return -1; }
        *out = (IS("lt") || IS("<") || IS("lessthan")) ? c < 0 : (IS("le") || IS("<=")) ? c <= 0
             : (IS("gt") || IS(">") || IS("greaterthan")) ? c > 0 : c >= 0;
    } else if (IS("in")) {
        if (!arg) { jinja_fail(cx, "test 'in' needs an argument"); return -1; }
        return jinja_contains(cx, arg, x, out);
    } else { jinja_fail(cx, "no test named '%s'", name); return -1; }
    return 0;
#undef IS
}

/* ---- globals ---- */
static jv *kwarg(const char **kwn, jv **kwv, int nkw, const char *name) {
    for (int i = 0; i < nkw; i++) if (strcmp(kwn[i], name) == 0) return kwv[i];
    return NULL;
}

jv *jinja_call_global(jinja_ctx *cx, const char *name, jv **args, int nargs, const char **kwn, jv **kwv, int nkw) {
    if (strcmp(name, "raise_exception") == 0) {
        jv *m = nargs ? jv_stringify(cx, args[0]) : jv_cstr(cx, "");
        if (!m) return NULL;
        jinja_fail(cx, "%.*s", (int)(m->u.s.len < 500 ? m->u.s.len : 500), m->u.s.s);
        cx->raised = 1;
        return NULL;
    }
    if (strcmp(name, "range") == 0) {
        int64_t v[3] = {0, 0, 1};
        if (nargs < 1 || nargs > 3) return jinja_fail(cx, "range expected 1 to 3 arguments, got %d", nargs);
        for (int i = 0; i < nargs; i++)
            if (!is_int_like(args[i])) return jinja_fail(cx, "'%s' object cannot be interpreted as an integer", jv_type_name(args[i]));
        if (nargs == 1) v[1] = ival(args[0]);
        else { v[0] = ival(args[0]); v[1] = ival(args[1]); if (nargs == 3) v[2] = ival(args[2]); }
        if (v[2] == 0) return jinja_fail(cx, "range() arg 3 must not be zero");
        double count = ceil(((double)v[1] - (double)v[0]) / (double)v[2]);
        if (count > 1e6) return jinja_fail(cx, "range too big (%g items, the sandbox limit is 1000000)", count);
        jv *l = jv_list(cx, JV_LIST, count > 0 ? (size_t)count : 0);
        for (int64_t i = v[0]; l && (v[2] > 0 ? i < v[1] : i > v[1]); i += v[2])
            if (jv_list_push(cx, l, jv_int(cx, i)) < 0) return NULL;
        return l;
    }
    if (strcmp(name, "namespace") == 0 || strcmp(name, "dict") == 0) {
        jv *d = jv_dict(cx, name[0] == 'n' ? JV_NS : JV_DICT);
        if (!d) return NULL;
        for (int i = 0; i < nargs; i++) {
            if (args[i]->t != JV_DICT && args[i]->t != JV_NS) return jinja_fail(cx, "%s() positional argument must be a mapping", name);
            for (size_t k = 0; k < args[i]->u.d.n; k++)
                if (jv_dict_set(cx, d, args[i]->u.d.k[k], args[i]->u.d.v[k]) < 0) return NULL;
        }
        for (int i = 0; i < nkw; i++) if (jv_dict_set(cx, d, jv_cstr(cx, kwn[i]), kwv[i]) < 0) return NULL;
        return d;
    }
    if (strcmp(name, "strftime_now") == 0) {
        if (nargs != 1 || args[0]->t != JV_STR) return jinja_fail(cx, "strftime_now(format) needs one string");
        char fmt[256], out[512];
        if (args[0]->u.s.len >= sizeof fmt) return jinja_fail(cx, "strftime_now format too long");
        memcpy(fmt, args[0]->u.s.s, args[0]->u.s.len);
        fmt[args[0]->u.s.len] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = fmt[0] ? strftime(out, sizeof out, fmt, &tm) : 0;
        return jv_str(cx, out, n);
    }
    (void)kwarg;
    return jinja_fail(cx, "'%s' is not callable", name);
}
