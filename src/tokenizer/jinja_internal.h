/* Internal types of the Jinja-subset chat template engine (not public).
 *
 * Values live in a per-render arena (jinja_arena): nothing is ref-counted and
 * everything is freed at once when the render ends, so cycles (ns.x = ns) and
 * early error returns cannot leak. The AST lives in the template's own arena.
 * Semantics follow Python jinja2 3.x as used by transformers'
 * apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loopcontrols extension).
 */
#ifndef CLLM_TOKENIZER_JINJA_INTERNAL_H
#define CLLM_TOKENIZER_JINJA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* ---- arena ---- */
typedef struct jinja_chunk jinja_chunk;
typedef struct jinja_arena {
    jinja_chunk *head;
    size_t used_bytes, limit_bytes; /* limit 0 = unlimited */
} jinja_arena;
void *jinja_alloc(jinja_arena *a, size_t bytes); /* zeroed; NULL past the limit */
void jinja_arena_free(jinja_arena *a);

/* ---- values ---- */
typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_TUPLE,
    JV_DICT, JV_NS, JV_METHOD, JV_FUNC, JV_MACRO
} jv_type;

typedef struct jv jv;
struct jnode;
struct jv {
    jv_type t;
    union {
        int b;
        int64_t i;
        double f;
        struct { const char *s; size_t len; } s;         /* UTF-8, not NUL-terminated */
        struct { jv **v; size_t n, cap; } l;              /* list, tuple */
        struct { jv **k, **v; size_t n, cap; } d;         /* dict, namespace (ordered) */
        struct { jv *self; const char *name; } m;         /* bound method */
        struct { const char *name; } fn;                  /* builtin global */
        struct { struct jnode *def; struct jv *caller; void *frame; } mac;
        struct { const char *name; const char *owner; } ud; /* undefined: why */
    } u;
};

extern jv jv_undef_v, jv_none_v, jv_true_v, jv_false_v;
#define JV_UNDEFINED (&jv_undef_v)
#define JV_NONEV (&jv_none_v)
#define JV_BOOLV(x) ((x) ? &jv_true_v : &jv_false_v)

typedef struct jinja_ctx jinja_ctx;

/* growable byte buffer in the arena */
typedef struct jbuf { char *p; size_t len, cap; jinja_ctx *cx; int failed; } jbuf;
void jbuf_init(jbuf *b, jinja_ctx *cx);
int jbuf_put(jbuf *b, const char *s, size_t n);
int jbuf_puts(jbuf *b, const char *s);
int jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* render context */
struct jinja_ctx {
    jinja_arena arena;
    size_t max_output_bytes;   /* cap on any string built and on the output */
    uint64_t steps, max_steps; /* evaluation budget */
    int depth, max_depth;      /* recursion bound */
    int failed, raised;        /* raised: raise_exception() was called */
    char err[512];
    struct jframe *globals;    /* root frame */
    jv *placeholder;           /* value fed to {% filter %} / {% set x | f %} chains */
};
/* Record an error (first one wins); returns NULL for convenience. */
void *jinja_fail(jinja_ctx *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

jv *jv_int(jinja_ctx *cx, int64_t i);
jv *jv_float(jinja_ctx *cx, double f);
jv *jv_str(jinja_ctx *cx, const char *s, size_t len);   /* copies */
jv *jv_cstr(jinja_ctx *cx, const char *s);
jv *jv_list(jinja_ctx *cx, jv_type t, size_t cap);      /* JV_LIST or JV_TUPLE */
int jv_list_push(jinja_ctx *cx, jv *l, jv *x);
jv *jv_dict(jinja_ctx *cx, jv_type t);                  /* JV_DICT or JV_NS */
int jv_dict_set(jinja_ctx *cx, jv *d, jv *k, jv *v);
jv *jv_dict_get(jv *d, jv *k);                          /* NULL if absent */
jv *jv_dict_gets(jv *d, const char *k);
jv *jv_undef_named(jinja_ctx *cx, const char *name, const char *owner);

int jv_truthy(const jv *v);
int jv_equal(const jv *a, const jv *b);
/* -1/0/1 in *out; returns 0 when the types are not orderable */
int jv_compare(const jv *a, const jv *b, int *out);
int jv_is_seq(const jv *v); /* list or tuple */
const char *jv_type_name(const jv *v);

/* Python str() / repr() appended to b. */
int jv_to_str(jbuf *b, const jv *v);
int jv_repr(jbuf *b, const jv *v);
jv *jv_stringify(jinja_ctx *cx, jv *v); /* str(v) as JV_STR */
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys); indent<0 = None */
int jv_tojson(jbuf *b, const jv *v, int indent, const char *item_sep, const char *key_sep,
              int sort_keys, int level);
void jv_format_float(double f, char *out, size_t cap); /* Python float repr */

/* UTF-8 helpers */
size_t utf8_count(const char *s, size_t len);
size_t utf8_offset(const char *s, size_t len, size_t cp_index); /* byte offset of code point */
int utf8_decode(const char *s, size_t len, size_t *pos);      /* next code point, advances */
int utf8_encode(uint32_t cp, char *out);
int py_isspace(int cp);

/* ---- AST ---- */
typedef enum {
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
    N_BREAK, N_CONTINUE, N_BODY,
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER,
    N_TEST, N_UNARY, N_BINARY, N_AND, N_OR, N_NOT, N_COMPARE, N_COND, N_CONCAT
} jnode_kind;

typedef struct jnode jnode;
struct jnode {
    jnode_kind kind;
    int line, col;
    int op;                 /* operator token / negate flag */
    const char *name;       /* names, attr, filter/test name, text */
    size_t len;             /* text length */
    jv *konst;              /* N_CONST */
    jnode *a, *b, *c;       /* operands */
    jnode **items; int n;   /* body / args / elements */
    jnode **items2; int n2; /* else-body / kwargs values / dict values */
    const char **names; int nnames; /* kwarg names, for-targets, macro params */
    int *ops;               /* N_COMPARE operators */
};

typedef struct jinja_template {
    jinja_arena arena;
    jnode *root;
} jinja_template;

/* Parse src (NUL-terminated) into t->root. On error writes "line L, column C: msg" into err. */
int jinja_parse(jinja_template *t, const char *src, char *err, size_t errcap);

/* Token kinds shared by lexer and parser */
enum {
    T_EOF = 0, T_TEXT, T_BLOCK_BEGIN, T_VAR_BEGIN, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
    T_BLOCK_END, T_VAR_END
};
typedef struct jtok {
    int type, op;
    const char *s; size_t len; /* T_TEXT, T_NAME, T_STRING (unescaped, arena) */
    int64_t i; double f;
    int line, col;
} jtok;
/* Split src into tokens, applying trim_blocks/lstrip_blocks/'-' whitespace
 * control, dropping comments and expanding raw blocks. */
int jinja_lex(jinja_arena *a, const char *src, size_t len, jtok **toks, int *ntoks, char *err, size_t errcap);
/* operator codes (T_OP): single chars use their ASCII value; multi-char: */
enum { OP_EQ = 256, OP_NE, OP_LE, OP_GE, OP_FLOORDIV, OP_POW, OP_IN, OP_NOTIN };

/* ---- evaluation ---- */
typedef struct jframe jframe;
struct jframe { jframe *parent; jv *vars; /* JV_DICT */ };

jv *jinja_eval(jinja_ctx *cx, jframe *f, jnode *n);
/* Executes a body, appending to out. Returns 0 ok, -1 error, 1 break, 2 continue. */
int jinja_exec(jinja_ctx *cx, jframe *f, jnode *body, jbuf *out);

/* builtins (jinja_builtins.c) */
jv *jinja_filter(jinja_ctx *cx, jframe *f, const char *name, jv *x, jv **args, int nargs,
                 const char **kwn, jv **kwv, int nkw, int line);
int jinja_test(jinja_ctx *cx, const char *name, jv *x, jv **args, int nargs, int *out);
jv *jinja_call_method(jinja_ctx *cx, jv *self, const char *name, jv **args, int nargs,
                      const char **kwn, jv **kwv, int nkw);
jv *jinja_call_global(jinja_ctx *cx, const char *name, jv **args, int nargs,
                      const char **kwn, jv **kwv, int nkw);
jv *jinja_getattr(jinja_ctx *cx, jv *obj, const char *name);
jv *jinja_getitem(jinja_ctx *cx, jv *obj, jv *key);
jv *jinja_slice(jinja_ctx *cx, jv *obj, jv *start, jv *stop, jv *step);
jv *jinja_binop(jinja_ctx *cx, int op, jv *a, jv *b);
int jinja_contains(jinja_ctx *cx, jv *container, jv *x, int *out);
jv *jinja_printf(jinja_ctx *cx, jv *fmt, jv **args, int nargs);
/* string helpers (jinja_methods.c); mode 1 lstrip, 2 rstrip, 3 strip; chars NULL = whitespace */
jv *jinja_str_strip(jinja_ctx *cx, jv *s, jv *chars, int mode);
/* case: 'u' upper, 'l' lower, 't' Python title(), 'c' capitalize, 'j' jinja title filter */
jv *jinja_str_case(jinja_ctx *cx, jv *s, int how);
jv *jinja_str_replace(jinja_ctx *cx, jv *s, jv *old, jv *rep, int64_t count);
jv *jinja_str_splitlines(jinja_ctx *cx, jv *s, int keepends);
jv *jinja_str_join(jinja_ctx *cx, jv *sep, jv *items);
/* Iterate: returns a list/tuple snapshot of the items (dict -> keys, str -> chars). */
jv *jinja_iterable(jinja_ctx *cx, jv *x);

#endif
