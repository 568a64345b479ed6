/* Python str/dict/list methods for the Jinja-subset engine (CPython 3
 * semantics; indices count code points). Mutating list/dict methods raise
 * like jinja2's ImmutableSandboxedEnvironment. */
#include "tokenizer/jinja_internal.h"

#include <string.h>
#include <utf8proc.h>

static jv *empty_str(jinja_ctx *cx) { return jv_str(cx, "", 0); }

static int in_chars(int cp, jv *chars) {
    size_t pos = 0;
    while (pos < chars->u.s.len) if (utf8_decode(chars->u.s.s, chars->u.s.len, &pos) == cp) return 1;
    return 0;
}

jv *jinja_str_strip(jinja_ctx *cx, jv *s, jv *chars, int mode) {
    if (chars && chars->t == JV_NONE) chars = NULL;
    if (chars && chars->t != JV_STR) return jinja_fail(cx, "strip arg must be None or str");
    const char *p = s->u.s.s;
    size_t len = s->u.s.len, a = 0, b = len;
    if (mode & 1)
        while (a < len) {
            size_t q = a;
            int cp = utf8_decode(p, len, &q);
            if (!(chars ? in_chars(cp, chars) : py_isspace(cp))) break;
            a = q;
        }
    if (mode & 2)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
            size_t q = st;
            int cp = utf8_decode(p, b, &q);
            if (!(chars ? in_chars(cp, chars) : py_isspace(cp))) break;
            b = st;
        }
    return jv_str(cx, p + a, b - a);
}

static int is_cased(int cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

jv *jinja_str_case(jinja_ctx *cx, jv *s, int how) {
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    size_t pos = 0;
    int prev_cased = 0, first = 1, prev_delim = 1;
    while (pos < s->u.s.len && !b.failed) {
        int cp = utf8_decode(s->u.s.s, s->u.s.len, &pos), o = cp;
        switch (how) {
        case 'u': o = utf8proc_toupper(cp); break;
        case 'l': o = utf8proc_tolower(cp); break;
        case 't': o = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp); prev_cased = is_cased(cp); break;
        case 'c': o = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp); break;
        case 's': o = utf8proc_category(cp) == UTF8PROC_CATEGORY_LL ? utf8proc_toupper(cp) : utf8proc_tolower(cp); break;
        case 'j': {
            int delim = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
            o = delim ? cp : prev_delim ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
            prev_delim = delim;
            break;
        }
        }
        first = 0;
        char enc[4];
        jbuf_put(&b, enc, (size_t)utf8_encode((uint32_t)o, enc));
    }
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

jv *jinja_str_replace(jinja_ctx *cx, jv *s, jv *old, jv *rep, int64_t count) {
    if (old->t != JV_STR || rep->t != JV_STR) return jinja_fail(cx, "replace() arguments must be str");
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    const char *p = s->u.s.s;
    size_t len = s->u.s.len, pos = 0;
    int64_t done = 0;
    if (old->u.s.len == 0) { /* insert between code points */
        while (!b.failed) {
            if (count < 0 || done < count) { jbuf_put(&b, rep->u.s.s, rep->u.s.len); done++; }
            if (pos >= len) break;
            size_t st = pos;
            utf8_decode(p, len, &pos);
            jbuf_put(&b, p + st, pos - st);
        }
        return b.failed ? NULL : jv_str(cx, b.p, b.len);
    }
    while (pos <= len && !b.failed) {
        const char *hit = (count < 0 || done < count) ? memmem(p + pos, len - pos, old->u.s.s, old->u.s.len) : NULL;
        if (!hit) { jbuf_put(&b, p + pos, len - pos); break; }
        jbuf_put(&b, p + pos, (size_t)(hit - (p + pos)));
        jbuf_put(&b, rep->u.s.s, rep->u.s.len);
        pos = (size_t)(hit - p) + old->u.s.len;
        done++;
    }
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

static int line_break(int cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d || cp == 0x1e ||
           cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

jv *jinja_str_splitlines(jinja_ctx *cx, jv *s, int keepends) {
    jv *l = jv_list(cx, JV_LIST, 0);
    const char *p = s->u.s.s;
    size_t len = s->u.s.len, pos = 0, start = 0;
    while (l && pos < len) {
        size_t st = pos;
        int cp = utf8_decode(p, len, &pos);
        if (!line_break(cp)) continue;
        if (cp == '\r' && pos < len && p[pos] == '\n') pos++;
        if (jv_list_push(cx, l, jv_str(cx, p + start, (keepends ? pos : st) - start)) < 0) return NULL;
        start = pos;
    }
    if (l && start < len && jv_list_push(cx, l, jv_str(cx, p + start, len - start)) < 0) return NULL;
    return l;
}

jv *jinja_str_join(jinja_ctx *cx, jv *sep, jv *items) {
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    for (size_t i = 0; i < items->u.l.n && !b.failed; i++) {
        if (i) jbuf_put(&b, sep->u.s.s, sep->u.s.len);
        jv_to_str(&b, items->u.l.v[i]);
    }
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

static jv *split(jinja_ctx *cx, jv *s, jv *sep, int64_t maxsplit, int right) {
    jv *l = jv_list(cx, JV_LIST, 0);
    if (!l) return NULL;
    const char *p = s->u.s.s;
    size_t len = s->u.s.len;
    if (sep && sep->t == JV_NONE) sep = NULL;
    if (sep && sep->t != JV_STR) return jinja_fail(cx, "split() separator must be str or None");
    if (sep && sep->u.s.len == 0) return jinja_fail(cx, "empty separator");
    if (right && maxsplit >= 0) { /* rsplit with a limit: split from the right, then reverse */
        jv *parts = jv_list(cx, JV_LIST, 0);
        size_t end = len;
        int64_t done = 0;
        if (!sep) {
            while (end > 0 && py_isspace((unsigned char)p[end - 1])) end--;
            while (end > 0) {
                size_t st = end;
                if (done == maxsplit) { st = 0; }
                else while (st > 0 && !py_isspace((unsigned char)p[st - 1])) st--;
                if (jv_list_push(cx, parts, jv_str(cx, p + st, end - st)) < 0) return NULL;
                done++;
                end = st;
                while (end > 0 && py_isspace((unsigned char)p[end - 1])) end--;
            }
        } else {
            for (;;) {
                const char *hit = NULL;
                if (done < maxsplit)
                    for (size_t i = end; i >= sep->u.s.len; i--)
                        if (memcmp(p + i - sep->u.s.len, sep->u.s.s, sep->u.s.len) == 0) { hit = p + i - sep->u.s.len; break; }
                if (!hit) { if (jv_list_push(cx, parts, jv_str(cx, p, end)) < 0) return NULL; break; }
                size_t a = (size_t)(hit - p) + sep->u.s.len;
                if (jv_list_push(cx, parts, jv_str(cx, p + a, end - a)) < 0) return NULL;
                end = (size_t)(hit - p);
                done++;
            }
        }
        for (size_t i = parts->u.l.n; i-- > 0;) if (jv_list_push(cx, l, parts->u.l.v[i]) < 0) return NULL;
        return l;
    }
    size_t pos = 0;
    int64_t done = 0;
    if (!sep) {
        for (;;) {
            while (pos < len) { size_t q = pos; if (!py_isspace(utf8_decode(p, len, &q))) break; pos = q; }
            if (pos >= len) break;
            size_t st = pos;
            if (maxsplit >= 0 && done == maxsplit) { /* rest, right-stripped */
                size_t e = len;
                while (e > st && py_isspace((unsigned char)p[e - 1])) e--;
                if (jv_list_push(cx, l, jv_str(cx, p + st, e - st)) < 0) return NULL;
                break;
            }
            while (pos < len) { size_t q = pos; if (py_isspace(utf8_decode(p, len, &q))) break; pos = q; }
            if (jv_list_push(cx, l, jv_str(cx, p + st, pos - st)) < 0) return NULL;
            done++;
        }
        return l;
    }
    for (;;) {
        const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(p + pos, len - pos, sep->u.s.s, sep->u.s.len) : NULL;
        if (!hit) { if (jv_list_push(cx, l, jv_str(cx, p + pos, len - pos)) < 0) return NULL; break; }
        if (jv_list_push(cx, l, jv_str(cx, p + pos, (size_t)(hit - (p + pos)))) < 0) return NULL;
        pos = (size_t)(hit - p) + sep->u.s.len;
        done++;
    }
    return l;
}

static jv *kw(const char **kwn, jv **kwv, int nkw, const char *name) {
    for (int i = 0; i < nkw; i++) if (strcmp(kwn[i], name) == 0) return kwv[i];
    return NULL;
}
static jv *arg(jv **args, int nargs, int i, const char **kwn, jv **kwv, int nkw, const char *name) {
    if (i < nargs) return args[i];
    return name ? kw(kwn, kwv, nkw, name) : NULL;
}

static int prefix_match(jinja_ctx *cx, jv *s, jv *pre, int suffix, int *out) {
    if (pre->t == JV_TUPLE || pre->t == JV_LIST) {
        *out = 0;
        for (size_t i = 0; i < pre->u.l.n && !*out; i++) if (prefix_match(cx, s, pre->u.l.v[i], suffix, out) < 0) return -1;
        return 0;
    }
    if (pre->t != JV_STR) { jinja_fail(cx, "%s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith", jv_type_name(pre)); return -1; }
    size_t n = pre->u.s.len;
    *out = n <= s->u.s.len && memcmp(s->u.s.s + (suffix ? s->u.s.len - n : 0), pre->u.s.s, n) == 0;
    return 0;
}

/* str.format with {} {0} {name} and !s/!r; no format specs */
static jv *str_format(jinja_ctx *cx, jv *fmt, jv **args, int nargs, const char **kwn, jv **kwv, int nkw) {
    jbuf b;
    jbuf_init(&b, cx);
    jbuf_put(&b, "", 0);
    const char *s = fmt->u.s.s;
    size_t n = fmt->u.s.len;
    int autoi = 0;
    for (size_t i = 0; i < n && !b.failed; i++) {
        if (s[i] == '}' ) { if (i + 1 < n && s[i + 1] == '}') { jbuf_put(&b, "}", 1); i++; continue; } return jinja_fail(cx, "Single '}' encountered in format string"); }
        if (s[i] != '{') { jbuf_put(&b, s + i, 1); continue; }
        if (i + 1 < n && s[i + 1] == '{') { jbuf_put(&b, "{", 1); i++; continue; }
        size_t j = i + 1;
        while (j < n && s[j] != '}' && s[j] != '!' && s[j] != ':') j++;
        size_t fl = j - i - 1;
        char conv = 's';
        if (j < n && s[j] == '!') { if (j + 1 >= n) return jinja_fail(cx, "bad format conversion"); conv = s[j + 1]; j += 2; }
        if (j < n && s[j] == ':') return jinja_fail(cx, "format specs in str.format are not supported");
        if (j >= n || s[j] != '}') return jinja_fail(cx, "expected '}' before end of string");
        jv *v = NULL;
        if (fl == 0) { if (autoi >= nargs) return jinja_fail(cx, "Replacement index %d out of range for positional args tuple", autoi); v = args[autoi++]; }
        else if (s[i + 1] >= '0' && s[i + 1] <= '9') {
            long k = 0;
            for (size_t q = i + 1; q < i + 1 + fl; q++) {
                if (s[q] < '0' || s[q] > '9' || k > 1000000) return jinja_fail(cx, "bad replacement field in format string");
                k = k * 10 + (s[q] - '0');
            }
            if (k >= nargs) return jinja_fail(cx, "Replacement index %ld out of range for positional args tuple", k);
            v = args[k];
        } else {
            for (int k = 0; k < nkw; k++) if (strlen(kwn[k]) == fl && memcmp(kwn[k], s + i + 1, fl) == 0) v = kwv[k];
            if (!v) return jinja_fail(cx, "KeyError: '%.*s'", (int)fl, s + i + 1);
        }
        if (conv == 'r') jv_repr(&b, v); else jv_to_str(&b, v);
        i = j;
    }
    return b.failed ? NULL : jv_str(cx, b.p, b.len);
}

static jv *find(jinja_ctx *cx, jv *s, jv *sub, int right, int count) {
    if (!sub || sub->t != JV_STR) return jinja_fail(cx, "must be str, not %s", sub ? jv_type_name(sub) : "nothing");
    const char *p = s->u.s.s;
    size_t len = s->u.s.len, n = sub->u.s.len;
    if (count) {
        if (n == 0) return jv_int(cx, (int64_t)utf8_count(p, len) + 1);
        int64_t c = 0;
        for (size_t pos = 0; pos + n <= len;) {
            const char *h = memmem(p + pos, len - pos, sub->u.s.s, n);
            if (!h) break;
            c++;
            pos = (size_t)(h - p) + n;
        }
        return jv_int(cx, c);
    }
    int64_t found = -1;
    for (size_t pos = 0; pos + n <= len;) {
        const char *h = memmem(p + pos, len - pos, sub->u.s.s, n);
        if (!h) break;
        found = (int64_t)(h - p);
        if (!right) break;
        pos = (size_t)(h - p) + 1;
    }
    return jv_int(cx, found < 0 ? -1 : (int64_t)utf8_count(p, (size_t)found));
}

static jv *predicate(jinja_ctx *cx, jv *s, const char *name) {
    size_t pos = 0;
    int any = 0, ok = 1, cased = 0;
    while (pos < s->u.s.len) {
        int cp = utf8_decode(s->u.s.s, s->u.s.len, &pos);
        utf8proc_category_t c = utf8proc_category(cp);
        int letter = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
        int digit = c == UTF8PROC_CATEGORY_ND;
        any = 1;
        if (!strcmp(name, "isdigit")) ok &= digit;
        else if (!strcmp(name, "isalpha")) ok &= letter;
        else if (!strcmp(name, "isalnum")) ok &= letter || digit || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
        else if (!strcmp(name, "isspace")) ok &= py_isspace(cp);
        else if (!strcmp(name, "islower")) { if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) ok = 0; if (c == UTF8PROC_CATEGORY_LL) cased = 1; }
        else if (!strcmp(name, "isupper")) { if (c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT) ok = 0; if (c == UTF8PROC_CATEGORY_LU) cased = 1; }
    }
    if (!strcmp(name, "islower") || !strcmp(name, "isupper")) return JV_BOOLV(ok && cased);
    return JV_BOOLV(any && ok);
}

static jv *str_method(jinja_ctx *cx, jv *s, const char *m, jv **args, int nargs, const char **kwn, jv **kwv, int nkw) {
    jv *a0 = arg(args, nargs, 0, kwn, kwv, nkw, NULL);
    if (!strcmp(m, "strip")) return jinja_str_strip(cx, s, a0, 3);
    if (!strcmp(m, "lstrip")) return jinja_str_strip(cx, s, a0, 1);
    if (!strcmp(m, "rstrip")) return jinja_str_strip(cx, s, a0, 2);
    if (!strcmp(m, "upper")) return jinja_str_case(cx, s, 'u');
    if (!strcmp(m, "lower")) return jinja_str_case(cx, s, 'l');
    if (!strcmp(m, "title")) return jinja_str_case(cx, s, 't');
    if (!strcmp(m, "capitalize")) return jinja_str_case(cx, s, 'c');
    if (!strcmp(m, "swapcase")) return jinja_str_case(cx, s, 's');
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jv *sep = arg(args, nargs, 0, kwn, kwv, nkw, "sep"), *mx = arg(args, nargs, 1, kwn, kwv, nkw, "maxsplit");
        if (mx && mx->t != JV_INT) return jinja_fail(cx, "maxsplit must be an integer");
        return split(cx, s, sep, mx ? mx->u.i : -1, m[0] == 'r');
    }
    if (!strcmp(m, "splitlines")) return jinja_str_splitlines(cx, s, a0 && jv_truthy(a0));
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        int r;
        if (!a0) return jinja_fail(cx, "%s() takes at least 1 argument", m);
        if (prefix_match(cx, s, a0, m[0] == 'e', &r) < 0) return NULL;
        return JV_BOOLV(r);
    }
    if (!strcmp(m, "replace")) {
        jv *c = arg(args, nargs, 2, kwn, kwv, nkw, "count");
        if (nargs < 2) return jinja_fail(cx, "replace() takes at least 2 arguments");
        if (c && c->t != JV_INT) return jinja_fail(cx, "replace() count must be an integer");
        return jinja_str_replace(cx, s, args[0], args[1], c ? c->u.i : -1);
    }
    if (!strcmp(m, "find")) return find(cx, s, a0, 0, 0);
    if (!strcmp(m, "rfind")) return find(cx, s, a0, 1, 0);
    if (!strcmp(m, "count")) return find(cx, s, a0, 0, 1);
    if (!strcmp(m, "index")) {
        jv *r = find(cx, s, a0, 0, 0);
        if (r && r->u.i < 0) return jinja_fail(cx, "substring not found");
        return r;
    }
    if (!strcmp(m, "format")) return str_format(cx, s, args, nargs, kwn, kwv, nkw);
    if (!strcmp(m, "join")) {
        if (!a0) return jinja_fail(cx, "join() takes exactly one argument");
        jv *items = jinja_iterable(cx, a0);
        if (!items) return NULL;
        for (size_t i = 0; i < items->u.l.n; i++)
            if (items->u.l.v[i]->t != JV_STR) return jinja_fail(cx, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->u.l.v[i]));
        return jinja_str_join(cx, s, items);
    }
    if (!strncmp(m, "is", 2)) return predicate(cx, s, m);
    return jinja_fail(cx, "str.%s is not supported", m);
}

jv *jinja_call_method(jinja_ctx *cx, jv *self, const char *m, jv **args, int nargs, const char **kwn, jv **kwv, int nkw) {
    if (self->t == JV_STR) return str_method(cx, self, m, args, nargs, kwn, kwv, nkw);
    if (self->t == JV_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            jv *l = jv_list(cx, JV_LIST, self->u.d.n);
            for (size_t i = 0; l && i < self->u.d.n; i++) {
                jv *x = m[0] == 'k' ? self->u.d.k[i] : m[0] == 'v' ? self->u.d.v[i] : jv_list(cx, JV_TUPLE, 2);
                if (!x) return NULL;
                if (m[0] == 'i' && (jv_list_push(cx, x, self->u.d.k[i]) < 0 || jv_list_push(cx, x, self->u.d.v[i]) < 0)) return NULL;
                if (jv_list_push(cx, l, x) < 0) return NULL;
            }
            return l;
        }
        if (!strcmp(m, "get")) {
            if (nargs < 1) return jinja_fail(cx, "get expected at least 1 argument");
            jv *v = jv_dict_get(self, args[0]);
            return v ? v : nargs > 1 ? args[1] : JV_NONEV;
        }
        if (!strcmp(m, "copy")) {
            jv *d = jv_dict(cx, JV_DICT);
            for (size_t i = 0; d && i < self->u.d.n; i++) if (jv_dict_set(cx, d, self->u.d.k[i], self->u.d.v[i]) < 0) return NULL;
            return d;
        }
    }
    if (jv_is_seq(self)) {
        if (!strcmp(m, "index") || !strcmp(m, "count")) {
            if (nargs < 1) return jinja_fail(cx, "%s() takes at least 1 argument", m);
            int64_t c = 0;
            for (size_t i = 0; i < self->u.l.n; i++)
                if (jv_equal(self->u.l.v[i], args[0])) { if (m[0] == 'i') return jv_int(cx, (int64_t)i); c++; }
            if (m[0] == 'i') return jinja_fail(cx, "value is not in list");
            return jv_int(cx, c);
        }
        if (!strcmp(m, "copy")) {
            jv *l = jv_list(cx, JV_LIST, self->u.l.n);
            for (size_t i = 0; l && i < self->u.l.n; i++) if (jv_list_push(cx, l, self->u.l.v[i]) < 0) return NULL;
            return l;
        }
    }
    (void)empty_str;
    return jinja_fail(cx, "access to attribute '%s' of '%s' object is unsafe.", m, jv_type_name(self));
}
