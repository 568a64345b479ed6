/* Block manager unit tests: allocate/free, full cache, prefix hits, hash
 * chain (checked against libxxhash directly), LRU eviction order,
 * copy-on-write, integrity check catching deliberate corruption, bad args. */
#include "kv/block_manager.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static int g_fail;
#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);  \
            g_fail++;                                                              \
        }                                                                          \
    } while (0)
#define OK(x) CHECK((x) == CLLM_OK)

static cllm_kv *mk(int B, int P, bool pc) {
    cllm_kv_params p = cllm_kv_default_params();
    p.num_blocks = B;
    p.block_size = P;
    p.enable_prefix_caching = pc;
    cllm_kv *bm = NULL;
    if (cllm_kv_create(&p, &bm) != CLLM_OK) { fprintf(stderr, "create failed\n"); exit(1); }
    return bm;
}

static void seq_init(cllm_kv_seq *s, const int32_t *t, int n) {
    memset(s, 0, sizeof *s);
    s->tokens = t;
    s->num_tokens = n;
}

/* allocate all known tokens and mark them computed, like an executed step */
static cllm_status alloc_all(cllm_kv *bm, cllm_kv_seq *s) {
    int n = s->num_tokens - s->num_computed_tokens;
    cllm_status st = cllm_kv_allocate(bm, s, n, NULL, 0, NULL);
    if (st == CLLM_OK) s->num_computed_tokens += n;
    return st;
}

static void check_ok(cllm_kv *bm, cllm_kv_seq **seqs, int n) {
    cllm_status st = cllm_kv_check(bm, (const cllm_kv_seq *const *)seqs, n);
    if (st != CLLM_OK) fprintf(stderr, "check: %s\n", cllm_last_error());
    CHECK(st == CLLM_OK);
}

static void test_alloc_free(void) {
    cllm_kv *bm = mk(8, 4, false);
    int32_t t[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    cllm_kv_seq a;
    seq_init(&a, t, 10);
    CHECK(cllm_kv_can_allocate(bm, &a, 10));
    OK(alloc_all(bm, &a));
    CHECK(a.num_blocks == 3);
    cllm_kv_stats st;
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_used_blocks == 3 && st.num_free_blocks == 5 && st.usage == 3.0 / 8);
    cllm_kv_seq *all[] = {&a};
    check_ok(bm, all, 1);
    /* decode steps: two more tokens fit in block 2, the third needs block 3 */
    a.num_tokens = 10; /* tokens view unchanged; allocate for positions 10, 11, 12 */
    OK(cllm_kv_allocate(bm, &a, 2, NULL, 0, NULL));
    a.num_computed_tokens += 2;
    CHECK(a.num_blocks == 3);
    OK(cllm_kv_allocate(bm, &a, 1, NULL, 0, NULL));
    a.num_computed_tokens += 1;
    CHECK(a.num_blocks == 4);
    cllm_kv_free(bm, &a);
    CHECK(a.num_blocks == 0 && a.num_computed_tokens == 0);
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_used_blocks == 0 && st.num_free_blocks == 8 && st.num_cached_blocks == 0);
    check_ok(bm, NULL, 0);
    cllm_kv_destroy(bm);
}

static void test_full(void) {
    cllm_kv *bm = mk(2, 4, true);
    int32_t t[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    cllm_kv_seq a, b;
    seq_init(&a, t, 8);
    seq_init(&b, t + 8, 1);
    OK(alloc_all(bm, &a));
    CHECK(cllm_kv_num_free_blocks(bm) == 0);
    CHECK(!cllm_kv_can_allocate(bm, &b, 1));
    CHECK(cllm_kv_allocate(bm, &b, 1, NULL, 0, NULL) == CLLM_ERR_NO_KV_BLOCKS);
    CHECK(b.num_blocks == 0);
    CHECK(!cllm_kv_can_allocate(bm, &a, 1)); /* a's 9th token needs a third block */
    CHECK(cllm_kv_can_allocate(bm, &a, 0));
    cllm_kv_seq *all[] = {&a, &b};
    check_ok(bm, all, 2);
    cllm_kv_free(bm, &a);
    CHECK(cllm_kv_can_allocate(bm, &b, 1)); /* evictable blocks count as free */
    OK(alloc_all(bm, &b));
    cllm_kv_free(bm, &b);
    check_ok(bm, NULL, 0);
    cllm_kv_destroy(bm);
}

static void test_prefix_hits(void) {
    cllm_kv *bm = mk(16, 4, true);
    int32_t ta[12] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
    int32_t tb[11] = {10, 11, 12, 13, 14, 15, 16, 17, 99, 98, 97};
    int32_t td[13] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22};
    cllm_kv_seq a, b, c, d;
    seq_init(&a, ta, 12);
    seq_init(&b, tb, 11);
    seq_init(&c, ta, 12);
    seq_init(&d, td, 13);
    int n = -1;
    OK(cllm_kv_get_computed_blocks(bm, &a, &n));
    CHECK(n == 0);
    OK(alloc_all(bm, &a));
    cllm_kv_stats st;
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_cached_blocks == 3);
    /* shared 8-token prefix: two blocks reused, ref 2 */
    OK(cllm_kv_get_computed_blocks(bm, &b, &n));
    CHECK(n == 8 && b.num_blocks == 2 && b.blocks[0] == a.blocks[0] && b.blocks[1] == a.blocks[1]);
    CHECK(b.num_computed_tokens == 8);
    OK(alloc_all(bm, &b));
    CHECK(b.num_blocks == 3 && b.blocks[2] != a.blocks[2]);
    /* identical 12-token prompt: the last token must be recomputed, so only 2 blocks */
    OK(cllm_kv_get_computed_blocks(bm, &c, &n));
    CHECK(n == 8);
    OK(alloc_all(bm, &c));
    /* 13 tokens: all three cached blocks */
    OK(cllm_kv_get_computed_blocks(bm, &d, &n));
    CHECK(n == 12 && d.blocks[2] == a.blocks[2]);
    OK(alloc_all(bm, &d));
    cllm_kv_seq *all[] = {&a, &b, &c, &d};
    check_ok(bm, all, 4);
    cllm_kv_get_stats(bm, &st);
    CHECK(st.prefix_queries == 4 && st.prefix_query_tokens == 12 + 11 + 12 + 13);
    CHECK(st.prefix_hit_tokens == 8 + 8 + 12);
    CHECK(st.prefix_hit_rate > 0.58 && st.prefix_hit_rate < 0.59);
    for (int i = 0; i < 4; i++) cllm_kv_free(bm, all[i]);
    check_ok(bm, NULL, 0);
    /* after free the cached blocks survive as evictable and still hit */
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_used_blocks == 0 && st.num_evictable_blocks == st.num_cached_blocks && st.num_cached_blocks >= 3);
    OK(cllm_kv_get_computed_blocks(bm, &d, &n));
    CHECK(n == 12);
    CHECK(cllm_kv_get_computed_blocks(bm, &d, &n) == CLLM_ERR_INVALID_ARG); /* already holds blocks */
    cllm_kv_free(bm, &d);
    cllm_kv_destroy(bm);

    /* prefix caching off: never hits */
    bm = mk(16, 4, false);
    seq_init(&a, ta, 12);
    seq_init(&c, ta, 12);
    OK(alloc_all(bm, &a));
    OK(cllm_kv_get_computed_blocks(bm, &c, &n));
    CHECK(n == 0 && c.num_blocks == 0);
    cllm_kv_free(bm, &a);
    cllm_kv_destroy(bm);
}

static void test_hash_chain(void) {
    int32_t t[4] = {7, 8, 9, 10};
    uint64_t h1 = cllm_kv_hash_block(CLLM_KV_ROOT_HASH, 0, t, 4);
    uint64_t h2 = cllm_kv_hash_block(h1, 0, t, 4);
    CHECK(h1 != h2);
    CHECK(cllm_kv_hash_block(h1, 0, t, 4) == h2);
    CHECK(cllm_kv_hash_block(CLLM_KV_ROOT_HASH, 5, t, 4) != h1); /* salt */
    /* the documented layout, hashed by libxxhash in one shot */
    unsigned char buf[8 + 8 + 16];
    uint64_t parent = CLLM_KV_ROOT_HASH, salt = 0;
    memcpy(buf, &parent, 8);
    memcpy(buf + 8, &salt, 8);
    memcpy(buf + 16, t, 16);
    CHECK(XXH3_64bits(buf, sizeof buf) == h1);

    /* same block tokens under a different first block: no hit on block 1 */
    cllm_kv *bm = mk(8, 4, true);
    int32_t ta[9] = {1, 2, 3, 4, 7, 8, 9, 10, 0};
    int32_t tb[9] = {5, 5, 5, 5, 7, 8, 9, 10, 0};
    cllm_kv_seq a, b;
    seq_init(&a, ta, 8);
    seq_init(&b, tb, 9);
    OK(alloc_all(bm, &a));
    int n = -1;
    OK(cllm_kv_get_computed_blocks(bm, &b, &n));
    CHECK(n == 0);
    OK(alloc_all(bm, &b));
    CHECK(a.block_hashes[1] != b.block_hashes[1]);
    CHECK(a.block_hashes[0] == cllm_kv_hash_block(CLLM_KV_ROOT_HASH, 0, ta, 4));
    CHECK(a.block_hashes[1] == cllm_kv_hash_block(a.block_hashes[0], 0, ta + 4, 4));
    cllm_kv_seq *all[] = {&a, &b};
    check_ok(bm, all, 2);
    cllm_kv_free(bm, &a);
    cllm_kv_free(bm, &b);
    cllm_kv_destroy(bm);
}

static void test_lru(void) {
    cllm_kv *bm = mk(4, 2, true);
    int32_t ta[5] = {1, 2, 3, 4, 0}, tb[4] = {5, 6, 7, 8}, tc[2] = {9, 9};
    cllm_kv_seq a, b, c;
    seq_init(&a, ta, 4);
    seq_init(&b, tb, 4);
    seq_init(&c, tc, 1);
    OK(alloc_all(bm, &a));
    int a0 = a.blocks[0], a1 = a.blocks[1];
    cllm_kv_free(bm, &a); /* evictable, LRU order: a1 then a0 (tail first) */
    OK(alloc_all(bm, &b)); /* takes the two never-cached free blocks, evicts nothing */
    CHECK(b.blocks[0] != a0 && b.blocks[0] != a1 && b.blocks[1] != a0 && b.blocks[1] != a1);
    cllm_kv_stats st;
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_evictions == 0 && st.num_cached_blocks == 4);
    int b0 = b.blocks[0], b1 = b.blocks[1];
    cllm_kv_free(bm, &b); /* LRU: a1, a0, b1, b0 */
    OK(alloc_all(bm, &c));
    CHECK(c.blocks[0] == a1); /* least recently used: a's tail block */
    cllm_kv_get_stats(bm, &st);
    CHECK(st.num_evictions == 1 && st.num_cached_blocks == 3);
    /* a's first block is still cached, its second is gone */
    cllm_kv_seq a2;
    seq_init(&a2, ta, 5);
    int n = -1;
    OK(cllm_kv_get_computed_blocks(bm, &a2, &n));
    CHECK(n == 2 && a2.blocks[0] == a0);
    /* next fresh blocks: b1 then b0 (a0 is in use again) */
    cllm_kv_seq d;
    int32_t td[4] = {3, 3, 3, 3};
    seq_init(&d, td, 4);
    OK(alloc_all(bm, &d));
    CHECK(d.blocks[0] == b1 && d.blocks[1] == b0);
    cllm_kv_seq *all[] = {&a2, &c, &d};
    check_ok(bm, all, 3);
    cllm_kv_free(bm, &a2);
    cllm_kv_free(bm, &c);
    cllm_kv_free(bm, &d);
    check_ok(bm, NULL, 0);
    cllm_kv_destroy(bm);
}

static void test_cow(void) {
    cllm_kv *bm = mk(8, 4, true);
    int32_t ta[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t tb[8] = {1, 2, 3, 4, 5, 6, 9, 9};
    cllm_kv_seq a, b;
    seq_init(&a, ta, 6);
    OK(alloc_all(bm, &a)); /* blocks: [full 1..4][5,6 partial] */
    seq_init(&b, tb, 6);
    OK(cllm_kv_fork(bm, &a, &b));
    CHECK(b.num_blocks == 2 && b.num_computed_tokens == 6 && b.blocks[1] == a.blocks[1]);
    cllm_kv_seq *all[] = {&a, &b};
    check_ok(bm, all, 2);
    /* b writes position 6 into the shared partial block: copy-on-write */
    b.num_tokens = 7;
    cllm_kv_copy cp[4];
    int nc = -1;
    int shared = a.blocks[1];
    CHECK(cllm_kv_allocate(bm, &b, 1, NULL, 0, &nc) == CLLM_ERR_INVALID_ARG); /* no room for the pair */
    OK(cllm_kv_allocate(bm, &b, 1, cp, 4, &nc));
    CHECK(nc == 1 && cp[0].src == shared && cp[0].dst == b.blocks[1] && b.blocks[1] != shared);
    CHECK(b.blocks[0] == a.blocks[0]); /* the full block stays shared */
    b.num_computed_tokens = 7;
    check_ok(bm, all, 2);
    /* a now owns its block alone: no copy */
    a.num_tokens = 7;
    OK(cllm_kv_allocate(bm, &a, 1, cp, 4, &nc));
    CHECK(nc == 0 && a.blocks[1] == shared);
    a.num_computed_tokens = 7;
    check_ok(bm, all, 2);
    cllm_kv_free(bm, &a);
    cllm_kv_free(bm, &b);
    check_ok(bm, NULL, 0);
    cllm_kv_destroy(bm);
}

static void test_corruption(void) {
    for (int kind = 0; kind < 3; kind++) {
        cllm_kv *bm = mk(8, 4, true);
        int32_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        cllm_kv_seq a;
        seq_init(&a, t, 8);
        OK(alloc_all(bm, &a));
        cllm_kv_seq *all[] = {&a};
        check_ok(bm, all, 1);
        int victim = kind == 2 ? -1 : a.blocks[0];
        if (kind == 2)
            for (int b = 0; b < 8; b++)
                if (b != a.blocks[0] && b != a.blocks[1]) { victim = b; break; }
        OK(cllm_kv_test_corrupt(bm, kind, victim));
        cllm_status st = cllm_kv_check(bm, (const cllm_kv_seq *const *)all, 1);
        CHECK(st == CLLM_ERR_INTERNAL);
        fprintf(stderr, "  corruption %d detected: %s\n", kind, cllm_last_error());
        CHECK(strstr(cllm_last_error(), "kv check") != NULL);
        cllm_kv_destroy(bm); /* state is corrupt: do not free through it */
        free(a.blocks);
        free(a.block_hashes);
    }
}

static void test_bad_args(void) {
    cllm_kv_params p = cllm_kv_default_params();
    cllm_kv *bm = (cllm_kv *)1;
    p.num_blocks = 0;
    CHECK(cllm_kv_create(&p, &bm) == CLLM_ERR_INVALID_ARG && bm == NULL);
    CHECK(strstr(cllm_last_error(), "num_blocks") != NULL);
    p.num_blocks = 4;
    p.block_size = 0;
    CHECK(cllm_kv_create(&p, &bm) == CLLM_ERR_INVALID_ARG);
    p.block_size = 1 << 20;
    p.num_blocks = 1 << 12;
    CHECK(cllm_kv_create(&p, &bm) == CLLM_ERR_INVALID_ARG);
    cllm_kv_destroy(NULL);
    bm = mk(4, 4, true);
    int32_t t[1] = {1};
    cllm_kv_seq a;
    seq_init(&a, t, 1);
    CHECK(!cllm_kv_can_allocate(bm, &a, -1));
    CHECK(cllm_kv_allocate(bm, &a, -1, NULL, 0, NULL) == CLLM_ERR_INVALID_ARG);
    CHECK(cllm_kv_test_corrupt(bm, 0, 0) == CLLM_ERR_INVALID_ARG); /* not in use */
    CHECK(cllm_kv_test_corrupt(bm, 9, 0) == CLLM_ERR_INVALID_ARG);
    check_ok(bm, NULL, 0);
    cllm_kv_destroy(bm);
}

int main(void) {
    test_alloc_free();
    test_full();
    test_prefix_hits();
    test_hash_chain();
    test_lru();
    test_cow();
    test_corruption();
    test_bad_args();
    if (g_fail) {
        fprintf(stderr, "test_block_manager: %d checks failed\n", g_fail);
        return 1;
    }
    printf("test_block_manager: all passed\n");
    return 0;
}
