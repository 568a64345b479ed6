/* UTF-8 and Unicode helpers (see unicode.h). */
#include "tokenizer/unicode.h"

#include <pthread.h>
#include <utf8proc.h>

int cllm_utf8_next(const char *str, size_t n, uint32_t *cp) {
    const uint8_t *s = (const uint8_t *)str;
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    uint32_t c = b & (0x3F >> need);
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        uint8_t x = s[i];
        if (i == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) return -i;
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    return need + 1;
}

size_t cllm_utf8_first_invalid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        int k = cllm_utf8_next(s + i, n - i, &cp);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return n;
}

bool cllm_utf8_valid(const char *s, size_t n) { return cllm_utf8_first_invalid(s, n) == n; }

int cllm_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void cllm_utf8_append_lossy(cllm_strbuf *b, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        int k = (uint8_t)s[i] < 0x80 ? 1 : cllm_utf8_next(s + i, n - i, &cp);
        if (k > 0) { i += (size_t)k; continue; }
        cllm_strbuf_append(b, s + run, i - run);
        cllm_strbuf_append(b, "\xEF\xBF\xBD", 3);
        i += (size_t)(-k);
        run = i;
    }
    cllm_strbuf_append(b, s + run, n - run);
}

bool cllm_unicode_is_whitespace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool cllm_unicode_is_word(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_PC:
        return true;
    default: return false;
    }
}

bool cllm_unicode_is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF) stand for themselves; the other 68 bytes map, in byte order,
 * to U+0100, U+0101, ... */
static cllm_bytelevel_table g_table;
static int16_t g_inverse[0x200];
static pthread_once_t g_table_once = PTHREAD_ONCE_INIT;

static bool printable_byte(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void table_init(void) {
    for (int i = 0; i < 0x200; i++) g_inverse[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = printable_byte(b) ? (uint32_t)b : 256u + (uint32_t)extra++;
        g_table.enc_len[b] = (uint8_t)cllm_utf8_encode(cp, g_table.enc[b]);
        g_inverse[cp] = (int16_t)b;
    }
}

const cllm_bytelevel_table *cllm_bytelevel_table_get(void) {

    pthread_once(&g_table_once, table_init);
    return &g_table;
}

int cllm_bytelevel_decode_cp(uint32_t cp) {
    cllm_bytelevel_table_get();
    return cp < 0x200 ? g_inverse[cp] : -1;
}
