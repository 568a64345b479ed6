/* Paged causal GQA attention for a mixed batch (prefill chunks with a cached
 * prefix plus decode tokens), fp32 online softmax (Milakov & Gimelshein 2018;
 * FlashAttention, Dao et al. 2022), split-K over the context for small grids
 * (flash-decoding: partial (m, l, o) per split, merged by a second kernel).
 *
 * Work decomposition: a CTA takes one sequence s, one KV head g and a tile of
 * ROWS "rows", a row being a (new token, query head of group g) pair; so the
 * K/V tiles it stages in shared memory serve all H/Hkv query heads that read
 * them (GQA) and, in prefill, several tokens. blockIdx.z is the context split.
 * Each warp owns RPW rows; in a 32-key tile lane j scores key j against the
 * warp's rows (K rows padded to D+2 bf16 in shared memory: conflict-free),
 * then the warp accumulates P V with lane owning output words lane + 32u.
 * Scores use log2 units (q pre-scaled by scale * log2 e) and exp2f.
 * head_dim: any multiple of 8 up to 256; 64/128/256 are compiled exactly,
 * others run the next larger variant with a run-time D. Each thread holds
 * the next K/V tile in registers (16-byte loads issued before the current
 * tile is scored), so loads overlap the FMA work. */
#include "backend/cuda/cuda_common.cuh"
#include <math.h>

#define ATT_NW 4
#define ATT_KT 32

/* DP: the compiled head-dim bound (64, 128, 256); EXACT: D == DP (fully unrolled
 * fast path), else D (a multiple of 8, <= DP) is read at run time. */
template <int DP, int RPW, bool EXACT>
static __global__ void __launch_bounds__(ATT_NW * 32)
attention_kernel(const __nv_bfloat16 *__restrict__ q, int q_stride, const __nv_bfloat16 *__restrict__ kc,
                 const __nv_bfloat16 *__restrict__ vc, const int32_t *__restrict__ qsl,
                 const int32_t *__restrict__ seq_lens, const int32_t *__restrict__ block_tables, int mbps, int P,
                 int H, int Hkv, float qscale, int tiles_per_seq, int T, int split_len, __nv_bfloat16 *out,
                 float *part_o, float *part_ml, int d_rt) {
    const int D = EXACT ? DP : d_rt;
    constexpr int ROWS = ATT_NW * RPW, U = DP / 64;
    /* 16-byte K/V chunks per thread per tile (register prefetch of the next tile). */
    constexpr int NL = (ATT_KT * (DP / 8) + ATT_NW * 32 - 1) / (ATT_NW * 32);
    const int W = (D + 2) / 2;
    extern __shared__ float smem[];
    float *q_s = smem;                                  /* [ROWS][D] */
    uint32_t *k_s = (uint32_t *)(q_s + ROWS * D);      /* [KT][W] words of bf16x2 */
    uint32_t *v_s = k_s + ATT_KT * W;

    const int G = H / Hkv, g = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
    const int s = blockIdx.x / tiles_per_seq, tile = blockIdx.x % tiles_per_seq;
    const int q0 = qsl[s], qlen = qsl[s + 1] - q0, slen = seq_lens[s];
    const int nrows = qlen * G, r0 = tile * ROWS;
    if (r0 >= nrows) return;
    const int ctx0 = slen - qlen;
    const int last = min(r0 + ROWS, nrows) - 1;
    /* split_len 0 (CUDA-graph capture): this sequence's own split length, so that one
     * launch configuration serves every context length (>= 64 keys per split). */
    if (split_len == 0) split_len = max(64, ((slen + nsplit - 1) / nsplit + ATT_KT - 1) / ATT_KT * ATT_KT);
    const int kbeg = split * split_len;
    const int kend = min(kbeg + split_len, ctx0 + last / G + 1);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

    for (int i = tid; i < ROWS * (D / 2); i += ATT_NW * 32) {
        int r = i / (D / 2), w = i % (D / 2);
        float2 f = make_float2(0.f, 0.f);
        if (r0 + r < nrows) {
            int tok = (r0 + r) / G, hq = g * G + (r0 + r) % G;
            f = __bfloat1622float2(((const __nv_bfloat162 *)(q + (size_t)(q0 + tok) * q_stride + (size_t)hq * D))[w]);
        }
        q_s[r * D + 2 * w] = f.x * qscale;
        q_s[r * D + 2 * w + 1] = f.y * qscale;
    }

    float m[RPW], l[RPW], acc[RPW][U][2];
    int pos[RPW];
    bool valid[RPW];
#pragma unroll
    for (int j = 0; j < RPW; j++) {
        int r = r0 + warp + ATT_NW * j;
        valid[j] = r < nrows;
        pos[j] = ctx0 + r / G;
        m[j] = -INFINITY;
        l[j] = 0.f;
#pragma unroll
        for (int u = 0; u < U; u++) acc[j][u][0] = acc[j][u][1] = 0.f;
    }

    const int32_t *bt = block_tables + (size_t)s * mbps;
    const int C8 = D / 8;
    uint4 rk[NL], rv[NL];
    auto load_tile = [&](int kt) {
#pragma unroll
        for (int n = 0; n < NL; n++) {
            int i = tid + n * ATT_NW * 32, key = i / C8, c = i % C8, kp = kt + key;
            rk[n] = make_uint4(0, 0, 0, 0), rv[n] = rk[n];
            if (key < ATT_KT && kp < kend) {
                size_t off = (((size_t)bt[kp / P] * P + kp % P) * Hkv + g) * D + c * 8;
                rk[n] = *(const uint4 *)(kc + off);
                rv[n] = *(const uint4 *)(vc + off);
            }
        }
    };
    if (kbeg < kend) load_tile(kbeg);
    for (int kt = kbeg; kt < kend; kt += ATT_KT) {
        __syncthreads();
#pragma unroll
        for (int n = 0; n < NL; n++) {
            int i = tid + n * ATT_NW * 32, key = i / C8, c = i % C8;
            if (key < ATT_KT) {
                uint32_t *kd = k_s + key * W + c * 4, *vd = v_s + key * W + c * 4;
                kd[0] = rk[n].x, kd[1] = rk[n].y, kd[2] = rk[n].z, kd[3] = rk[n].w;
                vd[0] = rv[n].x, vd[1] = rv[n].y, vd[2] = rv[n].z, vd[3] = rv[n].w;
            }
        }
        __syncthreads();
        /* Issue the next tile's loads now: they complete while this tile is scored. */
        if (kt + ATT_KT < kend) load_tile(kt + ATT_KT);

        float sc[RPW];
#pragma unroll
        for (int j = 0; j < RPW; j++) sc[j] = 0.f;
        const uint32_t *kr = k_s + lane * W;
#pragma unroll 8
        for (int i = 0; i < D / 2; i++) {
            uint32_t kw = kr[i];
            float2 kf = __bfloat1622float2(*(const __nv_bfloat162 *)&kw);
#pragma unroll
            for (int j = 0; j < RPW; j++) {
                float2 qf = *(const float2 *)(q_s + (warp + ATT_NW * j) * D + 2 * i);
                sc[j] = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, sc[j]));
            }
        }
        const int kp = kt + lane;
        float p[RPW];
#pragma unroll
        for (int j = 0; j < RPW; j++) {
            float x = (valid[j] && kp < kend && kp <= pos[j]) ? sc[j] : -INFINITY;
            float mt = x;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            float mn = fmaxf(m[j], mt);
            if (mn == -INFINITY) {
                p[j] = 0.f;
                continue;
            }
            p[j] = exp2f(x - mn);
            float corr = exp2f(m[j] - mn);
            float ps = p[j];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            l[j] = l[j] * corr + ps;
            m[j] = mn;
#pragma unroll
            for (int u = 0; u < U; u++) acc[j][u][0] *= corr, acc[j][u][1] *= corr;
        }
        const int nk = min(ATT_KT, kend - kt);
        for (int jj = 0; jj < nk; jj++) {
            float pj[RPW];
#pragma unroll
            for (int j = 0; j < RPW; j++) pj[j] = __shfl_sync(0xffffffffu, p[j], jj);
#pragma unroll
            for (int u = 0; u < U; u++) {
                if (!EXACT && lane + 32 * u >= D / 2) continue;
                uint32_t vw = v_s[jj * W + lane + 32 * u];
                float2 vf = __bfloat1622float2(*(const __nv_bfloat162 *)&vw);
#pragma unroll
                for (int j = 0; j < RPW; j++) {
                    acc[j][u][0] = fmaf(pj[j], vf.x, acc[j][u][0]);
                    acc[j][u][1] = fmaf(pj[j], vf.y, acc[j][u][1]);
                }
            }
        }
    }

#pragma unroll
    for (int j = 0; j < RPW; j++) {
        if (!valid[j]) continue;
        int r = r0 + warp + ATT_NW * j;
        size_t row = (size_t)(q0 + r / G) * H + g * G + r % G;
        if (nsplit == 1) {
            float inv = l[j] > 0.f ? 1.f / l[j] : 0.f;
#pragma unroll
            for (int u = 0; u < U; u++)
                if (EXACT || lane + 32 * u < D / 2)
                ((__nv_bfloat162 *)(out + row * D))[lane + 32 * u] =
                    __floats2bfloat162_rn(acc[j][u][0] * inv, acc[j][u][1] * inv);
        } else {
            size_t prow = (size_t)split * T * H + row;
#pragma unroll
            for (int u = 0; u < U; u++)
                if (EXACT || lane + 32 * u < D / 2)
                ((float2 *)(part_o + prow * D))[lane + 32 * u] = make_float2(acc[j][u][0], acc[j][u][1]);
            if (lane == 0) part_ml[prow * 2] = m[j], part_ml[prow * 2 + 1] = l[j];
        }
    }
}

/* Merge the splits' partial results: one CTA of 128 threads per (token, head)
 * row; split weights 2^(m_s - M) computed in parallel into shared memory, then
 * each thread sums its output elements over the splits (independent loads,
 * unrolled so that several are in flight). */
#define CMB_THREADS 128
static __global__ void __launch_bounds__(CMB_THREADS)
attention_combine_kernel(const float *__restrict__ part_o, const float *__restrict__ part_ml, int nsplit, int rows,
                         int D, __nv_bfloat16 *out) {
    extern __shared__ float wsp[]; /* [nsplit] */
    __shared__ float red[CMB_THREADS / 32];
    const int row = blockIdx.x, tid = threadIdx.x;
    float mx = -INFINITY;
    for (int sp = tid; sp < nsplit; sp += CMB_THREADS) mx = fmaxf(mx, part_ml[((size_t)sp * rows + row) * 2]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (tid % 32 == 0) red[tid / 32] = mx;
    __syncthreads();
    float M = red[0];
#pragma unroll
    for (int i = 1; i < CMB_THREADS / 32; i++) M = fmaxf(M, red[i]);
    __syncthreads();
    float ls = 0.f;
    for (int sp = tid; sp < nsplit; sp += CMB_THREADS) {
        float ms = part_ml[((size_t)sp * rows + row) * 2];
        float w = ms == -INFINITY ? 0.f : exp2f(ms - M);
        wsp[sp] = w;
        ls += w * part_ml[((size_t)sp * rows + row) * 2 + 1];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ls += __shfl_xor_sync(0xffffffffu, ls, o);
    if (tid % 32 == 0) red[tid / 32] = ls;
    __syncthreads();
    float L = 0.f;
#pragma unroll
    for (int i = 0; i < CMB_THREADS / 32; i++) L += red[i];
    const float inv = L > 0.f ? 1.f / L : 0.f;
    for (int d = tid; d < D; d += CMB_THREADS) {
        float o = 0.f;
        const float *po = part_o + (size_t)row * D + d;
#pragma unroll 8
        for (int sp = 0; sp < nsplit; sp++) {
            float w = wsp[sp];
            if (w != 0.f) o += w * po[(size_t)sp * rows * D];
        }
        out[(size_t)row * D + d] = __float2bfloat16_rn(o * inv);
    }
}

template <int DP, int RPW, bool EXACT>
static cllm_status launch(const void *q, int q_stride, const void *kc, const void *vc, const cllm_attn_meta *m, int H,
                          int Hkv, int D, float scale, void *out, float *po, float *pml, int nsplit, int split_len,
                          cudaStream_t stream) {
    constexpr int ROWS = ATT_NW * RPW;
    const int G = H / Hkv;
    size_t smem = (size_t)ROWS * D * 4 + 2 * (size_t)ATT_KT * ((D + 2) / 2) * 4;
    static bool attr_set = false;
    if (!attr_set) {
        size_t maxs = (size_t)ROWS * DP * 4 + 2 * (size_t)ATT_KT * ((DP + 2) / 2) * 4;
        if (maxs > 48 * 1024)
            CLLM_CU(cudaFuncSetAttribute(attention_kernel<DP, RPW, EXACT>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)maxs));
        attr_set = true;
    }
    int tiles = (m->max_query_len * G + ROWS - 1) / ROWS;
    dim3 grid((unsigned)(m->num_seqs * tiles), (unsigned)Hkv, (unsigned)nsplit);
    attention_kernel<DP, RPW, EXACT><<<grid, ATT_NW * 32, smem, stream>>>(
        (const __nv_bfloat16 *)q, q_stride, (const __nv_bfloat16 *)kc, (const __nv_bfloat16 *)vc, m->query_start_loc,
        m->seq_lens, m->block_tables, m->max_blocks_per_seq, m->block_size, H, Hkv, scale * 1.4426950408889634f, tiles,
        m->num_tokens, split_len, (__nv_bfloat16 *)out, po, pml, D);
    CLLM_CU_LAUNCH("attention");
    return CLLM_OK;
}

template <int DP, bool EXACT>
static cllm_status launch_d(int rpw, const void *q, int q_stride, const void *kc, const void *vc,
                            const cllm_attn_meta *m, int H, int Hkv, int D, float scale, void *out, float *po,
                            float *pml, int nsplit, int split_len, cudaStream_t st) {
    if (rpw == 1)
        return launch<DP, 1, EXACT>(q, q_stride, kc, vc, m, H, Hkv, D, scale, out, po, pml, nsplit, split_len, st);
    if (rpw == 2)
        return launch<DP, 2, EXACT>(q, q_stride, kc, vc, m, H, Hkv, D, scale, out, po, pml, nsplit, split_len, st);
    return launch<DP, 4, EXACT>(q, q_stride, kc, vc, m, H, Hkv, D, scale, out, po, pml, nsplit, split_len, st);
}

extern "C" cllm_status cllm_cuda_attention(const void *q, int q_stride, const void *k_cache, const void *v_cache,
                                           const cllm_attn_meta *meta, int H, int Hkv, int D, float scale, void *out,
                                           void *workspace, size_t workspace_bytes, int num_sms, cudaStream_t stream) {
    CLLM_ARG(meta && q && k_cache && v_cache && out, "attention: NULL pointer");
    CLLM_ARG(D >= 8 && D <= 256 && D % 8 == 0, "attention: head_dim %d not supported (a multiple of 8, 8..256)", D);
    CLLM_ARG(H > 0 && Hkv > 0 && H % Hkv == 0, "attention: H=%d must be a positive multiple of Hkv=%d", H, Hkv);
    CLLM_ARG(q_stride >= H * D && q_stride % 2 == 0 && cllm_aligned(q, 4),
             "attention: q_stride=%d must be even and >= H*D=%d, q 4-byte aligned", q_stride, H * D);
    CLLM_ARG(cllm_aligned(k_cache, 16) && cllm_aligned(v_cache, 16) && cllm_aligned(out, 4),
             "attention: caches must be 16-byte aligned");
    CLLM_ARG(meta->num_seqs >= 0 && meta->num_tokens >= 0 && meta->block_size > 0 && meta->max_query_len >= 0 &&
                 meta->max_seq_len >= meta->max_query_len && meta->max_blocks_per_seq > 0,
             "attention: bad metadata (S=%d T=%d P=%d max_query_len=%d max_seq_len=%d)", meta->num_seqs,
             meta->num_tokens, meta->block_size, meta->max_query_len, meta->max_seq_len);
    if (meta->num_tokens == 0 || meta->num_seqs == 0) return CLLM_OK;
    const int G = H / Hkv, T = meta->num_tokens;
    int rows = meta->max_query_len * G;
    int rpw = rows <= ATT_NW ? 1 : rows <= 2 * ATT_NW ? 2 : 4;
    const int ROWS = ATT_NW * rpw;
    long row_tiles = (long)meta->num_seqs * ((rows + ROWS - 1) / ROWS); /* the grid's x extent */
    long row_tiles_max = (long)(T * G + ROWS - 1) / ROWS + meta->num_seqs; /* CTAs with rows to do */
    if (row_tiles > row_tiles_max) row_tiles = row_tiles_max;
    long useful = (long)row_tiles * Hkv;
    /* Flash-decoding split: aim for ~16 CTAs per SM (several K/V tiles in flight per SM),
     * each split at least 64 keys long, within the workspace. */
    int nsplit = 1;
    if (num_sms > 0 && useful < 16L * num_sms && meta->max_seq_len > 256) {
        nsplit = (int)((16L * num_sms + useful - 1) / useful);
        int by_len = (meta->max_seq_len + 63) / 64;
        if (nsplit > by_len) nsplit = by_len;
        if (nsplit > 128) nsplit = 128;
        size_t per = (size_t)T * H * (D + 2) * sizeof(float);
        if ((size_t)nsplit * per > workspace_bytes) nsplit = (int)(workspace_bytes / per);
        if (nsplit < 1) nsplit = 1;
    }
    int split_len = (meta->max_seq_len + nsplit - 1) / nsplit;
    split_len = (split_len + ATT_KT - 1) / ATT_KT * ATT_KT;
    if (split_len < ATT_KT) split_len = ATT_KT;
    nsplit = (meta->max_seq_len + split_len - 1) / split_len;
    if (nsplit < 1) nsplit = 1;
    /* Under CUDA-graph capture the launch is replayed with other seq_lens: the host's
     * max_seq_len (the caller passes max_model_len) only bounds nsplit, and each CTA
     * derives its sequence's split length on the device (split_len 0). */
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    CLLM_CU(cudaStreamIsCapturing(stream, &cap));
    if (cap != cudaStreamCaptureStatusNone) split_len = 0;
    float *po = NULL, *pml = NULL;
    if (nsplit > 1) {
        po = (float *)workspace;
        pml = po + (size_t)nsplit * T * H * D;
    }
    cllm_status st;
#define ATT_ARGS rpw, q, q_stride, k_cache, v_cache, meta, H, Hkv, D, scale, out, po, pml, nsplit, split_len, stream
    if (D == 64) st = launch_d<64, true>(ATT_ARGS);
    else if (D == 128) st = launch_d<128, true>(ATT_ARGS);
    else if (D == 256) st = launch_d<256, true>(ATT_ARGS);
    else if (D < 64) st = launch_d<64, false>(ATT_ARGS);
    else if (D < 128) st = launch_d<128, false>(ATT_ARGS);
    else st = launch_d<256, false>(ATT_ARGS);
#undef ATT_ARGS
    if (st != CLLM_OK || nsplit == 1) return st;
    int nrows = T * H;
    attention_combine_kernel<<<nrows, CMB_THREADS, (size_t)nsplit * sizeof(float), stream>>>(po, pml, nsplit, nrows, D,
                                                                                          (__nv_bfloat16 *)out);
    CLLM_CU_LAUNCH("attention_combine");
    return CLLM_OK;
}
