/* Command channel encoding (see executor_proto.h). */
#include "engine/executor_proto.h"
#include "core/status.h"
#include "dist/dist_env.h"

#include <stdlib.h>
#include <string.h>

typedef struct proto_head {
    uint32_t magic, cmd;
    uint64_t payload_bytes;
    int64_t arg[8];
} proto_head;

#define INLINE_BYTES (CLLM_PROTO_MSG_BYTES - sizeof(proto_head))

cllm_status cllm_proto_send(cllm_comm *world, uint32_t cmd, const int64_t *arg, const void *payload, size_t n) {
    _Alignas(8) unsigned char buf[CLLM_PROTO_MSG_BYTES];
    proto_head h = {.magic = CLLM_PROTO_MAGIC, .cmd = cmd, .payload_bytes = n};
    if (arg) memcpy(h.arg, arg, sizeof h.arg);
    memcpy(buf, &h, sizeof h);
    size_t first = n <= INLINE_BYTES ? n : 0;
    if (first) memcpy(buf + sizeof h, payload, first);
    memset(buf + sizeof h + first, 0, INLINE_BYTES - first);
    CLLM_TRY(cllm_comm_broadcast(world, buf, sizeof buf, CLLM_DTYPE_U8, 0));
    if (n > INLINE_BYTES) CLLM_TRY(cllm_comm_broadcast(world, (void *)payload, n, CLLM_DTYPE_U8, 0));
    return CLLM_OK;
}

static cllm_status reserve(cllm_proto_msg *m, size_t n) {
    if (n <= m->cap) return CLLM_OK;
    void *p = realloc(m->payload, n);
    if (!p) return cllm_error(CLLM_ERR_OOM, "worker: out of host memory for a %zu-byte command", n);
    m->payload = p;
    m->cap = n;
    return CLLM_OK;
}

cllm_status cllm_proto_recv(cllm_comm *world, cllm_proto_msg *m) {
    _Alignas(8) unsigned char buf[CLLM_PROTO_MSG_BYTES];
    CLLM_TRY(cllm_comm_broadcast(world, buf, sizeof buf, CLLM_DTYPE_U8, 0));
    proto_head h;
    memcpy(&h, buf, sizeof h);
    if (h.magic != CLLM_PROTO_MAGIC)
        return cllm_error(CLLM_ERR_DISTRIBUTED, "worker: bad command magic 0x%08x from rank 0 (a different cllm build?)",
                          h.magic);
    m->cmd = h.cmd;
    memcpy(m->arg, h.arg, sizeof m->arg);
    m->payload_bytes = (size_t)h.payload_bytes;
    CLLM_TRY(reserve(m, m->payload_bytes + 1));
    if (m->payload_bytes <= INLINE_BYTES) memcpy(m->payload, buf + sizeof h, m->payload_bytes);
    else CLLM_TRY(cllm_comm_broadcast(world, m->payload, m->payload_bytes, CLLM_DTYPE_U8, 0));
    return CLLM_OK;
}

void cllm_proto_msg_free(cllm_proto_msg *m) {
    free(m->payload);
    memset(m, 0, sizeof *m);
}

/* Batch layout (int32 words): header [S, T, NL, max_blocks_per_seq, number
 * of block entries], then token_ids (T), positions (T), query_start_loc
 * (S+1), seq_lens (S), slot_mapping (T), logits_indices (NL), and per
 * sequence the ceil(seq_len / P) block-table entries the runner reads. */
#define BATCH_HEAD 5

static int used_blocks(int seq_len, int P, int M) {
    int nb = (seq_len + P - 1) / P;
    return nb < 0 ? 0 : nb > M ? M : nb;
}

cllm_status cllm_proto_pack_batch(const cllm_batch_host *b, int block_size, void **buf, size_t *cap, size_t *n) {
    int S = b->num_seqs, T = b->num_tokens, NL = b->num_logits, M = b->max_blocks_per_seq;
    size_t nb_total = 0;
    for (int s = 0; s < S; s++) nb_total += (size_t)used_blocks(b->seq_lens[s], block_size, M);
    size_t words = BATCH_HEAD + 3 * (size_t)T + (size_t)(S + 1) + (size_t)S + (size_t)NL + nb_total;
    size_t bytes = words * sizeof(int32_t);
    if (bytes > *cap) {
        void *p = realloc(*buf, bytes);
        if (!p) return cllm_error(CLLM_ERR_OOM, "executor: out of host memory for a %zu-byte step", bytes);
        *buf = p;
        *cap = bytes;
    }
    int32_t *w = *buf;
    w[0] = S, w[1] = T, w[2] = NL, w[3] = M, w[4] = (int32_t)nb_total;
    w += BATCH_HEAD;
    memcpy(w, b->token_ids, sizeof(int32_t) * (size_t)T), w += T;
    memcpy(w, b->positions, sizeof(int32_t) * (size_t)T), w += T;
    memcpy(w, b->query_start_loc, sizeof(int32_t) * (size_t)(S + 1)), w += S + 1;
    memcpy(w, b->seq_lens, sizeof(int32_t) * (size_t)S), w += S;
    memcpy(w, b->slot_mapping, sizeof(int32_t) * (size_t)T), w += T;
    memcpy(w, b->logits_indices, sizeof(int32_t) * (size_t)NL), w += NL;
    for (int s = 0; s < S; s++) {
        int nb = used_blocks(b->seq_lens[s], block_size, M);
        memcpy(w, b->block_tables + (size_t)s * M, sizeof(int32_t) * (size_t)nb);
        w += nb;
    }
    *n = bytes;
    return CLLM_OK;
}

cllm_status cllm_proto_unpack_batch(const void *payload, size_t n, int block_size, cllm_batch_host *b, int32_t **bt,
                                    size_t *bt_cap) {
    const int32_t *w = payload;
    if (n < BATCH_HEAD * sizeof(int32_t)) return cllm_error(CLLM_ERR_DISTRIBUTED, "worker: truncated step message");
    int S = w[0], T = w[1], NL = w[2], M = w[3], nb = w[4];
    if (S < 0 || T < 0 || NL < 0 || M < 0 || nb < 0 ||
        (BATCH_HEAD + 3 * (size_t)T + (size_t)(S + 1) + (size_t)S + (size_t)NL + (size_t)nb) * sizeof(int32_t) != n)
        return cllm_error(CLLM_ERR_DISTRIBUTED, "worker: malformed step message (S %d, T %d, NL %d, %zu bytes)", S, T,
                          NL, n);
    size_t need = (size_t)S * (size_t)M + 1;
    if (need > *bt_cap) {
        int32_t *p = realloc(*bt, need * sizeof(int32_t));
        if (!p) return cllm_error(CLLM_ERR_OOM, "worker: out of host memory for block tables");
        *bt = p;
        *bt_cap = need;
    }
    memset(b, 0, sizeof *b);
    w += BATCH_HEAD;
    b->num_seqs = S, b->num_tokens = T, b->num_logits = NL, b->max_blocks_per_seq = M;
    b->token_ids = (int32_t *)w, w += T;
    b->positions = (int32_t *)w, w += T;
    b->query_start_loc = (int32_t *)w, w += S + 1;
    b->seq_lens = (int32_t *)w, w += S;
    b->slot_mapping = (int32_t *)w, w += T;
    b->logits_indices = (int32_t *)w, w += NL;
    size_t left = (size_t)nb;
    for (int s = 0; s < S; s++) {
        size_t k = (size_t)used_blocks(b->seq_lens[s], block_size, M);
        if (k > left) return cllm_error(CLLM_ERR_DISTRIBUTED, "worker: step message block tables too short");
        int32_t *row = *bt + (size_t)s * M;
        memcpy(row, w, sizeof(int32_t) * k);
        memset(row + k, 0, sizeof(int32_t) * ((size_t)M - k));
        w += k;
        left -= k;
    }
    b->block_tables = *bt;
    return CLLM_OK;
}

typedef struct status_rec {
    int32_t status;
    char msg[500];
    char host[64];
} status_rec;

cllm_status cllm_proto_gather_status(cllm_comm *world, cllm_status st) {
    int n = cllm_comm_size(world);
    status_rec me;
    memset(&me, 0, sizeof me);
    me.status = (int32_t)st;
    if (st != CLLM_OK) snprintf(me.msg, sizeof me.msg, "%s", cllm_last_error());
    snprintf(me.host, sizeof me.host, "%s", cllm_dist_hostname());
    status_rec *all = calloc((size_t)n, sizeof *all);
    if (!all) return cllm_error(CLLM_ERR_OOM, "out of host memory");
    cllm_status cst = cllm_comm_all_gather(world, &me, all, sizeof me, CLLM_DTYPE_U8);
    if (cst != CLLM_OK) {
        free(all);
        return cst;
    }
    cllm_status out = CLLM_OK;
    for (int r = 0; r < n; r++) {
        if (all[r].status == CLLM_OK) continue;
        out = cllm_error((cllm_status)all[r].status, "rank %d (%s): %s", r, all[r].host, all[r].msg);
        break;
    }
    free(all);
    return out;
}
