/* Model configuration from a Hugging Face config.json (+ generation_config.json).
 * Field names are the Hugging Face config names. Source: transformers
 * configuration_llama.py / configuration_qwen2.py / configuration_qwen3.py /
 * configuration_mistral.py and modeling_rope_utils.py (llama3 rope_type). */
#ifndef CLLM_MODEL_CONFIG_H
#define CLLM_MODEL_CONFIG_H

#include "cllm.h"
#include <stdbool.h>
#include <stdint.h>

#define CLLM_MAX_EOS 8

typedef enum { CLLM_ROPE_DEFAULT = 0, CLLM_ROPE_LLAMA3 = 1, CLLM_ROPE_LINEAR = 2 } cllm_rope_type;

/* quantization_config of a pre-quantized checkpoint (parsed by quant.c).
 * Which linears are quantized is read from the tensors themselves: a
 * `*.weight` stored as F8_E4M3 / F8_E5M2 is dequantized on load with its
 * scale tensor; those the config leaves out (`ignore`,
 * `modules_to_not_convert`: lm_head) are stored in bf16 and load as usual. */
typedef enum {
    CLLM_QUANT_NONE = 0,            /* no quantization_config */
    CLLM_QUANT_COMPRESSED_TENSORS,  /* quant_method "compressed-tensors", float 8-bit weights */
    CLLM_QUANT_FP8,                 /* quant_method "fp8" (transformers FineGrainedFP8 / vLLM Fp8Config) */
} cllm_quant_method;

typedef enum {
    CLLM_QUANT_TENSOR = 0,          /* one scale per weight: weight_scale [] or [1] */
    CLLM_QUANT_CHANNEL,             /* one per output row: weight_scale [N, 1] */
    CLLM_QUANT_BLOCK,               /* one per (block_n x block_k) tile: [ceil(N/bn), ceil(K/bk)] */
} cllm_quant_strategy;

typedef struct cllm_quant_config {
    cllm_quant_method method;
    cllm_quant_strategy strategy;   /* the weights' scale granularity */
    int block_n, block_k;           /* CLLM_QUANT_BLOCK: rows (output) x columns (input) of a tile */
    bool static_input_scale;        /* activations quantized with stored input_scale (read, unused: the FP8
                                     * linear quantizes activations dynamically per token) */
    bool online_fp8;                /* `--quantization fp8` (not from config.json): quantize the float
                                     * q/k/v/o/gate/up/down weights to e4m3 per output channel on load
                                     * (model/layers/loader_fp8.c) */
} cllm_quant_config;

typedef struct cllm_model_config {
    char model_type[32];            /* "llama" | "mistral" | "qwen2" | "qwen3" | "qwen3_moe" | "mixtral" */
    char architecture[64];          /* architectures[0], e.g. "LlamaForCausalLM" */
    int hidden_size;                /* E */
    int intermediate_size;          /* I */
    int num_hidden_layers;
    int num_attention_heads;        /* H */
    int num_key_value_heads;        /* Hkv (default H) */
    int head_dim;                   /* D (default E / H) */
    int vocab_size;                 /* V */
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    cllm_rope_type rope_type;       /* rope_scaling.rope_type (or .type) */
    double rope_factor;             /* rope_scaling.factor */
    double rope_low_freq_factor;    /* llama3 */
    double rope_high_freq_factor;   /* llama3 */
    int rope_original_max_position_embeddings; /* llama3 */
    bool tie_word_embeddings;
    bool attention_bias;            /* q/k/v projections have bias (Qwen2: always) */
    bool qk_norm;                   /* Qwen3: per-head RMSNorm of q and k before RoPE */
    int sliding_window;             /* 0: none (Mistral v0.3 sets null) */
    cllm_dtype torch_dtype;         /* stored dtype named by config (torch_dtype / dtype) */
    int bos_token_id;               /* -1 if absent */
    int eos_token_ids[CLLM_MAX_EOS];/* eos_token_id as int or list */
    int num_eos_token_ids;

    /* Mixture of experts (qwen3_moe, mixtral); num_experts 0: dense. */
    int num_experts;                /* qwen3_moe num_experts, mixtral num_local_experts */
    int num_experts_per_tok;        /* top-k */
    int moe_intermediate_size;      /* an expert's width (mixtral: intermediate_size) */
    bool norm_topk_prob;            /* renormalize the top-k weights to sum 1 (mixtral: always) */
    int decoder_sparse_step;        /* qwen3_moe: layer l is sparse when (l + 1) % step == 0 */
    uint64_t mlp_only_layers[4];    /* qwen3_moe: bitset of layers (< 256) that stay dense */

    cllm_quant_config quant;        /* quantization_config (method NONE: unquantized) */

    /* generation_config.json (defaults for sampling); present=false if absent. */
    struct {
        bool present;
        bool do_sample;
        float temperature;          /* <0: unset */
        float top_p;                /* <0: unset */
        int top_k;                  /* <0: unset */
        float min_p;                /* <0: unset */
        float repetition_penalty;   /* <0: unset */
    } gen;
} cllm_model_config;

/* Read dir/config.json and, if present, dir/generation_config.json (whose
 * eos_token_id, when given, replaces config's). Validates: known model_type,
 * positive sizes, H % Hkv == 0, a supported quantization_config. Errors name
 * the file and field: CLLM_ERR_IO, CLLM_ERR_FORMAT, CLLM_ERR_UNSUPPORTED
 * (model_type, quant_method). */
cllm_status cllm_config_load(const char *dir, cllm_model_config *cfg);

/* Parse config.json text (src names it in messages). */
cllm_status cllm_config_parse(const char *json, const char *src, cllm_model_config *cfg);

/* Rotary inverse frequencies (D/2 floats, caller-provided), with rope_scaling
 * applied as transformers' _compute_llama3_parameters / linear scaling do. */
void cllm_config_rope_inv_freq(const cllm_model_config *cfg, float *inv_freq);

/* Apply generation_config.json's sampling defaults (temperature, top_p,
 * top_k, min_p) to sp, as vLLM does before the user's overrides. */
void cllm_config_apply_generation(const cllm_model_config *cfg, cllm_sampling_params *sp);

/* True when decoder layer l has a mixture-of-experts MLP (HF
 * Qwen3MoeDecoderLayer: not in mlp_only_layers, num_experts > 0 and
 * (l + 1) % decoder_sparse_step == 0; Mixtral: every layer). */
bool cllm_config_layer_is_moe(const cllm_model_config *cfg, int l);

/* True if id is one of the eos ids. */
bool cllm_config_is_eos(const cllm_model_config *cfg, int id);

#endif
