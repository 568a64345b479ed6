/* One safetensors file, mapped read-only (internal to src/model/).
 * Format: https://huggingface.co/docs/safetensors: 8-byte little-endian
 * header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
 * "__metadata__": {...}}, then the data section; data_offsets [begin, end)
 * are relative to the start of the data section (byte 8 + N). */
#ifndef CLLM_MODEL_SAFETENSORS_H
#define CLLM_MODEL_SAFETENSORS_H

#include "model/weights.h"

/* Largest header accepted (the reference reader's limit is 100 MB too). */
#define CLLM_ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef struct cllm_st_tensor {
    char *name;                  /* owned */
    cllm_dtype dtype;
    int ndim;
    int64_t shape[CLLM_MAX_DIMS];
    size_t begin, end;           /* bytes, relative to the data section */
} cllm_st_tensor;

typedef struct cllm_st_file {
    char *path;                  /* owned */
    void *map;                   /* whole file, PROT_READ, MAP_PRIVATE */
    size_t size_bytes;           /* file size */
    size_t data_offset;          /* 8 + N */
    cllm_st_tensor *tensors;     /* owned, n of them, in header order */
    size_t n;
} cllm_st_file;

/* Map path and validate its header fully: length (>= 8 bytes file, N within
 * the file and <= 100 MB), JSON object, each entry an object with a known
 * dtype, a shape of <= 4 non-negative ints and data_offsets [begin, end] with
 * begin <= end <= data size, end - begin = prod(shape) * dtype size, no two
 * tensors overlapping. Errors name the file (and tensor): CLLM_ERR_IO (open,
 * mmap), CLLM_ERR_FORMAT (corrupt), CLLM_ERR_UNSUPPORTED (> 4 dims). */
cllm_status cllm_st_open(const char *path, cllm_st_file **out);
/* Unmap and free; NULL is a no-op. */
void cllm_st_close(cllm_st_file *f);
/* Map a safetensors dtype string ("BF16") to cllm_dtype; -1 if unknown. */
int cllm_st_parse_dtype(const char *s, cllm_dtype *out);

#endif
