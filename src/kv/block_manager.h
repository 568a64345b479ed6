/* Paged KV-cache block manager (host only, CONVENTIONS.md §9).
 *
 * The KV cache is B blocks of P tokens (block_size). This module does the
 * bookkeeping only: which sequence owns which block, reference counts, the
 * free list, and automatic prefix caching. It never touches device memory;
 * when a sequence must write into a block shared with another (copy-on-write)
 * it returns (src, dst) pairs the model runner copies before the step.
 *
 * Prefix caching follows vLLM v1 (vllm/v1/core/kv_cache_manager.py,
 * kv_cache_utils.py, block_pool.py):
 *  - only FULL blocks are cached; a block's hash chains its parent's:
 *    hash(i) = XXH3_64bits(hash(i-1) || cache_salt || tokens[i*P .. i*P+P)),
 *    hash(-1) a fixed root. Equal tokens under a different prefix hash
 *    differently. A hit is also verified against the stored parent hash and
 *    token ids, so a hash collision can never serve wrong KV.
 *  - a lookup (cllm_kv_get_computed_blocks) reuses the longest cached run of
 *    full blocks but never covers the whole known token list: the last token
 *    is always recomputed so the step produces logits;
 *  - blocks whose last holder leaves keep their hash in an LRU "evictable"
 *    pool (the sequence's tail blocks are released first, so they are evicted
 *    first); a cached block is evicted (hash dropped) only when a fresh block
 *    is needed and no never-cached free block is left.
 *
 * Check-then-commit: cllm_kv_can_allocate() says whether cllm_kv_allocate()
 * will succeed; allocate never partially succeeds.
 *
 * Shape legend: B blocks, P block_size (tokens).
 */
#ifndef CLLM_KV_BLOCK_MANAGER_H
#define CLLM_KV_BLOCK_MANAGER_H

#include "cllm.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct cllm_kv cllm_kv;

typedef struct cllm_kv_params {
    int num_blocks;              /* B >= 1 */
    int block_size;              /* P >= 1, tokens per block (vLLM block_size, default 16) */
    bool enable_prefix_caching;  /* vLLM --enable-prefix-caching, default true */
} cllm_kv_params;

/* Defaults: num_blocks 0 (must be set), block_size 16, prefix caching on. */
cllm_kv_params cllm_kv_default_params(void);

/* One sequence as the block manager sees it. Embedded in the sequence
 * (src/engine/sequence.h); zero-initialize, then keep `tokens`/`num_tokens`
 * pointing at the sequence's current token list (prompt + outputs,
 * borrowed). The block manager owns `blocks` and `block_hashes` (released by
 * cllm_kv_free); num_computed_tokens is advanced by the scheduler after each
 * executed step. */
typedef struct cllm_kv_seq {
    const int32_t *tokens;       /* (num_tokens) borrowed */
    int num_tokens;
    int num_computed_tokens;     /* tokens whose K/V are in the cache */
    uint64_t cache_salt;         /* extra hash key (vLLM cache_salt); 0 = none */
    int32_t *blocks;             /* block table (num_blocks), block ids */
    int num_blocks;
    int cap_blocks;
    uint64_t *block_hashes;      /* chained hashes of the first num_hashed full blocks */
    int num_hashed;
    int lookup_tokens;           /* last prefix lookup, counted in the stats by the next allocate */
    int lookup_hit_tokens;
} cllm_kv_seq;

/* A block copy the runner performs before the step (copy-on-write). */
typedef struct cllm_kv_copy {
    int32_t src, dst;
} cllm_kv_copy;

typedef struct cllm_kv_stats {
    int num_blocks;
    int num_free_blocks;         /* never-cached free blocks */
    int num_evictable_blocks;    /* ref 0 but holding a cached hash */
    int num_used_blocks;         /* ref > 0 */
    int num_cached_blocks;       /* blocks holding a hash (used or evictable) */
    double usage;                /* used / total, in [0, 1] (vLLM kv_cache_usage) */
    int64_t prefix_queries;      /* requests looked up */
    int64_t prefix_query_tokens; /* tokens looked up (vLLM PrefixCacheStats.queries) */
    int64_t prefix_hit_tokens;   /* tokens found computed (vLLM .hits) */
    double prefix_hit_rate;      /* hit_tokens / query_tokens, 0 when none */
    int64_t num_evictions;
} cllm_kv_stats;

/* Create a block manager. Errors: CLLM_ERR_INVALID_ARG (num_blocks < 1,
 * block_size < 1, or B*P over INT32_MAX slots), CLLM_ERR_OOM. */
cllm_status cllm_kv_create(const cllm_kv_params *params, cllm_kv **out);
/* NULL is a no-op. Sequences still holding blocks must be freed first (their
 * block tables are owned by them until cllm_kv_free). */
void cllm_kv_destroy(cllm_kv *bm);

int cllm_kv_block_size(const cllm_kv *bm);
int cllm_kv_num_blocks(const cllm_kv *bm);
/* Free blocks a new allocation may take (never-cached + evictable). */
int cllm_kv_num_free_blocks(const cllm_kv *bm);

/* Longest cached prefix of a sequence that holds no blocks yet (new or
 * preempted). Takes those blocks (ref +1, out of the evictable pool) into
 * ks->blocks, sets ks->num_computed_tokens and *num_computed_tokens to the
 * number of tokens already computed: a multiple of P, at most num_tokens-1.
 * Returns 0 tokens when prefix caching is off. The lookup enters the
 * prefix-cache stats at the next cllm_kv_allocate of ks (so a request
 * retried while blocked counts once). If the caller then cannot allocate,
 * it must release the blocks with cllm_kv_free.
 * Errors: CLLM_ERR_INVALID_ARG (ks already holds blocks), CLLM_ERR_OOM. */
cllm_status cllm_kv_get_computed_blocks(cllm_kv *bm, cllm_kv_seq *ks, int *num_computed_tokens);

/* Whether cllm_kv_allocate(bm, ks, num_new_tokens) would succeed: the blocks
 * needed to hold ks->num_computed_tokens + num_new_tokens tokens, plus one per
 * copy-on-write, are no more than the free + evictable blocks. */
bool cllm_kv_can_allocate(const cllm_kv *bm, const cllm_kv_seq *ks, int num_new_tokens);

/* Make room for num_new_tokens tokens written at positions
 * [num_computed_tokens, num_computed_tokens + num_new_tokens): appends fresh
 * blocks to the block table, replaces blocks that would be written while
 * shared (ref > 1) by fresh copies, writing those (src, dst) pairs to
 * copies[0 .. *num_copies) (copies may be NULL only when copy_cap is 0; at
 * most 1 + num_new_tokens/P + 1 pairs can occur), and registers the hashes of
 * blocks that become full with known tokens (vLLM caches at allocation: the
 * step that computes them runs before any later step can read them).
 * Errors: CLLM_ERR_NO_KV_BLOCKS (nothing changed; call can_allocate first),
 * CLLM_ERR_INVALID_ARG (num_new_tokens < 0, copy_cap too small), CLLM_ERR_OOM. */
cllm_status cllm_kv_allocate(cllm_kv *bm, cllm_kv_seq *ks, int num_new_tokens, cllm_kv_copy *copies,
                             int copy_cap, int *num_copies);

/* Release every block of ks (ref -1; blocks reaching 0 go to the evictable
 * pool if they hold a hash, else to the free list; tail blocks first) and
 * reset its block table, hashes and num_computed_tokens. Never fails. */
void cllm_kv_free(cllm_kv *bm, cllm_kv_seq *ks);

/* Share all of parent's blocks with child (ref +1 each): child must hold no
 * blocks; it gets parent's num_computed_tokens and hashes. The first write
 * into a shared block triggers copy-on-write in cllm_kv_allocate.
 * Errors: CLLM_ERR_INVALID_ARG (child holds blocks), CLLM_ERR_OOM. */
cllm_status cllm_kv_fork(cllm_kv *bm, const cllm_kv_seq *parent, cllm_kv_seq *child);

/* Integrity check: every block is in exactly one of free list, evictable
 * pool, in use; free + evictable + in-use = B; free-list blocks hold no
 * hash, evictable ones do; the hash table maps each cached block's hash to
 * it and holds nothing else; when seqs != NULL (all n sequences that hold
 * blocks) each block's ref count equals the number of times it appears in
 * their block tables and each table covers its computed tokens.
 * Returns CLLM_OK or CLLM_ERR_INTERNAL with the first violation in
 * cllm_last_error(). O(B + table size + total block-table length). */
cllm_status cllm_kv_check(const cllm_kv *bm, const cllm_kv_seq *const *seqs, int n);

void cllm_kv_get_stats(const cllm_kv *bm, cllm_kv_stats *out);
void cllm_kv_reset_stats(cllm_kv *bm);

/* Hash of one full block (exposed for tests): XXH3 over parent, salt and
 * the P token ids. */
uint64_t cllm_kv_hash_block(uint64_t parent_hash, uint64_t cache_salt, const int32_t *tokens, int block_size);
/* The parent hash of block 0. */
#define CLLM_KV_ROOT_HASH 0x636c6c6d6b763031ULL

/* Test hook (tests/kv only): deliberately corrupt the state so that
 * cllm_kv_check must fail. kind: 0 = add 1 to block's ref count,
 * 1 = remove the block's hash-table entry, 2 = detach a free block from the
 * free list (counted nowhere). Returns CLLM_ERR_INVALID_ARG if not applicable. */
cllm_status cllm_kv_test_corrupt(cllm_kv *bm, int kind, int block);

#endif
