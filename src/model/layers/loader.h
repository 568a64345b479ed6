/* Loading one rank's slices of a checkpoint's tensors (internal; shared by
 * every model family, see loader.c). Every function shape-checks the whole
 * tensor in the checkpoint (cllm_weights_get), uploads the slice in the
 * backend's act dtype and counts parameters and bytes into info. FP8
 * weights (F8_E4M3 / F8_E5M2 with a scale tensor, model/quant.h) are
 * dequantized on the host in bounded chunks of the slice and uploaded in the
 * act dtype, except the linears of column_parallel / row_parallel that stay
 * FP8 on a backend with FP8 weights (loader_fp8.c: cllm_weight.dtype
 * F8_E4M3 with per-channel scales), which `--quantization fp8` also makes
 * from float checkpoints. Errors: those of cllm_weights_get (CLLM_ERR_NOT_FOUND /
 * CLLM_ERR_FORMAT naming the tensor), of cllm_quant_fp8_open, the backend
 * (CLLM_ERR_OOM), the upload. */
#ifndef CLLM_MODEL_LAYERS_LOADER_H
#define CLLM_MODEL_LAYERS_LOADER_H

#include "backend/backend.h"
#include "model/arch/arch.h"
#include "model/shard.h"
#include "model/weights.h"

typedef struct cllm_loader {
    cllm_backend *be;
    cllm_weights *w;
    cllm_arch_info *info;
    const cllm_quant_config *quant;  /* borrowed: the config's quantization_config */
} cllm_loader;

/* A slice of a 2-D tensor (rows, cols): rows [r0, r0 + nr), columns
 * [c0, c0 + nc); a 1-D tensor uses the rows only. */
typedef struct cllm_slice {
    int64_t r0, nr, c0, nc;
} cllm_slice;

/* Upload tensor name (ndim, shape: the whole tensor) into dst at element
 * offset off: all of it (sl NULL) or the slice sl. */
cllm_status cllm_loader_put(cllm_loader *L, const char *name, int ndim, const int64_t *shape, const cllm_slice *sl,
                            void *dst, size_t off);
/* Allocate n act elements on the backend (counted as weight bytes). */
cllm_status cllm_loader_alloc(cllm_loader *L, size_t n, void **out);
/* A 1-D tensor of length n, replicated on every rank. */
cllm_status cllm_loader_vec(cllm_loader *L, const char *name, int64_t n, void **out);
/* Column parallel, merged: part i is rows [row0[i], row0[i] + rows[i]) of
 * the whole (full_rows[i], K) tensor names[i], stacked row-wise into one
 * (sum rows, K) weight; with bias_names, the matching bias slices too. */
cllm_status cllm_loader_column_parallel(cllm_loader *L, int nparts, const char *const *names,
                                        const char *const *bias_names, const int64_t *full_rows, const int64_t *row0,
                                        const int64_t *rows, int64_t K, cllm_weight *out);
/* Row parallel: columns [c0, c0 + nc) of the whole (N, K) tensor name; its
 * (N) bias (bias_name may be NULL) only where with_bias (rank 0 of the
 * group: added once before the all-reduce). */
cllm_status cllm_loader_row_parallel(cllm_loader *L, const char *name, const char *bias_name, bool with_bias,
                                     int64_t N, int64_t K, int64_t c0, int64_t nc, cllm_weight *out);
/* ---- FP8 linears (loader_fp8.c) ----
 * The storage column_parallel / row_parallel give a linear of nparts
 * tensors (names[i] of whole shape shapes[i]): F8_E4M3 where the backend
 * takes FP8 weights (ops->fp8_weights) and every part is either an e4m3
 * checkpoint tensor with tensor or channel scales or a float one under
 * quant->online_fp8 (`--quantization fp8`), and this rank's K (k_local) is
 * a multiple of 16; else AUTO (the act dtype: FP8 checkpoint tensors
 * dequantized, block-scaled ones always). Errors: those of cllm_weights_get /
 * cllm_quant_fp8_open. */
cllm_status cllm_loader_linear_dtype(cllm_loader *L, int nparts, const char *const *names, const int64_t (*shapes)[2],
                                     int64_t k_local, cllm_dtype *out);
/* True when tensor name is a float one that `--quantization fp8` quantizes
 * (on an act-dtype linear: through cllm_loader_put_fp8's act_dst). */
bool cllm_loader_online_fp8(const cllm_loader *L, const char *name);
/* The slice sl of 2-D tensor name (whole shape shape) as e4m3 codes and
 * per-row scales: from an e4m3 checkpoint (tensor / channel scales) or
 * quantized per whole output row (online, core/fp8_quant.h). act_dst NULL:
 * codes (sl->nr, sl->nc) to the device bytes codes_dst and scales (sl->nr)
 * f32 to scale_dst. act_dst set: the dequantized values fp8(q) * scale
 * uploaded in the act dtype at element offset act_off instead (CPU backend,
 * `--quantization fp8`). Counts sl->nr * sl->nc parameters (bytes are
 * counted by the caller's allocation). Errors: CLLM_ERR_UNSUPPORTED (block
 * scales, not a float or e4m3 tensor), CLLM_ERR_OOM, upload errors. */
cllm_status cllm_loader_put_fp8(cllm_loader *L, const char *name, const int64_t shape[2], const cllm_slice *sl,
                                uint8_t *codes_dst, float *scale_dst, void *act_dst, size_t act_off);

/* Vocabulary parallel (V, E) table: this rank's vocab_per_rank rows, the
 * real ones from name, zeros past the vocabulary. */
cllm_status cllm_loader_vocab(cllm_loader *L, const cllm_shard *sh, const char *name, int64_t E, void **out);

#endif
