/* Pre-quantized FP8 checkpoints (internal to src/model/): the
 * quantization_config of config.json, and dequantization of FP8 weights on
 * load (weight = fp8_to_f32(q) * scale, in f32) so that the backends run
 * them in their activation dtype until FP8 GEMMs exist.
 *
 * Layouts read (all symmetric, no zero point):
 *  - compressed-tensors (quant_method "compressed-tensors", format
 *    float-quantized / naive-quantized; neuralmagic/RedHatAI "*-FP8"):
 *    config_groups whose weights are {num_bits: 8, type: float, strategy:
 *    tensor | channel | block}; `W.weight` F8_E4M3 (N, K) and
 *    `W.weight_scale` (F32/BF16/F16) of shape [] or [1] (tensor), [N, 1]
 *    (channel) or [ceil(N/bn), ceil(K/bk)] (block, block_structure [bn, bk]);
 *    `W.input_scale` when input_activations are static.
 *    Sources: compressed_tensors/quantization/quant_args.py and
 *    lifecycle/initialize.py (scale shapes), vLLM
 *    compressed_tensors/schemes/compressed_tensors_w8a8_fp8.py.
 *  - fp8 (quant_method "fp8": transformers' FineGrainedFP8Config, DeepSeek-V3
 *    style, and vLLM's Fp8Config): with weight_block_size [bn, bk],
 *    `W.weight_scale_inv` [ceil(N/bn), ceil(K/bk)] F32 multiplied into each
 *    tile (transformers integrations/finegrained_fp8.py Fp8Dequantize);
 *    without it, one `W.weight_scale` per tensor.
 * Which linears are quantized is read from each tensor's dtype; layers the
 * config excludes (`ignore` / `modules_to_not_convert`, e.g. lm_head) are
 * stored unquantized and load as before. On a backend whose linear takes
 * FP8 weights (CUDA), e4m3 weights with tensor or channel scales stay FP8
 * in memory (model/layers/loader_fp8.c; cllm_quant_fp8_row_scales gives
 * their per-channel scales); block-scaled and e5m2 ones, and all of them on
 * the CPU backend, are dequantized on load. input_scale (static activation
 * scales) is not used: the CUDA FP8 linear quantizes activations
 * dynamically per token. kv_cache_scheme's per-layer self_attn.k_scale /
 * v_scale are read by the architecture (arch/llama.c) and used with
 * --kv-cache-dtype fp8. */
#ifndef CLLM_MODEL_QUANT_H
#define CLLM_MODEL_QUANT_H

#include "model/config.h"
#include "model/weights.h"

#include <jansson.h>

/* Parse root's "quantization_config" (absent or null: method NONE) into q.
 * src names the file in messages. Errors: CLLM_ERR_UNSUPPORTED naming the
 * method or the field that cllm cannot run (awq, gptq, bitsandbytes,
 * compressed-tensors int weights, group strategy, asymmetric scales, ...),
 * CLLM_ERR_FORMAT for malformed fields. */
cllm_status cllm_quant_parse(json_t *root, const char *src, cllm_quant_config *q);

/* One FP8 weight (N, K) and its scale, ready to dequantize. */
typedef struct cllm_quant_fp8 {
    const cllm_tensor_info *weight;   /* borrowed: the F8 (N, K) tensor */
    const cllm_tensor_info *scale;    /* from cllm_weights_get; released by close */
    cllm_quant_strategy layout;       /* read from the scale's shape */
    int64_t n, k;                     /* N, K */
    int64_t bn, bk;                   /* tile of CLLM_QUANT_BLOCK (else N x K) */
    float lut[256];                   /* FP8 code -> f32 */
} cllm_quant_fp8;

/* Find the scale of FP8 tensor `weight` named name ("X.weight": the scale is
 * "X.weight_scale_inv" or "X.weight_scale") in w and read its layout from
 * its shape and q. Errors: CLLM_ERR_UNSUPPORTED (no quantization_config,
 * not 2-D), CLLM_ERR_NOT_FOUND (no scale), CLLM_ERR_FORMAT (a scale shape
 * that fits no layout, or a non-float scale), each naming the tensor. */
cllm_status cllm_quant_fp8_open(cllm_weights *w, const cllm_quant_config *q, const char *name,
                                const cllm_tensor_info *weight, cllm_quant_fp8 *out);

/* Dequantize rows [r0, r0 + nr) x columns [c0, c0 + nc) of the weight into
 * out (nr, nc) f32, row-major, caller-owned: out[i][j] = fp8(q[r0+i][c0+j])
 * * scale(r0 + i, c0 + j) with the scale of that element's tensor / row /
 * tile, computed in f32 (exact products for f32 and bf16 scales). Indices
 * are of the whole tensor, so tensor-parallel slices (column-parallel rows,
 * row-parallel columns starting anywhere in a tile) get their own scales.
 * Host only; multithreaded (OpenMP) over rows. */
void cllm_quant_fp8_rows(const cllm_quant_fp8 *f, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *out);

/* Scales of rows [r0, r0 + nr) of a weight of layout CLLM_QUANT_TENSOR
 * (the one scale repeated) or CLLM_QUANT_CHANNEL into out (nr) f32: the
 * per-output-channel scales the FP8 linear keeps (W[n][k] = fp8(q[n][k]) *
 * out[n]). Not for CLLM_QUANT_BLOCK (the caller dequantizes those). */
void cllm_quant_fp8_row_scales(const cllm_quant_fp8 *f, int64_t r0, int64_t nr, float *out);

/* Release the scale tensor; NULL-safe on a zeroed struct. */
void cllm_quant_fp8_close(cllm_weights *w, cllm_quant_fp8 *f);

#endif
