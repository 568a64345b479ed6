/* Read-only access to a checkpoint's tensors: safetensors files mapped with
 * mmap (single model.safetensors, or shards listed by
 * model.safetensors.index.json), or random "dummy" tensors (vLLM
 * --load-format dummy). Tensor data is borrowed from the mapping; nothing is
 * copied into host RAM.
 * Format: https://huggingface.co/docs/safetensors (8-byte little-endian
 * header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data). */
#ifndef CLLM_MODEL_WEIGHTS_H
#define CLLM_MODEL_WEIGHTS_H

#include "cllm.h"
#include "model/config.h"
#include <stddef.h>
#include <stdint.h>

#define CLLM_MAX_DIMS 4

typedef struct cllm_tensor_info {
    const char *name;               /* borrowed */
    cllm_dtype dtype;               /* F32, BF16, F16, F8_E4M3, F8_E5M2 (others: UNSUPPORTED on get;
                                     * FP8 tensors are dequantized by the loader, model/quant.h) */
    int ndim;
    int64_t shape[CLLM_MAX_DIMS];
    const void *data;               /* borrowed: into the mmap, or dummy buffer */
    size_t nbytes;
    const char *file;               /* borrowed: path of the file holding it */
} cllm_tensor_info;

typedef struct cllm_weights cllm_weights;

/* Open dir/model.safetensors or dir/model.safetensors.index.json and every
 * shard it names. Validates each header fully (length, JSON, dtypes, offsets
 * inside the file, no overlap, sizes = prod(shape) * dtype size). Errors name
 * the file: CLLM_ERR_IO, CLLM_ERR_FORMAT, CLLM_ERR_NOT_FOUND (no weights). */
cllm_status cllm_weights_open(const char *dir, cllm_weights **out);

/* Weights with no files: each cllm_weights_get of a shape returns freshly
 * generated deterministic random data (normal-ish, std 0.02; norm weights
 * named "*norm*" ~ 1) in dtype, derived from (seed, name). */
cllm_status cllm_weights_create_dummy(uint64_t seed, cllm_dtype dtype, cllm_weights **out);

/* Look up name and check its shape (ndim dims of shape; shape NULL: no
 * check, files only). Data is aligned to the element size. Errors:
 * CLLM_ERR_NOT_FOUND "tensor X not found in DIR (N tensors)", CLLM_ERR_FORMAT
 * "tensor X in FILE has shape [..], expected [..]". *out is borrowed and
 * valid until cllm_weights_release(w, *out) or cllm_weights_destroy. */
cllm_status cllm_weights_get(cllm_weights *w, const char *name, int ndim, const int64_t *shape,
                             const cllm_tensor_info **out);
/* True if the tensor exists (dummy: always false, so optional tensors such
 * as lm_head under tie_word_embeddings follow the config). */
bool cllm_weights_has(const cllm_weights *w, const char *name);
/* The stored dtype of tensor name without reading it (dummy: the dummy
 * dtype); CLLM_DTYPE_AUTO when there is no such tensor. */
cllm_dtype cllm_weights_dtype(const cllm_weights *w, const char *name);
/* Tell the source a tensor has been uploaded (dummy frees its buffer; mmap
 * may madvise(DONTNEED)). */
void cllm_weights_release(cllm_weights *w, const cllm_tensor_info *t);
/* Number of tensors (dummy: tensors handed out and not yet released). */
size_t cllm_weights_count(const cllm_weights *w);
/* Total bytes of tensor data (dummy: of the tensors currently held). */
size_t cllm_weights_total_bytes(const cllm_weights *w);
void cllm_weights_destroy(cllm_weights *w);

#endif
