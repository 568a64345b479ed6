/* FP8 checkpoints: quantization_config parsing and dequantization on load
 * (see quant.h for the layouts and their sources). */
#include "model/quant.h"

#include "core/dtype.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUPPORTED_QUANT                                                                                              \
    "cllm loads unquantized checkpoints and FP8 ones (quant_method compressed-tensors with 8-bit float weights "   \
    "and tensor/channel/block scales, or quant_method fp8); use the model's unquantized (bf16) checkpoint"

static cllm_status qfmt(const char *src, const char *field, const char *what) {
    return cllm_error(CLLM_ERR_FORMAT, "%s: quantization_config.%s %s; fix config.json or re-download the checkpoint",
                      src, field, what);
}

/* [a, b] of positive integers, or (compressed-tensors' older form) "AxB". */
static int parse_block(json_t *v, int *a, int *b) {
    if (json_is_array(v) && json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) &&
        json_is_integer(json_array_get(v, 1))) {
        json_int_t x = json_integer_value(json_array_get(v, 0)), y = json_integer_value(json_array_get(v, 1));
        if (x < 1 || y < 1 || x > 1 << 20 || y > 1 << 20) return -1;
        *a = (int)x;
        *b = (int)y;
        return 0;
    }
    if (json_is_string(v)) {
        char tail;
        if (sscanf(json_string_value(v), "%dx%d%c", a, b, &tail) == 2 && *a > 0 && *b > 0) return 0;
    }
    return -1;
}

/* quant_method "fp8": weight_block_size (null: per tensor), activation_scheme, fmt. */
static cllm_status parse_fp8(json_t *qc, const char *src, cllm_quant_config *q) {
    q->method = CLLM_QUANT_FP8;
    q->strategy = CLLM_QUANT_TENSOR;
    json_t *bs = json_object_get(qc, "weight_block_size");
    if (bs && !json_is_null(bs)) {
        if (parse_block(bs, &q->block_n, &q->block_k) != 0)
            return qfmt(src, "weight_block_size", "is not a list of two positive integers [rows, columns]");
        q->strategy = CLLM_QUANT_BLOCK;
    }
    json_t *as = json_object_get(qc, "activation_scheme");
    if (as && !json_is_null(as)) {
        const char *s = json_is_string(as) ? json_string_value(as) : "";
        if (strcmp(s, "dynamic") != 0 && strcmp(s, "static") != 0)
            return qfmt(src, "activation_scheme", "is neither \"dynamic\" nor \"static\"");
        q->static_input_scale = !strcmp(s, "static");
    }
    json_t *fmt = json_object_get(qc, "fmt");
    if (fmt && !json_is_null(fmt) && !(json_is_string(fmt) && (!strcmp(json_string_value(fmt), "e4m3") ||
                                                               !strcmp(json_string_value(fmt), "e5m2"))))
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.fmt %s%s%s is not supported (e4m3, e5m2)", src,
                          json_is_string(fmt) ? "'" : "", json_is_string(fmt) ? json_string_value(fmt) : "(not a string)",
                          json_is_string(fmt) ? "'" : "");
    return CLLM_OK;
}

/* One compressed-tensors QuantizationArgs of a weight: 8-bit float,
 * symmetric, strategy tensor / channel / block (the strategy is inferred
 * from group_size when absent, as QuantizationArgs.validate_model_after). */
static cllm_status parse_ct_weights(json_t *wq, const char *src, const char *group, cllm_quant_config *q) {
    char field[160];
    snprintf(field, sizeof field, "config_groups.%s.weights", group);
    if (!json_is_object(wq))
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.%s is %s: only weight quantization is supported; "
                          SUPPORTED_QUANT, src, field, json_is_null(wq) || !wq ? "null (activations only)" : "not an object");
    json_t *nb = json_object_get(wq, "num_bits"), *ty = json_object_get(wq, "type");
    int bits = json_is_integer(nb) ? (int)json_integer_value(nb) : 8;
    const char *type = json_is_string(ty) ? json_string_value(ty) : "int";
    if (bits != 8 || strcmp(type, "float") != 0)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.%s are %d-bit %s (compressed-tensors "
                          "%s%d weights) and cllm dequantizes 8-bit float (FP8) weights only; " SUPPORTED_QUANT,
                          src, field, bits, type, !strcmp(type, "float") ? "fp" : type, bits);
    json_t *sym = json_object_get(wq, "symmetric");
    if (sym && json_is_false(sym))
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.%s.symmetric is false (zero points); cllm "
                          "supports symmetric FP8 scales only", src, field);
    json_t *st = json_object_get(wq, "strategy"), *gs = json_object_get(wq, "group_size");
    const char *strategy = json_is_string(st) ? json_string_value(st) : NULL;
    if (!strategy) {
        json_int_t g = json_is_integer(gs) ? json_integer_value(gs) : 0;
        strategy = !json_is_integer(gs) ? "tensor" : g == -1 ? "channel" : "group";
    }
    if (!strcmp(strategy, "tensor")) {
        /* the narrowest: keeps what another group set */
    } else if (!strcmp(strategy, "channel")) {
        if (q->strategy == CLLM_QUANT_TENSOR) q->strategy = CLLM_QUANT_CHANNEL;
    } else if (!strcmp(strategy, "block")) {
        int bn, bk;
        if (parse_block(json_object_get(wq, "block_structure"), &bn, &bk) != 0) {
            snprintf(field + strlen(field), sizeof field - strlen(field), ".block_structure");
            return qfmt(src, field, "is not [rows, columns] of positive integers (strategy block)");
        }
        if (q->strategy == CLLM_QUANT_BLOCK && (bn != q->block_n || bk != q->block_k))
            return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config config_groups use two block structures "
                              "(%dx%d and %dx%d); cllm supports one", src, q->block_n, q->block_k, bn, bk);
        q->strategy = CLLM_QUANT_BLOCK;
        q->block_n = bn;
        q->block_k = bk;
    } else {
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.%s.strategy '%s' is not supported for FP8 "
                          "weights (tensor, channel, block)", src, field, strategy);
    }
    return CLLM_OK;
}

/* quant_method "compressed-tensors": every config group must be FP8 weights. */
static cllm_status parse_ct(json_t *qc, const char *src, cllm_quant_config *q) {
    q->method = CLLM_QUANT_COMPRESSED_TENSORS;
    q->strategy = CLLM_QUANT_TENSOR;
    json_t *fmt = json_object_get(qc, "format");
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_is_string(fmt) ? json_string_value(fmt) : "(not a string)";
        if (strcmp(f, "float-quantized") != 0 && strcmp(f, "naive-quantized") != 0)
            return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.format '%s' (compressed-tensors) is not "
                              "supported: cllm reads float-quantized (FP8) checkpoints; " SUPPORTED_QUANT, src, f);
    }
    json_t *sp = json_object_get(qc, "sparsity_config");
    json_t *spf = json_is_object(sp) ? json_object_get(sp, "format") : NULL;
    if (json_is_string(spf) && strcmp(json_string_value(spf), "dense") != 0)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.sparsity_config.format '%s' (sparse "
                          "compressed weights) is not supported", src, json_string_value(spf));
    json_t *tc = json_object_get(qc, "transform_config");
    if (tc && !json_is_null(tc) && !(json_is_object(tc) && json_object_size(tc) == 0))
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.transform_config (rotated weights) is not "
                          "supported", src);
    json_t *groups = json_object_get(qc, "config_groups");
    if (!json_is_object(groups) || json_object_size(groups) == 0)
        return qfmt(src, "config_groups", "is missing or empty (compressed-tensors needs at least one group)");
    const char *gname;
    json_t *g;
    json_object_foreach(groups, gname, g) {
        if (!json_is_object(g)) return qfmt(src, "config_groups", "has a group that is not an object");
        CLLM_TRY(parse_ct_weights(json_object_get(g, "weights"), src, gname, q));
        json_t *ia = json_object_get(g, "input_activations"), *oa = json_object_get(g, "output_activations");
        if (json_is_object(ia)) {
            json_t *ty = json_object_get(ia, "type"), *dyn = json_object_get(ia, "dynamic");
            if (!json_is_string(ty) || strcmp(json_string_value(ty), "float") != 0)
                return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.config_groups.%s.input_activations "
                                  "are not float (FP8); " SUPPORTED_QUANT, src, gname);
            if (!dyn || json_is_false(dyn)) q->static_input_scale = true;
        }
        if (oa && !json_is_null(oa))
            return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.config_groups.%s.output_activations "
                              "(quantized outputs) are not supported", src, gname);
    }
    json_t *kv = json_object_get(qc, "kv_cache_scheme");
    if (kv && !json_is_null(kv))
        CLLM_LOG_I("%s: quantization_config.kv_cache_scheme: the per-layer self_attn.k_scale / v_scale are used "
                   "with --kv-cache-dtype fp8 (with auto the KV cache stays in the activation dtype)", src);
    return CLLM_OK;
}

cllm_status cllm_quant_parse(json_t *root, const char *src, cllm_quant_config *q) {
    memset(q, 0, sizeof *q);
    json_t *qc = json_object_get(root, "quantization_config");
    if (!qc || json_is_null(qc)) return CLLM_OK;
    if (!json_is_object(qc))
        return cllm_error(CLLM_ERR_FORMAT, "%s: field 'quantization_config' is not an object; fix config.json or "
                          "re-download the checkpoint", src);
    json_t *m = json_object_get(qc, "quant_method");
    if (!json_is_string(m)) return qfmt(src, "quant_method", "is missing or not a string");
    const char *method = json_string_value(m);
    if (!strcmp(method, "compressed-tensors") || !strcmp(method, "compressed_tensors")) return parse_ct(qc, src, q);
    if (!strcmp(method, "fp8")) return parse_fp8(qc, src, q);
    return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: quantization_config.quant_method '%s' is not supported; " SUPPORTED_QUANT,
                      src, method);
}

/* ------------------------------------------------------------ dequantization */

static float scale_at(const cllm_tensor_info *s, size_t i) {
    switch (s->dtype) {
    case CLLM_DTYPE_F32: return ((const float *)s->data)[i];
    case CLLM_DTYPE_BF16: return cllm_bf16_to_f32(((const uint16_t *)s->data)[i]);
    default: return cllm_f16_to_f32(((const uint16_t *)s->data)[i]);
    }
}

static void fmt_shape(char *buf, size_t cap, const cllm_tensor_info *t) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

cllm_status cllm_quant_fp8_open(cllm_weights *w, const cllm_quant_config *q, const char *name,
                                const cllm_tensor_info *weight, cllm_quant_fp8 *out) {
    memset(out, 0, sizeof *out);
    const char *dt = cllm_dtype_name(weight->dtype);
    if (q->method == CLLM_QUANT_NONE)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s in %s is stored as %s but config.json has no "
                          "quantization_config saying how to scale it; re-download the checkpoint's config.json",
                          name, weight->file, dt);
    if (weight->ndim != 2)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s in %s is %s with %d dimensions; cllm dequantizes 2-D "
                          "linear weights only", name, weight->file, dt, weight->ndim);
    size_t len = strlen(name);
    if (len < 7 || strcmp(name + len - 7, ".weight") != 0 || len > 400)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s in %s is %s but is not a linear's .weight", name,
                          weight->file, dt);
    char sname[420];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    if (!cllm_weights_has(w, sname)) snprintf(sname, sizeof sname, "%s_scale", name);
    if (!cllm_weights_has(w, sname))
        return cllm_error(CLLM_ERR_NOT_FOUND, "tensor %s in %s is %s but neither %s_scale nor %s_scale_inv exists; "
                          "the checkpoint is incomplete: re-download it", name, weight->file, dt, name, name);
    const cllm_tensor_info *s;
    CLLM_TRY(cllm_weights_get(w, sname, 0, NULL, &s));
    out->weight = weight;
    out->scale = s;
    out->n = weight->shape[0];
    out->k = weight->shape[1];
    int64_t N = out->n, K = out->k, sn = 1;
    for (int d = 0; d < s->ndim; d++) sn *= s->shape[d];
    bool ok = s->dtype == CLLM_DTYPE_F32 || s->dtype == CLLM_DTYPE_BF16 || s->dtype == CLLM_DTYPE_F16;
    out->bn = N;
    out->bk = K;
    if (ok && q->strategy == CLLM_QUANT_BLOCK && s->ndim == 2 && s->shape[0] == (N + q->block_n - 1) / q->block_n &&
        s->shape[1] == (K + q->block_k - 1) / q->block_k) {
        out->layout = CLLM_QUANT_BLOCK;
        out->bn = q->block_n;
        out->bk = q->block_k;
    } else if (ok && sn == 1 && s->ndim <= 2) {
        out->layout = CLLM_QUANT_TENSOR;
    } else if (ok && ((s->ndim == 2 && s->shape[0] == N && s->shape[1] == 1) || (s->ndim == 1 && s->shape[0] == N))) {
        out->layout = CLLM_QUANT_CHANNEL;
        out->bn = 1;
    } else {
        char have[96], ws[96], want[160] = "";
        fmt_shape(have, sizeof have, s);
        fmt_shape(ws, sizeof ws, weight);
        if (q->strategy == CLLM_QUANT_BLOCK)
            snprintf(want, sizeof want, ", or [%lld, %lld] for %dx%d blocks", (long long)((N + q->block_n - 1) / q->block_n),
                     (long long)((K + q->block_k - 1) / q->block_k), q->block_n, q->block_k);
        cllm_quant_fp8_close(w, out);
        return cllm_error(CLLM_ERR_FORMAT, "scale %s in %s is %s %s, which fits no FP8 layout of weight %s %s "
                          "(float32/bfloat16/float16 of shape [] or [1] per tensor, [%lld, 1] per channel%s); "
                          "config.json and the weights disagree", sname, weight->file, cllm_dtype_name(s->dtype), have,
                          name, ws, (long long)N, want);
    }
    for (int c = 0; c < 256; c++)
        out->lut[c] = weight->dtype == CLLM_DTYPE_F8_E5M2 ? cllm_fp8_e5m2_to_f32((uint8_t)c)
                                                          : cllm_fp8_e4m3_to_f32((uint8_t)c);
    return CLLM_OK;
}

void cllm_quant_fp8_rows(const cllm_quant_fp8 *f, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *out) {
    const uint8_t *q = f->weight->data;
    const int64_t K = f->k, bn = f->bn, bk = f->bk, sk = (K + bk - 1) / bk; /* scale columns */
#pragma omp parallel for schedule(static) if (nr * nc > (1 << 16))
    for (int64_t i = 0; i < nr; i++) {
        const int64_t r = r0 + i;
        const uint8_t *row = q + (size_t)r * (size_t)K;
        float *o = out + (size_t)i * (size_t)nc;
        for (int64_t j = 0; j < nc;) {
            const int64_t c = c0 + j, tile = c / bk, end = (tile + 1) * bk < c0 + nc ? (tile + 1) * bk : c0 + nc;
            const float s = scale_at(f->scale, f->layout == CLLM_QUANT_TENSOR ? 0 : (size_t)((r / bn) * sk + tile));
            for (int64_t cc = c; cc < end; cc++) o[cc - c0] = f->lut[row[cc]] * s;
            j = end - c0;
        }
    }
}

void cllm_quant_fp8_row_scales(const cllm_quant_fp8 *f, int64_t r0, int64_t nr, float *out) {
    CLLM_ASSERT(f->layout == CLLM_QUANT_TENSOR || f->layout == CLLM_QUANT_CHANNEL);
    for (int64_t i = 0; i < nr; i++)
        out[i] = scale_at(f->scale, f->layout == CLLM_QUANT_TENSOR ? 0 : (size_t)(r0 + i));
}

void cllm_quant_fp8_close(cllm_weights *w, cllm_quant_fp8 *f) {
    if (f && f->scale) cllm_weights_release(w, f->scale);
    if (f) f->scale = NULL;
}
