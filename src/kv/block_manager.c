/* Paged KV-cache block manager: ref counts, free list, LRU evictable pool,
 * chained-hash prefix cache, copy-on-write. See block_manager.h. */
#include "kv/block_manager.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

enum { LIST_NONE = 0, LIST_FREE = 1, LIST_EVICT = 2 };

typedef struct kv_block {
    int32_t ref;
    int32_t prev, next;   /* links in the list named by `list` */
    uint8_t list;
    uint8_t has_hash;     /* registered in the hash table */
    uint64_t hash;
    uint64_t parent;      /* parent hash, verified on hits */
} kv_block;

typedef struct kv_list {
    int32_t head, tail;
    int n;
} kv_list;

struct cllm_kv {
    int B, P;
    bool prefix_caching;
    kv_block *blk;        /* (B) */
    int32_t *blk_tokens;  /* (B, P) token ids of cached blocks (prefix caching only) */
    kv_list free_l;       /* never-cached free blocks */
    kv_list evict_l;      /* ref 0 with hash, head = least recently used */
    int32_t *table;       /* open addressing, block id or -1 */
    uint32_t mask;
    int table_count;
    int num_used;
    int64_t queries, query_tokens, hit_tokens, evictions;
};

/* ------------------------------------------------------------------ lists */
static void list_push_back(cllm_kv *bm, kv_list *l, int lid, int32_t b) {
    kv_block *k = &bm->blk[b];
    k->list = (uint8_t)lid;
    k->prev = l->tail;
    k->next = -1;
    if (l->tail >= 0) bm->blk[l->tail].next = b;
    else l->head = b;
    l->tail = b;
    l->n++;
}

static void list_remove(cllm_kv *bm, kv_list *l, int32_t b) {
    kv_block *k = &bm->blk[b];
    if (k->prev >= 0) bm->blk[k->prev].next = k->next;
    else l->head = k->next;
    if (k->next >= 0) bm->blk[k->next].prev = k->prev;
    else l->tail = k->prev;
    k->prev = k->next = -1;
    k->list = LIST_NONE;
    l->n--;
}

/* ------------------------------------------------------------- hash table */
uint64_t cllm_kv_hash_block(uint64_t parent_hash, uint64_t cache_salt, const int32_t *tokens, int block_size) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &parent_hash, sizeof parent_hash);
    XXH3_64bits_update(&st, &cache_salt, sizeof cache_salt);
    XXH3_64bits_update(&st, tokens, (size_t)block_size * sizeof(int32_t));
    return XXH3_64bits_digest(&st);
}

static bool block_matches(const cllm_kv *bm, int32_t b, uint64_t h, uint64_t parent, const int32_t *tokens) {
    const kv_block *k = &bm->blk[b];
    return k->hash == h && k->parent == parent &&
           memcmp(bm->blk_tokens + (size_t)b * bm->P, tokens, (size_t)bm->P * sizeof(int32_t)) == 0;
}

static int32_t table_find(const cllm_kv *bm, uint64_t h, uint64_t parent, const int32_t *tokens) {
    for (uint32_t i = (uint32_t)h & bm->mask;; i = (i + 1) & bm->mask) {
        int32_t b = bm->table[i];
        if (b < 0) return -1;
        if (block_matches(bm, b, h, parent, tokens)) return b;
    }
}

static void table_insert(cllm_kv *bm, int32_t b, uint64_t h, uint64_t parent, const int32_t *tokens) {
    kv_block *k = &bm->blk[b];
    k->hash = h;
    k->parent = parent;
    k->has_hash = 1;
    memcpy(bm->blk_tokens + (size_t)b * bm->P, tokens, (size_t)bm->P * sizeof(int32_t));
    uint32_t i = (uint32_t)h & bm->mask;
    while (bm->table[i] >= 0) i = (i + 1) & bm->mask;
    bm->table[i] = b;
    bm->table_count++;
}

/* Remove block b's entry (backward-shift deletion, no tombstones). */
static void table_erase(cllm_kv *bm, int32_t b) {
    uint32_t i = (uint32_t)bm->blk[b].hash & bm->mask;
    while (bm->table[i] != b) {
        CLLM_ASSERT(bm->table[i] >= 0);
        i = (i + 1) & bm->mask;
    }
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & bm->mask;
        int32_t e = bm->table[j];
        if (e < 0) break;
        uint32_t k = (uint32_t)bm->blk[e].hash & bm->mask;
        bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        bm->table[i] = e;
        i = j;
    }
    bm->table[i] = -1;
    bm->table_count--;
    bm->blk[b].has_hash = 0;
}

/* -------------------------------------------------------------- lifecycle */
cllm_kv_params cllm_kv_default_params(void) {
    cllm_kv_params p = {0};
    p.block_size = 16;
    p.enable_prefix_caching = true;
    return p;
}

cllm_status cllm_kv_create(const cllm_kv_params *params, cllm_kv **out) {
    if (!params || !out) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_kv_create: NULL argument");
    *out = NULL;
    if (params->num_blocks < 1 || params->block_size < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "KV cache needs num_blocks >= 1 and block_size >= 1 (got %d blocks of %d tokens)",
                          params->num_blocks, params->block_size);
    if ((int64_t)params->num_blocks * params->block_size > INT32_MAX)
        return cllm_error(CLLM_ERR_INVALID_ARG, "KV cache of %d blocks x %d tokens exceeds the int32 slot range",
                          params->num_blocks, params->block_size);
    cllm_kv *bm = cllm_calloc(1, sizeof *bm);
    if (!bm) return CLLM_ERR_OOM;
    bm->B = params->num_blocks;
    bm->P = params->block_size;
    bm->prefix_caching = params->enable_prefix_caching;
    bm->free_l = (kv_list){-1, -1, 0};
    bm->evict_l = (kv_list){-1, -1, 0};
    bm->blk = cllm_calloc((size_t)bm->B, sizeof *bm->blk);
    if (!bm->blk) goto fail;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)bm->B) cap <<= 1;
    bm->mask = cap - 1;
    bm->table = cllm_malloc((size_t)cap * sizeof *bm->table);
    if (!bm->table) goto fail;
    memset(bm->table, 0xff, (size_t)cap * sizeof *bm->table);
    if (bm->prefix_caching) {
        bm->blk_tokens = cllm_malloc((size_t)bm->B * bm->P * sizeof(int32_t));
        if (!bm->blk_tokens) goto fail;
    }
    for (int32_t b = 0; b < bm->B; b++) list_push_back(bm, &bm->free_l, LIST_FREE, b);
    *out = bm;
    return CLLM_OK;
fail:
    cllm_kv_destroy(bm);
    return CLLM_ERR_OOM;
}

void cllm_kv_destroy(cllm_kv *bm) {
    if (!bm) return;
    free(bm->blk);
    free(bm->blk_tokens);
    free(bm->table);
    free(bm);
}

int cllm_kv_block_size(const cllm_kv *bm) { return bm->P; }
int cllm_kv_num_blocks(const cllm_kv *bm) { return bm->B; }
int cllm_kv_num_free_blocks(const cllm_kv *bm) { return bm->free_l.n + bm->evict_l.n; }

/* ------------------------------------------------------------- allocation */
static cllm_status seq_reserve(cllm_kv_seq *ks, int nblocks) {
    if (nblocks <= ks->cap_blocks) return CLLM_OK;
    int cap = ks->cap_blocks ? ks->cap_blocks : 4;
    while (cap < nblocks) cap *= 2;
    int32_t *b = realloc(ks->blocks, (size_t)cap * sizeof *b);
    if (!b) return cllm_error(CLLM_ERR_OOM, "out of host memory growing a block table to %d blocks", cap);
    ks->blocks = b;
    uint64_t *h = realloc(ks->block_hashes, (size_t)cap * sizeof *h);
    if (!h) return cllm_error(CLLM_ERR_OOM, "out of host memory growing a block table to %d blocks", cap);
    ks->block_hashes = h;
    ks->cap_blocks = cap;
    return CLLM_OK;
}

/* Take a fresh block (ref 1): a never-cached one first, else evict the LRU
 * cached one. The caller checked availability. */
static int32_t take_fresh(cllm_kv *bm) {
    int32_t b;
    if (bm->free_l.n > 0) {
        b = bm->free_l.head;
        list_remove(bm, &bm->free_l, b);
    } else {
        CLLM_ASSERT(bm->evict_l.n > 0);
        b = bm->evict_l.head;
        list_remove(bm, &bm->evict_l, b);
        table_erase(bm, b);
        bm->evictions++;
    }
    CLLM_ASSERT(bm->blk[b].ref == 0);
    bm->blk[b].ref = 1;
    bm->num_used++;
    return b;
}

static void release_block(cllm_kv *bm, int32_t b) {
    kv_block *k = &bm->blk[b];
    CLLM_ASSERT(k->ref > 0);
    if (--k->ref > 0) return;
    bm->num_used--;
    if (k->has_hash) list_push_back(bm, &bm->evict_l, LIST_EVICT, b);
    else list_push_back(bm, &bm->free_l, LIST_FREE, b);
}

static uint64_t parent_of(const cllm_kv_seq *ks, int j) { return j == 0 ? CLLM_KV_ROOT_HASH : ks->block_hashes[j - 1]; }

cllm_status cllm_kv_get_computed_blocks(cllm_kv *bm, cllm_kv_seq *ks, int *num_computed_tokens) {
    if (num_computed_tokens) *num_computed_tokens = 0;
    if (ks->num_blocks > 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "prefix lookup on a sequence that already holds %d KV blocks",
                          ks->num_blocks);
    ks->num_computed_tokens = 0;
    ks->num_hashed = 0;
    if (!bm->prefix_caching || ks->num_tokens <= 0) return CLLM_OK;
    int P = bm->P, max_hit = (ks->num_tokens - 1) / P; /* never the last token */
    CLLM_TRY(seq_reserve(ks, max_hit > 0 ? max_hit : 1));
    int hits = 0;
    for (int j = 0; j < max_hit; j++) {
        uint64_t parent = parent_of(ks, j);
        const int32_t *t = ks->tokens + (size_t)j * P;
        uint64_t h = cllm_kv_hash_block(parent, ks->cache_salt, t, P);
        int32_t b = table_find(bm, h, parent, t);
        if (b < 0) break;
        if (bm->blk[b].ref == 0) {
            list_remove(bm, &bm->evict_l, b);
            bm->num_used++;
        }
        bm->blk[b].ref++;
        ks->blocks[j] = b;
        ks->block_hashes[j] = h;
        hits++;
    }
    ks->num_blocks = ks->num_hashed = hits;
    ks->num_computed_tokens = hits * P;
    ks->lookup_tokens = ks->num_tokens;
    ks->lookup_hit_tokens = hits * P;
    if (num_computed_tokens) *num_computed_tokens = ks->num_computed_tokens;
    return CLLM_OK;
}

/* Blocks needed by an allocation: fresh ones appended and copy-on-writes. */
static void count_needs(const cllm_kv *bm, const cllm_kv_seq *ks, int num_new_tokens, int *n_new, int *n_cow) {
    int end = ks->num_computed_tokens + num_new_tokens;
    int need = (end + bm->P - 1) / bm->P;
    *n_new = need > ks->num_blocks ? need - ks->num_blocks : 0;
    *n_cow = 0;
    if (num_new_tokens <= 0) return;
    int last = need < ks->num_blocks ? need : ks->num_blocks;
    for (int j = ks->num_computed_tokens / bm->P; j < last; j++)
        if (bm->blk[ks->blocks[j]].ref > 1) (*n_cow)++;
}

bool cllm_kv_can_allocate(const cllm_kv *bm, const cllm_kv_seq *ks, int num_new_tokens) {
    if (num_new_tokens < 0) return false;
    int n_new, n_cow;
    count_needs(bm, ks, num_new_tokens, &n_new, &n_cow);
    return n_new + n_cow <= bm->free_l.n + bm->evict_l.n;
}

cllm_status cllm_kv_allocate(cllm_kv *bm, cllm_kv_seq *ks, int num_new_tokens, cllm_kv_copy *copies,
                             int copy_cap, int *num_copies) {
    if (num_copies) *num_copies = 0;
    if (num_new_tokens < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_kv_allocate: num_new_tokens %d < 0", num_new_tokens);
    int n_new, n_cow, P = bm->P;
    count_needs(bm, ks, num_new_tokens, &n_new, &n_cow);
    if (n_new + n_cow > bm->free_l.n + bm->evict_l.n)
        return cllm_error(CLLM_ERR_NO_KV_BLOCKS, "need %d KV blocks, %d free: preempt or wait", n_new + n_cow,
                          bm->free_l.n + bm->evict_l.n);
    if (n_cow > copy_cap || (n_cow > 0 && (!copies || !num_copies)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "copy-on-write needs %d copy slots, caller gave %d", n_cow,
                          copy_cap);
    int end = ks->num_computed_tokens + num_new_tokens;
    int need = (end + P - 1) / P;
    CLLM_TRY(seq_reserve(ks, need > 0 ? need : 1));
    /* copy-on-write for shared blocks that this step writes into */
    if (n_cow > 0) {
        int last = need < ks->num_blocks ? need : ks->num_blocks, c = 0;
        for (int j = ks->num_computed_tokens / P; j < last; j++) {
            int32_t src = ks->blocks[j];
            if (bm->blk[src].ref <= 1) continue;
            int32_t dst = take_fresh(bm);
            bm->blk[src].ref--;
            ks->blocks[j] = dst;
            copies[c++] = (cllm_kv_copy){src, dst};
        }
        *num_copies = c;
    }
    while (ks->num_blocks < need) ks->blocks[ks->num_blocks++] = take_fresh(bm);
    if (ks->lookup_tokens > 0) {
        bm->queries++;
        bm->query_tokens += ks->lookup_tokens;
        bm->hit_tokens += ks->lookup_hit_tokens;
        ks->lookup_tokens = ks->lookup_hit_tokens = 0;
    }
    /* register blocks that become full with known tokens */
    if (bm->prefix_caching) {
        int known = end < ks->num_tokens ? end : ks->num_tokens;
        int nfull = known / P;
        for (int j = ks->num_hashed; j < nfull; j++) {
            uint64_t parent = parent_of(ks, j);
            const int32_t *t = ks->tokens + (size_t)j * P;
            uint64_t h = cllm_kv_hash_block(parent, ks->cache_salt, t, P);
            ks->block_hashes[j] = h;
            int32_t b = ks->blocks[j];
            if (!bm->blk[b].has_hash && table_find(bm, h, parent, t) < 0) table_insert(bm, b, h, parent, t);
        }
        if (nfull > ks->num_hashed) ks->num_hashed = nfull;
    }
    return CLLM_OK;
}

void cllm_kv_free(cllm_kv *bm, cllm_kv_seq *ks) {
    for (int j = ks->num_blocks - 1; j >= 0; j--) release_block(bm, ks->blocks[j]);
    free(ks->blocks);
    free(ks->block_hashes);
    ks->blocks = NULL;
    ks->block_hashes = NULL;
    ks->num_blocks = ks->cap_blocks = ks->num_hashed = 0;
    ks->num_computed_tokens = 0;
    ks->lookup_tokens = ks->lookup_hit_tokens = 0;
}

cllm_status cllm_kv_fork(cllm_kv *bm, const cllm_kv_seq *parent, cllm_kv_seq *child) {
    if (child->num_blocks > 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_kv_fork: child already holds %d blocks", child->num_blocks);
    CLLM_TRY(seq_reserve(child, parent->num_blocks > 0 ? parent->num_blocks : 1));
    for (int j = 0; j < parent->num_blocks; j++) {
        child->blocks[j] = parent->blocks[j];
        bm->blk[parent->blocks[j]].ref++;
    }
    if (parent->num_hashed > 0)
        memcpy(child->block_hashes, parent->block_hashes, (size_t)parent->num_hashed * sizeof(uint64_t));
    child->num_blocks = parent->num_blocks;
    child->num_hashed = parent->num_hashed;
    child->num_computed_tokens = parent->num_computed_tokens;
    child->cache_salt = parent->cache_salt;
    return CLLM_OK;
}

/* ---------------------------------------------------------- check + stats */
static cllm_status check_list(const cllm_kv *bm, const kv_list *l, int lid, const char *name) {
    int n = 0;
    int32_t prev = -1;
    for (int32_t b = l->head; b >= 0; b = bm->blk[b].next) {
        if (b >= bm->B) return cllm_error(CLLM_ERR_INTERNAL, "kv check: %s list holds bad block id %d", name, b);
        const kv_block *k = &bm->blk[b];
        if (k->list != lid || k->prev != prev)
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d in the %s list has broken links/tag", b, name);
        if (k->ref != 0)
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d in the %s list has ref %d", b, name, k->ref);
        if ((lid == LIST_EVICT) != (k->has_hash != 0))
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d in the %s list %s a hash", b, name,
                              k->has_hash ? "holds" : "lacks");
        prev = b;
        if (++n > bm->B) return cllm_error(CLLM_ERR_INTERNAL, "kv check: %s list has a cycle", name);
    }
    if (prev != l->tail || n != l->n)
        return cllm_error(CLLM_ERR_INTERNAL, "kv check: %s list walks %d blocks, count says %d", name, n, l->n);
    return CLLM_OK;
}

static cllm_status check_refs(const cllm_kv *bm, const cllm_kv_seq *const *seqs, int n) {
    int32_t *cnt = calloc((size_t)bm->B, sizeof *cnt);
    if (!cnt) return cllm_error(CLLM_ERR_OOM, "kv check: out of host memory");
    cllm_status st = CLLM_OK;
    for (int s = 0; s < n && st == CLLM_OK; s++) {
        const cllm_kv_seq *ks = seqs[s];
        if ((int64_t)ks->num_blocks * bm->P < ks->num_computed_tokens)
            st = cllm_error(CLLM_ERR_INTERNAL, "kv check: sequence %d has %d computed tokens but %d blocks", s,
                            ks->num_computed_tokens, ks->num_blocks);
        for (int j = 0; j < ks->num_blocks && st == CLLM_OK; j++) {
            int32_t b = ks->blocks[j];
            if (b < 0 || b >= bm->B) st = cllm_error(CLLM_ERR_INTERNAL, "kv check: sequence %d holds bad block %d", s, b);
            else cnt[b]++;
        }
    }
    for (int32_t b = 0; b < bm->B && st == CLLM_OK; b++)
        if (cnt[b] != bm->blk[b].ref)
            st = cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d has ref %d but %d sequences hold it", b,
                            bm->blk[b].ref, cnt[b]);
    free(cnt);
    return st;
}

cllm_status cllm_kv_check(const cllm_kv *bm, const cllm_kv_seq *const *seqs, int n) {
    CLLM_TRY(check_list(bm, &bm->free_l, LIST_FREE, "free"));
    CLLM_TRY(check_list(bm, &bm->evict_l, LIST_EVICT, "evictable"));
    int used = 0, hashed = 0;
    for (int32_t b = 0; b < bm->B; b++) {
        const kv_block *k = &bm->blk[b];
        if (k->ref < 0) return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d has ref %d", b, k->ref);
        if (k->ref > 0 && k->list != LIST_NONE)
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d is in use (ref %d) and on a free list", b, k->ref);
        if (k->ref == 0 && k->list == LIST_NONE)
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d has ref 0 but is on no list (leaked)", b);
        used += k->ref > 0;
        if (k->has_hash) {
            hashed++;
            if (!bm->prefix_caching)
                return cllm_error(CLLM_ERR_INTERNAL, "kv check: block %d holds a hash with prefix caching off", b);
            if (table_find(bm, k->hash, k->parent, bm->blk_tokens + (size_t)b * bm->P) != b)
                return cllm_error(CLLM_ERR_INTERNAL, "kv check: cached block %d is not found under its hash", b);
        }
    }
    if (used != bm->num_used)
        return cllm_error(CLLM_ERR_INTERNAL, "kv check: %d blocks in use, counter says %d", used, bm->num_used);
    if (bm->free_l.n + bm->evict_l.n + used != bm->B)
        return cllm_error(CLLM_ERR_INTERNAL, "kv check: free %d + evictable %d + used %d != %d blocks",
                          bm->free_l.n, bm->evict_l.n, used, bm->B);
    int entries = 0;
    for (uint32_t i = 0; i <= bm->mask; i++) {
        int32_t b = bm->table[i];
        if (b < 0) continue;
        entries++;
        if (b >= bm->B || !bm->blk[b].has_hash)
            return cllm_error(CLLM_ERR_INTERNAL, "kv check: hash table slot %u names block %d, which holds no hash", i, b);
    }
    if (entries != hashed || entries != bm->table_count)
        return cllm_error(CLLM_ERR_INTERNAL, "kv check: hash table has %d entries, %d blocks hold hashes, count %d",
                          entries, hashed, bm->table_count);
    if (seqs) CLLM_TRY(check_refs(bm, seqs, n));
    return CLLM_OK;
}

void cllm_kv_get_stats(const cllm_kv *bm, cllm_kv_stats *out) {
    memset(out, 0, sizeof *out);
    out->num_blocks = bm->B;
    out->num_free_blocks = bm->free_l.n;
    out->num_evictable_blocks = bm->evict_l.n;
    out->num_used_blocks = bm->num_used;
    out->num_cached_blocks = bm->table_count;
    out->usage = (double)bm->num_used / bm->B;
    out->prefix_queries = bm->queries;
    out->prefix_query_tokens = bm->query_tokens;
    out->prefix_hit_tokens = bm->hit_tokens;
    out->prefix_hit_rate = bm->query_tokens ? (double)bm->hit_tokens / (double)bm->query_tokens : 0.0;
    out->num_evictions = bm->evictions;
}

void cllm_kv_reset_stats(cllm_kv *bm) { bm->queries = bm->query_tokens = bm->hit_tokens = bm->evictions = 0; }

cllm_status cllm_kv_test_corrupt(cllm_kv *bm, int kind, int block) {
    if (block < 0 || block >= bm->B) return cllm_error(CLLM_ERR_INVALID_ARG, "test_corrupt: bad block %d", block);
    kv_block *k = &bm->blk[block];
    switch (kind) {
    case 0:
        if (k->ref == 0) return cllm_error(CLLM_ERR_INVALID_ARG, "test_corrupt: block %d is not in use", block);
        k->ref++;
        return CLLM_OK;
    case 1: {
        if (!k->has_hash) return cllm_error(CLLM_ERR_INVALID_ARG, "test_corrupt: block %d holds no hash", block);
        table_erase(bm, block);
        k->has_hash = 1; /* the block still believes it is cached */
        return CLLM_OK;
    }
    case 2:
        if (k->list != LIST_FREE) return cllm_error(CLLM_ERR_INVALID_ARG, "test_corrupt: block %d not free", block);
        list_remove(bm, &bm->free_l, block);
        return CLLM_OK;
    }
    return cllm_error(CLLM_ERR_INVALID_ARG, "test_corrupt: unknown kind %d", kind);
}
