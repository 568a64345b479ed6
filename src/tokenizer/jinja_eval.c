/* Evaluator of the Jinja-subset engine: expressions and statements.
 * Scoping follows jinja2: a for-loop iteration and a macro call get fresh
 * frames (assignments inside do not leak out), if-blocks do not; namespace()
 * objects are the way to carry state out of loops. */
#include "tokenizer/jinja_internal.h"

#include <string.h>

static int enter(jinja_ctx *cx, jnode *n) {
    if (cx->failed) return -1;
    if (++cx->steps > cx->max_steps) {
        jinja_fail(cx, "template evaluation exceeded the budget of %llu steps (line %d)",
                   (unsigned long long)cx->max_steps, n->line);
        return -1;
    }
    if (++cx->depth > cx->max_depth) {
        cx->depth--;
        jinja_fail(cx, "template recursion deeper than %d (line %d)", cx->max_depth, n->line);
        return -1;
    }
    return 0;
}

static jframe *frame_new(jinja_ctx *cx, jframe *parent) {
    jframe *f = jinja_alloc(&cx->arena, sizeof *f);
    if (!f) return jinja_fail(cx, "out of memory");
    f->parent = parent;
    f->vars = jv_dict(cx, JV_DICT);
    return f->vars ? f : NULL;
}

static jv *lookup(jinja_ctx *cx, jframe *f, const char *name) {
    for (; f; f = f->parent) {
        jv *v = jv_dict_gets(f->vars, name);
        if (v) return v;
    }
    static const char *const globals[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", NULL};
    for (int i = 0; globals[i]; i++)
        if (strcmp(name, globals[i]) == 0) {
            jv *v = jv_dict(cx, JV_FUNC);
            if (v) v->u.fn.name = globals[i];
            return v;
        }
    return jv_undef_named(cx, name, NULL);
}

static int set_var(jinja_ctx *cx, jframe *f, const char *name, jv *v) {
    jv *k = jv_cstr(cx, name);
    return k ? jv_dict_set(cx, f->vars, k, v) : -1;
}

static int assign(jinja_ctx *cx, jframe *f, jnode *target, jv *v) {
    if (!v) return -1;
    if (target->kind == N_NAME) return set_var(cx, f, target->name, v);
    if (target->kind == N_ATTR) {
        jv *obj = jinja_eval(cx, f, target->a);
        if (!obj) return -1;
        if (obj->t != JV_NS) { jinja_fail(cx, "cannot assign attribute on non-namespace object (line %d)", target->line); return -1; }
        jv *k = jv_cstr(cx, target->name);
        return k ? jv_dict_set(cx, obj, k, v) : -1;
    }
    /* tuple unpacking */
    jv *items = jinja_iterable(cx, v);
    if (!items) return -1;
    if ((int)items->u.l.n != target->n) {
        jinja_fail(cx, "cannot unpack %zu values into %d names (line %d)", items->u.l.n, target->n, target->line);
        return -1;
    }
    for (int i = 0; i < target->n; i++)
        if (assign(cx, f, target->items[i], items->u.l.v[i]) < 0) return -1;
    return 0;
}

static int eval_args(jinja_ctx *cx, jframe *f, jnode *n, jv ***args, jv ***kwv) {
    *args = n->n ? jinja_alloc(&cx->arena, sizeof(jv *) * (size_t)n->n) : NULL;
    *kwv = n->n2 ? jinja_alloc(&cx->arena, sizeof(jv *) * (size_t)n->n2) : NULL;
    if ((n->n && !*args) || (n->n2 && !*kwv)) { jinja_fail(cx, "out of memory"); return -1; }
    for (int i = 0; i < n->n; i++) if (!((*args)[i] = jinja_eval(cx, f, n->items[i]))) return -1;
    for (int i = 0; i < n->n2; i++) if (!((*kwv)[i] = jinja_eval(cx, f, n->items2[i]))) return -1;
    return 0;
}

static jv *call_macro(jinja_ctx *cx, jv *m, jv **args, int nargs, const char **kwn, jv **kwv, int nkw, jv *caller) {
    jnode *def = m->u.mac.def;
    jframe *f = frame_new(cx, (jframe *)m->u.mac.frame);
    if (!f) return NULL;
    if (nargs > def->nnames)
        return jinja_fail(cx, "macro '%s' takes not more than %d argument(s)", def->name ? def->name : "caller", def->nnames);
    for (int i = 0; i < def->nnames; i++) {
        jv *v = i < nargs ? args[i] : NULL;
        for (int k = 0; k < nkw; k++) if (strcmp(kwn[k], def->names[i]) == 0) v = kwv[k];
        if (!v) {
            jnode *d = def->items2[i];
            v = d->op == -1 ? jv_undef_named(cx, def->names[i], NULL) : jinja_eval(cx, f, d);
        }
        if (set_var(cx, f, def->names[i], v) < 0) return NULL;
    }
    for (int k = 0; k < nkw; k++) {
        int known = 0;
        for (int i = 0; i < def->nnames; i++) known |= strcmp(kwn[k], def->names[i]) == 0;
        if (!known) return jinja_fail(cx, "macro '%s' takes no keyword argument '%s'", def->name ? def->name : "caller", kwn[k]);
    }
    if (caller && set_var(cx, f, "caller", caller) < 0) return NULL;
    jbuf out;
    jbuf_init(&out, cx);
    jnode body = {.kind = N_BODY, .items = def->items, .n = def->n, .line = def->line};
    if (jinja_exec(cx, f, &body, &out) < 0) return NULL;
    return jv_str(cx, out.p ? out.p : "", out.len);
}

static jv *do_call(jinja_ctx *cx, jframe *f, jnode *n, jv *caller) {
    jv *fn = jinja_eval(cx, f, n->a);
    if (!fn) return NULL;
    jv **args, **kwv;
    if (eval_args(cx, f, n, &args, &kwv) < 0) return NULL;
    switch (fn->t) {
    case JV_METHOD: return jinja_call_method(cx, fn->u.m.self, fn->u.m.name, args, n->n, n->names, kwv, n->n2);
    case JV_FUNC: return jinja_call_global(cx, fn->u.fn.name, args, n->n, n->names, kwv, n->n2);
    case JV_MACRO: return call_macro(cx, fn, args, n->n, n->names, kwv, n->n2, caller);
    case JV_UNDEF:
        if (fn->u.ud.name && !fn->u.ud.owner) return jinja_fail(cx, "'%s' is undefined (line %d)", fn->u.ud.name, n->line);
        return jinja_fail(cx, "'%s' has no attribute '%s' (line %d)", fn->u.ud.owner ? fn->u.ud.owner : "object", fn->u.ud.name ? fn->u.ud.name : "?", n->line);
    default: return jinja_fail(cx, "'%s' object is not callable (line %d)", jv_type_name(fn), n->line);
    }
}

static jv *eval_compare(jinja_ctx *cx, jframe *f, jnode *n) {
    jv *left = jinja_eval(cx, f, n->a);
    if (!left) return NULL;
    for (int i = 0; i < n->n; i++) {
        jv *right = jinja_eval(cx, f, n->items[i]);
        if (!right) return NULL;
        int op = n->ops[i], r = 0, c;
        switch (op) {
        case OP_EQ: r = jv_equal(left, right); break;
        case OP_NE: r = !jv_equal(left, right); break;
        case OP_IN: case OP_NOTIN:
            if (jinja_contains(cx, right, left, &r) < 0) return NULL;
            if (op == OP_NOTIN) r = !r;
            break;
        default:
            if (!jv_compare(left, right, &c))
                return jinja_fail(cx, "'%c%s' not supported between instances of '%s' and '%s' (line %d)",
                                  op == '<' || op == OP_LE ? '<' : '>', op == OP_LE || op == OP_GE ? "=" : "",
                                  jv_type_name(left), jv_type_name(right), n->line);
            r = op == '<' ? c < 0 : op == '>' ? c > 0 : op == OP_LE ? c <= 0 : c >= 0;
        }
        if (!r) return JV_BOOLV(0);
        left = right;
    }
    return JV_BOOLV(1);
}

static jv *eval_node(jinja_ctx *cx, jframe *f, jnode *n) {
    jv *a, *b;
    switch (n->kind) {
    case N_CONST: return n->op == 1 ? cx->placeholder : n->konst;
    case N_NAME: return lookup(cx, f, n->name);
    case N_LIST: case N_TUPLE: {
        jv *l = jv_list(cx, n->kind == N_LIST ? JV_LIST : JV_TUPLE, (size_t)n->n);
        if (!l) return NULL;
        for (int i = 0; i < n->n; i++) if (jv_list_push(cx, l, jinja_eval(cx, f, n->items[i])) < 0) return NULL;
        return l;
    }
    case N_DICT: {
        jv *d = jv_dict(cx, JV_DICT);
        if (!d) return NULL;
        for (int i = 0; i < n->n; i++) {
            jv *k = jinja_eval(cx, f, n->items[i]);
            if (!k) return NULL;
            if (k->t == JV_LIST || k->t == JV_DICT || k->t == JV_UNDEF || k->t == JV_NS)
                return jinja_fail(cx, "unhashable dict key of type '%s' (line %d)", jv_type_name(k), n->line);
            if (jv_dict_set(cx, d, k, jinja_eval(cx, f, n->items2[i])) < 0) return NULL;
        }
        return d;
    }
    case N_ATTR:
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        return jinja_getattr(cx, a, n->name);
    case N_ITEM:
        if (!(a = jinja_eval(cx, f, n->a)) || !(b = jinja_eval(cx, f, n->b))) return NULL;
        return jinja_getitem(cx, a, b);
    case N_SLICE: {
        jv *s[3] = {JV_NONEV, JV_NONEV, JV_NONEV};
        jnode *parts[3] = {n->b, n->c, n->items[0]};
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        for (int i = 0; i < 3; i++) if (parts[i] && !(s[i] = jinja_eval(cx, f, parts[i]))) return NULL;
        return jinja_slice(cx, a, s[0], s[1], s[2]);
    }
    case N_CALL: return do_call(cx, f, n, NULL);
    case N_FILTER: {
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        jv **args, **kwv;
        if (eval_args(cx, f, n, &args, &kwv) < 0) return NULL;
        return jinja_filter(cx, f, n->name, a, args, n->n, n->names, kwv, n->n2, n->line);
    }
    case N_TEST: {
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        jv **args, **kwv;
        if (eval_args(cx, f, n, &args, &kwv) < 0) return NULL;
        int r;
        if (jinja_test(cx, n->name, a, args, n->n, &r) < 0) return NULL;
        return JV_BOOLV(n->op ? !r : r);
    }
    case N_UNARY:
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        if (n->op == '+') {
            if (a->t == JV_INT || a->t == JV_FLOAT) return a;
            if (a->t == JV_BOOL) return jv_int(cx, a->u.b);
        } else {
            if (a->t == JV_INT) return a->u.i == INT64_MIN ? jinja_fail(cx, "integer overflow") : jv_int(cx, -a->u.i);
            if (a->t == JV_FLOAT) return jv_float(cx, -a->u.f);
            if (a->t == JV_BOOL) return jv_int(cx, -a->u.b);
        }
        if (a->t == JV_UNDEF) return jinja_fail(cx, "'%s' is undefined (line %d)", a->u.ud.name ? a->u.ud.name : "value", n->line);
        return jinja_fail(cx, "bad operand type for unary %c: '%s' (line %d)", n->op, jv_type_name(a), n->line);
    case N_BINARY:
        if (!(a = jinja_eval(cx, f, n->a)) || !(b = jinja_eval(cx, f, n->b))) return NULL;
        return jinja_binop(cx, n->op, a, b);
    case N_CONCAT: {
        if (!(a = jinja_eval(cx, f, n->a)) || !(b = jinja_eval(cx, f, n->b))) return NULL;
        jbuf buf;
        jbuf_init(&buf, cx);
        if (jv_to_str(&buf, a) < 0 || jv_to_str(&buf, b) < 0 || buf.failed) return NULL;
        return jv_str(cx, buf.p ? buf.p : "", buf.len);
    }
    case N_AND:
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        return jv_truthy(a) ? jinja_eval(cx, f, n->b) : a;
    case N_OR:
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        return jv_truthy(a) ? a : jinja_eval(cx, f, n->b);
    case N_NOT:
        if (!(a = jinja_eval(cx, f, n->a))) return NULL;
        return JV_BOOLV(!jv_truthy(a));
    case N_COMPARE: return eval_compare(cx, f, n);
    case N_COND:
        if (!(b = jinja_eval(cx, f, n->b))) return NULL;
        if (jv_truthy(b)) return jinja_eval(cx, f, n->a);
        return n->c ? jinja_eval(cx, f, n->c) : jv_undef_named(cx, NULL, NULL);
    default: return jinja_fail(cx, "internal error: statement node in expression (line %d)", n->line);
    }
}

jv *jinja_eval(jinja_ctx *cx, jframe *f, jnode *n) {
    if (enter(cx, n) < 0) return NULL;
    jv *v = eval_node(cx, f, n);
    cx->depth--;
    if (!v && !cx->failed) jinja_fail(cx, "evaluation failed (line %d)", n->line);
    return v;
}

static jv *loop_object(jinja_ctx *cx, jv *items, size_t i) {
    size_t len = items->u.l.n;
    jv *d = jv_dict(cx, JV_DICT);
    if (!d) return NULL;
    struct { const char *k; jv *v; } kv[] = {
        {"index", jv_int(cx, (int64_t)i + 1)}, {"index0", jv_int(cx, (int64_t)i)},
        {"revindex", jv_int(cx, (int64_t)(len - i))}, {"revindex0", jv_int(cx, (int64_t)(len - i - 1))},
        {"first", JV_BOOLV(i == 0)}, {"last", JV_BOOLV(i + 1 == len)}, {"length", jv_int(cx, (int64_t)len)},
        {"depth", jv_int(cx, 1)}, {"depth0", jv_int(cx, 0)},
        {"previtem", i > 0 ? items->u.l.v[i - 1] : jv_undef_named(cx, "previtem", NULL)},
        {"nextitem", i + 1 < len ? items->u.l.v[i + 1] : jv_undef_named(cx, "nextitem", NULL)},
    };
    for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++)
        if (jv_dict_set(cx, d, jv_cstr(cx, kv[k].k), kv[k].v) < 0) return NULL;
    return d;
}

static int exec_for(jinja_ctx *cx, jframe *f, jnode *n, jbuf *out) {
    jv *seq = jinja_eval(cx, f, n->b);
    if (!seq) return -1;
    jv *items = jinja_iterable(cx, seq);
    if (!items) return -1;
    if (n->c) { /* loop filter: evaluated with the target bound, without `loop` */
        jv *kept = jv_list(cx, JV_LIST, items->u.l.n);
        if (!kept) return -1;
        for (size_t i = 0; i < items->u.l.n; i++) {
            jframe *it = frame_new(cx, f);
            if (!it || assign(cx, it, n->a, items->u.l.v[i]) < 0) return -1;
            jv *c = jinja_eval(cx, it, n->c);
            if (!c) return -1;
            if (jv_truthy(c) && jv_list_push(cx, kept, items->u.l.v[i]) < 0) return -1;
        }
        items = kept;
    }
    jnode body = {.kind = N_BODY, .items = n->items, .n = n->n, .line = n->line};
    for (size_t i = 0; i < items->u.l.n; i++) {
        jframe *it = frame_new(cx, f);
        if (!it || assign(cx, it, n->a, items->u.l.v[i]) < 0) return -1;
        if (set_var(cx, it, "loop", loop_object(cx, items, i)) < 0) return -1;
        int r = jinja_exec(cx, it, &body, out);
        if (r < 0) return -1;
        if (r == 1) break;
    }
    if (items->u.l.n == 0 && n->n2) {
        jnode eb = {.kind = N_BODY, .items = n->items2, .n = n->n2, .line = n->line};
        return jinja_exec(cx, f, &eb, out) < 0 ? -1 : 0;
    }
    return 0;
}

/* render body into a fresh string, then run the filter chain n->c on it */
static jv *render_filtered(jinja_ctx *cx, jframe *f, jnode *n) {
    jbuf buf;
    jbuf_init(&buf, cx);
    jnode body = {.kind = N_BODY, .items = n->items, .n = n->n, .line = n->line};
    if (jinja_exec(cx, f, &body, &buf) < 0) return NULL;
    jv *s = jv_str(cx, buf.p ? buf.p : "", buf.len);
    if (!s || !n->c) return s;
    jv *saved = cx->placeholder;
    cx->placeholder = s;
    jv *r = jinja_eval(cx, f, n->c);
    cx->placeholder = saved;
    return r;
}

static int exec_stmt(jinja_ctx *cx, jframe *f, jnode *n, jbuf *out) {
    jv *v;
    switch (n->kind) {
    case N_TEXT: return jbuf_put(out, n->name, n->len);
    case N_OUTPUT:
        if (!(v = jinja_eval(cx, f, n->a))) return -1;
        return jv_to_str(out, v) < 0 || out->failed ? -1 : 0;
    case N_IF:
        if (!(v = jinja_eval(cx, f, n->a))) return -1;
        if (jv_truthy(v)) { jnode b = {.kind = N_BODY, .items = n->items, .n = n->n}; return jinja_exec(cx, f, &b, out); }
        if (n->n2) { jnode b = {.kind = N_BODY, .items = n->items2, .n = n->n2}; return jinja_exec(cx, f, &b, out); }
        return 0;
    case N_FOR: return exec_for(cx, f, n, out);
    case N_SET: return assign(cx, f, n->a, jinja_eval(cx, f, n->b));
    case N_SETBLOCK: return assign(cx, f, n->a, render_filtered(cx, f, n));
    case N_FILTERBLOCK:
        if (!(v = render_filtered(cx, f, n))) return -1;
        return jv_to_str(out, v) < 0 || out->failed ? -1 : 0;
    case N_MACRO:
        if (!(v = jv_dict(cx, JV_MACRO))) return -1;
        v->u.mac.def = n;
        v->u.mac.frame = f;
        return set_var(cx, f, n->name, v);
    case N_CALLBLOCK: {
        jv *caller = jv_dict(cx, JV_MACRO);
        if (!caller) return -1;
        caller->u.mac.def = n; /* names/items2 = caller params, items = body */
        caller->u.mac.frame = f;
        if (!(v = do_call(cx, f, n->a, caller))) return -1;
        return jv_to_str(out, v) < 0 || out->failed ? -1 : 0;
    }
    case N_BREAK: return 1;
    case N_CONTINUE: return 2;
    case N_BODY: return jinja_exec(cx, f, n, out);
    default:
        if (!(v = jinja_eval(cx, f, n))) return -1;
        return 0;
    }
}

int jinja_exec(jinja_ctx *cx, jframe *f, jnode *body, jbuf *out) {
    if (enter(cx, body) < 0) return -1;
    int r = 0;
    for (int i = 0; i < body->n && r == 0; i++) {
        if (enter(cx, body->items[i]) < 0) { r = -1; break; }
        r = exec_stmt(cx, f, body->items[i], out);
        cx->depth--;
        if (cx->failed || out->failed) r = -1;
    }
    cx->depth--;
    return r;
}
