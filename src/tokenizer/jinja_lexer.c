/* Lexer of the Jinja-subset engine. Follows jinja2.lexer (3.1) with
 * trim_blocks=True and lstrip_blocks=True: newlines normalized to \n, one
 * trailing newline dropped (keep_trailing_newline=False), "{%-"/"-%}"
 * strip all whitespace, "{%+"/"+%}" disable lstrip/trim, comments dropped,
 * {% raw %} blocks kept verbatim. */
#include "tokenizer/jinja_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jinja_arena *a;
    const char *s;
    size_t len, pos;
    size_t lc_off; int line, col; /* incremental line/column tracking */
    jtok *t; int n, cap;
    char *err; size_t errcap;
} lexer;

static void linecol(lexer *L, size_t off, int *line, int *col) {
    if (off < L->lc_off) { L->lc_off = 0; L->line = 1; L->col = 1; }
    while (L->lc_off < off) {
        if (L->s[L->lc_off] == '\n') { L->line++; L->col = 1; }
        else if (((unsigned char)L->s[L->lc_off] & 0xC0) != 0x80) L->col++;
        L->lc_off++;
    }
    *line = L->line;
    *col = L->col;
}

static int lfail(lexer *L, size_t off, const char *fmt, ...) {
    int line, col;
    linecol(L, off, &line, &col);
    int k = snprintf(L->err, L->errcap, "line %d, column %d: ", line, col);
    if (k < 0 || (size_t)k >= L->errcap) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err + k, L->errcap - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static jtok *push(lexer *L, int type, size_t off) {
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        jtok *nt = jinja_alloc(L->a, (size_t)cap * sizeof(jtok));
        if (!nt) { lfail(L, off, "out of memory"); return NULL; }
        if (L->n) memcpy(nt, L->t, (size_t)L->n * sizeof(jtok));
        L->t = nt;
        L->cap = cap;
    }
    jtok *t = &L->t[L->n++];
    memset(t, 0, sizeof *t);
    t->type = type;
    linecol(L, off, &t->line, &t->col);
    return t;
}

/* length of the whitespace code point at s[i] (Python str.isspace), 0 if none */
static size_t ws_at(const char *s, size_t len, size_t i) {
    size_t p = i;
    int cp = utf8_decode(s, len, &p);
    return py_isspace(cp) ? p - i : 0;
}
static size_t skip_ws(const char *s, size_t len, size_t i) {
    size_t k;
    while (i < len && (k = ws_at(s, len, i))) i += k;
    return i;
}
/* end of text after Python rstrip() */
static size_t rstrip_end(const char *s, size_t start, size_t end) {
    while (end > start) {
        size_t b = end - 1;
        while (b > start && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        if (!ws_at(s, end, b)) break;
        end = b;
    }
    return end;
}

static int emit_text(lexer *L, size_t a, size_t b) {
    if (b <= a) return 0;
    jtok *t = push(L, T_TEXT, a);
    if (!t) return -1;
    t->s = L->s + a;
    t->len = b - a;
    return 0;
}

/* Python-style string unescape into the arena. */
static int lex_string(lexer *L, jtok *t) {
    char q = L->s[L->pos];
    size_t start = L->pos, i = L->pos + 1;
    char *out = jinja_alloc(L->a, L->len - start + 1);
    if (!out) return lfail(L, start, "out of memory");
    size_t n = 0;
    for (;;) {
        if (i >= L->len) return lfail(L, start, "unterminated string literal");
        char c = L->s[i];
        if (c == q) { i++; break; }
        if (c != '\\') { out[n++] = c; i++; continue; }
        if (i + 1 >= L->len) return lfail(L, start, "unterminated string literal");
        char e = L->s[i + 1];
        i += 2;
        switch (e) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'a': out[n++] = '\a'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'v': out[n++] = '\v'; break;
        case '\\': out[n++] = '\\'; break;
        case '\'': out[n++] = '\''; break;
        case '"': out[n++] = '"'; break;
        case '\n': break; /* line continuation */
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++, i++) {
                char h = i < L->len ? L->s[i] : 0;
                int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                      : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (d < 0) return lfail(L, i, "truncated \\%c escape in string literal", e);
                cp = cp * 16 + (uint32_t)d;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return lfail(L, i, "invalid code point in string escape");
            n += (size_t)utf8_encode(cp, out + n);
            break;
        }
        default:
            if (e >= '0' && e <= '7') { /* octal, up to 3 digits */
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < L->len && L->s[i] >= '0' && L->s[i] <= '7'; k++, i++)
                    cp = cp * 8 + (uint32_t)(L->s[i] - '0');
                n += (size_t)utf8_encode(cp, out + n);
            } else { /* unknown escape kept verbatim */
                out[n++] = '\\';
                i--;
            }
        }
    }
    t->type = T_STRING;
    t->s = out;
    t->len = n;
    L->pos = i;
    return 0;
}

static int lex_number(lexer *L, jtok *t) {
    size_t i = L->pos;
    char buf[128];
    size_t nb = 0;
    int is_float = 0, too_long = 0;
#define PUT(c) do { if (nb < sizeof buf - 1) buf[nb++] = (c); else too_long = 1; } while (0)
#define DIGITS() do { while (i < L->len && ((L->s[i] >= '0' && L->s[i] <= '9') || (L->s[i] == '_' && i + 1 < L->len && L->s[i+1] >= '0' && L->s[i+1] <= '9'))) { if (L->s[i] != '_') PUT(L->s[i]); i++; } } while (0)
    DIGITS();
    if (i + 1 < L->len && L->s[i] == '.' && L->s[i + 1] >= '0' && L->s[i + 1] <= '9') {
        is_float = 1;
        PUT('.');
        i++;
        DIGITS();
    }
    if (i < L->len && (L->s[i] == 'e' || L->s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->len && (L->s[j] == '+' || L->s[j] == '-')) j++;
        if (j < L->len && L->s[j] >= '0' && L->s[j] <= '9') {
            is_float = 1;
            PUT('e');
            if (L->s[i + 1] == '-') PUT('-');
            i = j;
            DIGITS();
        }
    }
#undef DIGITS
#undef PUT
    buf[nb] = 0;
    if (too_long) return lfail(L, L->pos, "number literal too long");
    if (is_float) { t->type = T_FLOAT; t->f = strtod(buf, NULL); }
    else {
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (nb > 18 && (v == LLONG_MAX)) return lfail(L, L->pos, "integer literal too large");
        t->type = T_INT;
        t->i = v;
    }
    L->pos = i;
    return 0;
}

static int op_code(const char *s, size_t left, size_t *n) {
    static const struct { const char *s; int code; } two[] = {
        {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE}};
    if (left >= 2)
        for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
            if (s[0] == two[k].s[0] && s[1] == two[k].s[1]) { *n = 2; return two[k].code; }
    if (strchr("+-/*%~[](){}<>=.:|,;", s[0]) && s[0]) { *n = 1; return (unsigned char)s[0]; }
    return -1;
}

/* Tokens inside {{ }} or {% %} until the matching end; returns 0 or -1. */
static int lex_tag(lexer *L, int is_block, int *line_starting) {
    int depth = 0;
    size_t tag_start = L->pos;
    char stack[64];
    for (;;) {
        L->pos = skip_ws(L->s, L->len, L->pos);
        if (L->pos >= L->len) return lfail(L, tag_start, "unexpected end of template, expected '%s'", is_block ? "%}" : "}}");
        const char *s = L->s + L->pos;
        size_t left = L->len - L->pos;
        char c1 = is_block ? '%' : '}';
        if (depth == 0) {
            int sign = (s[0] == '-' || (s[0] == '+' && is_block)) ? s[0] : 0;
            size_t off = sign ? 1 : 0;
            if (left >= off + 2 && s[off] == c1 && s[off + 1] == '}') {
                jtok *t = push(L, is_block ? T_BLOCK_END : T_VAR_END, L->pos);
                if (!t) return -1;
                L->pos += off + 2;
                if (sign == '-') L->pos = skip_ws(L->s, L->len, L->pos);
                else if (is_block && !sign && L->pos < L->len && L->s[L->pos] == '\n') L->pos++;
                *line_starting = L->s[L->pos - 1] == '\n';
                return 0;
            }
        }
        jtok *t = push(L, T_OP, L->pos);
        if (!t) return -1;
        char c = s[0];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t k = 1;
            while (k < left && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') || s[k] == '_' || (s[k] >= '0' && s[k] <= '9'))) k++;
            t->type = T_NAME;
            t->s = s;
            t->len = k;
            L->pos += k;
        } else if (c >= '0' && c <= '9') {
            if (lex_number(L, t) < 0) return -1;
        } else if (c == '\'' || c == '"') {
            if (lex_string(L, t) < 0) return -1;
        } else {
            size_t n;
            int op = op_code(s, left, &n);
            if (op < 0) return lfail(L, L->pos, "unexpected character '%c'", c);
            if (op == '(' || op == '[' || op == '{') {
                if (depth >= (int)sizeof stack) return lfail(L, L->pos, "brackets nested too deeply");
                stack[depth++] = (char)op;
            } else if (op == ')' || op == ']' || op == '}') {
                char want = op == ')' ? '(' : op == ']' ? '[' : '{';
                if (depth == 0 || stack[depth - 1] != want) return lfail(L, L->pos, "unexpected '%c'", (char)op);
                depth--;
            }
            t->op = op;
            L->pos += n;
        }
    }
}

/* does text s[a..] start with "raw" as a whole word after whitespace? returns the end of the tag or 0 */
static size_t raw_begin(lexer *L, size_t p) {
    p = skip_ws(L->s, L->len, p);
    if (L->len - p < 3 || memcmp(L->s + p, "raw", 3) != 0) return 0;
    p = skip_ws(L->s, L->len, p + 3);
    if (L->len - p >= 3 && L->s[p] == '-' && L->s[p + 1] == '%' && L->s[p + 2] == '}') return skip_ws(L->s, L->len, p + 3);
    if (L->len - p >= 2 && L->s[p] == '%' && L->s[p + 1] == '}') return p + 2;
    return 0;
}

static int lex_raw(lexer *L, size_t body, int *line_starting) {
    for (size_t p = body; p + 1 < L->len; p++) {
        if (L->s[p] != '{' || L->s[p + 1] != '%') continue;
        size_t q = p + 2;
        char sign = (q < L->len && (L->s[q] == '-' || L->s[q] == '+')) ? L->s[q] : 0;
        if (sign) q++;
        q = skip_ws(L->s, L->len, q);
        if (L->len - q < 6 || memcmp(L->s + q, "endraw", 6) != 0) continue;
        q = skip_ws(L->s, L->len, q + 6);
        char esign = (q < L->len && (L->s[q] == '-' || L->s[q] == '+')) ? L->s[q] : 0;
        if (esign) q++;
        if (L->len - q < 2 || L->s[q] != '%' || L->s[q + 1] != '}') continue;
        q += 2;
        size_t end = sign == '-' ? rstrip_end(L->s, body, p) : p;
        if (emit_text(L, body, end) < 0) return -1;
        if (esign == '-') q = skip_ws(L->s, L->len, q);
        else if (!esign && q < L->len && L->s[q] == '\n') q++;
        L->pos = q;
        *line_starting = L->s[q - 1] == '\n';
        return 0;
    }
    return lfail(L, body, "missing {%% endraw %%}");
}

int jinja_lex(jinja_arena *a, const char *src, size_t len, jtok **toks, int *ntoks, char *err, size_t errcap) {
    lexer L = {.a = a, .line = 1, .col = 1, .err = err, .errcap = errcap};
    /* normalize newlines, drop one trailing newline */
    char *s = jinja_alloc(a, len + 1);
    if (!s) { snprintf(err, errcap, "out of memory"); return -1; }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') { s[n++] = '\n'; if (i + 1 < len && src[i + 1] == '\n') i++; }
        else s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    L.s = s;
    L.len = n;
    int line_starting = 1;
    while (L.pos < L.len) {
        /* find the next tag start */
        size_t p = L.pos, tag = L.len;
        for (; p + 1 < L.len; p++)
            if (L.s[p] == '{' && (L.s[p + 1] == '{' || L.s[p + 1] == '%' || L.s[p + 1] == '#')) { tag = p; break; }
        if (tag == L.len) { if (emit_text(&L, L.pos, L.len) < 0) return -1; break; }
        char kind = L.s[tag + 1];
        char sign = (tag + 2 < L.len && (L.s[tag + 2] == '-' || L.s[tag + 2] == '+')) ? L.s[tag + 2] : 0;
        size_t text_end = tag;
        if (sign == '-') text_end = rstrip_end(L.s, L.pos, tag);
        else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t lp = tag;
            while (lp > L.pos && L.s[lp - 1] != '\n') lp--;
            if (lp > L.pos || line_starting) {
                size_t k = lp;
                while (k < tag && (L.s[k] == ' ' || L.s[k] == '\t')) k++;
                if (k == tag) text_end = lp;
            }
        }
        if (emit_text(&L, L.pos, text_end) < 0) return -1;
        size_t body = tag + 2 + (sign ? 1 : 0);
        line_starting = 0;
        if (kind == '#') {
            size_t q = body;
            while (q + 1 < L.len && !(L.s[q] == '#' && L.s[q + 1] == '}')) q++;
            if (q + 1 >= L.len) return lfail(&L, tag, "unterminated comment");
            char esign = (q > body && (L.s[q - 1] == '-' || L.s[q - 1] == '+')) ? L.s[q - 1] : 0;
            q += 2;
            if (esign == '-') q = skip_ws(L.s, L.len, q);
            else if (!esign && q < L.len && L.s[q] == '\n') q++;
            L.pos = q;
            line_starting = L.s[q - 1] == '\n';
            continue;
        }
        if (kind == '%') {
            size_t r = raw_begin(&L, body);
            if (r) { if (lex_raw(&L, r, &line_starting) < 0) return -1; continue; }
        }
        if (!push(&L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag)) return -1;
        L.pos = body;
        if (lex_tag(&L, kind == '%', &line_starting) < 0) return -1;
    }
    if (!push(&L, T_EOF, L.len)) return -1;
    *toks = L.t;
    *ntoks = L.n;
    return 0;
}
