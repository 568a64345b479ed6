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
#include <cuda_fp8.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATT_NW 4
#define ATT_KT 32

/* Caches in fp8 (KV8): float8_e4m3fn codes, converted exactly to f16 on read
 * (every e4m3 value is an f16 value; one cvt.rn.f16x2.e4m3x2 per pair); the
 * layer's k_scale is folded into the score scale and v_scale into the output
 * (the kernels see cache values x / scale, so attention over the dequantized
 * K/V, as the CPU op computes it, up to the rounding of P). The tensor-core
 * kernels then multiply in f16 (mma_f16_16816), the CUDA-core one in fp32. */
static __device__ __forceinline__ uint32_t fp8x2_to_f16x2(uint32_t two) {
    uint32_t h;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(h) : "h"((unsigned short)two));
    return h;
}
static __device__ __forceinline__ uint4 fp8x8_to_f16x8(uint2 a) {
    return make_uint4(fp8x2_to_f16x2(a.x & 0xffffu), fp8x2_to_f16x2(a.x >> 16), fp8x2_to_f16x2(a.y & 0xffffu),
                      fp8x2_to_f16x2(a.y >> 16));
}
/* Eight consecutive cache elements at element offset off (16 bytes): bf16 as stored,
 * or fp8 codes as f16. */
template <bool KV8>
static __device__ __forceinline__ uint4 kv_load8(const void *base, size_t off) {
    if constexpr (KV8) return fp8x8_to_f16x8(__ldg((const uint2 *)((const uint8_t *)base + off)));
    else return __ldg((const uint4 *)((const __nv_bfloat16 *)base + off));
}
/* One word of kv_load8's output (two elements) as floats. */
template <bool KV8> static __device__ __forceinline__ float2 pair_to_float2(uint32_t w) {
    if constexpr (KV8) return __half22float2(*(const __half2 *)&w);
    else return __bfloat1622float2(*(const __nv_bfloat162 *)&w);
}

/* DP: the compiled head-dim bound (64, 128, 256); EXACT: D == DP (fully unrolled
 * fast path), else D (a multiple of 8, <= DP) is read at run time. */
template <int DP, int RPW, bool EXACT, bool KV8>
static __global__ void __launch_bounds__(ATT_NW * 32)
attention_kernel(const __nv_bfloat16 *__restrict__ q, int q_stride, const void *__restrict__ kc,
                 const void *__restrict__ vc, const int32_t *__restrict__ qsl,
                 const int32_t *__restrict__ seq_lens, const int32_t *__restrict__ block_tables, int mbps, int P,
                 int H, int Hkv, float qscale, float vscale, int tiles_per_seq, int T, int split_len,
                 __nv_bfloat16 *out, float *part_o, float *part_ml, int d_rt) {
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
                rk[n] = kv_load8<KV8>(kc, off);
                rv[n] = kv_load8<KV8>(vc, off);
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
            float2 kf = pair_to_float2<KV8>(kw);
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
                float2 vf = pair_to_float2<KV8>(vw);
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
            float inv = l[j] > 0.f ? vscale / l[j] : 0.f;
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
                ((float2 *)(part_o + prow * D))[lane + 32 * u] =
                    make_float2(acc[j][u][0] * vscale, acc[j][u][1] * vscale);
            if (lane == 0) part_ml[prow * 2] = m[j], part_ml[prow * 2 + 1] = l[j];
        }
    }
}

/* ---- Decode path (every sequence has at most one new token), tensor cores ----
 *
 * A CTA takes one sequence s, one KV head g and one context split z of
 * nsplit; the splits interleave in 16-key groups: warp w of split z takes groups
 * (z * DEC_NW + w) + i * DEC_NW * nsplit, so every split gets an equal share of
 * any seq_len (the split count, fixed by max_seq_len, stays balanced when a
 * captured graph replays shorter sequences). Each K/V byte is read once for all
 * G = H/Hkv query heads (G <= 8).
 * Per group a warp computes S^T (16 keys x 8 heads) = K Q^T and O^T (D x 8
 * heads) += V^T P^T with mma.sync m16n8k16 (bf16 in, fp32 accumulate); K and V
 * go straight from global memory into the mma fragments with 16-byte loads:
 * the contraction index of each product is permuted (dims of QK^T, keys of PV)
 * so that every thread's fragment elements are 8 consecutive bf16 of one row,
 * and the V pairs are regrouped by byte permutes. Q (bf16, unscaled) lives in
 * registers; scores are scaled in fp32 (log2 units, exp2f); online softmax per
 * head with the row max shared by shuffles; P is rounded to bf16 for the PV
 * product (as FlashAttention-2 does). The warps' (m, l, O) are merged through
 * shared memory; with one split the CTA writes bf16 output, else fp32
 * partials indexed (split, s, h) that attention_combine_kernel merges.
 * Fragment layouts: PTX ISA, "Matrix Fragments for mma.m16n8k16". */
#define DEC_NW 4

static __device__ __forceinline__ void mma_bf16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                      uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* The tensor-core kernels over an fp8 cache multiply in f16 (mma .f16, fp32
 * accumulate): e4m3 codes become f16 pairs in one instruction, where bf16
 * would take four, and that conversion bounded the fp8 decode kernel (34 %
 * of copy on an H100 with bf16, 84 % with f16). q (bf16) is converted to f16
 * once, saturated at +-65504; P is rounded to f16 (finer than bf16). */
static __device__ __forceinline__ void mma_f16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                     uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <bool F16>
static __device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                uint32_t b0, uint32_t b1) {
    if constexpr (F16) mma_f16_16816(d, a0, a1, a2, a3, b0, b1);
    else mma_bf16_16816(d, a0, a1, a2, a3, b0, b1);
}
template <bool F16> static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    if constexpr (F16) {
        __half2 h = __floats2half2_rn(lo, hi);
        return *(uint32_t *)&h;
    } else {
        return pack_bf16x2(lo, hi);
    }
}
static __device__ __forceinline__ uint32_t bf16x2_to_f16x2(uint32_t w) {
    const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&w);
    return pack2<true>(fminf(fmaxf(f.x, -65504.f), 65504.f), fminf(fmaxf(f.y, -65504.f), 65504.f));
}

/* Adaptive split (min_split > 0): a decode row of slen keys uses as many of the
 * launch's nsplit splits as the host's rule gives for max_seq_len = slen (one per
 * min_split keys, at least one); the CTAs of the other splits return at once and
 * the combine kernel merges only those (or skips the row: one split wrote its
 * output). A graph captured for max_model_len then costs a short sequence what
 * an eager launch sized for it would. */
static __device__ __forceinline__ int dec_splits(int slen, int nsplit, int min_split) {
    if (min_split <= 0) return nsplit;
    return min(nsplit, max(1, (slen + min_split - 1) / min_split));
}

template <int D, bool KV8>
static __global__ void __launch_bounds__(DEC_NW * 32, D <= 128 ? 4 : 1)
attention_decode_kernel(const __nv_bfloat16 *__restrict__ q, int q_stride, const void *__restrict__ kc,
                        const void *__restrict__ vc, const int32_t *__restrict__ qsl,
                        const int32_t *__restrict__ seq_lens, const int32_t *__restrict__ block_tables, int mbps,
                        int P, int H, int Hkv, float qscale, float vscale, int S, __nv_bfloat16 *out,
                        float *part_o, float *part_ml, int min_split) {
    constexpr int KS = D / 16;  /* k-steps of Q K^T; also m-tiles of V^T P^T */
    constexpr int KJ = D / 32;  /* 16-byte K chunks per key per thread */
    constexpr int VC = D / 64;  /* 16-byte V chunks per key per thread */
    __shared__ __align__(16) float o_s[DEC_NW][8][D + 4];
    __shared__ float m_s[DEC_NW][8], l_s[DEC_NW][8];

    const int g = blockIdx.x, s = blockIdx.y, split = blockIdx.z;
    const int G = H / Hkv, warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 4, t = lane % 4;
    const int q0 = qsl[s], qlen = qsl[s + 1] - q0, slen = seq_lens[s];
    const int kend = qlen > 0 ? slen : 0;
    const int nsplit = dec_splits(slen, gridDim.z, min_split);
    if (split >= nsplit) return; /* CTA-uniform */

    /* Q^T fragments: head r (zero for r >= G), dims 32j + 8t + [0, 8) of k-steps 2j, 2j+1. */
    uint32_t qf[KS][2];
#pragma unroll
    for (int j = 0; j < KJ; j++) {
        uint32_t w[4] = {0u, 0u, 0u, 0u};
        if (r < G && qlen > 0) {
            const uint32_t *qp =
                (const uint32_t *)(q + (size_t)q0 * q_stride + (size_t)(g * G + r) * D + 32 * j + 8 * t);
#pragma unroll
            for (int e = 0; e < 4; e++) w[e] = qp[e];
        }
        if constexpr (KV8)
            for (int e = 0; e < 4; e++) w[e] = bf16x2_to_f16x2(w[e]);
        qf[2 * j][0] = w[0], qf[2 * j][1] = w[1], qf[2 * j + 1][0] = w[2], qf[2 * j + 1][1] = w[3];
    }

    float acc[KS][4];
#pragma unroll
    for (int i = 0; i < KS; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f; /* heads 2t, 2t+1 */
    const int32_t *bt = block_tables + (size_t)s * mbps;
    const bool blk16 = P % 16 == 0;
    const size_t rowD = (size_t)Hkv * D;
    const uint32_t sel = (r & 1) ? 0x7632u : 0x5410u;

    for (int k0 = 16 * (split * DEC_NW + warp); k0 < kend; k0 += 16 * DEC_NW * nsplit) {
        /* Row offsets (elements) of the keys this thread loads: K keys r, r+8; V keys 2t, 2t+1, 2t+8, 2t+9. */
        const int kk[6] = {r, r + 8, 2 * t, 2 * t + 1, 2 * t + 8, 2 * t + 9};
        size_t off[6];
        if (blk16) {
            size_t base = ((size_t)bt[k0 / P] * P + k0 % P) * rowD + (size_t)g * D;
#pragma unroll
            for (int i = 0; i < 6; i++) off[i] = base + kk[i] * rowD;
        } else {
#pragma unroll
            for (int i = 0; i < 6; i++) {
                int kp = min(k0 + kk[i], kend - 1);
                off[i] = ((size_t)bt[kp / P] * P + kp % P) * rowD + (size_t)g * D;
            }
        }
        uint4 kr[2][KJ], vr[4][VC];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const bool ok = k0 + kk[h] < kend;
#pragma unroll
            for (int j = 0; j < KJ; j++)
                kr[h][j] = ok ? kv_load8<KV8>(kc, off[h] + 32 * j + 8 * t) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int h = 0; h < 4; h++) {
            const bool ok = k0 + kk[2 + h] < kend;
#pragma unroll
            for (int c = 0; c < VC; c++)
                vr[h][c] = ok ? kv_load8<KV8>(vc, off[2 + h] + 8 * (r + 8 * c)) : make_uint4(0, 0, 0, 0);
        }

        /* S^T = K Q^T: c0/c1 key r heads 2t/2t+1, c2/c3 key r+8. */
        float sc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            mma16816<KV8>(sc, kr[0][j].x, kr[1][j].x, kr[0][j].y, kr[1][j].y, qf[2 * j][0], qf[2 * j][1]);
            mma16816<KV8>(sc, kr[0][j].z, kr[1][j].z, kr[0][j].w, kr[1][j].w, qf[2 * j + 1][0], qf[2 * j + 1][1]);
        }
        const bool v0 = k0 + r < kend, v1 = k0 + r + 8 < kend;
        float x0 = v0 ? sc[0] * qscale : -INFINITY, x1 = v0 ? sc[1] * qscale : -INFINITY;
        float x2 = v1 ? sc[2] * qscale : -INFINITY, x3 = v1 ? sc[3] * qscale : -INFINITY;
        float mx0 = fmaxf(x0, x2), mx1 = fmaxf(x1, x3);
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
        const float c0 = exp2f(m0 - mu0), c1 = exp2f(m1 - mu1);
        const float p0 = exp2f(x0 - mu0), p1 = exp2f(x1 - mu1), p2 = exp2f(x2 - mu0), p3 = exp2f(x3 - mu1);
        m0 = mn0, m1 = mn1;
        l0 = l0 * c0 + p0 + p2, l1 = l1 * c1 + p1 + p3;
#pragma unroll
        for (int i = 0; i < KS; i++) acc[i][0] *= c0, acc[i][1] *= c1, acc[i][2] *= c0, acc[i][3] *= c1;

        /* P^T fragment: b0 = P[keys 2t, 2t+1][head r], b1 = P[keys 2t+8, 2t+9][head r]. */
        const uint32_t plo = pack2<KV8>(p0, p1), phi = pack2<KV8>(p2, p3);
        const int src = 8 * t + r / 2;
        const uint32_t y0 = __shfl_sync(0xffffffffu, plo, src), y1 = __shfl_sync(0xffffffffu, plo, src + 4);
        const uint32_t z0 = __shfl_sync(0xffffffffu, phi, src), z1 = __shfl_sync(0xffffffffu, phi, src + 4);
        const uint32_t b0 = __byte_perm(y0, y1, sel), b1 = __byte_perm(z0, z1, sel);

        /* O^T += V^T P^T; m-tile i covers chunk c = i / 4, word w = i % 4 of the thread's V chunks. */
#pragma unroll
        for (int i = 0; i < KS; i++) {
            const int c = i / 4, w = i % 4;
            const uint32_t va = (&vr[0][c].x)[w], vb = (&vr[1][c].x)[w], vc8 = (&vr[2][c].x)[w],
                           vd = (&vr[3][c].x)[w];
            mma16816<KV8>(acc[i], __byte_perm(va, vb, 0x5410), __byte_perm(va, vb, 0x7632),
                           __byte_perm(vc8, vd, 0x5410), __byte_perm(vc8, vd, 0x7632), b0, b1);
        }
    }

    /* Per-warp results to shared memory: heads 2t, 2t+1; dims (r + 8c) * 8 + 2w (+1). */
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, o);
        l1 += __shfl_xor_sync(0xffffffffu, l1, o);
    }
#pragma unroll
    for (int i = 0; i < KS; i++) {
        const int d = (r + 8 * (i / 4)) * 8 + 2 * (i % 4);
        *(float2 *)&o_s[warp][2 * t][d] = make_float2(acc[i][0], acc[i][2]);
        *(float2 *)&o_s[warp][2 * t + 1][d] = make_float2(acc[i][1], acc[i][3]);
    }
    if (r == 0) {
        m_s[warp][2 * t] = m0, m_s[warp][2 * t + 1] = m1;
        l_s[warp][2 * t] = l0, l_s[warp][2 * t + 1] = l1;
    }
    __syncthreads();
    if (qlen <= 0) return;
    for (int i = threadIdx.x; i < G * (D / 2); i += DEC_NW * 32) {
        const int h = i / (D / 2), d = 2 * (i % (D / 2));
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_NW; w++) M = fmaxf(M, m_s[w][h]);
        float L = 0.f, ox = 0.f, oy = 0.f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < DEC_NW; w++) {
                const float wt = exp2f(m_s[w][h] - M);
                L += wt * l_s[w][h];
                ox += wt * o_s[w][h][d], oy += wt * o_s[w][h][d + 1];
            }
        }
        const int hq = g * G + h;
        if (nsplit == 1) {
            const float inv = L > 0.f ? vscale / L : 0.f;
            *(__nv_bfloat162 *)(out + ((size_t)q0 * H + hq) * D + d) = __floats2bfloat162_rn(ox * inv, oy * inv);
        } else {
            const size_t prow = ((size_t)split * S + s) * H + hq;
            *(float2 *)(part_o + prow * D + d) = make_float2(ox * vscale, oy * vscale);
            if (d == 0) part_ml[prow * 2] = M, part_ml[prow * 2 + 1] = L;
        }
    }
}

/* ---- Prefill chunks and mixed batches, tensor cores (FlashAttention-2 schedule) ----
 *
 * Dao, "FlashAttention-2" (2023), section 3: a CTA of PF_NW warps takes one
 * sequence s, one KV head g, one context split z and a tile of PF_BM = 64 rows,
 * a row being a (new token, query head of group g) pair as in attention_kernel,
 * so each K/V tile staged in shared memory serves every query head of the group
 * (GQA) and several tokens. Warp w owns rows 16w..16w+15: S = Q K^T (16 x BN) and
 * O += P V (16 x D) with mma.sync m16n8k16 (bf16 in, fp32 accumulate); operands
 * come from shared memory by ldmatrix (.trans for V), rows of 16-byte chunks
 * XOR-swizzled (chunk c of row r at c ^ (r & 7)) so that the 8 rows of an
 * 8x8 matrix fall in 8 different bank groups. Q's fragments stay in registers
 * for D <= 128. K/V tiles (BN keys, read through the block table) are double
 * buffered: cp.async brings tile i+1 while tile i is computed; an fp8 cache's
 * codes come by 8-byte cp.async into a raw double buffer, and each thread
 * converts its own entries to f16 (exact; the fp8 kernels multiply in f16, see
 * mma_f16_16816) once they land. Online
 * softmax in fp32, log2 units (exp2f), P rounded to bf16 for the PV product as
 * in FlashAttention-2; rows of a quad (4 lanes) share their max by shuffles.
 * Causal mask per row (key <= the row's position) and per split (key < kend);
 * a warp whose rows all precede a tile skips it. Tiles are taken in reverse
 * order so that the longest rows of a causal prompt start first. With one
 * split the CTA writes bf16 output; else fp32 partials (split, token, head)
 * that attention_combine_kernel merges. Fragment layouts: PTX ISA "Matrix
 * Fragments for mma.m16n8k16" and "ldmatrix". */
#define PF_NW 4
#define PF_BM (PF_NW * 16)

template <int D, bool KV8> struct pf_shape {
    static constexpr int BN = D <= 128 ? 64 : 32; /* keys per K/V tile */
    /* Q tile + 2 K + 2 V tiles (bf16), bytes; fp8: + the raw codes of 2 K + 2 V tiles */
    static constexpr int SMEM = (PF_BM + 4 * BN) * D * 2 + (KV8 ? 4 * BN * D : 0);
};

static __device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
/* 16 (8) bytes global -> shared, asynchronously; src_bytes 0 writes zeros (src is not read). */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
static __device__ __forceinline__ void cp_async8(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

template <int D, bool KV8>
static __global__ void __launch_bounds__(PF_NW * 32)
attention_prefill_kernel(const __nv_bfloat16 *__restrict__ q, int q_stride, const void *__restrict__ kc,
                         const void *__restrict__ vc, const int32_t *__restrict__ qsl,
                         const int32_t *__restrict__ seq_lens, const int32_t *__restrict__ block_tables, int mbps,
                         int P, int H, int Hkv, float qscale, float vscale, int tiles_per_seq, int T, int split_len,
                         __nv_bfloat16 *out, float *part_o, float *part_ml) {
    constexpr int BN = pf_shape<D, KV8>::BN, C8 = D / 8, KS = D / 16, NT = BN / 8;
    constexpr int NLD = BN * C8 / (PF_NW * 32); /* 8-element chunks of a K (V) tile per thread */
    constexpr bool QREG = D <= 128;
    extern __shared__ __align__(128) uint4 pf_smem[];
    uint4 *q_s = pf_smem;                 /* [PF_BM][C8] 16-byte chunks, swizzled */
    uint4 *k_s = q_s + PF_BM * C8;        /* [2][BN][C8] */
    uint4 *v_s = k_s + 2 * BN * C8;       /* [2][BN][C8] */
    uint2 *raw = (uint2 *)(v_s + 2 * BN * C8); /* fp8: [2 tiles][K, V][BN * C8] codes, 8 per entry */

    const int G = H / Hkv, g = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
    const int s = blockIdx.x / tiles_per_seq, tile = tiles_per_seq - 1 - blockIdx.x % tiles_per_seq;
    const int q0 = qsl[s], qlen = qsl[s + 1] - q0, slen = seq_lens[s];
    const int nrows = qlen * G, r0 = tile * PF_BM;
    if (r0 >= nrows) return;
    const int ctx0 = slen - qlen, last = min(r0 + PF_BM, nrows) - 1;
    /* split_len 0 (CUDA-graph capture): this sequence's own split length. */
    if (split_len == 0) split_len = max(BN, ((slen + nsplit - 1) / nsplit + BN - 1) / BN * BN);
    const int kbeg = split * split_len, kend = min(kbeg + split_len, ctx0 + last / G + 1);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, t = lane % 4;

    for (int i = tid; i < PF_BM * C8; i += PF_NW * 32) {
        const int r = i / C8, c = i % C8, R = r0 + r;
        const bool ok = R < nrows;
        const __nv_bfloat16 *src =
            ok ? q + (size_t)(q0 + R / G) * q_stride + (size_t)(g * G + R % G) * D + c * 8 : q;
        cp_async16(smem_u32(q_s + r * C8 + (c ^ (r & 7))), src, ok ? 16 : 0);
    }
    const int32_t *bt = block_tables + (size_t)s * mbps;
    /* Issue tile kt's loads: bf16 straight into K/V buffer buf (swizzled); fp8 codes into
     * raw tile buf (this thread's own entries, converted by convert_kv after the wait). */
    auto load_kv = [&](int kt, int buf) {
#pragma unroll
        for (int n = 0; n < NLD; n++) {
            const int i = tid + n * PF_NW * 32, key = i / C8, c = i % C8, kp = kt + key;
            const bool ok = kp < kend;
            const size_t off = ok ? (((size_t)bt[kp / P] * P + kp % P) * Hkv + g) * D + c * 8 : 0;
            if constexpr (KV8) {
                uint2 *r = raw + (size_t)buf * 2 * BN * C8;
                cp_async8(smem_u32(r + i), (const uint8_t *)kc + off, ok ? 8 : 0);
                cp_async8(smem_u32(r + BN * C8 + i), (const uint8_t *)vc + off, ok ? 8 : 0);
            } else {
                const int dst = (buf * BN + key) * C8 + (c ^ (key & 7));
                cp_async16(smem_u32(k_s + dst), (const __nv_bfloat16 *)kc + off, ok ? 16 : 0);
                cp_async16(smem_u32(v_s + dst), (const __nv_bfloat16 *)vc + off, ok ? 16 : 0);
            }
        }
    };
    /* fp8: this thread's codes of raw tile buf -> bf16 K/V buffer buf (exact). */
    auto convert_kv = [&](int buf) {
#pragma unroll
        for (int n = 0; n < NLD; n++) {
            const int i = tid + n * PF_NW * 32, key = i / C8, c = i % C8;
            const int dst = (buf * BN + key) * C8 + (c ^ (key & 7));
            const uint2 *r = raw + (size_t)buf * 2 * BN * C8;
            k_s[dst] = fp8x8_to_f16x8(r[i]);
            v_s[dst] = fp8x8_to_f16x8(r[BN * C8 + i]);
        }
    };

    /* This thread's rows: 16 * warp + lane / 4 (a) and + 8 (b); their causal bounds (-1: no row). */
    const int ra = r0 + warp * 16 + lane / 4, rb = ra + 8;
    const int pa = ra < nrows ? ctx0 + ra / G : -1, pb = rb < nrows ? ctx0 + rb / G : -1;
    int wmax = max(pa, pb);
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));

    float acc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
    float ma = -INFINITY, mb = -INFINITY, la = 0.f, lb = 0.f;
    uint32_t qa[QREG ? KS : 1][4];

    const int ntiles = kbeg < kend ? (kend - kbeg + BN - 1) / BN : 0;
    if (ntiles > 0) load_kv(kbeg, 0);
    cp_async_commit();
    const uint32_t q_base = smem_u32(q_s), k_base = smem_u32(k_s), v_base = smem_u32(v_s);
    /* ldmatrix row / chunk of this lane: Q (A, 16 x 16), K (B of QK^T, two n-tiles), V (B of PV, .trans). */
    const int a_row = warp * 16 + lane % 16, a_ch = lane / 16;
    const int k_row = lane % 8 + (lane / 16) * 8, k_ch = (lane / 8) & 1;
    const int v_row = lane % 8 + ((lane / 8) & 1) * 8, v_ch = lane / 16;
#define PF_SW(row, ch) ((uint32_t)(((row) * C8 + ((ch) ^ ((row) & 7))) * 16))

    for (int it = 0; it < ntiles; it++) {
        const int kt = kbeg + it * BN, buf = it & 1;
        if constexpr (KV8) { /* tile it's codes landed (own entries): convert, then bring tile it+1's */
            cp_async_wait<0>();
            convert_kv(buf);
            if (it + 1 < ntiles) {
                load_kv(kt + BN, buf ^ 1);
                cp_async_commit();
            }
        } else if (it + 1 < ntiles) {
            load_kv(kt + BN, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (QREG && it == 0) {
#pragma unroll
            for (int ks = 0; ks < (QREG ? KS : 0); ks++) {
                ldsm_x4(qa[ks], q_base + PF_SW(a_row, 2 * ks + a_ch));
                if constexpr (KV8)
                    for (int e = 0; e < 4; e++) qa[ks][e] = bf16x2_to_f16x2(qa[ks][e]);
            }
        }
        if (kt <= wmax) {
            float sc[NT][4];
#pragma unroll
            for (int j = 0; j < NT; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                uint32_t a[4];
                if constexpr (QREG) {
                    a[0] = qa[ks][0], a[1] = qa[ks][1], a[2] = qa[ks][2], a[3] = qa[ks][3];
                } else {
                    ldsm_x4(a, q_base + PF_SW(a_row, 2 * ks + a_ch));
                    if constexpr (KV8)
                        for (int e = 0; e < 4; e++) a[e] = bf16x2_to_f16x2(a[e]);
                }
#pragma unroll
                for (int nb = 0; nb < NT / 2; nb++) {
                    uint32_t b[4];
                    ldsm_x4(b, k_base + PF_SW(buf * BN + 16 * nb + k_row, 2 * ks + k_ch));
                    mma16816<KV8>(sc[2 * nb], a[0], a[1], a[2], a[3], b[0], b[1]);
                    mma16816<KV8>(sc[2 * nb + 1], a[0], a[1], a[2], a[3], b[2], b[3]);
                }
            }
            /* Mask, scale (log2 units), online softmax of rows a (c0, c1) and b (c2, c3). */
            float mxa = -INFINITY, mxb = -INFINITY;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int kp = kt + 8 * j + 2 * t;
                sc[j][0] = (kp <= pa && kp < kend) ? sc[j][0] * qscale : -INFINITY;
                sc[j][1] = (kp + 1 <= pa && kp + 1 < kend) ? sc[j][1] * qscale : -INFINITY;
                sc[j][2] = (kp <= pb && kp < kend) ? sc[j][2] * qscale : -INFINITY;
                sc[j][3] = (kp + 1 <= pb && kp + 1 < kend) ? sc[j][3] * qscale : -INFINITY;
                mxa = fmaxf(mxa, fmaxf(sc[j][0], sc[j][1]));
                mxb = fmaxf(mxb, fmaxf(sc[j][2], sc[j][3]));
            }
#pragma unroll
            for (int o = 1; o < 4; o <<= 1) {
                mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, o));
                mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, o));
            }
            const float mna = fmaxf(ma, mxa), mnb = fmaxf(mb, mxb);
            const float mua = mna == -INFINITY ? 0.f : mna, mub = mnb == -INFINITY ? 0.f : mnb;
            const float ca = exp2f(ma - mua), cb = exp2f(mb - mub);
            ma = mna, mb = mnb;
            float sa = 0.f, sb = 0.f;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                sc[j][0] = exp2f(sc[j][0] - mua), sc[j][1] = exp2f(sc[j][1] - mua);
                sc[j][2] = exp2f(sc[j][2] - mub), sc[j][3] = exp2f(sc[j][3] - mub);
                sa += sc[j][0] + sc[j][1], sb += sc[j][2] + sc[j][3];
            }
            la = la * ca + sa, lb = lb * cb + sb;
#pragma unroll
            for (int i = 0; i < D / 8; i++) acc[i][0] *= ca, acc[i][1] *= ca, acc[i][2] *= cb, acc[i][3] *= cb;
            /* O += P V: P's A fragment is two n-tiles of S (keys 16kk..16kk+15) rounded to bf16. */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                const uint32_t a0 = pack2<KV8>(sc[2 * kk][0], sc[2 * kk][1]);
                const uint32_t a1 = pack2<KV8>(sc[2 * kk][2], sc[2 * kk][3]);
                const uint32_t a2 = pack2<KV8>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
                const uint32_t a3 = pack2<KV8>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
                for (int db = 0; db < D / 16; db++) {
                    uint32_t b[4];
                    ldsm_x4_t(b, v_base + PF_SW(buf * BN + 16 * kk + v_row, 2 * db + v_ch));
                    mma16816<KV8>(acc[2 * db], a0, a1, a2, a3, b[0], b[1]);
                    mma16816<KV8>(acc[2 * db + 1], a0, a1, a2, a3, b[2], b[3]);
                }
            }
        }
        __syncthreads();
    }
#undef PF_SW
    cp_async_wait<0>();

#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
        la += __shfl_xor_sync(0xffffffffu, la, o);
        lb += __shfl_xor_sync(0xffffffffu, lb, o);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int R = h ? rb : ra;
        if (R >= nrows) continue;
        const float L = h ? lb : la, M = h ? mb : ma;
        const size_t row = (size_t)(q0 + R / G) * H + g * G + R % G;
        if (nsplit == 1) {
            const float inv = L > 0.f ? vscale / L : 0.f;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *(__nv_bfloat162 *)(out + row * D + 8 * j + 2 * t) =
                    __floats2bfloat162_rn(acc[j][2 * h] * inv, acc[j][2 * h + 1] * inv);
        } else {
            const size_t prow = (size_t)split * T * H + row;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *(float2 *)(part_o + prow * D + 8 * j + 2 * t) =
                    make_float2(acc[j][2 * h] * vscale, acc[j][2 * h + 1] * vscale);
            if (t == 0) part_ml[prow * 2] = M, part_ml[prow * 2 + 1] = L;
        }
    }
}

/* Merge the splits' partial results: one CTA of 128 threads per partial row;
 * split weights 2^(m_s - M) computed in parallel into shared memory; then the
 * threads form groups of D/2 (each thread two output elements), group k sums
 * splits k, k + ngroups, ... (independent loads in flight), and the groups'
 * sums are added through shared memory. Partial row `row` is output row `row`
 * (qsl == NULL), or with qsl (decode layout, rows = S * H) sequence row / H,
 * head row % H, written to token qsl[s] (skipped when s has no new token). */
#define CMB_THREADS 128
static __global__ void __launch_bounds__(CMB_THREADS)
attention_combine_kernel(const float *__restrict__ part_o, const float *__restrict__ part_ml, int nsplit, int rows,
                         int D, const int32_t *__restrict__ qsl, int H, __nv_bfloat16 *out,
                         const int32_t *__restrict__ seq_lens, int min_split) {
    extern __shared__ __align__(16) float wsp[]; /* [nsplit] weights, then [CMB_THREADS * 2] group sums */
    __shared__ float red[CMB_THREADS / 32];
    const int row = blockIdx.x, tid = threadIdx.x;
    size_t orow = row;
    if (qsl) {
        const int s = row / H, h = row % H, q0 = qsl[s];
        if (qsl[s + 1] <= q0) return;
        orow = (size_t)q0 * H + h;
        nsplit = dec_splits(seq_lens[s], nsplit, min_split); /* the decode kernel's splits of this row */
        if (nsplit == 1) return;                            /* it wrote the output itself */
    }
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
    const int half = D / 2, ng = CMB_THREADS / half, grp = tid / half, e = tid % half;
    float *gs = wsp + ((nsplit + 1) & ~1); /* [ng][half] float2, 8-byte aligned */
    float2 o = make_float2(0.f, 0.f);
    if (grp < ng) {
        const float2 *po = (const float2 *)(part_o + (size_t)row * D) + e;
#pragma unroll 4
        for (int sp = grp; sp < nsplit; sp += ng) {
            const float w = wsp[sp];
            const float2 v = po[(size_t)sp * rows * half];
            if (w != 0.f) o.x += w * v.x, o.y += w * v.y;
        }
        if (ng > 1) ((float2 *)gs)[grp * half + e] = o;
    }
    if (ng > 1) {
        __syncthreads();
        if (grp == 0)
            for (int k = 1; k < ng; k++) {
                float2 v = ((float2 *)gs)[k * half + e];
                o.x += v.x, o.y += v.y;
            }
    }
    if (grp == 0 && e < half)
        ((__nv_bfloat162 *)(out + orow * D))[e] = __floats2bfloat162_rn(o.x * inv, o.y * inv);
}

/* Split the context of a decode batch: about `cllm_attn_dec_ctas_per_sm` CTAs per SM
 * in all, at least cllm_attn_dec_min_split keys of max_seq_len per split, at most
 * DEC_MAX_SPLIT splits,
 * within the workspace. Depends only on (S, Hkv, max_seq_len, H, D, num_sms,
 * workspace_bytes): a captured CUDA graph replays correctly for any seq_lens <=
 * max_seq_len. */
#define DEC_MAX_SPLIT 256
static int cllm_attn_dec_ctas_per_sm = 16;
static int cllm_attn_dec_min_split = 512;

extern "C" void cllm_cuda_attention_tune(int ctas_per_sm, int min_split_keys) {
    if (ctas_per_sm > 0) cllm_attn_dec_ctas_per_sm = ctas_per_sm;
    if (min_split_keys > 0) cllm_attn_dec_min_split = min_split_keys;
}

/* Adaptive decode split (dec_splits): off by default until measured on a GPU;
 * CLLM_CUDA_ATTN_ADAPTIVE_SPLIT=1 or cllm_cuda_attention_adaptive_split(1) turns it on. */
static int cllm_attn_dec_adaptive = -1;
extern "C" void cllm_cuda_attention_adaptive_split(int on) { cllm_attn_dec_adaptive = on != 0; }
static bool adaptive_split(void) {
    if (cllm_attn_dec_adaptive < 0) {
        const char *e = getenv("CLLM_CUDA_ATTN_ADAPTIVE_SPLIT");
        cllm_attn_dec_adaptive = e && !strcmp(e, "1");
    }
    return cllm_attn_dec_adaptive != 0;
}

/* The cache's element format as the kernels see it: kv8 (fp8 codes) and the
 * scales folded into the score scale (qs, log2 units) and the output (vs). */
typedef struct {
    bool kv8;
    float qs, vs;
} att_fmt;

template <int D, bool KV8>
static cllm_status launch_decode(const void *q, int q_stride, const void *kc, const void *vc, const cllm_attn_meta *m,
                                 int H, int Hkv, att_fmt f, void *out, void *ws, size_t ws_bytes, int num_sms,
                                 cudaStream_t stream) {
    const int S = m->num_seqs, maxlen = m->max_seq_len > 0 ? m->max_seq_len : 1;
    long base = (long)S * Hkv;
    int nsplit = 1;
    long target = (long)cllm_attn_dec_ctas_per_sm * (num_sms > 0 ? num_sms : 1);
    if (base < target) nsplit = (int)((target + base - 1) / base);
    int by_len = (maxlen + cllm_attn_dec_min_split - 1) / cllm_attn_dec_min_split;
    if (nsplit > by_len) nsplit = by_len;
    if (nsplit > DEC_MAX_SPLIT) nsplit = DEC_MAX_SPLIT;
    const size_t per = (size_t)S * H * (D + 2) * sizeof(float);
    if (nsplit > 1 && (size_t)nsplit * per > ws_bytes) nsplit = (int)(ws_bytes / per);
    if (nsplit < 1 || !ws) nsplit = 1;
    float *po = NULL, *pml = NULL;
    if (nsplit > 1) {
        po = (float *)ws;
        pml = po + (size_t)nsplit * S * H * D;
    }
    const int min_split = nsplit > 1 && adaptive_split() ? cllm_attn_dec_min_split : 0;
    dim3 grid((unsigned)Hkv, (unsigned)S, (unsigned)nsplit);
    attention_decode_kernel<D, KV8><<<grid, DEC_NW * 32, 0, stream>>>(
        (const __nv_bfloat16 *)q, q_stride, kc, vc, m->query_start_loc, m->seq_lens, m->block_tables,
        m->max_blocks_per_seq, m->block_size, H, Hkv, f.qs, f.vs, S, (__nv_bfloat16 *)out, po, pml, min_split);
    CLLM_CU_LAUNCH("attention_decode");
    if (nsplit == 1) return CLLM_OK;
    const int rows = S * H, ng = CMB_THREADS / (D / 2);
    size_t smem = (size_t)(nsplit + 1) * sizeof(float) + (ng > 1 ? (size_t)CMB_THREADS * 2 * sizeof(float) : 0);
    attention_combine_kernel<<<rows, CMB_THREADS, smem, stream>>>(po, pml, nsplit, rows, D, m->query_start_loc, H,
                                                                  (__nv_bfloat16 *)out, m->seq_lens, min_split);
    CLLM_CU_LAUNCH("attention_combine");
    return CLLM_OK;
}

/* The split-K partials (T * H rows, fp32) of nsplit splits merged into out. */
static cllm_status combine_rows(const float *po, const float *pml, int nsplit, int T, int H, int D, void *out,
                                cudaStream_t stream) {
    const int nrows = T * H, ng = CMB_THREADS / (D / 2);
    size_t smem = (size_t)(nsplit + 1) * sizeof(float) + (ng > 1 ? (size_t)CMB_THREADS * 2 * sizeof(float) : 0);
    attention_combine_kernel<<<nrows, CMB_THREADS, smem, stream>>>(po, pml, nsplit, nrows, D, NULL, H,
                                                                   (__nv_bfloat16 *)out, NULL, 0);
    CLLM_CU_LAUNCH("attention_combine");
    return CLLM_OK;
}

/* Split count and length for a prefill / mixed launch whose grid has `useful`
 * CTAs with rows to do: split while the grid is below target CTAs, each split at
 * least min_keys long (a multiple of kt), at most max_split, within the
 * workspace. Under CUDA-graph capture *split_len is 0: the launch is replayed
 * with other seq_lens, the host's max_seq_len only bounds nsplit and each CTA
 * derives its sequence's split length on the device. */
static cllm_status plan_split(const cllm_attn_meta *m, int H, int D, long useful, long target, int min_keys,
                              int max_split, int kt, size_t ws_bytes, cudaStream_t stream, int *nsplit_out,
                              int *split_len_out) {
    int nsplit = 1;
    if (useful < target && m->max_seq_len > min_keys) {
        nsplit = (int)((target + useful - 1) / useful);
        int by_len = (m->max_seq_len + min_keys - 1) / min_keys;
        if (nsplit > by_len) nsplit = by_len;
        if (nsplit > max_split) nsplit = max_split;
        size_t per = (size_t)m->num_tokens * H * (D + 2) * sizeof(float);
        if ((size_t)nsplit * per > ws_bytes) nsplit = (int)(ws_bytes / per);
        if (nsplit < 1) nsplit = 1;
    }
    int split_len = (m->max_seq_len + nsplit - 1) / nsplit;
    split_len = (split_len + kt - 1) / kt * kt;
    if (split_len < kt) split_len = kt;
    nsplit = (m->max_seq_len + split_len - 1) / split_len;
    if (nsplit < 1) nsplit = 1;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    CLLM_CU(cudaStreamIsCapturing(stream, &cap));
    if (cap != cudaStreamCaptureStatusNone) split_len = 0;
    *nsplit_out = nsplit;
    *split_len_out = split_len;
    return CLLM_OK;
}

template <int D, bool KV8>
static cllm_status launch_prefill(const void *q, int q_stride, const void *kc, const void *vc,
                                  const cllm_attn_meta *m, int H, int Hkv, att_fmt f, void *out, void *ws,
                                  size_t ws_bytes, int num_sms, cudaStream_t stream) {
    constexpr int BN = pf_shape<D, KV8>::BN, SMEM = pf_shape<D, KV8>::SMEM;
    static bool attr_set = false;
    if (!attr_set) {
        CLLM_CU(cudaFuncSetAttribute(attention_prefill_kernel<D, KV8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     SMEM));
        attr_set = true;
    }
    const int S = m->num_seqs, T = m->num_tokens, G = H / Hkv;
    const int tiles = (m->max_query_len * G + PF_BM - 1) / PF_BM;
    long ctas = (long)S * tiles, ctas_max = ((long)T * G + PF_BM - 1) / PF_BM + S;
    long useful = (ctas < ctas_max ? ctas : ctas_max) * Hkv;
    /* About two CTAs fit an SM (SMEM bytes each): split the context while the grid is
     * under two waves, each split at least 4 tiles long. */
    int nsplit, split_len;
    CLLM_TRY(plan_split(m, H, D, useful, 2L * (num_sms > 0 ? num_sms : 1), 4 * BN, 64, BN, ws ? ws_bytes : 0,
                        stream, &nsplit, &split_len));
    float *po = NULL, *pml = NULL;
    if (nsplit > 1) {
        po = (float *)ws;
        pml = po + (size_t)nsplit * T * H * D;
    }
    dim3 grid((unsigned)(S * tiles), (unsigned)Hkv, (unsigned)nsplit);
    attention_prefill_kernel<D, KV8><<<grid, PF_NW * 32, SMEM, stream>>>(
        (const __nv_bfloat16 *)q, q_stride, kc, vc, m->query_start_loc, m->seq_lens, m->block_tables,
        m->max_blocks_per_seq, m->block_size, H, Hkv, f.qs, f.vs, tiles, T, split_len, (__nv_bfloat16 *)out, po,
        pml);
    CLLM_CU_LAUNCH("attention_prefill");
    return nsplit > 1 ? combine_rows(po, pml, nsplit, T, H, D, out, stream) : CLLM_OK;
}

template <int DP, int RPW, bool EXACT, bool KV8>
static cllm_status launch(const void *q, int q_stride, const void *kc, const void *vc, const cllm_attn_meta *m, int H,
                          int Hkv, int D, att_fmt f, void *out, float *po, float *pml, int nsplit, int split_len,
                          cudaStream_t stream) {
    constexpr int ROWS = ATT_NW * RPW;
    const int G = H / Hkv;
    size_t smem = (size_t)ROWS * D * 4 + 2 * (size_t)ATT_KT * ((D + 2) / 2) * 4;
    static bool attr_set = false;
    if (!attr_set) {
        size_t maxs = (size_t)ROWS * DP * 4 + 2 * (size_t)ATT_KT * ((DP + 2) / 2) * 4;
        if (maxs > 48 * 1024)
            CLLM_CU(cudaFuncSetAttribute(attention_kernel<DP, RPW, EXACT, KV8>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)maxs));
        attr_set = true;
    }
    int tiles = (m->max_query_len * G + ROWS - 1) / ROWS;
    dim3 grid((unsigned)(m->num_seqs * tiles), (unsigned)Hkv, (unsigned)nsplit);
    attention_kernel<DP, RPW, EXACT, KV8><<<grid, ATT_NW * 32, smem, stream>>>(
        (const __nv_bfloat16 *)q, q_stride, kc, vc, m->query_start_loc, m->seq_lens, m->block_tables,
        m->max_blocks_per_seq, m->block_size, H, Hkv, f.qs, f.vs, tiles, m->num_tokens, split_len,
        (__nv_bfloat16 *)out, po, pml, D);
    CLLM_CU_LAUNCH("attention");
    return CLLM_OK;
}

template <int DP, bool EXACT, bool KV8>
static cllm_status launch_d(int rpw, const void *q, int q_stride, const void *kc, const void *vc,
                            const cllm_attn_meta *m, int H, int Hkv, int D, att_fmt f, void *out, float *po,
                            float *pml, int nsplit, int split_len, cudaStream_t st) {
    if (rpw == 1)
        return launch<DP, 1, EXACT, KV8>(q, q_stride, kc, vc, m, H, Hkv, D, f, out, po, pml, nsplit, split_len, st);
    if (rpw == 2)
        return launch<DP, 2, EXACT, KV8>(q, q_stride, kc, vc, m, H, Hkv, D, f, out, po, pml, nsplit, split_len, st);
    return launch<DP, 4, EXACT, KV8>(q, q_stride, kc, vc, m, H, Hkv, D, f, out, po, pml, nsplit, split_len, st);
}

/* The CUDA-core kernel (attention_kernel): any head_dim multiple of 8 up to 256. */
template <bool KV8>
static cllm_status launch_general(const void *q, int q_stride, const void *kc, const void *vc,
                                  const cllm_attn_meta *m, int H, int Hkv, int D, att_fmt f, void *out, void *ws,
                                  size_t ws_bytes, int num_sms, cudaStream_t stream) {
    const int G = H / Hkv, T = m->num_tokens;
    int rows = m->max_query_len * G;
    int rpw = rows <= ATT_NW ? 1 : rows <= 2 * ATT_NW ? 2 : 4;
    const int ROWS = ATT_NW * rpw;
    long row_tiles = (long)m->num_seqs * ((rows + ROWS - 1) / ROWS); /* the grid's x extent */
    long row_tiles_max = (long)(T * G + ROWS - 1) / ROWS + m->num_seqs; /* CTAs with rows to do */
    if (row_tiles > row_tiles_max) row_tiles = row_tiles_max;
    /* Flash-decoding split: aim for ~16 CTAs per SM (several K/V tiles in flight per SM),
     * each split at least 64 keys long (from 256 keys of context on), at most 128. */
    int nsplit = 1, split_len = 0;
    if (m->max_seq_len > 256 && num_sms > 0)
        CLLM_TRY(plan_split(m, H, D, row_tiles * Hkv, 16L * num_sms, 64, 128, ATT_KT, ws ? ws_bytes : 0, stream,
                            &nsplit, &split_len));
    else
        CLLM_TRY(plan_split(m, H, D, 1, 1, 64, 1, ATT_KT, 0, stream, &nsplit, &split_len));
    float *po = NULL, *pml = NULL;
    if (nsplit > 1) {
        po = (float *)ws;
        pml = po + (size_t)nsplit * T * H * D;
    }
    cllm_status st;
#define ATT_ARGS rpw, q, q_stride, kc, vc, m, H, Hkv, D, f, out, po, pml, nsplit, split_len, stream
    if (D == 64) st = launch_d<64, true, KV8>(ATT_ARGS);
    else if (D == 128) st = launch_d<128, true, KV8>(ATT_ARGS);
    else if (D == 256) st = launch_d<256, true, KV8>(ATT_ARGS);
    else if (D < 64) st = launch_d<64, false, KV8>(ATT_ARGS);
    else if (D < 128) st = launch_d<128, false, KV8>(ATT_ARGS);
    else st = launch_d<256, false, KV8>(ATT_ARGS);
#undef ATT_ARGS
    if (st != CLLM_OK || nsplit == 1) return st;
    return combine_rows(po, pml, nsplit, T, H, D, out, stream);
}

/* CLLM_CUDA_ATTN_PREFILL=fma: prefill and mixed batches on the CUDA-core kernel
 * (the path before the tensor-core one; for A/B benchmarks). Read once. */
static bool prefill_on_tensor_cores(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("CLLM_CUDA_ATTN_PREFILL");
        v = !(e && !strcmp(e, "fma"));
    }
    return v != 0;
}

template <bool KV8>
static cllm_status dispatch(const void *q, int q_stride, const void *kc, const void *vc, const cllm_attn_meta *m,
                            int H, int Hkv, int D, att_fmt f, void *out, void *ws, size_t ws_bytes, int num_sms,
                            cudaStream_t stream) {
    const int G = H / Hkv;
    const bool dexact = D == 64 || D == 128 || D == 256;
    /* Pure decode, G <= 8: the tensor-core decode kernel. */
    if (m->max_query_len <= 1 && G <= 8 && dexact) {
        if (D == 64) return launch_decode<64, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
        if (D == 128) return launch_decode<128, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
        return launch_decode<256, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
    }
    /* Prefill chunks / mixed batches (and decode with G > 8): the tensor-core prefill kernel
     * (16-byte cp.async of q rows: q 16-byte aligned, q_stride a multiple of 8). */
    if (dexact && q_stride % 8 == 0 && cllm_aligned(q, 16) && prefill_on_tensor_cores()) {
        if (D == 64) return launch_prefill<64, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
        if (D == 128) return launch_prefill<128, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
        return launch_prefill<256, KV8>(q, q_stride, kc, vc, m, H, Hkv, f, out, ws, ws_bytes, num_sms, stream);
    }
    return launch_general<KV8>(q, q_stride, kc, vc, m, H, Hkv, D, f, out, ws, ws_bytes, num_sms, stream);
}

extern "C" cllm_status cllm_cuda_attention(const void *q, int q_stride, const void *k_cache, const void *v_cache,
                                           const cllm_attn_meta *meta, int H, int Hkv, int D, float scale, void *out,
                                           const cllm_kv_quant *kvq, void *workspace, size_t workspace_bytes,
                                           int num_sms, cudaStream_t stream) {
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
    const bool kv8 = kvq && kvq->dtype == CLLM_DTYPE_F8_E4M3;
    CLLM_ARG(!kvq || kv8 || kvq->dtype == CLLM_DTYPE_AUTO || kvq->dtype == CLLM_DTYPE_BF16,
             "attention: KV cache dtype %d (bf16 or fp8 e4m3)", kvq ? (int)kvq->dtype : 0);
    CLLM_ARG(!kv8 || (kvq->k_scale > 0.f && kvq->v_scale > 0.f && isfinite(kvq->k_scale) && isfinite(kvq->v_scale)),
             "attention: fp8 KV scales must be positive and finite (k_scale %g, v_scale %g)",
             kv8 ? kvq->k_scale : 0.f, kv8 ? kvq->v_scale : 0.f);
    if (meta->num_tokens == 0 || meta->num_seqs == 0) return CLLM_OK;
    const float log2e = 1.4426950408889634f;
    att_fmt f = {kv8, scale * log2e * (kv8 ? kvq->k_scale : 1.f), kv8 ? kvq->v_scale : 1.f};
    if (kv8)
        return dispatch<true>(q, q_stride, k_cache, v_cache, meta, H, Hkv, D, f, out, workspace, workspace_bytes,
                              num_sms, stream);
    return dispatch<false>(q, q_stride, k_cache, v_cache, meta, H, Hkv, D, f, out, workspace, workspace_bytes,
                           num_sms, stream);
}
