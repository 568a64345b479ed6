/* Element-wise reductions on host memory for the TCP transport (internal).
 * BF16 and F16 are widened to f32, combined, and rounded back once per call
 * (round to nearest even, core/dtype.h), so every rank that applies the same
 * calls in the same order gets the same bits. */
#ifndef CLLM_DIST_REDUCE_H
#define CLLM_DIST_REDUCE_H

#include "dist/comm.h"

/* dst[i] = a[i] op b[i] for i < n elements of dt (F32, BF16, F16, I32, I64).
 * dst may be a or b (element-wise in place). I32/I64 sums wrap (two's
 * complement, as NCCL). Does not fail: dt/op are checked by the caller. */
void cllm_reduce_apply(void *dst, const void *a, const void *b, size_t n, cllm_dtype dt, cllm_reduce_op op);

#endif
