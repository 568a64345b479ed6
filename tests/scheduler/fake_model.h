/* A fake model for scheduler tests. It runs a flattened plan against a
 * simulated paged KV cache: each new token writes mix(token, position) into
 * its slot (slot_mapping); each sampling row reads the whole context back
 * through the block table, checks every entry equals mix(true token, pos)
 * (so a wrong block table, slot mapping, prefix hit or copy shows up), and
 * samples a token that is a deterministic function of (request id, context
 * hash, position) -- occasionally eos. fm_reference_next() computes the same
 * token from the token list alone, without any cache: the outside truth the
 * scheduler's outputs are compared with. */
#ifndef TEST_FAKE_MODEL_H
#define TEST_FAKE_MODEL_H

#include "engine/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FM_EOS 0

typedef struct fake_model {
    int B, P, vocab, eos_every;
    uint64_t *cache;        /* (B*P) */
    int64_t *stamp;         /* (B*P) step that last wrote the slot */
    int64_t step;
    cllm_batch_host batch;
    int32_t *sampled;
    int cap_sampled;
    int64_t errors;
    int64_t tokens_run;
} fake_model;

static inline uint64_t fm_splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
static inline uint64_t fm_mix(int32_t tok, int pos) { return fm_splitmix(((uint64_t)(uint32_t)tok << 32) ^ (uint32_t)pos); }
static inline uint64_t fm_fold(uint64_t h, uint64_t m) { return fm_splitmix(h ^ m); }
static inline int32_t fm_token(const fake_model *fm, int64_t id, uint64_t h, int pos) {
    uint64_t x = fm_splitmix(h ^ fm_splitmix((uint64_t)id) ^ (uint64_t)pos * 0x2545f4914f6cdd1dULL);
    if (fm->eos_every > 0 && x % (uint64_t)fm->eos_every == 0) return FM_EOS;
    return 1 + (int32_t)((x >> 16) % (uint64_t)(fm->vocab - 1));
}

/* Reference: the token the model samples after tokens[0..L). */
static inline int32_t fm_reference_next(const fake_model *fm, int64_t id, const int32_t *tokens, int L) {
    uint64_t h = 0;
    for (int p = 0; p < L; p++) h = fm_fold(h, fm_mix(tokens[p], p));
    return fm_token(fm, id, h, L);
}

static inline void fm_init(fake_model *fm, int B, int P, int vocab, int eos_every) {
    memset(fm, 0, sizeof *fm);
    fm->B = B;
    fm->P = P;
    fm->vocab = vocab;
    fm->eos_every = eos_every;
    fm->cache = calloc((size_t)B * P, sizeof *fm->cache);
    fm->stamp = calloc((size_t)B * P, sizeof *fm->stamp);
    for (size_t i = 0; i < (size_t)B * P; i++) fm->stamp[i] = -1;
}

static inline void fm_free(fake_model *fm) {
    free(fm->cache);
    free(fm->stamp);
    free(fm->sampled);
    cllm_batch_host_free(&fm->batch);
}

#define FM_ERR(...)                                                 \
    do {                                                            \
        if (fm->errors++ < 10) fprintf(stderr, "fake model: " __VA_ARGS__); \
    } while (0)

/* Execute plan: flatten, copy blocks, write new K/V, sample. Returns the
 * number of sampled tokens (fm->sampled), or -1 if flatten failed. */
static inline int fm_execute(fake_model *fm, const cllm_sched_plan *plan) {
    fm->step++;
    if (cllm_sched_flatten(plan, fm->P, 0, &fm->batch) != CLLM_OK) {
        FM_ERR("flatten: %s\n", cllm_last_error());
        return -1;
    }
    const cllm_batch_host *b = &fm->batch;
    int P = fm->P;
    for (int c = 0; c < plan->num_copies; c++)
        memcpy(fm->cache + (size_t)plan->copies[c].dst * P, fm->cache + (size_t)plan->copies[c].src * P,
               (size_t)P * sizeof *fm->cache);
    for (int t = 0; t < b->num_tokens; t++) {
        int32_t slot = b->slot_mapping[t];
        if (slot < 0 || slot >= fm->B * P) { FM_ERR("slot %d out of range\n", slot); continue; }
        if (fm->stamp[slot] == fm->step) FM_ERR("slot %d written twice in one step\n", slot);
        fm->stamp[slot] = fm->step;
        fm->cache[slot] = fm_mix(b->token_ids[t], b->positions[t]);
    }
    fm->tokens_run += b->num_tokens;
    if (b->num_logits > fm->cap_sampled) {
        fm->cap_sampled = b->num_logits * 2;
        fm->sampled = realloc(fm->sampled, (size_t)fm->cap_sampled * sizeof *fm->sampled);
    }
    for (int r = 0; r < b->num_logits; r++) {
        int e = b->logits_entries[r];
        const cllm_seq *q = plan->entries[e].seq;
        int L = b->seq_lens[e];
        if (b->logits_indices[r] != b->query_start_loc[e + 1] - 1) FM_ERR("logits index of entry %d\n", e);
        if (b->positions[b->logits_indices[r]] != L - 1) FM_ERR("logits row not at the last position\n");
        uint64_t h = 0;
        const int32_t *bt = b->block_tables + (size_t)e * b->max_blocks_per_seq;
        for (int p = 0; p < L; p++) {
            uint64_t v = fm->cache[(size_t)bt[p / P] * P + p % P];
            if (v != fm_mix(q->token_ids[p], p))
                FM_ERR("request %lld: KV at position %d of %d is wrong (step %lld)\n", (long long)q->id, p, L,
                       (long long)fm->step);
            h = fm_fold(h, v);
        }
        fm->sampled[r] = fm_token(fm, q->id, h, L);
    }
    return b->num_logits;
}

#endif
