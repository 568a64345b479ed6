/* config.json / generation_config.json parsing (jansson).
 *
 * Defaults follow the transformers configuration classes (4.4x, and 5.x
 * `rope_parameters`), field by field, for keys absent from config.json:
 *
 *   field                    llama      mistral    qwen2      qwen3      qwen3_moe  mixtral
 *   num_key_value_heads      = H (None) 8          32         32         4          8
 *   head_dim                 E/H        E/H        E/H        128        E/H        E/H
 *   max_position_embeddings  2048       131072     32768      32768      32768      131072
 *   rms_norm_eps             1e-6       1e-6       1e-6       1e-6
 *   rope_theta               10000      10000      10000      10000
 *   tie_word_embeddings      false      false      false      false
 *   attention_bias           false      (none)     (always q/k/v bias)  false
 *   sliding_window           -          4096       only if use_sliding_window   (qwen3_moe as qwen3; mixtral
 *                                                                        None)
 *   bos_token_id             1          1          None       None       None       1
 *   eos_token_id             2          2          None       None       None       2
 *
 * Mixture of experts: qwen3_moe reads num_experts (128), num_experts_per_tok
 * (8), moe_intermediate_size (768), norm_topk_prob (false),
 * decoder_sparse_step (1), mlp_only_layers ([]); mixtral reads
 * num_local_experts (8), num_experts_per_tok (2), its experts are
 * intermediate_size wide and its top-k weights always renormalized.
 *
 * An explicit JSON null for num_key_value_heads / head_dim means "derive"
 * (H, E/H) as the classes' __init__ do. hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads and vocab_size are required here
 * (a checkpoint without them is not one we can run), as is model_type.
 * quantization_config (pre-quantized FP8 checkpoints) is parsed by quant.c.
 * Sources: transformers models/{llama,mistral,qwen2,qwen3,qwen3_moe,mixtral}/configuration_*.py,
 * modeling_rope_utils.py (_compute_default_rope_parameters,
 * _compute_linear_scaling_rope_parameters, _compute_llama3_parameters). */
#include "model/config.h"

#include "core/dtype.h"
#include "core/status.h"
#include "model/quant.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct family_defaults {
    const char *model_type;
    int num_key_value_heads;     /* 0: = num_attention_heads */
    int head_dim;                /* 0: = hidden_size / num_attention_heads */
    int max_position_embeddings;
    int sliding_window;          /* default when the key is absent (mistral) */
    int bos_token_id, eos_token_id; /* -1: None */
} family_defaults;

static const family_defaults FAMILIES[] = {
    {"llama", 0, 0, 2048, 0, 1, 2},
    {"mistral", 8, 0, 131072, 4096, 1, 2},
    {"qwen2", 32, 0, 32768, 0, -1, -1},
    {"qwen3", 32, 128, 32768, 0, -1, -1},
    {"qwen3_moe", 4, 0, 32768, 0, -1, -1},
    {"mixtral", 8, 0, 131072, 0, 1, 2},
};

static cllm_status fmt_err(const char *src, const char *field, const char *what) {
    return cllm_error(CLLM_ERR_FORMAT, "%s: field '%s' %s; fix config.json or re-download the checkpoint", src,
                      field, what);
}

/* Integer field: absent -> *out unchanged (returns OK, *present=0). */
static cllm_status get_int(json_t *o, const char *key, const char *src, int *out, bool required, int min_value) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return fmt_err(src, key, "is missing");
        return CLLM_OK;
    }
    json_int_t x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 2e9)
        x = (json_int_t)json_real_value(v);
    else return fmt_err(src, key, "is not an integer");
    if (x < min_value || x > 0x7fffffff) {
        char buf[96];
        snprintf(buf, sizeof buf, "is %lld (must be >= %d)", (long long)x, min_value);
        return fmt_err(src, key, buf);
    }
    *out = (int)x;
    return CLLM_OK;
}

static cllm_status get_num(json_t *o, const char *key, const char *src, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return CLLM_OK;
    if (!json_is_number(v)) return fmt_err(src, key, "is not a number");
    *out = json_number_value(v);
    return CLLM_OK;
}

static cllm_status get_bool(json_t *o, const char *key, const char *src, bool *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return CLLM_OK;
    if (!json_is_boolean(v)) return fmt_err(src, key, "is not true/false");
    *out = json_is_true(v);
    return CLLM_OK;
}

/* eos_token_id: int or list of ints. */
static cllm_status get_eos(json_t *o, const char *src, int *ids, int *n) {
    json_t *v = json_object_get(o, "eos_token_id");
    if (!v || json_is_null(v)) return CLLM_OK;
    if (json_is_integer(v)) {
        ids[0] = (int)json_integer_value(v);
        *n = 1;
        return CLLM_OK;
    }
    if (!json_is_array(v)) return fmt_err(src, "eos_token_id", "is neither an integer nor a list of integers");
    if (json_array_size(v) > CLLM_MAX_EOS) return fmt_err(src, "eos_token_id", "has more than 8 ids");
    size_t i;
    json_t *e;
    *n = 0;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return fmt_err(src, "eos_token_id", "has an element that is not a non-negative integer");
        ids[(*n)++] = (int)json_integer_value(e);
    }
    return CLLM_OK;
}

/* rope_scaling (4.x) or rope_parameters (5.x): {rope_type|type, factor, ...}. */
static cllm_status parse_rope(json_t *root, const char *src, cllm_model_config *cfg) {
    const char *key = "rope_scaling";
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    if ((!rs || json_is_null(rs)) && rp && !json_is_null(rp)) { rs = rp; key = "rope_parameters"; }
    if (!rs || json_is_null(rs)) return CLLM_OK;
    if (!json_is_object(rs)) return fmt_err(src, key, "is not an object or null");
    /* 5.x keeps rope_theta inside rope_parameters. */
    CLLM_TRY(get_num(rs, "rope_theta", src, &cfg->rope_theta));
    json_t *t = json_object_get(rs, "rope_type");
    if (!t || json_is_null(t)) t = json_object_get(rs, "type");
    const char *type = "default";
    if (t && !json_is_null(t)) {
        if (!json_is_string(t)) return fmt_err(src, key, "has a rope_type that is not a string");
        type = json_string_value(t);
    }
    char field[64];
    if (!strcmp(type, "default")) {
        cfg->rope_type = CLLM_ROPE_DEFAULT;
        return CLLM_OK;
    }
    if (!strcmp(type, "linear")) cfg->rope_type = CLLM_ROPE_LINEAR;
    else if (!strcmp(type, "llama3")) cfg->rope_type = CLLM_ROPE_LLAMA3;
    else
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: %s.rope_type '%s' is not supported; supported: default, linear, llama3",
                          src, key, type);
    snprintf(field, sizeof field, "%s.factor", key);
    json_t *f = json_object_get(rs, "factor");
    if (!f || !json_is_number(f) || json_number_value(f) <= 0) return fmt_err(src, field, "is missing or not a positive number");
    cfg->rope_factor = json_number_value(f);
    if (cfg->rope_type == CLLM_ROPE_LINEAR) return CLLM_OK;
    static const char *names[3] = {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    double vals[3];
    for (int i = 0; i < 3; i++) {
        json_t *x = json_object_get(rs, names[i]);
        snprintf(field, sizeof field, "%s.%s", key, names[i]);
        if (!x || !json_is_number(x) || json_number_value(x) <= 0)
            return fmt_err(src, field, "is missing or not a positive number (required by rope_type llama3)");
        vals[i] = json_number_value(x);
    }
    if (vals[1] <= vals[0]) {
        snprintf(field, sizeof field, "%s.high_freq_factor", key);
        return fmt_err(src, field, "must be greater than low_freq_factor");
    }
    cfg->rope_low_freq_factor = vals[0];
    cfg->rope_high_freq_factor = vals[1];
    cfg->rope_original_max_position_embeddings = (int)vals[2];
    return CLLM_OK;
}

static cllm_status parse_dtype(json_t *root, const char *src, cllm_model_config *cfg) {
    json_t *v = json_object_get(root, "torch_dtype");
    const char *key = "torch_dtype";
    if (!v || json_is_null(v)) { v = json_object_get(root, "dtype"); key = "dtype"; }
    cfg->torch_dtype = CLLM_DTYPE_AUTO;
    if (!v || json_is_null(v)) return CLLM_OK;
    if (!json_is_string(v)) return fmt_err(src, key, "is not a string");
    if (cllm_dtype_parse(json_string_value(v), &cfg->torch_dtype) != 0)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: %s '%s' is not supported; supported: float32, bfloat16, float16",
                          src, key, json_string_value(v));
    return CLLM_OK;
}

/* Mixture-of-experts fields (qwen3_moe, mixtral; see the table above). */
static cllm_status parse_moe(json_t *root, const char *src, const char *mt, cllm_model_config *cfg) {
    cfg->decoder_sparse_step = 1;
    if (!strcmp(mt, "mixtral")) {
        cfg->num_experts = 8;
        cfg->num_experts_per_tok = 2;
        CLLM_TRY(get_int(root, "num_local_experts", src, &cfg->num_experts, false, 1));
        CLLM_TRY(get_int(root, "num_experts_per_tok", src, &cfg->num_experts_per_tok, false, 1));
        cfg->moe_intermediate_size = cfg->intermediate_size;
        cfg->norm_topk_prob = true; /* MixtralSparseMoeBlock always renormalizes the top-k weights */
    } else if (!strcmp(mt, "qwen3_moe")) {
        cfg->num_experts = 128;
        cfg->num_experts_per_tok = 8;
        cfg->moe_intermediate_size = 768;
        CLLM_TRY(get_int(root, "num_experts", src, &cfg->num_experts, false, 0));
        /* transformers 5 writes the same count as num_local_experts */
        CLLM_TRY(get_int(root, "num_local_experts", src, &cfg->num_experts, false, 0));
        CLLM_TRY(get_int(root, "num_experts_per_tok", src, &cfg->num_experts_per_tok, false, 1));
        CLLM_TRY(get_int(root, "moe_intermediate_size", src, &cfg->moe_intermediate_size, false, 1));
        CLLM_TRY(get_bool(root, "norm_topk_prob", src, &cfg->norm_topk_prob));
        CLLM_TRY(get_int(root, "decoder_sparse_step", src, &cfg->decoder_sparse_step, false, 1));
        json_t *mo = json_object_get(root, "mlp_only_layers");
        if (mo && !json_is_null(mo)) {
            if (!json_is_array(mo)) return fmt_err(src, "mlp_only_layers", "is not a list of layer indices");
            size_t i;
            json_t *e;
            json_array_foreach(mo, i, e) {
                json_int_t l = json_is_integer(e) ? json_integer_value(e) : -1;
                if (l < 0 || l >= 256) return fmt_err(src, "mlp_only_layers", "has an entry that is not a layer in [0, 256)");
                cfg->mlp_only_layers[l / 64] |= (uint64_t)1 << (l % 64);
            }
        }
    } else {
        return CLLM_OK;
    }
    if (cfg->num_experts > 0 && cfg->num_experts_per_tok > cfg->num_experts) {
        char buf[128];
        snprintf(buf, sizeof buf, "(%d) is larger than the number of experts (%d)", cfg->num_experts_per_tok,
                 cfg->num_experts);
        return fmt_err(src, "num_experts_per_tok", buf);
    }
    return CLLM_OK;
}

bool cllm_config_layer_is_moe(const cllm_model_config *c, int l) {
    if (c->num_experts <= 0) return false;
    if (l >= 0 && l < 256 && (c->mlp_only_layers[l / 64] >> (l % 64) & 1)) return false;
    return (l + 1) % (c->decoder_sparse_step > 0 ? c->decoder_sparse_step : 1) == 0;
}

static cllm_status parse_root(json_t *root, const char *src, cllm_model_config *cfg) {
    if (!json_is_object(root)) return cllm_error(CLLM_ERR_FORMAT, "%s is not a JSON object; re-download the checkpoint", src);
    json_t *mt = json_object_get(root, "model_type");
    if (!mt) return fmt_err(src, "model_type", "is missing");
    if (!json_is_string(mt)) return fmt_err(src, "model_type", "is not a string");
    const family_defaults *fam = NULL;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
        if (!strcmp(json_string_value(mt), FAMILIES[i].model_type)) fam = &FAMILIES[i];
    if (!fam)
    {
        char names[256] = "";
        size_t n = 0;
        for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0] && n < sizeof names - 32; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", FAMILIES[i].model_type);
        return cllm_error(CLLM_ERR_UNSUPPORTED, "model_type '%s' in %s is not supported; supported: %s",
                          json_string_value(mt), src, names);
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", fam->model_type);
    json_t *arch = json_object_get(root, "architectures");
    if (json_is_array(arch) && json_array_size(arch) > 0 && json_is_string(json_array_get(arch, 0)))
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s", json_string_value(json_array_get(arch, 0)));
    json_t *act = json_object_get(root, "hidden_act");
    if (act && json_is_string(act) && strcmp(json_string_value(act), "silu") != 0)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported; supported: silu", src,
                          json_string_value(act));

    CLLM_TRY(get_int(root, "hidden_size", src, &cfg->hidden_size, true, 1));
    CLLM_TRY(get_int(root, "intermediate_size", src, &cfg->intermediate_size, true, 1));
    CLLM_TRY(get_int(root, "num_hidden_layers", src, &cfg->num_hidden_layers, true, 1));
    CLLM_TRY(get_int(root, "num_attention_heads", src, &cfg->num_attention_heads, true, 1));
    CLLM_TRY(get_int(root, "vocab_size", src, &cfg->vocab_size, true, 1));
    json_t *kv = json_object_get(root, "num_key_value_heads");
    cfg->num_key_value_heads = (kv && json_is_null(kv)) || !fam->num_key_value_heads ? cfg->num_attention_heads
                                                                                     : fam->num_key_value_heads;
    CLLM_TRY(get_int(root, "num_key_value_heads", src, &cfg->num_key_value_heads, false, 1));
    json_t *hd = json_object_get(root, "head_dim");
    cfg->head_dim = (hd && json_is_null(hd)) || !fam->head_dim ? cfg->hidden_size / cfg->num_attention_heads
                                                               : fam->head_dim;
    CLLM_TRY(get_int(root, "head_dim", src, &cfg->head_dim, false, 1));
    cfg->max_position_embeddings = fam->max_position_embeddings;
    CLLM_TRY(get_int(root, "max_position_embeddings", src, &cfg->max_position_embeddings, false, 1));

    double eps = 1e-6;
    CLLM_TRY(get_num(root, "rms_norm_eps", src, &eps));
    if (!(eps > 0)) return fmt_err(src, "rms_norm_eps", "must be positive");
    cfg->rms_norm_eps = (float)eps;
    cfg->rope_theta = 10000.0;
    CLLM_TRY(get_num(root, "rope_theta", src, &cfg->rope_theta));
    cfg->rope_type = CLLM_ROPE_DEFAULT;
    cfg->rope_factor = 1.0;
    CLLM_TRY(parse_rope(root, src, cfg));
    if (!(cfg->rope_theta > 0)) return fmt_err(src, "rope_theta", "must be positive");

    cfg->tie_word_embeddings = false;
    CLLM_TRY(get_bool(root, "tie_word_embeddings", src, &cfg->tie_word_embeddings));
    cfg->attention_bias = false;
    if (!strcmp(fam->model_type, "qwen2")) cfg->attention_bias = true; /* Qwen2Attention: q/k/v bias=True */
    else if (strcmp(fam->model_type, "mistral") != 0)
        CLLM_TRY(get_bool(root, "attention_bias", src, &cfg->attention_bias));
    cfg->qk_norm = !strcmp(fam->model_type, "qwen3") || !strcmp(fam->model_type, "qwen3_moe");

    cfg->sliding_window = 0;
    if (!strcmp(fam->model_type, "mistral")) {
        json_t *sw = json_object_get(root, "sliding_window");
        cfg->sliding_window = sw ? 0 : fam->sliding_window; /* explicit null: none */
        CLLM_TRY(get_int(root, "sliding_window", src, &cfg->sliding_window, false, 0));
    } else if (!strcmp(fam->model_type, "mixtral")) {
        CLLM_TRY(get_int(root, "sliding_window", src, &cfg->sliding_window, false, 0));
    } else if (!strcmp(fam->model_type, "qwen2") || !strcmp(fam->model_type, "qwen3") ||
               !strcmp(fam->model_type, "qwen3_moe")) {
        bool use_sw = false;
        CLLM_TRY(get_bool(root, "use_sliding_window", src, &use_sw));
        if (use_sw) {
            cfg->sliding_window = 4096;
            CLLM_TRY(get_int(root, "sliding_window", src, &cfg->sliding_window, false, 0));
        }
    }
    CLLM_TRY(parse_dtype(root, src, cfg));
    CLLM_TRY(parse_moe(root, src, fam->model_type, cfg));
    CLLM_TRY(cllm_quant_parse(root, src, &cfg->quant));

    cfg->bos_token_id = fam->bos_token_id;
    json_t *bos = json_object_get(root, "bos_token_id");
    if (bos && json_is_null(bos)) cfg->bos_token_id = -1;
    CLLM_TRY(get_int(root, "bos_token_id", src, &cfg->bos_token_id, false, 0));
    cfg->num_eos_token_ids = 0;
    json_t *eos = json_object_get(root, "eos_token_id");
    if (!eos && fam->eos_token_id >= 0) {
        cfg->eos_token_ids[0] = fam->eos_token_id;
        cfg->num_eos_token_ids = 1;
    }
    CLLM_TRY(get_eos(root, src, cfg->eos_token_ids, &cfg->num_eos_token_ids));

    /* Validation. */
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0) {
        char buf[128];
        snprintf(buf, sizeof buf, "(%d) must divide num_attention_heads (%d)", cfg->num_key_value_heads,
                 cfg->num_attention_heads);
        return fmt_err(src, "num_key_value_heads", buf);
    }
    if (cfg->head_dim % 2 != 0) return fmt_err(src, "head_dim", "must be even (rotary embedding)");
    return CLLM_OK;
}

static void config_init(cllm_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_token_id = -1;
    cfg->gen.temperature = cfg->gen.top_p = cfg->gen.min_p = cfg->gen.repetition_penalty = -1.f;
    cfg->gen.top_k = -1;
}

cllm_status cllm_config_parse(const char *json, const char *src, cllm_model_config *cfg) {
    config_init(cfg);
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root)
        return cllm_error(CLLM_ERR_FORMAT, "%s is not valid JSON (line %d: %s); re-download the checkpoint", src,
                          jerr.line, jerr.text);
    cllm_status st = parse_root(root, src, cfg);
    json_decref(root);
    return st;
}

/* generation_config.json: sampling defaults and eos_token_id. */
static cllm_status parse_generation(json_t *root, const char *src, cllm_model_config *cfg) {
    if (!json_is_object(root)) return cllm_error(CLLM_ERR_FORMAT, "%s is not a JSON object; re-download the checkpoint", src);
    cfg->gen.present = true;
    CLLM_TRY(get_bool(root, "do_sample", src, &cfg->gen.do_sample));
    static const char *fk[] = {"temperature", "top_p", "min_p", "repetition_penalty"};
    float *fv[] = {&cfg->gen.temperature, &cfg->gen.top_p, &cfg->gen.min_p, &cfg->gen.repetition_penalty};
    for (int i = 0; i < 4; i++) {
        double d = -1;
        CLLM_TRY(get_num(root, fk[i], src, &d));
        if (json_object_get(root, fk[i]) && !json_is_null(json_object_get(root, fk[i])) && d < 0)
            return fmt_err(src, fk[i], "must not be negative");
        *fv[i] = (float)d;
    }
    CLLM_TRY(get_int(root, "top_k", src, &cfg->gen.top_k, false, 0));
    int ids[CLLM_MAX_EOS], n = 0;
    CLLM_TRY(get_eos(root, src, ids, &n));
    if (n > 0) {
        memcpy(cfg->eos_token_ids, ids, sizeof ids);
        cfg->num_eos_token_ids = n;
    }
    return CLLM_OK;
}

/* Read a whole file; *exists=false (and OK) if it does not exist and !required. */
static cllm_status read_text(const char *path, bool required, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && !required) return CLLM_OK;
        return cllm_error(CLLM_ERR_IO, "cannot open %s: %s%s", path,
                          strerror(errno), errno == ENOENT ? "; is this a Hugging Face model directory?" : "");
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            if (cap > (64u << 20)) { free(buf); fclose(f); return cllm_error(CLLM_ERR_FORMAT, "%s is larger than 64 MB; not a config file", path); }
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return cllm_error(CLLM_ERR_OOM, "out of memory reading %s", path); }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return cllm_error(CLLM_ERR_IO, "cannot read %s", path); }
    buf[len] = 0;
    *out = buf;
    return CLLM_OK;
}

cllm_status cllm_config_load(const char *dir, cllm_model_config *cfg) {
    char path[4096];
    char *text = NULL;
    config_init(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CLLM_TRY(read_text(path, true, &text));
    cllm_status st = cllm_config_parse(text, path, cfg);
    free(text);
    if (st != CLLM_OK) return st;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    CLLM_TRY(read_text(path, false, &text));
    if (!text) return CLLM_OK;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    free(text);
    if (!root)
        return cllm_error(CLLM_ERR_FORMAT, "%s is not valid JSON (line %d: %s); re-download the checkpoint", path,
                          jerr.line, jerr.text);
    st = parse_generation(root, path, cfg);
    json_decref(root);
    return st;
}

void cllm_config_rope_inv_freq(const cllm_model_config *cfg, float *inv_freq) {
    const int D = cfg->head_dim;
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < D / 2; i++) {
        /* torch: 1 / base ** (arange(0, D, 2).float() / D), computed in float32. */
        float expo = (float)(2 * i) / (float)D;
        double f = 1.0 / pow(cfg->rope_theta, (double)expo);
        if (cfg->rope_type == CLLM_ROPE_LINEAR) {
            f /= cfg->rope_factor;
        } else if (cfg->rope_type == CLLM_ROPE_LLAMA3) {
            double factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
            double old_ctx = cfg->rope_original_max_position_embeddings;
            double low_freq_wavelen = old_ctx / lo, high_freq_wavelen = old_ctx / hi;
            double wavelen = 2 * pi / f;
            if (wavelen > low_freq_wavelen) {
                f = f / factor;                         /* low frequency: scaled */
            } else if (wavelen >= high_freq_wavelen) {  /* medium: smooth interpolation */
                double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / factor + smooth * f;
            }                                           /* high frequency: unchanged */
        }
        inv_freq[i] = (float)f;
    }
}

bool cllm_config_is_eos(const cllm_model_config *cfg, int id) {
    for (int i = 0; i < cfg->num_eos_token_ids; i++)
        if (cfg->eos_token_ids[i] == id) return true;
    return false;
}

void cllm_config_apply_generation(const cllm_model_config *c, cllm_sampling_params *sp) {
    if (!c->gen.present) return;
    if (c->gen.temperature >= 0) sp->temperature = c->gen.temperature;
    if (c->gen.top_p >= 0) sp->top_p = c->gen.top_p;
    if (c->gen.top_k >= 0) sp->top_k = c->gen.top_k;
    if (c->gen.min_p >= 0) sp->min_p = c->gen.min_p;
}
