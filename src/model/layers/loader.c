/* Loading one rank's slices of a checkpoint's tensors onto a backend
 * (internal; shared by every model family): shape checks against the whole
 * tensor, row slices read as contiguous ranges of the mapping, column
 * slices through the strided upload, dtype conversion to the act dtype,
 * parameter and byte counts into the arch info. The layouts are vLLM's
 * ColumnParallelLinear (with merged q/k/v and gate/up parts),
 * RowParallelLinear and VocabParallelEmbedding. */
#include "model/layers/loader.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/quant.h"

#include <stdlib.h>

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Rows of f32 dequantized per upload: bounded host memory (32 MB), however
 * large the tensor. */
#define FP8_CHUNK_ELEMS ((size_t)8 << 20)

/* FP8 weight t (name): dequantize the slice sl (NULL: all of it) in chunks
 * of whole rows to f32 and upload each into dst at element offset off; *n:
 * elements uploaded. */
static cllm_status put_fp8(cllm_loader *L, const char *name, const cllm_tensor_info *t, const cllm_slice *sl,
                           void *dst, size_t off, int64_t *n) {
    static const cllm_quant_config none = {0};
    cllm_quant_fp8 f;
    *n = 0;
    CLLM_TRY(cllm_quant_fp8_open(L->w, L->quant ? L->quant : &none, name, t, &f));
    cllm_slice whole = {0, f.n, 0, f.k};
    if (!sl) sl = &whole;
    size_t per = FP8_CHUNK_ELEMS / (size_t)(sl->nc > 0 ? sl->nc : 1);
    if (per == 0) per = 1;
    if (per > (size_t)sl->nr) per = (size_t)(sl->nr > 0 ? sl->nr : 1);
    float *buf = malloc(per * (size_t)(sl->nc > 0 ? sl->nc : 1) * sizeof(float));
    cllm_status st = buf ? CLLM_OK : cllm_error(CLLM_ERR_OOM, "out of host memory dequantizing %s", name);
    for (int64_t r = 0; st == CLLM_OK && r < sl->nr; r += (int64_t)per) {
        int64_t m = sl->nr - r < (int64_t)per ? sl->nr - r : (int64_t)per;
        cllm_quant_fp8_rows(&f, sl->r0 + r, m, sl->c0, sl->nc, buf);
        st = L->be->ops->upload(L->be, dst, off + (size_t)(r * sl->nc), buf, CLLM_DTYPE_F32, (size_t)(m * sl->nc));
    }
    free(buf);
    cllm_quant_fp8_close(L->w, &f);
    *n = sl->nr * sl->nc;
    return st;
}

/* Upload tensor `name` (shape-checked against the whole tensor) into dst at
 * element offset off: all of it (sl NULL) or the cllm_slice sl (row slices are
 * contiguous in the mapping; column slices go through the strided upload). */
cllm_status cllm_loader_put(cllm_loader *L, const char *name, int ndim, const int64_t *shape, const cllm_slice *sl, void *dst,
                       size_t off) {
    const cllm_tensor_info *t;
    CLLM_TRY(cllm_weights_get(L->w, name, ndim, shape, &t));
    cllm_status st;
    int64_t cols = ndim == 2 ? shape[1] : 1, n;
    if (t->dtype == CLLM_DTYPE_F8_E4M3 || t->dtype == CLLM_DTYPE_F8_E5M2) {
        st = put_fp8(L, name, t, sl, dst, off, &n);
    } else if (!sl) {
        n = numel(ndim, shape);
        st = L->be->ops->upload(L->be, dst, off, t->data, t->dtype, (size_t)n);
    } else {
        size_t es = cllm_dtype_size(t->dtype);
        const char *src = (const char *)t->data + ((size_t)sl->r0 * (size_t)cols + (size_t)sl->c0) * es;
        n = sl->nr * sl->nc;
        st = cllm_backend_upload2d(L->be, dst, off, src, t->dtype, (size_t)sl->nr, (size_t)sl->nc, (size_t)cols);
    }
    cllm_weights_release(L->w, t);
    if (st != CLLM_OK) return cllm_error_wrap(st, "uploading %s", name);
    L->info->num_params += n;
    return CLLM_OK;
}

cllm_status cllm_loader_alloc(cllm_loader *L, size_t n, void **out) {
    size_t bytes = n * cllm_dtype_size(L->be->act);
    CLLM_TRY(L->be->ops->alloc(L->be, bytes, out));
    L->info->weight_bytes += bytes;
    return CLLM_OK;
}

/* A 1-D tensor of length n: name (replicated on every rank). */
cllm_status cllm_loader_vec(cllm_loader *L, const char *name, int64_t n, void **out) {
    CLLM_TRY(cllm_loader_alloc(L, (size_t)n, out));
    return cllm_loader_put(L, name, 1, &n, NULL, *out, 0);
}

/* FP8 storage of an (N, K) linear: N * K code bytes and N f32 scales,
 * counted as weight bytes. */
static cllm_status alloc_fp8(cllm_loader *L, int64_t N, int64_t K, cllm_weight *out) {
    out->dtype = CLLM_DTYPE_F8_E4M3;
    CLLM_TRY(L->be->ops->alloc(L->be, (size_t)(N * K), &out->data));
    void *sc;
    CLLM_TRY(L->be->ops->alloc(L->be, (size_t)N * sizeof(float), &sc));
    out->scale = sc;
    L->info->weight_bytes += (size_t)(N * K) + (size_t)N * sizeof(float);
    return CLLM_OK;
}

/* One part (slice sl of the whole 2-D tensor name, shape) of an act-dtype
 * weight at element offset off: `--quantization fp8` float tensors go
 * through the FP8 codes (quantized, dequantized), the rest as stored. */
static cllm_status put_act_part(cllm_loader *L, const char *name, const int64_t shape[2], const cllm_slice *sl,
                                void *dst, size_t off) {
    if (cllm_loader_online_fp8(L, name)) return cllm_loader_put_fp8(L, name, shape, sl, NULL, NULL, dst, off);
    return cllm_loader_put(L, name, 2, shape, sl, dst, off);
}

/* Column-parallel fused weight: part i is the rows [row0[i], row0[i] +
 * rows[i]) of the whole (full_rows[i], K) tensor names[i]; the parts are
 * stacked row-wise into one (sum rows, K) weight; with bias_names, the
 * matching slices of the (full_rows[i]) biases too. FP8 (codes + per-row
 * scales) where cllm_loader_linear_dtype says so. */
cllm_status cllm_loader_column_parallel(cllm_loader *L, int nparts, const char *const *names, const char *const *bias_names,
                              const int64_t *full_rows, const int64_t *row0, const int64_t *rows, int64_t K,
                              cllm_weight *out) {
    int64_t N = 0, shapes[8][2];
    CLLM_ASSERT(nparts <= 8);
    for (int i = 0; i < nparts; i++) N += rows[i], shapes[i][0] = full_rows[i], shapes[i][1] = K;
    out->n = N;
    out->k = K;
    cllm_dtype dt;
    CLLM_TRY(cllm_loader_linear_dtype(L, nparts, names, (const int64_t(*)[2])shapes, K, &dt));
    if (dt == CLLM_DTYPE_F8_E4M3) CLLM_TRY(alloc_fp8(L, N, K, out));
    else CLLM_TRY(cllm_loader_alloc(L, (size_t)(N * K), &out->data));
    if (bias_names) CLLM_TRY(cllm_loader_alloc(L, (size_t)N, &out->bias));
    int64_t r = 0;
    for (int i = 0; i < nparts; i++) {
        cllm_slice sl = {row0[i], rows[i], 0, K}, bl = {row0[i], rows[i], 0, 1};
        if (dt == CLLM_DTYPE_F8_E4M3)
            CLLM_TRY(cllm_loader_put_fp8(L, names[i], shapes[i], &sl, (uint8_t *)out->data + r * K, out->scale + r,
                                         NULL, 0));
        else CLLM_TRY(put_act_part(L, names[i], shapes[i], &sl, out->data, (size_t)(r * K)));
        if (bias_names) CLLM_TRY(cllm_loader_put(L, bias_names[i], 1, &full_rows[i], &bl, out->bias, (size_t)r));
        r += rows[i];
    }
    return CLLM_OK;
}

/* Row-parallel weight: the columns [c0, c0 + nc) of the whole (N, K) tensor
 * name; its (N) bias (bias_name, may be NULL) only where with_bias (rank 0:
 * added once before the all-reduce). FP8 where cllm_loader_linear_dtype says
 * so (scales of whole rows). */
cllm_status cllm_loader_row_parallel(cllm_loader *L, const char *name, const char *bias_name, bool with_bias, int64_t N,
                                     int64_t K, int64_t c0, int64_t nc, cllm_weight *out) {
    out->n = N;
    out->k = nc;
    int64_t shape[1][2] = {{N, K}};
    cllm_slice sl = {0, N, c0, nc};
    cllm_dtype dt;
    CLLM_TRY(cllm_loader_linear_dtype(L, 1, &name, (const int64_t(*)[2])shape, nc, &dt));
    if (dt == CLLM_DTYPE_F8_E4M3) {
        CLLM_TRY(alloc_fp8(L, N, nc, out));
        CLLM_TRY(cllm_loader_put_fp8(L, name, shape[0], &sl, out->data, out->scale, NULL, 0));
    } else {
        CLLM_TRY(cllm_loader_alloc(L, (size_t)(N * nc), &out->data));
        CLLM_TRY(put_act_part(L, name, shape[0], &sl, out->data, 0));
    }
    if (bias_name && with_bias) {
        CLLM_TRY(cllm_loader_alloc(L, (size_t)N, &out->bias));
        CLLM_TRY(cllm_loader_put(L, bias_name, 1, &N, NULL, out->bias, 0));
    }
    return CLLM_OK;
}

/* Vocabulary-parallel (V, E) table: this rank's Vp rows, the real ones from
 * name and zero padding past the vocabulary. */
cllm_status cllm_loader_vocab(cllm_loader *L, const cllm_shard *sh, const char *name, int64_t E, void **out) {
    int64_t Vp = sh->vocab_per_rank, V = sh->vocab_size;
    CLLM_TRY(cllm_loader_alloc(L, (size_t)(Vp * E), out));
    int64_t shape[2] = {V, E};
    if (sh->vocab_rows > 0) {
        cllm_slice sl = {sh->vocab_start, sh->vocab_rows, 0, E};
        CLLM_TRY(cllm_loader_put(L, name, 2, shape, sh->tp_size > 1 ? &sl : NULL, *out, 0));
    }
    if (sh->vocab_rows < Vp)
        CLLM_TRY(cllm_backend_upload_zeros(L->be, *out, (size_t)(sh->vocab_rows * E),
                                           (size_t)((Vp - sh->vocab_rows) * E)));
    return CLLM_OK;
}

