/* Test driver for src/model: the Python tests run it and compare its JSON
 * output with outside truth (hand-written expectations from the Hugging Face
 * configs, numpy re-implementations, the `safetensors` package).
 *
 *   model_tool config DIR             parsed config (+ rope inv_freq) as JSON
 *   model_tool tensors DIR [NAME...]  every tensor: name, dtype, shape, file,
 *                                     first 8 values and the float64 sum
 *   model_tool get DIR NAME d0 [d1..] cllm_weights_get with that shape
 *   model_tool dummy SEED DTYPE NAME d0 [d1..]   stats + first values + hash
 *   model_tool dummybench SEED DTYPE N            fill N elements, print GB/s
 *   model_tool hub MODEL [REV]        cllm_hub_resolve, prints the directory
 *   model_tool fp8 e4m3|e5m2          the 256 FP8 codes decoded to f32
 *
 * Exit code: 0 on success, else the cllm_status; the message goes to stdout
 * as {"status": "...", "error": "..."} so tests can check it. */
#include "core/dtype.h"
#include "core/status.h"
#include "model/config.h"
#include "model/hub.h"
#include "model/weights.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(cllm_status st) {
    json_t *o = json_pack("{s:s, s:s}", "status", cllm_status_str(st), "error", cllm_last_error());
    char *s = json_dumps(o, 0);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return (int)st;
}

static void emit(json_t *o) {
    char *s = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static int cmd_config(const char *dir) {
    cllm_model_config c;
    cllm_status st = cllm_config_load(dir, &c);
    if (st) return fail(st);
    json_t *eos = json_array();
    for (int i = 0; i < c.num_eos_token_ids; i++) json_array_append_new(eos, json_integer(c.eos_token_ids[i]));
    float *inv = malloc(sizeof(float) * (size_t)(c.head_dim / 2));
    cllm_config_rope_inv_freq(&c, inv);
    json_t *jinv = json_array();
    for (int i = 0; i < c.head_dim / 2; i++) json_array_append_new(jinv, json_real(inv[i]));
    free(inv);
    static const char *rope[] = {"default", "llama3", "linear"};
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s, s:f, s:f, s:f, s:i, s:b, s:b, s:b, s:i,"
        " s:s, s:i, s:o, s:o}",
        "model_type", c.model_type, "architecture", c.architecture, "hidden_size", c.hidden_size,
        "intermediate_size", c.intermediate_size, "num_hidden_layers", c.num_hidden_layers, "num_attention_heads",
        c.num_attention_heads, "num_key_value_heads", c.num_key_value_heads, "head_dim", c.head_dim, "vocab_size",
        c.vocab_size, "max_position_embeddings", c.max_position_embeddings, "rms_norm_eps", (double)c.rms_norm_eps,
        "rope_theta", c.rope_theta, "rope_type", rope[c.rope_type], "rope_factor", c.rope_factor,
        "rope_low_freq_factor", c.rope_low_freq_factor, "rope_high_freq_factor", c.rope_high_freq_factor,
        "rope_original_max_position_embeddings", c.rope_original_max_position_embeddings, "tie_word_embeddings",
        c.tie_word_embeddings, "attention_bias", c.attention_bias, "qk_norm", c.qk_norm, "sliding_window",
        c.sliding_window, "torch_dtype", cllm_dtype_name(c.torch_dtype), "bos_token_id", c.bos_token_id,
        "eos_token_id", eos, "inv_freq", jinv);
    json_object_set_new(o, "gen", json_pack("{s:b, s:b, s:f, s:f, s:i, s:f, s:f}", "present", c.gen.present,
                                            "do_sample", c.gen.do_sample, "temperature", (double)c.gen.temperature,
                                            "top_p", (double)c.gen.top_p, "top_k", c.gen.top_k, "min_p",
                                            (double)c.gen.min_p, "repetition_penalty",
                                            (double)c.gen.repetition_penalty));
    static const char *qm[] = {"none", "compressed-tensors", "fp8"}, *qs[] = {"tensor", "channel", "block"};
    json_object_set_new(o, "quant", json_pack("{s:s, s:s, s:i, s:i, s:b}", "method", qm[c.quant.method], "strategy",
                                              qs[c.quant.strategy], "block_n", c.quant.block_n, "block_k",
                                              c.quant.block_k, "static_input_scale", c.quant.static_input_scale));
    json_t *mlp_only = json_array();
    int sparse = 0;
    for (int l = 0; l < c.num_hidden_layers; l++) {
        if (l < 256 && (c.mlp_only_layers[l / 64] >> (l % 64) & 1)) json_array_append_new(mlp_only, json_integer(l));
        sparse += cllm_config_layer_is_moe(&c, l);
    }
    json_object_set_new(o, "moe", json_pack("{s:i, s:i, s:i, s:b, s:i, s:o, s:i}", "num_experts", c.num_experts,
                                            "num_experts_per_tok", c.num_experts_per_tok, "moe_intermediate_size",
                                            c.moe_intermediate_size, "norm_topk_prob", c.norm_topk_prob,
                                            "decoder_sparse_step", c.decoder_sparse_step, "mlp_only_layers",
                                            mlp_only, "sparse_layers", sparse));
    json_object_set_new(o, "is_eos_first", json_boolean(c.num_eos_token_ids && cllm_config_is_eos(&c, c.eos_token_ids[0])));
    json_object_set_new(o, "is_eos_minus1", json_boolean(cllm_config_is_eos(&c, -1)));
    emit(o);
    return 0;
}

static double value_at(const cllm_tensor_info *t, size_t i) {
    switch (t->dtype) {
    case CLLM_DTYPE_F32: return ((const float *)t->data)[i];
    case CLLM_DTYPE_BF16: return cllm_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case CLLM_DTYPE_F16: return cllm_f16_to_f32(((const uint16_t *)t->data)[i]);
    default: return NAN;
    }
}

static json_t *describe(const cllm_tensor_info *t) {
    json_t *shape = json_array(), *vals = json_array();
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) { json_array_append_new(shape, json_integer(t->shape[d])); n *= (size_t)t->shape[d]; }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double v = value_at(t, i);
        sum += v;
        if (i < 8) json_array_append_new(vals, json_real(v));
    }
    return json_pack("{s:s, s:s, s:o, s:s, s:o, s:f, s:I}", "name", t->name, "dtype", cllm_dtype_name(t->dtype),
                     "shape", shape, "file", t->file, "first", vals, "sum", sum, "nbytes", (json_int_t)t->nbytes);
}

/* Every tensor of the checkpoint: names come from argv, or (no names) from
 * the header via the safetensors Python listing passed by the test. */
static int cmd_tensors(const char *dir, int argc, char **argv) {
    cllm_weights *w;
    cllm_status st = cllm_weights_open(dir, &w);
    if (st) return fail(st);
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "count", json_integer((json_int_t)cllm_weights_count(w)));
    json_object_set_new(o, "total_bytes", json_integer((json_int_t)cllm_weights_total_bytes(w)));
    for (int i = 0; i < argc; i++) {
        const cllm_tensor_info *t;
        json_object_set_new(o, "has_last", json_boolean(cllm_weights_has(w, argv[i])));
        st = cllm_weights_get(w, argv[i], 0, NULL, &t);
        if (st) { json_decref(o); json_decref(arr); cllm_weights_destroy(w); return fail(st); }
        json_array_append_new(arr, describe(t));
        cllm_weights_release(w, t);
    }
    json_object_set_new(o, "tensors", arr);
    emit(o);
    cllm_weights_destroy(w);
    return 0;
}

static int parse_shape(int argc, char **argv, int64_t *shape) {
    for (int i = 0; i < argc && i < CLLM_MAX_DIMS; i++) shape[i] = strtoll(argv[i], NULL, 10);
    return argc;
}

static int cmd_get(const char *dir, const char *name, int argc, char **argv) {
    int64_t shape[CLLM_MAX_DIMS];
    int nd = parse_shape(argc, argv, shape);
    cllm_weights *w;
    cllm_status st = cllm_weights_open(dir, &w);
    if (st) return fail(st);
    const cllm_tensor_info *t;
    st = cllm_weights_get(w, name, nd, shape, &t);
    if (st) { cllm_weights_destroy(w); return fail(st); }
    emit(describe(t));
    cllm_weights_destroy(w);
    return 0;
}

static int cmd_dummy(const char *seed, const char *dtype, const char *name, int argc, char **argv) {
    int64_t shape[CLLM_MAX_DIMS];
    int nd = parse_shape(argc, argv, shape);
    cllm_dtype dt;
    if (cllm_dtype_parse(dtype, &dt)) return fail(cllm_error(CLLM_ERR_INVALID_ARG, "bad dtype %s", dtype));
    cllm_weights *w;
    cllm_status st = cllm_weights_create_dummy(strtoull(seed, NULL, 10), dt, &w);
    if (st) return fail(st);
    const cllm_tensor_info *t, *t2;
    st = cllm_weights_get(w, name, nd, shape, &t);
    if (!st) st = cllm_weights_get(w, "other.weight", nd, shape, &t2); /* a second live tensor */
    if (st) { cllm_weights_destroy(w); return fail(st); }
    size_t n = 1;
    for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
    double s = 0, s2 = 0;
    uint64_t h = 1469598103934665603ull;
    const unsigned char *b = t->data;
    for (size_t i = 0; i < t->nbytes; i++) h = (h ^ b[i]) * 1099511628211ull;
    for (size_t i = 0; i < n; i++) { double v = value_at(t, i); s += v; s2 += v * v; }
    double mean = s / (double)n, std = sqrt(s2 / (double)n - mean * mean);
    json_t *o = describe(t);
    json_object_set_new(o, "mean", json_real(mean));
    json_object_set_new(o, "std", json_real(std));
    char hs[32];
    snprintf(hs, sizeof hs, "%016" PRIx64, h);
    json_object_set_new(o, "hash", json_string(hs));
    json_object_set_new(o, "live_count", json_integer((json_int_t)cllm_weights_count(w)));
    json_object_set_new(o, "has", json_boolean(cllm_weights_has(w, name)));
    cllm_weights_release(w, t);
    json_object_set_new(o, "live_after_release", json_integer((json_int_t)cllm_weights_count(w)));
    emit(o);
    cllm_weights_destroy(w); /* frees t2 */
    return 0;
}

static int cmd_dummybench(const char *seed, const char *dtype, const char *count) {
    cllm_dtype dt;
    if (cllm_dtype_parse(dtype, &dt)) return fail(cllm_error(CLLM_ERR_INVALID_ARG, "bad dtype %s", dtype));
    cllm_weights *w;
    CLLM_TRY(cllm_weights_create_dummy(strtoull(seed, NULL, 10), dt, &w));
    int64_t shape[1] = {strtoll(count, NULL, 10)};
    const cllm_tensor_info *t;
    struct timespec a, b;
    double best = 1e30;
    size_t nbytes = 0;
    for (int rep = 0; rep < 3; rep++) { /* best of 3: page faults of fresh buffers vary */
        clock_gettime(CLOCK_MONOTONIC, &a);
        cllm_status st = cllm_weights_get(w, "model.layers.0.mlp.up_proj.weight", 1, shape, &t);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (st) { cllm_weights_destroy(w); return fail(st); }
        double sec = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        if (sec < best) best = sec;
        nbytes = t->nbytes;
        cllm_weights_release(w, t);
    }
    printf("{\"bytes\": %zu, \"seconds\": %.6f, \"GBps\": %.3f}\n", nbytes, best, (double)nbytes / best / 1e9);
    cllm_weights_destroy(w);
    return 0;
}

/* The 256 codes of an FP8 format decoded by cllm_dtype_convert (F8 -> F32):
 * NaN as null, infinities as "inf" / "-inf". */
static int cmd_fp8(const char *fmt) {
    cllm_dtype dt = !strcmp(fmt, "e5m2") ? CLLM_DTYPE_F8_E5M2 : CLLM_DTYPE_F8_E4M3;
    uint8_t codes[256];
    float vals[256];
    for (int i = 0; i < 256; i++) codes[i] = (uint8_t)i;
    cllm_status st = cllm_dtype_convert(vals, CLLM_DTYPE_F32, codes, dt, 256);
    if (st) return fail(st);
    json_t *arr = json_array();
    for (int i = 0; i < 256; i++) {
        float v = vals[i];
        json_array_append_new(arr, isnan(v) ? json_null() : isinf(v) ? json_string(v > 0 ? "inf" : "-inf")
                                                                      : json_real(v));
    }
    emit(json_pack("{s:s, s:i, s:o}", "dtype", cllm_dtype_name(dt), "size", (int)cllm_dtype_size(dt), "values", arr));
    return 0;
}

static int cmd_hub(const char *model, const char *rev) {
    char *dir = NULL;
    cllm_status st = cllm_hub_resolve(model, rev, true, &dir);
    if (st) return fail(st);
    json_t *o = json_pack("{s:s}", "dir", dir);
    cllm_free(dir);
    emit(o);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "config")) return cmd_config(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "tensors")) return cmd_tensors(argv[2], argc - 3, argv + 3);
    if (argc >= 4 && !strcmp(argv[1], "get")) return cmd_get(argv[2], argv[3], argc - 4, argv + 4);
    if (argc >= 5 && !strcmp(argv[1], "dummy")) return cmd_dummy(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    if (argc == 5 && !strcmp(argv[1], "dummybench")) return cmd_dummybench(argv[2], argv[3], argv[4]);
    if (argc == 3 && !strcmp(argv[1], "fp8")) return cmd_fp8(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "hub")) return cmd_hub(argv[2], argc > 3 ? argv[3] : NULL);
    fprintf(stderr, "usage: see the comment at the top of tests/model/model_tool.c\n");
    return 64;
}
