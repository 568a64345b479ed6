/* Small open-addressing hash maps for the tokenizer (internal).
 *
 * cllm_strmap: byte string -> int32 (vocab: token -> id). Keys are copied into
 *   the map's own arena. Linear probing, power-of-two capacity, load <= 1/2.
 * cllm_u64map: uint64 key -> uint64 value (BPE merges: (left id << 32 | right
 *   id) -> (rank << 32 | merged id)). Key UINT64_MAX is reserved (empty slot).
 */
#ifndef CLLM_TOKENIZER_HASHMAP_H
#define CLLM_TOKENIZER_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cllm_strmap {
    struct cllm_strmap_slot { uint64_t hash; uint32_t off, len; int32_t val; } *slots;
    size_t cap, count;
    char *arena;
    size_t arena_len, arena_cap;
} cllm_strmap;

/* Insert or overwrite. Returns false on OOM. */
bool cllm_strmap_put(cllm_strmap *m, const char *key, size_t len, int32_t val);
/* Value of key, or -1. */
int32_t cllm_strmap_get(const cllm_strmap *m, const char *key, size_t len);
void cllm_strmap_free(cllm_strmap *m);

typedef struct cllm_u64map {
    uint64_t *keys, *vals;
    size_t cap, count;
} cllm_u64map;

bool cllm_u64map_put(cllm_u64map *m, uint64_t key, uint64_t val);
/* True and *val set if key is present. */
bool cllm_u64map_get(const cllm_u64map *m, uint64_t key, uint64_t *val);
void cllm_u64map_free(cllm_u64map *m);

#endif
