/* Parser of the Jinja-subset engine: tokens -> AST (jnode). Operator
 * precedence follows jinja2.parser (3.1): condexpr < or < and < not <
 * compare < +,- < ~ < *,/,//,% < ** < unary -,+ < postfix (. [] ()) and
 * filters/tests (| is). Statements: for/if/set/macro/call/filter/break/
 * continue/generation (transformers' AssistantTracker) and raw (lexer). */
#include "tokenizer/jinja_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_NEST 96

typedef struct {
    jinja_template *t;
    jtok *tok; int n, i;
    int depth;
    char *err; size_t errcap;
    int failed;
} parser;

static void *pfail(parser *P, const char *fmt, ...) {
    if (P->failed) return NULL;
    P->failed = 1;
    jtok *t = &P->tok[P->i < P->n ? P->i : P->n - 1];
    int k = snprintf(P->err, P->errcap, "line %d, column %d: ", t->line, t->col);
    if (k < 0 || (size_t)k >= P->errcap) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->err + k, P->errcap - (size_t)k, fmt, ap);
    va_end(ap);
    return NULL;
}

static jtok *cur(parser *P) { return &P->tok[P->i]; }
static jtok *peek(parser *P, int k) { return &P->tok[P->i + k < P->n ? P->i + k : P->n - 1]; }
static void adv(parser *P) { if (P->i < P->n - 1) P->i++; }
static int is_op(jtok *t, int op) { return t->type == T_OP && t->op == op; }
static int is_name(jtok *t, const char *s) { return t->type == T_NAME && t->len == strlen(s) && memcmp(t->s, s, t->len) == 0; }
static int accept_op(parser *P, int op) { if (is_op(cur(P), op)) { adv(P); return 1; } return 0; }
static int accept_name(parser *P, const char *s) { if (is_name(cur(P), s)) { adv(P); return 1; } return 0; }
static int expect_op(parser *P, int op) {
    if (accept_op(P, op)) return 1;
    pfail(P, "expected '%c'", op < 256 ? (char)op : '?');
    return 0;
}

static jnode *mk(parser *P, jnode_kind k, jtok *at) {
    jnode *n = jinja_alloc(&P->t->arena, sizeof *n);
    if (!n) return pfail(P, "out of memory");
    n->kind = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}
static char *dupname(parser *P, jtok *t) {
    char *s = jinja_alloc(&P->t->arena, t->len + 1);
    if (!s) return pfail(P, "out of memory");
    memcpy(s, t->s, t->len);
    return s;
}

/* growable node list in the arena */
typedef struct { jnode **v; int n, cap; } nlist;
static int nl_push(parser *P, nlist *l, jnode *x) {
    if (!x) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        jnode **nv = jinja_alloc(&P->t->arena, (size_t)cap * sizeof(jnode *));
        if (!nv) { pfail(P, "out of memory"); return -1; }
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof(jnode *));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}
typedef struct { const char **v; int n, cap; } slist;
static int sl_push(parser *P, slist *l, const char *x) {
    if (!x) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        const char **nv = jinja_alloc(&P->t->arena, (size_t)cap * sizeof(char *));
        if (!nv) { pfail(P, "out of memory"); return -1; }
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof(char *));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, int with_filter);

static const char *RESERVED[] = {"and", "or", "not", "in", "is", "if", "else", NULL};
static int reserved(jtok *t) {
    for (int i = 0; RESERVED[i]; i++) if (is_name(t, RESERVED[i])) return 1;
    return 0;
}

/* (args) after '(' was consumed: positional into items/n, keyword into names/items2 */
static int parse_call_args(parser *P, jnode *call) {
    nlist pos = {0}, kwv = {0};
    slist kwn = {0};
    while (!is_op(cur(P), ')')) {
        if (pos.n || kwv.n) { if (!expect_op(P, ',')) return -1; if (is_op(cur(P), ')')) break; }
        if (is_op(cur(P), '*')) return pfail(P, "*args/**kwargs in calls are not supported"), -1;
        if (cur(P)->type == T_NAME && is_op(peek(P, 1), '=')) {
            if (sl_push(P, &kwn, dupname(P, cur(P))) < 0) return -1;
            adv(P); adv(P);
            if (nl_push(P, &kwv, parse_expr(P)) < 0) return -1;
        } else {
            if (kwv.n) return pfail(P, "positional argument follows keyword argument"), -1;
            if (nl_push(P, &pos, parse_expr(P)) < 0) return -1;
        }
        if (P->failed) return -1;
    }
    adv(P);
    call->items = pos.v; call->n = pos.n;
    call->items2 = kwv.v; call->n2 = kwv.n;
    call->names = kwn.v; call->nnames = kwn.n;
    return 0;
}

static jnode *parse_primary(parser *P) {
    jtok *t = cur(P);
    jnode *n;
    if (t->type == T_NAME) {
        n = mk(P, N_CONST, t);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) n->konst = &jv_true_v;
        else if (is_name(t, "false") || is_name(t, "False")) n->konst = &jv_false_v;
        else if (is_name(t, "none") || is_name(t, "None")) n->konst = &jv_none_v;
        else { n->kind = N_NAME; n->name = dupname(P, t); }
        adv(P);
        return n;
    }
    if (t->type == T_STRING) { /* adjacent literals concatenate */
        size_t total = 0;
        int k = 0;
        while (peek(P, k)->type == T_STRING) total += peek(P, k++)->len;
        jv *v = jinja_alloc(&P->t->arena, sizeof *v + total + 1);
        if (!v) return pfail(P, "out of memory");
        char *s = (char *)(v + 1);
        size_t off = 0;
        for (int j = 0; j < k; j++) { memcpy(s + off, cur(P)->s, cur(P)->len); off += cur(P)->len; adv(P); }
        v->t = JV_STR; v->u.s.s = s; v->u.s.len = total;
        n = mk(P, N_CONST, t);
        if (n) n->konst = v;
        return n;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        jv *v = jinja_alloc(&P->t->arena, sizeof *v);
        if (!v) return pfail(P, "out of memory");
        if (t->type == T_INT) { v->t = JV_INT; v->u.i = t->i; } else { v->t = JV_FLOAT; v->u.f = t->f; }
        adv(P);
        n = mk(P, N_CONST, t);
        if (n) n->konst = v;
        return n;
    }
    if (is_op(t, '(')) {
        adv(P);
        if (accept_op(P, ')')) return mk(P, N_TUPLE, t);
        jnode *e = parse_expr(P);
        if (!e) return NULL;
        if (!is_op(cur(P), ',')) { if (!expect_op(P, ')')) return NULL; return e; }
        nlist l = {0};
        nl_push(P, &l, e);
        while (accept_op(P, ',')) {
            if (is_op(cur(P), ')')) break;
            if (nl_push(P, &l, parse_expr(P)) < 0) return NULL;
        }
        if (!expect_op(P, ')')) return NULL;
        n = mk(P, N_TUPLE, t);
        if (n) { n->items = l.v; n->n = l.n; }
        return n;
    }
    if (is_op(t, '[')) {
        adv(P);
        nlist l = {0};
        while (!is_op(cur(P), ']')) {
            if (l.n && !expect_op(P, ',')) return NULL;
            if (is_op(cur(P), ']')) break;
            if (nl_push(P, &l, parse_expr(P)) < 0) return NULL;
        }
        adv(P);
        n = mk(P, N_LIST, t);
        if (n) { n->items = l.v; n->n = l.n; }
        return n;
    }
    if (is_op(t, '{')) {
        adv(P);
        nlist ks = {0}, vs = {0};
        while (!is_op(cur(P), '}')) {
            if (ks.n && !expect_op(P, ',')) return NULL;
            if (is_op(cur(P), '}')) break;
            if (nl_push(P, &ks, parse_expr(P)) < 0) return NULL;
            if (!expect_op(P, ':')) return NULL;
            if (nl_push(P, &vs, parse_expr(P)) < 0) return NULL;
        }
        adv(P);
        n = mk(P, N_DICT, t);
        if (n) { n->items = ks.v; n->n = ks.n; n->items2 = vs.v; n->n2 = vs.n; }
        return n;
    }
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || t->type == T_EOF) return pfail(P, "unexpected end of expression");
    return pfail(P, "unexpected token in expression");
}

static jnode *parse_subscript(parser *P, jnode *obj, jtok *at) {
    /* after '[' : expr | [a]:[b][:[c]] */
    jnode *parts[3] = {0};
    int is_slice = 0, k = 0;
    for (;;) {
        if (is_op(cur(P), ':')) {
            if (++k > 2) return pfail(P, "too many ':' in slice");
            is_slice = 1;
            adv(P);
            continue;
        }
        if (is_op(cur(P), ']')) break;
        if (parts[k]) return pfail(P, "expected ']'");
        parts[k] = parse_expr(P);
        if (!parts[k]) return NULL;
    }
    adv(P);
    jnode *n = mk(P, is_slice ? N_SLICE : N_ITEM, at);
    if (!n) return NULL;
    n->a = obj;
    if (is_slice) { n->b = parts[0]; n->c = parts[1]; n->items = jinja_alloc(&P->t->arena, sizeof(jnode *)); if (!n->items) return pfail(P, "out of memory"); n->items[0] = parts[2]; n->n = 1; }
    else { if (!parts[0]) return pfail(P, "empty subscript"); n->b = parts[0]; }
    return n;
}

static jnode *parse_postfix(parser *P, jnode *n) {
    while (n && !P->failed) {
        jtok *t = cur(P);
        if (is_op(t, '.')) {
            adv(P);
            jtok *a = cur(P);
            if (a->type == T_NAME) {
                jnode *x = mk(P, N_ATTR, t);
                if (!x) return NULL;
                x->a = n; x->name = dupname(P, a);
                adv(P);
                n = x;
            } else if (a->type == T_INT) {
                jnode *x = mk(P, N_ITEM, t), *k = mk(P, N_CONST, a);
                if (!x || !k) return NULL;
                k->konst = jinja_alloc(&P->t->arena, sizeof(jv));
                if (!k->konst) return pfail(P, "out of memory");
                k->konst->t = JV_INT; k->konst->u.i = a->i;
                x->a = n; x->b = k;
                adv(P);
                n = x;
            } else return pfail(P, "expected attribute name after '.'");
        } else if (is_op(t, '[')) {
            adv(P);
            n = parse_subscript(P, n, t);
        } else if (is_op(t, '(')) {
            adv(P);
            jnode *x = mk(P, N_CALL, t);
            if (!x) return NULL;
            x->a = n;
            if (parse_call_args(P, x) < 0) return NULL;
            n = x;
        } else break;
    }
    return n;
}

static const char *dotted_name(parser *P) {
    if (cur(P)->type != T_NAME) return pfail(P, "expected a name");
    jtok *t = cur(P);
    adv(P);
    /* a.b names: join */
    size_t len = t->len;
    const char *start = t->s;
    while (is_op(cur(P), '.') && peek(P, 1)->type == T_NAME) { adv(P); len = (size_t)(cur(P)->s + cur(P)->len - start); adv(P); }
    char *s = jinja_alloc(&P->t->arena, len + 1);
    if (!s) return pfail(P, "out of memory");
    memcpy(s, start, len);
    return s;
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    while (n && !P->failed) {
        jtok *t = cur(P);
        if (is_op(t, '|')) {
            adv(P);
            jnode *f = mk(P, N_FILTER, t);
            if (!f) return NULL;
            f->a = n;
            f->name = dotted_name(P);
            if (!f->name) return NULL;
            if (accept_op(P, '(') && parse_call_args(P, f) < 0) return NULL;
            n = f;
        } else if (is_name(t, "is")) {
            adv(P);
            jnode *f = mk(P, N_TEST, t);
            if (!f) return NULL;
            f->a = n;
            if (accept_name(P, "not")) f->op = 1;
            f->name = dotted_name(P);
            if (!f->name) return NULL;
            jtok *c = cur(P);
            if (accept_op(P, '(')) { if (parse_call_args(P, f) < 0) return NULL; }
            else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT ||
                      is_op(c, '(') || is_op(c, '[') || is_op(c, '{')) &&
                     !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                if (is_name(c, "is")) return pfail(P, "You cannot chain multiple tests with is");
                jnode *arg = parse_postfix(P, parse_primary(P));
                if (!arg) return NULL;
                f->items = jinja_alloc(&P->t->arena, sizeof(jnode *));
                if (!f->items) return pfail(P, "out of memory");
                f->items[0] = arg;
                f->n = 1;
            }
            n = f;
        } else if (is_op(t, '(')) {
            adv(P);
            jnode *x = mk(P, N_CALL, t);
            if (!x) return NULL;
            x->a = n;
            if (parse_call_args(P, x) < 0) return NULL;
            n = x;
        } else break;
    }
    return n;
}

static jnode *parse_unary(parser *P, int with_filter) {
    jtok *t = cur(P);
    jnode *n;
    if (++P->depth > MAX_NEST) return pfail(P, "expression nested too deeply");
    if (is_op(t, '-') || is_op(t, '+')) {
        adv(P);
        n = mk(P, N_UNARY, t);
        if (n) { n->op = t->op; n->a = parse_unary(P, 0); if (!n->a) n = NULL; }
    } else n = parse_primary(P);
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static jnode *binary(parser *P, jnode_kind k, int op, jnode *a, jnode *b, jtok *at) {
    if (!a || !b) return NULL;
    jnode *n = mk(P, k, at);
    if (n) { n->op = op; n->a = a; n->b = b; }
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *n = parse_unary(P, 1);
    while (n && is_op(cur(P), OP_POW)) { jtok *t = cur(P); adv(P); n = binary(P, N_BINARY, OP_POW, n, parse_unary(P, 1), t); }
    return n;
}
static jnode *parse_math2(parser *P) {
    jnode *n = parse_pow(P);
    while (n) {
        jtok *t = cur(P);
        if (!(is_op(t, '*') || is_op(t, '/') || is_op(t, OP_FLOORDIV) || is_op(t, '%'))) break;
        adv(P);
        n = binary(P, N_BINARY, t->op, n, parse_pow(P), t);
    }
    return n;
}
static jnode *parse_concat(parser *P) {
    jnode *n = parse_math2(P);
    while (n && is_op(cur(P), '~')) { jtok *t = cur(P); adv(P); n = binary(P, N_CONCAT, '~', n, parse_math2(P), t); }
    return n;
}
static jnode *parse_math1(parser *P) {
    jnode *n = parse_concat(P);
    while (n) {
        jtok *t = cur(P);
        if (!(is_op(t, '+') || is_op(t, '-'))) break;
        adv(P);
        n = binary(P, N_BINARY, t->op, n, parse_concat(P), t);
    }
    return n;
}
static jnode *parse_compare(parser *P) {
    jtok *at = cur(P);
    jnode *first = parse_math1(P);
    if (!first) return NULL;
    nlist rest = {0};
    int ops[64], nops = 0;
    for (;;) {
        jtok *t = cur(P);
        int op = -1;
        if (t->type == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == '<' || t->op == '>' || t->op == OP_LE || t->op == OP_GE)) { op = t->op; adv(P); }
        else if (is_name(t, "in")) { op = OP_IN; adv(P); }
        else if (is_name(t, "not") && is_name(peek(P, 1), "in")) { op = OP_NOTIN; adv(P); adv(P); }
        else break;
        if (nops == 64) return pfail(P, "too many chained comparisons");
        ops[nops++] = op;
        if (nl_push(P, &rest, parse_math1(P)) < 0) return NULL;
    }
    if (!nops) return first;
    jnode *n = mk(P, N_COMPARE, at);
    if (!n) return NULL;
    n->a = first; n->items = rest.v; n->n = rest.n;
    n->ops = jinja_alloc(&P->t->arena, sizeof(int) * (size_t)nops);
    if (!n->ops) return pfail(P, "out of memory");
    memcpy(n->ops, ops, sizeof(int) * (size_t)nops);
    return n;
}
static jnode *parse_not(parser *P) {
    jtok *t = cur(P);
    if (is_name(t, "not")) {
        adv(P);
        if (++P->depth > MAX_NEST) return pfail(P, "expression nested too deeply");
        jnode *n = mk(P, N_NOT, t), *a = parse_not(P);
        P->depth--;
        if (!n || !a) return NULL;
        n->a = a;
        return n;
    }
    return parse_compare(P);
}
static jnode *parse_and(parser *P) {
    jnode *n = parse_not(P);
    while (n && is_name(cur(P), "and")) { jtok *t = cur(P); adv(P); n = binary(P, N_AND, 0, n, parse_not(P), t); }
    return n;
}
static jnode *parse_or(parser *P) {
    jnode *n = parse_and(P);
    while (n && is_name(cur(P), "or")) { jtok *t = cur(P); adv(P); n = binary(P, N_OR, 0, n, parse_and(P), t); }
    return n;
}
static jnode *parse_condexpr(parser *P) {
    jnode *n = parse_or(P);
    while (n && is_name(cur(P), "if")) {
        jtok *t = cur(P);
        adv(P);
        jnode *c = mk(P, N_COND, t);
        if (!c) return NULL;
        c->a = n;
        c->b = parse_or(P);
        if (!c->b) return NULL;
        if (accept_name(P, "else")) { c->c = parse_condexpr(P); if (!c->c) return NULL; }
        n = c;
    }
    return n;
}
static jnode *parse_expr(parser *P) {
    if (++P->depth > MAX_NEST) return pfail(P, "expression nested too deeply");
    jnode *n = parse_condexpr(P);
    P->depth--;
    return n;
}
/* expr [, expr ...] -> tuple when a comma appears */
static jnode *parse_tuple(parser *P, int with_condexpr) {
    jtok *at = cur(P);
    jnode *e = with_condexpr ? parse_expr(P) : parse_or(P);
    if (!e || !is_op(cur(P), ',')) return e;
    nlist l = {0};
    nl_push(P, &l, e);
    while (accept_op(P, ',')) {
        jtok *c = cur(P);
        if (c->type == T_VAR_END || c->type == T_BLOCK_END || is_name(c, "in")) break;
        if (nl_push(P, &l, with_condexpr ? parse_expr(P) : parse_or(P)) < 0) return NULL;
    }
    jnode *n = mk(P, N_TUPLE, at);
    if (n) { n->items = l.v; n->n = l.n; }
    return n;
}

/* ---- statements ---- */
static jnode *parse_body(parser *P, const char *const *ends);

static int expect_block_end(parser *P) {
    if (cur(P)->type == T_BLOCK_END) { adv(P); return 1; }
    pfail(P, "expected end of statement block '%%}'");
    return 0;
}

/* assignment target: name | name.attr | a, b */
static jnode *parse_target(parser *P, int allow_attr) {
    jtok *t = cur(P);
    if (t->type != T_NAME || reserved(t)) return pfail(P, "expected a variable name");
    jnode *n = mk(P, N_NAME, t);
    if (!n) return NULL;
    n->name = dupname(P, t);
    adv(P);
    if (allow_attr && is_op(cur(P), '.')) {
        adv(P);
        if (cur(P)->type != T_NAME) return pfail(P, "expected attribute name");
        jnode *a = mk(P, N_ATTR, t);
        if (!a) return NULL;
        a->a = n; a->name = dupname(P, cur(P));
        adv(P);
        return a;
    }
    if (is_op(cur(P), ',')) {
        nlist l = {0};
        nl_push(P, &l, n);
        while (accept_op(P, ',')) {
            if (cur(P)->type != T_NAME || reserved(cur(P))) break;
            jnode *x = mk(P, N_NAME, cur(P));
            if (!x) return NULL;
            x->name = dupname(P, cur(P));
            adv(P);
            nl_push(P, &l, x);
        }
        jnode *tu = mk(P, N_TUPLE, t);
        if (tu) { tu->items = l.v; tu->n = l.n; }
        return tu;
    }
    return n;
}

static int parse_params(parser *P, jnode *n) {
    slist names = {0};
    nlist defs = {0};
    if (accept_op(P, '(')) {
        while (!is_op(cur(P), ')')) {
            if (names.n && !expect_op(P, ',')) return -1;
            if (is_op(cur(P), ')')) break;
            if (cur(P)->type != T_NAME) return pfail(P, "expected parameter name"), -1;
            if (sl_push(P, &names, dupname(P, cur(P))) < 0) return -1;
            adv(P);
            jnode *d = NULL;
            if (accept_op(P, '=')) { d = parse_expr(P); if (!d) return -1; }
            else {
                if (defs.n && defs.v[defs.n - 1]->op != -1) return pfail(P, "non-default argument follows default argument"), -1;
                d = mk(P, N_CONST, cur(P)); /* op -1: no default */
                if (!d) return -1;
                d->op = -1;
                d->konst = &jv_undef_v;
            }
            if (nl_push(P, &defs, d) < 0) return -1;
        }
        adv(P);
    }
    n->names = names.v; n->nnames = names.n;
    n->items2 = defs.v; n->n2 = defs.n;
    return 0;
}

static jnode *parse_stmt(parser *P) {
    jtok *t = cur(P); /* after BLOCK_BEGIN */
    static const char *const for_ends[] = {"endfor", "else", NULL}, *const endfor[] = {"endfor", NULL};
    static const char *const if_ends[] = {"elif", "else", "endif", NULL}, *const endif[] = {"endif", NULL};
    static const char *const endset[] = {"endset", NULL}, *const endmacro[] = {"endmacro", NULL};
    static const char *const endcall[] = {"endcall", NULL}, *const endfilter[] = {"endfilter", NULL};
    static const char *const endgen[] = {"endgeneration", NULL};
    if (t->type != T_NAME) return pfail(P, "expected a statement name");
    if (accept_name(P, "for")) {
        jnode *n = mk(P, N_FOR, t);
        if (!n || !(n->a = parse_target(P, 0))) return NULL;
        if (!accept_name(P, "in")) return pfail(P, "expected 'in' in for loop");
        if (!(n->b = parse_tuple(P, 0))) return NULL;
        if (accept_name(P, "if") && !(n->c = parse_expr(P))) return NULL;
        if (is_name(cur(P), "recursive")) return pfail(P, "recursive for loops are not supported");
        if (!expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, for_ends);
        if (!body) return NULL;
        n->items = body->items; n->n = body->n;
        if (accept_name(P, "else")) {
            if (!expect_block_end(P)) return NULL;
            jnode *eb = parse_body(P, endfor);
            if (!eb) return NULL;
            n->items2 = eb->items; n->n2 = eb->n;
        }
        if (!accept_name(P, "endfor") || !expect_block_end(P)) return pfail(P, "expected endfor");
        return n;
    }
    if (accept_name(P, "if")) {
        jnode *n = mk(P, N_IF, t), *top = n;
        for (;;) {
            if (!n || !(n->a = parse_tuple(P, 0)) || !expect_block_end(P)) return NULL;
            jnode *body = parse_body(P, if_ends);
            if (!body) return NULL;
            n->items = body->items; n->n = body->n;
            if (accept_name(P, "elif")) {
                jnode *e = mk(P, N_IF, cur(P));
                if (!e) return NULL;
                n->items2 = jinja_alloc(&P->t->arena, sizeof(jnode *));
                if (!n->items2) return pfail(P, "out of memory");
                n->items2[0] = e; n->n2 = 1;
                n = e;
                continue;
            }
            if (accept_name(P, "else")) {
                if (!expect_block_end(P)) return NULL;
                jnode *eb = parse_body(P, endif);
                if (!eb) return NULL;
                n->items2 = eb->items; n->n2 = eb->n;
            }
            if (!accept_name(P, "endif") || !expect_block_end(P)) return pfail(P, "expected endif");
            return top;
        }
    }
    if (accept_name(P, "set")) {
        jnode *target = parse_target(P, 1);
        if (!target) return NULL;
        if (accept_op(P, '=')) {
            jnode *n = mk(P, N_SET, t);
            if (!n) return NULL;
            n->a = target;
            if (!(n->b = parse_tuple(P, 1)) || !expect_block_end(P)) return NULL;
            return n;
        }
        jnode *n = mk(P, N_SETBLOCK, t);
        if (!n) return NULL;
        n->a = target;
        if (is_op(cur(P), '|')) { /* {% set x | filter %}: wrap a placeholder */
            jnode *ph = mk(P, N_CONST, cur(P));
            if (!ph) return NULL;
            ph->konst = &jv_none_v;
            ph->op = 1;
            if (!(n->c = parse_filter_expr(P, ph))) return NULL;
        }
        if (!expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, endset);
        if (!body) return NULL;
        n->items = body->items; n->n = body->n;
        if (!accept_name(P, "endset") || !expect_block_end(P)) return pfail(P, "expected endset");
        return n;
    }
    if (accept_name(P, "macro")) {
        jnode *n = mk(P, N_MACRO, t);
        if (!n || cur(P)->type != T_NAME) return pfail(P, "expected macro name");
        n->name = dupname(P, cur(P));
        adv(P);
        if (!is_op(cur(P), '(')) return pfail(P, "expected '(' after macro name");
        if (parse_params(P, n) < 0 || !expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, endmacro);
        if (!body) return NULL;
        n->items = body->items; n->n = body->n;
        if (!accept_name(P, "endmacro") || !expect_block_end(P)) return pfail(P, "expected endmacro");
        return n;
    }
    if (accept_name(P, "call")) {
        jnode *n = mk(P, N_CALLBLOCK, t);
        if (!n) return NULL;
        if (is_op(cur(P), '(') && parse_params(P, n) < 0) return NULL;
        if (!(n->a = parse_expr(P))) return NULL;
        if (n->a->kind != N_CALL) return pfail(P, "expected a call after 'call'");
        if (!expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, endcall);
        if (!body) return NULL;
        n->items = body->items; n->n = body->n;
        if (!accept_name(P, "endcall") || !expect_block_end(P)) return pfail(P, "expected endcall");
        return n;
    }
    if (accept_name(P, "filter")) {
        jnode *n = mk(P, N_FILTERBLOCK, t), *ph = mk(P, N_CONST, cur(P));
        if (!n || !ph) return NULL;
        ph->konst = &jv_none_v;
        ph->op = 1;
        /* parse "name(args) | name2" as filters applied to a placeholder */
        jnode *f = mk(P, N_FILTER, cur(P));
        if (!f) return NULL;
        f->a = ph;
        if (!(f->name = dotted_name(P))) return NULL;
        if (accept_op(P, '(') && parse_call_args(P, f) < 0) return NULL;
        if (!(n->c = parse_filter_expr(P, f)) || !expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, endfilter);
        if (!body) return NULL;
        n->items = body->items; n->n = body->n;
        if (!accept_name(P, "endfilter") || !expect_block_end(P)) return pfail(P, "expected endfilter");
        return n;
    }
    if (accept_name(P, "generation")) {
        if (!expect_block_end(P)) return NULL;
        jnode *body = parse_body(P, endgen);
        if (!body) return NULL;
        if (!accept_name(P, "endgeneration") || !expect_block_end(P)) return pfail(P, "expected endgeneration");
        return body;
    }
    if (accept_name(P, "break") || accept_name(P, "continue")) {
        jnode *n = mk(P, is_name(t, "break") ? N_BREAK : N_CONTINUE, t);
        if (!n || !expect_block_end(P)) return NULL;
        return n;
    }
    return pfail(P, "unknown or unsupported statement '%.*s'", (int)t->len, t->s);
}

static jnode *parse_body(parser *P, const char *const *ends) {
    nlist l = {0};
    jnode *body = mk(P, N_BODY, cur(P));
    if (!body) return NULL;
    if (++P->depth > MAX_NEST) return pfail(P, "blocks nested too deeply");
    for (;;) {
        jtok *t = cur(P);
        if (t->type == T_EOF) {
            if (ends) return pfail(P, "unexpected end of template, expected '%s'", ends[0]);
            break;
        }
        if (t->type == T_TEXT) {
            jnode *n = mk(P, N_TEXT, t);
            if (!n) return NULL;
            n->name = t->s; n->len = t->len;
            adv(P);
            if (nl_push(P, &l, n) < 0) return NULL;
        } else if (t->type == T_VAR_BEGIN) {
            adv(P);
            jnode *n = mk(P, N_OUTPUT, t);
            if (!n || !(n->a = parse_tuple(P, 1))) return NULL;
            if (cur(P)->type != T_VAR_END) return pfail(P, "expected end of print statement '}}'");
            adv(P);
            if (nl_push(P, &l, n) < 0) return NULL;
        } else if (t->type == T_BLOCK_BEGIN) {
            jtok *name = peek(P, 1);
            for (int k = 0; ends && ends[k]; k++)
                if (is_name(name, ends[k])) { adv(P); goto done; }
            adv(P);
            if (nl_push(P, &l, parse_stmt(P)) < 0) return NULL;
        } else return pfail(P, "unexpected token");
    }
done:
    P->depth--;
    body->items = l.v;
    body->n = l.n;
    return body;
}

int jinja_parse(jinja_template *t, const char *src, char *err, size_t errcap) {
    jtok *toks;
    int n;
    if (jinja_lex(&t->arena, src, strlen(src), &toks, &n, err, errcap) < 0) return -1;
    parser P = {.t = t, .tok = toks, .n = n, .err = err, .errcap = errcap};
    t->root = parse_body(&P, NULL);
    return t->root && !P.failed ? 0 : -1;
}
