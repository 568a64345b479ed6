/* Stop-string matching; see engine_stop.h. */
#include "engine/engine_stop.h"

#include <string.h>

/* First occurrence of needle (nlen > 0) in hay[from, len) or -1. */
static long find_from(const char *hay, size_t len, size_t from, const char *needle, size_t nlen) {
    if (nlen > len) return -1;
    for (size_t i = from; i + nlen <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0) return (long)i;
    return -1;
}

bool cllm_engine_stop_scan(const char *text, size_t len, size_t new_from, const char *const *stops, int num_stop,
                           bool include_stop, size_t *stop_at, size_t *safe_len) {
    long best = -1;
    size_t best_len = 0;
    size_t max_len = 0;
    for (int i = 0; i < num_stop; i++) {
        size_t n = strlen(stops[i]);
        if (n == 0) continue;
        if (n > max_len) max_len = n;
        size_t from = new_from >= n - 1 ? new_from - (n - 1) : 0;
        long at = find_from(text, len, from, stops[i], n);
        if (at >= 0 && (best < 0 || at < best || (at == best && n > best_len))) {
            best = at;
            best_len = n;
        }
    }
    if (best >= 0) {
        *stop_at = (size_t)best + (include_stop ? best_len : 0);
        return true;
    }
    size_t hold = 0;
    size_t lim = max_len > 0 ? max_len - 1 : 0;
    if (lim > len) lim = len;
    for (size_t k = lim; k > 0 && hold == 0; k--)
        for (int i = 0; i < num_stop; i++)
            if (strlen(stops[i]) > k && memcmp(text + len - k, stops[i], k) == 0) {
                hold = k;
                break;
            }
    size_t safe = len - hold;
    while (safe > 0 && safe < len && ((unsigned char)text[safe] & 0xC0) == 0x80) safe--;
    *safe_len = safe;
    return false;
}
