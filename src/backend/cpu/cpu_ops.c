/* CPU reference ops, fp32: readable scalar loops, OpenMP over independent
 * rows/heads, OpenBLAS for matmul. Semantics: src/backend/backend.h; sources:
 * transformers modeling_llama.py (LlamaRMSNorm, rotate_half, eager
 * attention), modeling_qwen3.py (q_norm/k_norm), vLLM paged attention
 * metadata and sampler (top-k then top-p then min-p). */
#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"
#include "core/status.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

cllm_status cllm_cpu_embedding(const int32_t *ids, int T, const float *table, int vocab_start, int V, int E,
                               float *out) {
    if (T < 0 || V <= 0 || E <= 0 || vocab_start < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "embedding: bad shape T=%d vocab_start=%d V=%d E=%d", T, vocab_start, V, E);
#pragma omp parallel for if (T > 1)
    for (int t = 0; t < T; t++) {
        int64_t r = (int64_t)ids[t] - vocab_start; /* another shard's id: a zero row */
        if (r >= 0 && r < V) memcpy(out + (size_t)t * E, table + (size_t)r * E, sizeof(float) * (size_t)E);
        else memset(out + (size_t)t * E, 0, sizeof(float) * (size_t)E);
    }
    return CLLM_OK;
}

/* One row: out = x * rsqrt(mean(x^2) + eps) * w. */
static void rmsnorm_row(const float *x, const float *w, int E, float eps, float *out) {
    double ss = 0.0;
    for (int i = 0; i < E; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / E) + eps);
    for (int i = 0; i < E; i++) out[i] = w[i] * (x[i] * r);
}

cllm_status cllm_cpu_rmsnorm(const float *x, float *residual, const float *w, int rows, int E, float eps,
                             float *out) {
    if (rows < 0 || E <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "rmsnorm: bad shape rows=%d E=%d", rows, E);
#pragma omp parallel for if (rows > 1)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * E;
        float *o = out + (size_t)r * E;
        if (residual) {
            float *res = residual + (size_t)r * E;
            for (int i = 0; i < E; i++) res[i] += xr[i];
            rmsnorm_row(res, w, E, eps, o);
        } else {
            rmsnorm_row(xr, w, E, eps, o);
        }
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_head_rmsnorm(float *x, int T, int nheads, int D, int stride, const float *w, float eps) {
    if (T < 0 || nheads <= 0 || D <= 0 || stride < nheads * D)
        return cllm_error(CLLM_ERR_INVALID_ARG, "head_rmsnorm: bad shape T=%d heads=%d D=%d stride=%d", T, nheads, D,
                          stride);
#pragma omp parallel for collapse(2) if (T > 1)
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nheads; h++) {
            float *p = x + (size_t)t * stride + (size_t)h * D;
            rmsnorm_row(p, w, D, eps, p);
        }
    return CLLM_OK;
}

cllm_status cllm_cpu_linear(const float *x, int T, const cllm_weight *w, float *out) {
    if (T < 0 || w->n <= 0 || w->k <= 0 || w->n > INT32_MAX || w->k > INT32_MAX)
        return cllm_error(CLLM_ERR_INVALID_ARG, "linear: bad shape T=%d N=%lld K=%lld", T, (long long)w->n,
                          (long long)w->k);
    if (T == 0) return CLLM_OK;
    int N = (int)w->n, K = (int)w->k;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x, K, (const float *)w->data, K, 0.0f, out,
                N);
    if (w->bias) {
        const float *b = (const float *)w->bias;
#pragma omp parallel for if (T > 1)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) out[(size_t)t * N + n] += b[n];
    }
    return CLLM_OK;
}

/* Rotate each D-wide head of one token row in place. */
static void rope_heads(float *x, int nheads, int D, float p, const float *inv_freq) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float ang = p * inv_freq[i];
        float c = cosf(ang), s = sinf(ang);
        for (int h = 0; h < nheads; h++) {
            float *v = x + (size_t)h * D;
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = b * c + a * s;
        }
    }
}

cllm_status cllm_cpu_rope(float *q, float *k, const int32_t *pos, int T, int H, int Hkv, int D, int q_stride,
                          int k_stride, const float *inv_freq) {
    if (T < 0 || H <= 0 || D <= 0 || D % 2 || q_stride < H * D || (k && (Hkv <= 0 || k_stride < Hkv * D)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "rope: bad shape T=%d H=%d Hkv=%d D=%d strides %d/%d", T, H, Hkv, D,
                          q_stride, k_stride);
#pragma omp parallel for if (T > 1)
    for (int t = 0; t < T; t++) {
        float p = (float)pos[t];
        rope_heads(q + (size_t)t * q_stride, H, D, p, inv_freq);
        if (k) rope_heads(k + (size_t)t * k_stride, Hkv, D, p, inv_freq);
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_silu_mul(const float *gate_up, int T, int n_inter, float *out) {
    if (T < 0 || n_inter <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "silu_mul: bad shape T=%d n_inter=%d", T, n_inter);
#pragma omp parallel for if (T > 1)
    for (int t = 0; t < T; t++) {
        const float *g = gate_up + (size_t)t * 2 * n_inter, *u = g + n_inter;
        float *o = out + (size_t)t * n_inter;
        for (int i = 0; i < n_inter; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
    return CLLM_OK;
}

static bool kv_is_fp8(const cllm_kv_quant *kvq) { return kvq && kvq->dtype == CLLM_DTYPE_F8_E4M3; }

static cllm_status kv_check(const cllm_kv_quant *kvq, const char *op) {
    if (!kvq || kvq->dtype == CLLM_DTYPE_AUTO || kvq->dtype == CLLM_DTYPE_F32) return CLLM_OK;
    if (kvq->dtype != CLLM_DTYPE_F8_E4M3)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: KV cache dtype %s is not supported on the CPU backend", op,
                          cllm_dtype_name(kvq->dtype));
    if (!(kvq->k_scale > 0.0f) || !(kvq->v_scale > 0.0f) || isinf(kvq->k_scale) || isinf(kvq->v_scale))
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s: fp8 KV cache scales k %g, v %g must be finite and > 0", op,
                          (double)kvq->k_scale, (double)kvq->v_scale);
    return CLLM_OK;
}

cllm_status cllm_cpu_kv_write(const float *k, const float *v, int k_stride, int v_stride,
                              const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                              const cllm_kv_quant *kvq) {
    int T = meta->num_tokens;
    if (T < 0 || Hkv <= 0 || D <= 0 || k_stride < Hkv * D || v_stride < Hkv * D)
        return cllm_error(CLLM_ERR_INVALID_ARG, "kv_write: bad shape T=%d Hkv=%d D=%d strides %d/%d", T, Hkv, D,
                          k_stride, v_stride);
    CLLM_TRY(kv_check(kvq, "kv_write"));
    size_t row = (size_t)Hkv * D;
    bool fp8 = kv_is_fp8(kvq);
    float ks = fp8 ? kvq->k_scale : 1.0f, vs = fp8 ? kvq->v_scale : 1.0f;
#pragma omp parallel for if (T > 1)
    for (int t = 0; t < T; t++) {
        int32_t slot = meta->slot_mapping[t];
        if (slot < 0) continue;
        const float *kr = k + (size_t)t * k_stride, *vr = v + (size_t)t * v_stride;
        if (fp8) { /* vLLM's scaled conversion: q = fp8(x / scale) */
            uint8_t *kd = (uint8_t *)k_cache + (size_t)slot * row, *vd = (uint8_t *)v_cache + (size_t)slot * row;
            for (size_t i = 0; i < row; i++) {
                kd[i] = cllm_f32_to_fp8_e4m3(kr[i] / ks);
                vd[i] = cllm_f32_to_fp8_e4m3(vr[i] / vs);
            }
        } else {
            memcpy((float *)k_cache + (size_t)slot * row, kr, sizeof(float) * row);
            memcpy((float *)v_cache + (size_t)slot * row, vr, sizeof(float) * row);
        }
    }
    return CLLM_OK;
}

/* The 256 e4m3fn codes decoded (exact), filled once. */
static float g_e4m3_lut[256];
static pthread_once_t g_e4m3_once = PTHREAD_ONCE_INIT;
static void e4m3_lut_init(void) {
    for (int c = 0; c < 256; c++) g_e4m3_lut[c] = cllm_fp8_e4m3_to_f32((uint8_t)c);
}

/* Attention of one query head of one token over context positions [0, n).
 * The cache is f32 (kq == NULL) or fp8 codes dequantized as lut[code] * scale
 * (the same f32 value the dequantized cache would hold). */
static void attend_one(const float *q, const void *k_cache, const void *v_cache, const cllm_kv_quant *kq,
                       const int32_t *blocks, int P, int Hkv, int kvh, int D, int n, float scale, float *out) {
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < D; d++) out[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        size_t slot = (size_t)blocks[j / P] * P + (size_t)(j % P), off = (slot * Hkv + kvh) * D;
        float s = 0.0f;
        if (kq) {
            const uint8_t *kr = (const uint8_t *)k_cache + off;
            for (int d = 0; d < D; d++) s += q[d] * (g_e4m3_lut[kr[d]] * kq->k_scale);
        } else {
            const float *kr = (const float *)k_cache + off;
            for (int d = 0; d < D; d++) s += q[d] * kr[d];
        }
        s *= scale;
        if (s > m) { /* rescale what was accumulated under the old max */
            float c = expf(m - s);
            l *= c;
            for (int d = 0; d < D; d++) out[d] *= c;
            m = s;
        }
        float p = expf(s - m);
        l += p;
        if (kq) {
            const uint8_t *vr = (const uint8_t *)v_cache + off;
            for (int d = 0; d < D; d++) out[d] += p * (g_e4m3_lut[vr[d]] * kq->v_scale);
        } else {
            const float *vr = (const float *)v_cache + off;
            for (int d = 0; d < D; d++) out[d] += p * vr[d];
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = 0; d < D; d++) out[d] *= inv;
}

cllm_status cllm_cpu_attention(const float *q, int q_stride, const void *k_cache, const void *v_cache,
                               const cllm_attn_meta *meta, int H, int Hkv, int D, float scale, float *out,
                               const cllm_kv_quant *kvq) {
    int S = meta->num_seqs, T = meta->num_tokens, P = meta->block_size;
    if (S < 0 || T < 0 || H <= 0 || Hkv <= 0 || H % Hkv || D <= 0 || P <= 0 || q_stride < H * D)
        return cllm_error(CLLM_ERR_INVALID_ARG, "attention: bad shape S=%d T=%d H=%d Hkv=%d D=%d P=%d", S, T, H, Hkv,
                          D, P);
    CLLM_TRY(kv_check(kvq, "attention"));
    for (int s = 0; s < S; s++) {
        int q0 = meta->query_start_loc[s], q1 = meta->query_start_loc[s + 1], L = meta->seq_lens[s];
        if (q0 < 0 || q1 < q0 || q1 > T || L < q1 - q0 || (L + P - 1) / P > meta->max_blocks_per_seq)
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "attention: sequence %d has query [%d, %d) and %d tokens of context, inconsistent "
                              "with T=%d and %d blocks per sequence",
                              s, q0, q1, L, T, meta->max_blocks_per_seq);
    }
    const cllm_kv_quant *kq = kv_is_fp8(kvq) ? kvq : NULL;
    if (kq) pthread_once(&g_e4m3_once, e4m3_lut_init);
    int group = H / Hkv;
    for (int s = 0; s < S; s++) {
        int q0 = meta->query_start_loc[s], q1 = meta->query_start_loc[s + 1], L = meta->seq_lens[s];
        const int32_t *blocks = meta->block_tables + (size_t)s * meta->max_blocks_per_seq;
        int qlen = q1 - q0;
#pragma omp parallel for collapse(2) if (qlen * H > 8)
        for (int i = 0; i < qlen; i++)
            for (int h = 0; h < H; h++) {
                int t = q0 + i, n = L - qlen + i + 1; /* causal: positions 0..own */
                attend_one(q + (size_t)t * q_stride + (size_t)h * D, k_cache, v_cache, kq, blocks, P, Hkv, h / group,
                           D, n, scale, out + ((size_t)t * H + h) * D);
            }
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_gather_rows(const float *x, const int32_t *idx, int S, int E, float *out) {
    if (S < 0 || E <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "gather_rows: bad shape S=%d E=%d", S, E);
    for (int s = 0; s < S; s++)
        if (idx[s] < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "gather_rows: negative row index %d", idx[s]);
    for (int s = 0; s < S; s++) memcpy(out + (size_t)s * E, x + (size_t)idx[s] * E, sizeof(float) * (size_t)E);
    return CLLM_OK;
}

/* ------------------------------------------------------------ sampler */

size_t cllm_cpu_sample_workspace_bytes(int S, int V) {
    /* per row: probs (V float) + order (V int32) */
    return (size_t)(S > 0 ? S : 0) * (size_t)(V > 0 ? V : 0) * (sizeof(float) + sizeof(int32_t));
}

static int argmax_row(const float *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i; /* strict: lowest id wins ties */
    return best;
}

/* qsort context: probabilities of the row being sorted (one row per thread). */
static _Thread_local const float *g_sort_probs;
static int cmp_prob_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = g_sort_probs[i], pj = g_sort_probs[j];
    if (pi > pj) return -1;
    if (pi < pj) return 1;
    return (i > j) - (i < j);
}

/* One row of the sampler; probs/order are V-long scratch. */
static int32_t sample_row(const float *logits, int V, const cllm_sample_params *sp, float *probs, int32_t *order) {
    if (!(sp->temperature > 0.0f)) return argmax_row(logits, V);
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        probs[i] = logits[i] / sp->temperature;
        if (probs[i] > mx) mx = probs[i];
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        probs[i] = expf(probs[i] - mx);
        sum += probs[i];
    }
    for (int i = 0; i < V; i++) probs[i] = (float)(probs[i] / sum);

    /* keep[i] is expressed by zeroing probs of dropped tokens */
    bool need_sort = (sp->top_k > 0 && sp->top_k < V) || sp->top_p < 1.0f;
    if (need_sort) {
        for (int i = 0; i < V; i++) order[i] = i;
        g_sort_probs = probs;
        qsort(order, (size_t)V, sizeof(int32_t), cmp_prob_desc);
        int keep = (sp->top_k > 0 && sp->top_k < V) ? sp->top_k : V;
        if (sp->top_p < 1.0f) {
            double kmass = 0.0;
            for (int r = 0; r < keep; r++) kmass += probs[order[r]];
            double cum = 0.0, target = (double)sp->top_p * kmass;
            int r = 0;
            while (r < keep) {
                cum += probs[order[r]];
                r++;
                if (cum >= target) break;
            }
            keep = r;
        }
        for (int r = keep; r < V; r++) probs[order[r]] = 0.0f;
    }
    if (sp->min_p > 0.0f) {
        float pmax = 0.0f;
        for (int i = 0; i < V; i++)
            if (probs[i] > pmax) pmax = probs[i];
        float thr = sp->min_p * pmax;
        for (int i = 0; i < V; i++)
            if (probs[i] < thr) probs[i] = 0.0f;
    }
    double kept = 0.0;
    int last = -1;
    for (int i = 0; i < V; i++)
        if (probs[i] > 0.0f) {
            kept += probs[i];
            last = i;
        }
    if (last < 0) return argmax_row(logits, V); /* everything underflowed */
    double target = (double)cllm_philox_uniform(sp->seed, sp->step) * kept, cum = 0.0;
    for (int i = 0; i < V; i++) {
        if (probs[i] <= 0.0f) continue;
        cum += probs[i];
        if (cum > target) return i;
    }
    return last;
}

cllm_status cllm_cpu_sample(const float *logits, int S, int V, const cllm_sample_params *params, void *workspace,
                            int32_t *tokens) {
    if (S < 0 || V <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "sample: bad shape S=%d V=%d", S, V);
    for (int s = 0; s < S; s++) {
        const cllm_sample_params *p = &params[s];
        if (p->temperature < 0.0f || !(p->top_p > 0.0f && p->top_p <= 1.0f) || p->min_p < 0.0f || p->min_p > 1.0f)
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "sample: row %d has temperature %g (>= 0), top_p %g (in (0, 1]), min_p %g (in [0, 1])",
                              s, p->temperature, p->top_p, p->min_p);
    }
    float *probs_all = (float *)workspace;
    int32_t *order_all = (int32_t *)(probs_all + (size_t)S * V);
#pragma omp parallel for if (S > 1)
    for (int s = 0; s < S; s++)
        tokens[s] = sample_row(logits + (size_t)s * V, V, &params[s], probs_all + (size_t)s * V,
                               order_all + (size_t)s * V);
    return CLLM_OK;
}
