/* Open-addressing hash maps (see hashmap.h). */
#include "tokenizer/hashmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    /* FNV-1a with a final avalanche (splitmix64 finalizer). */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 0x100000001b3ull; }
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static bool strmap_grow(cllm_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    struct cllm_strmap_slot *s = calloc(cap, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < cap; i++) s[i].val = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val < 0) continue;
        size_t j = m->slots[i].hash & (cap - 1);
        while (s[j].val >= 0) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return true;
}

bool cllm_strmap_put(cllm_strmap *m, const char *key, size_t len, int32_t val) {
    if (val < 0) return false;
    if ((m->count + 1) * 2 > m->cap && !strmap_grow(m)) return false;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].val >= 0) {
        struct cllm_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && !memcmp(m->arena + s->off, key, len)) { s->val = val; return true; }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap : 4096;
        while (cap < m->arena_len + len) cap *= 2;
        char *a = realloc(m->arena, cap);
        if (!a) return false;
        m->arena = a;
        m->arena_cap = cap;
    }
    if (len) memcpy(m->arena + m->arena_len, key, len);
    m->slots[j] = (struct cllm_strmap_slot){h, (uint32_t)m->arena_len, (uint32_t)len, val};
    m->arena_len += len;
    m->count++;
    return true;
}

int32_t cllm_strmap_get(const cllm_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].val >= 0) {
        const struct cllm_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && !memcmp(m->arena + s->off, key, len)) return s->val;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void cllm_strmap_free(cllm_strmap *m) {
    free(m->slots);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static bool u64map_grow(cllm_u64map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *k = malloc(cap * sizeof *k), *v = malloc(cap * sizeof *v);
    if (!k || !v) { free(k); free(v); return false; }
    memset(k, 0xff, cap * sizeof *k);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = hash_u64(m->keys[i]) & (cap - 1);
        while (k[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
        k[j] = m->keys[i];
        v[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = k;
    m->vals = v;
    m->cap = cap;
    return true;
}

bool cllm_u64map_put(cllm_u64map *m, uint64_t key, uint64_t val) {
    if (key == UINT64_MAX) return false;
    if ((m->count + 1) * 2 > m->cap && !u64map_grow(m)) return false;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == UINT64_MAX) m->count++;
    m->keys[j] = key;
    m->vals[j] = val;
    return true;
}

bool cllm_u64map_get(const cllm_u64map *m, uint64_t key, uint64_t *val) {
    if (!m->cap) return false;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->keys[j] != UINT64_MAX) {
        if (m->keys[j] == key) { *val = m->vals[j]; return true; }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void cllm_u64map_free(cllm_u64map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}
