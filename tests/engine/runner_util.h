/* Helpers for the runner-level tests (test_cuda_graph.c, test_attn_split.c):
 * a CHECK macro, sequences with their own scattered blocks, and one runner
 * step over them built in vLLM's batch layout. */
#ifndef CLLM_TESTS_ENGINE_RUNNER_UTIL_H
#define CLLM_TESTS_ENGINE_RUNNER_UTIL_H

#include "cllm.h"
#include "core/status.h"
#include "engine/model_runner.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEN 512

static int fails = 0;
#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                \
            fprintf(stderr, "\n");                                       \
            fails++;                                                     \
        }                                                                \
    } while (0)

typedef struct seqs {
    int S, P, mbps;
    int32_t *ids;    /* (S, MAX_LEN) tokens so far */
    int *len;        /* (S) tokens so far, including this step's new ones */
    int32_t *bt;     /* (S, mbps): sequence s owns blocks s*mbps.. */
} seqs;

/* One runner step over rows [0, S) of q: n_new[s] new tokens each (the last
 * n_new[s] of its ids), sampled with sp. all_logits false: logits of each
 * sequence's last token, tokens (S) and logits (S, V); true: logits of
 * every token, tokens (T) and logits (T, V), sp (T). */
static cllm_status step(cllm_runner *r, const seqs *q, const int *n_new, const cllm_sample_params *sp, int32_t *tok,
                        float *logits, bool all_logits) {
    int S = q->S, T = 0;
    for (int s = 0; s < S; s++) T += n_new[s];
    int NL = all_logits ? T : S;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T), *pos = malloc(sizeof(int32_t) * (size_t)T);
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)T), *qsl = malloc(sizeof(int32_t) * (size_t)(S + 1));
    int32_t *lens = malloc(sizeof(int32_t) * (size_t)S), *lidx = malloc(sizeof(int32_t) * (size_t)NL);
    int t = 0;
    qsl[0] = 0;
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < n_new[s]; i++, t++) {
            int p = q->len[s] - n_new[s] + i;
            ids[t] = q->ids[(size_t)s * MAX_LEN + p];
            pos[t] = p;
            slots[t] = q->bt[(size_t)s * q->mbps + p / q->P] * q->P + p % q->P;
            if (all_logits) lidx[t] = t;
        }
        qsl[s + 1] = t;
        lens[s] = q->len[s];
        if (!all_logits) lidx[s] = t - 1;
    }
    cllm_batch_host b = {
        .num_seqs = S, .num_tokens = T, .token_ids = ids, .positions = pos, .query_start_loc = qsl,
        .seq_lens = lens, .block_tables = q->bt, .max_blocks_per_seq = q->mbps, .slot_mapping = slots,
        .logits_indices = lidx, .num_logits = NL,
    };
    cllm_status st = cllm_runner_execute(r, &b, sp, tok, logits);
    free(ids), free(pos), free(slots), free(qsl), free(lens), free(lidx);
    return st;
}

#endif
