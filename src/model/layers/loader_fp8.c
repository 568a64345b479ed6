/* FP8 linears on load (internal; see loader.h): which storage a (merged)
 * linear gets, and its rows as e4m3 codes with per-output-channel scales,
 * from an FP8 checkpoint (tensor / channel scales) or quantized from a float
 * checkpoint (`--quantization fp8`).
 *
 * Online quantization (quant->online_fp8): each output row n of the whole
 * tensor (all K columns, whichever columns this rank keeps) is quantized with
 * cllm_fp8_quantize_row (core/fp8_quant.h): scale[n] = max(amax_n / 448,
 * 1/(448*512)), codes round-to-nearest-even and saturating. Because the
 * scale reads the whole row, a row-parallel slice (o_proj, down_proj under
 * tensor parallelism) gets the same codes and scales as one rank does, so
 * every layout multiplies by the same weights. vLLM's `--quantization fp8`
 * (Fp8LinearMethod.process_weights_after_loading) uses one scale per tensor
 * instead; per channel is at least as accurate and is what its
 * channel-strategy compressed-tensors checkpoints carry.
 * On a backend without FP8 weights (CPU) the same codes are dequantized
 * (fp8(q) * scale, exact in f32) and uploaded, so the CPU runs the very
 * weights the CUDA backend keeps in FP8. */
#include "core/dtype.h"
#include "core/fp8_quant.h"
#include "core/status.h"
#include "model/layers/loader.h"
#include "model/quant.h"

#include <stdlib.h>
#include <string.h>

/* Elements per host chunk of rows (bounded host memory however large the tensor). */
#define CHUNK_ELEMS ((size_t)4 << 20)

static bool is_float(cllm_dtype t) { return t == CLLM_DTYPE_F32 || t == CLLM_DTYPE_BF16 || t == CLLM_DTYPE_F16; }

static const cllm_quant_config *quant_of(const cllm_loader *L) {
    static const cllm_quant_config none = {0};
    return L->quant ? L->quant : &none;
}

bool cllm_loader_online_fp8(const cllm_loader *L, const char *name) {
    return quant_of(L)->online_fp8 && is_float(cllm_weights_dtype(L->w, name));
}

cllm_status cllm_loader_linear_dtype(cllm_loader *L, int nparts, const char *const *names, const int64_t (*shapes)[2],
                                     int64_t k_local, cllm_dtype *out) {
    *out = CLLM_DTYPE_AUTO;
    if (!L->be->ops->fp8_weights) return CLLM_OK;
    if (k_local % 16 != 0) { /* the FP8 kernels read 16 codes at a time; cuBLASLt's FP8 GEMMs need it too */
        static bool told_k = false;
        if (!told_k && (quant_of(L)->online_fp8 || cllm_weights_dtype(L->w, names[0]) == CLLM_DTYPE_F8_E4M3)) {
            CLLM_LOG_I("%s (and any like it): K = %lld is not a multiple of 16: stored in %s, not FP8", names[0],
                       (long long)k_local, cllm_dtype_name(L->be->act));
            told_k = true;
        }
        return CLLM_OK;
    }
    const cllm_quant_config *q = quant_of(L);
    int keep = 0, ckpt_fp8 = 0;
    for (int i = 0; i < nparts; i++) {
        cllm_dtype dt = cllm_weights_dtype(L->w, names[i]);
        if (is_float(dt)) {
            keep += q->online_fp8;
        } else if (dt == CLLM_DTYPE_F8_E4M3) {
            ckpt_fp8++;
            const cllm_tensor_info *t;
            cllm_quant_fp8 f;
            CLLM_TRY(cllm_weights_get(L->w, names[i], 2, shapes[i], &t));
            cllm_status st = cllm_quant_fp8_open(L->w, q, names[i], t, &f);
            if (st == CLLM_OK) keep += f.layout == CLLM_QUANT_TENSOR || f.layout == CLLM_QUANT_CHANNEL;
            cllm_quant_fp8_close(L->w, &f);
            cllm_weights_release(L->w, t);
            CLLM_TRY(st);
        }
    }
    if (keep == nparts) {
        *out = CLLM_DTYPE_F8_E4M3;
    } else if (ckpt_fp8) {
        static bool told = false;
        if (!told)
            CLLM_LOG_I("%s (and any like it): FP8 weights with block scales (or e5m2, or merged with unquantized "
                       "parts) are dequantized to %s on load; FP8 is kept in memory for e4m3 tensor/channel scales",
                       names[0], cllm_dtype_name(L->be->act));
        told = true;
    }
    return CLLM_OK;
}

/* Rows [m) of a chunk from an FP8 checkpoint tensor: codes of columns
 * [c0, c0 + nc) copied, scales of the rows. */
static void ckpt_rows(const cllm_quant_fp8 *f, int64_t r, int64_t m, int64_t c0, int64_t nc, uint8_t *codes,
                      float *sc) {
    const uint8_t *q = f->weight->data;
    for (int64_t i = 0; i < m; i++) memcpy(codes + i * nc, q + (size_t)(r + i) * (size_t)f->k + c0, (size_t)nc);
    cllm_quant_fp8_row_scales(f, r, m, sc);
}

/* Rows [r, r + m) of a float tensor (Kf columns) quantized per whole row
 * (cllm_fp8_quantize_row); codes of columns [c0, c0 + nc). row: m * Kf
 * floats and fullq: m * Kf bytes of scratch. */
static void online_rows(const cllm_tensor_info *t, int64_t Kf, int64_t r, int64_t m, int64_t c0, int64_t nc,
                        float *row, uint8_t *fullq, uint8_t *codes, float *sc) {
    const size_t es = cllm_dtype_size(t->dtype);
#pragma omp parallel for schedule(static) if (m * Kf > (1 << 16))
    for (int64_t i = 0; i < m; i++) {
        float *x = row + (size_t)i * (size_t)Kf;
        uint8_t *q = fullq + (size_t)i * (size_t)Kf;
        cllm_dtype_convert(x, CLLM_DTYPE_F32, (const char *)t->data + (size_t)(r + i) * (size_t)Kf * es, t->dtype,
                           (size_t)Kf);
        sc[i] = cllm_fp8_quantize_row(x, Kf, q);
        memcpy(codes + i * nc, q + c0, (size_t)nc);
    }
}

cllm_status cllm_loader_put_fp8(cllm_loader *L, const char *name, const int64_t shape[2], const cllm_slice *sl,
                                uint8_t *codes_dst, float *scale_dst, void *act_dst, size_t act_off) {
    const cllm_tensor_info *t;
    CLLM_TRY(cllm_weights_get(L->w, name, 2, shape, &t));
    cllm_quant_fp8 f;
    memset(&f, 0, sizeof f);
    cllm_status st = CLLM_OK;
    const bool ckpt = t->dtype == CLLM_DTYPE_F8_E4M3;
    if (ckpt) st = cllm_quant_fp8_open(L->w, quant_of(L), name, t, &f);
    else if (!is_float(t->dtype))
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s in %s is %s; FP8 weights are quantized from float32, "
                        "bfloat16 or float16 ones", name, t->file, cllm_dtype_name(t->dtype));
    if (st == CLLM_OK && ckpt && f.layout != CLLM_QUANT_TENSOR && f.layout != CLLM_QUANT_CHANNEL)
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s: block-scaled FP8 weights are dequantized on load, not kept "
                        "in FP8", name);
    const int64_t Kf = shape[1], nc = sl->nc;
    int64_t per = (int64_t)(CHUNK_ELEMS / (size_t)(Kf > 0 ? Kf : 1));
    if (per < 1) per = 1;
    if (per > sl->nr) per = sl->nr > 0 ? sl->nr : 1;
    uint8_t *codes = malloc((size_t)(per * nc) + 1);
    float *sc = malloc((size_t)per * sizeof(float));
    float *row = ckpt ? NULL : malloc((size_t)(per * Kf) * sizeof(float));
    uint8_t *fullq = ckpt ? NULL : malloc((size_t)(per * Kf));
    float *deq = act_dst ? malloc((size_t)(per * nc) * sizeof(float) + 4) : NULL;
    if (st == CLLM_OK && (!codes || !sc || (!ckpt && (!row || !fullq)) || (act_dst && !deq)))
        st = cllm_error(CLLM_ERR_OOM, "out of host memory quantizing %s to FP8", name);
    for (int64_t r = 0; st == CLLM_OK && r < sl->nr; r += per) {
        int64_t m = sl->nr - r < per ? sl->nr - r : per;
        if (ckpt) ckpt_rows(&f, sl->r0 + r, m, sl->c0, nc, codes, sc);
        else online_rows(t, Kf, sl->r0 + r, m, sl->c0, nc, row, fullq, codes, sc);
        if (act_dst) { /* a backend without FP8 weights: the same weights, dequantized (exact in f32) */
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < nc; j++) deq[i * nc + j] = cllm_fp8_e4m3_to_f32(codes[i * nc + j]) * sc[i];
            st = L->be->ops->upload(L->be, act_dst, act_off + (size_t)(r * nc), deq, CLLM_DTYPE_F32, (size_t)(m * nc));
        } else {
            st = L->be->ops->h2d(L->be, codes_dst + (size_t)(r * nc), codes, (size_t)(m * nc));
            if (st == CLLM_OK) st = L->be->ops->h2d(L->be, scale_dst + r, sc, (size_t)m * sizeof(float));
            if (st == CLLM_OK) st = L->be->ops->sync(L->be); /* before the host buffers are refilled */
        }
    }
    free(codes), free(sc), free(row), free(fullq), free(deq);
    cllm_quant_fp8_close(L->w, &f);
    cllm_weights_release(L->w, t);
    if (st != CLLM_OK) return cllm_error_wrap(st, "uploading %s as FP8", name);
    L->info->num_params += sl->nr * sl->nc;
    return CLLM_OK;
}
