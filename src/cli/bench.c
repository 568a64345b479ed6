/* cllm bench latency (vLLM's benchmark_latency flags): random prompt ids of
 * --input-len, greedy decode of --output-len tokens, median over
 * --num-iters after --num-iters-warmup. Prints each figure beside its
 * ceiling (CONVENTIONS.md §12) of the card it ran on (cllm_backend_ceilings:
 * H100 3.03 TB/s and 801 TFLOP/s, H200 4.30 TB/s and 790 TFLOP/s): prefill
 * TFLOP/s beside the card's dense bf16 peak, decode tokens/s beside one
 * rank's weight bytes / its bandwidth (with tensor parallelism every rank
 * reads its own shard at once; the all-reduces are not in the ceiling).
 * --batch-size 1 (default) runs one sequence through cllm_generate (prefill
 * and decode); --batch-size N or a list N1,N2,... runs the batched decode
 * sweep of bench_batch.c. `cllm bench throughput` is bench_throughput.c. */
#include "cli/args.h"
#include "cli/bench.h"
#include "cli/engine_args.h"
#include "cli/cli.h"
#include "cllm.h"
#include "core/status.h"
#include "backend/backend.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cllm bench latency --model DIR|ORG/NAME --input-len 128 --output-len 256\n"
               "       --batch-size 1|N|N1,N2,... [--num-iters 5] [--num-iters-warmup 1] [--output-json F]\n"
               "       [engine arguments]\n"
               "       cllm bench throughput --help\n"
               "       cllm bench serve --help\n"
               "       cllm bench comm --help\n"
               "       cllm bench moe --help\n\n");
    cllm_engine_args_usage(f);
}

#define MAX_BATCH_SIZES 64

/* "1,2,4" -> bs[], each in [1, 65536]; 0 with a message on a bad list. */
static int parse_batch_sizes(const char *v, long *bs, int *n) {
    *n = 0;
    const char *p = v;
    for (;;) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || *n == MAX_BATCH_SIZES) {
            fprintf(stderr, "cllm bench latency: --batch-size '%s' must be N or a comma-separated list of at most %d "
                            "sizes (e.g. 1,2,4)\n", v, MAX_BATCH_SIZES);
            return 0;
        }
        memcpy(item, p, len);
        item[len] = 0;
        if (!cllm_arg_long("--batch-size", item, 1, 1L << 16, &bs[*n])) return 0;
        (*n)++;
        if (!p[len]) return 1;
        p += len + 1;
    }
}

#define median cllm_bench_median

typedef struct bench_opts {
    long input_len, output_len, batch_size, iters, warmup, max_len;
    const char *json_path;
} bench_opts;

static int run(cllm_model_params *mp, const bench_opts *o) {
    if (!o->max_len) mp->max_model_len = (int)(o->input_len + o->output_len);
    cllm_model *m = NULL;
    if (cllm_model_load(mp, &m) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        return 1;
    }
    const cllm_model_config *c = cllm_model_config_of(m);
    const cllm_arch_info *info = cllm_runner_info(cllm_model_runner(m));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->input_len);
    int n = (int)(o->warmup + o->iters);
    double *pre = calloc((size_t)n, sizeof(double)), *dec = calloc((size_t)n, sizeof(double));
    double *tot = calloc((size_t)n, sizeof(double));
    int rc = 1;
    if (!ids || !pre || !dec || !tot) { fprintf(stderr, "cllm: error: out of memory\n"); goto done; }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < o->input_len; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)c->vocab_size);
    }
    cllm_sampling_params sp = cllm_sampling_default_params();
    sp.temperature = 0.0f;
    sp.ignore_eos = true;
    sp.max_tokens = (int)o->output_len;
    int k = 0;
    for (int it = 0; it < n; it++) {
        cllm_generate_result r;
        double t0 = cllm_now_ms();
        if (cllm_generate_ids(m, ids, (int)o->input_len, &sp, false, NULL, NULL, &r) != CLLM_OK) {
            fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
            goto done;
        }
        double t1 = cllm_now_ms();
        if (it < o->warmup) continue;
        pre[k] = r.ttft_ms;
        dec[k] = r.num_generated_tokens > 1 ? (t1 - t0 - r.ttft_ms) / (r.num_generated_tokens - 1) : 0.0;
        tot[k] = t1 - t0;
        k++;
    }
    double pre_ms = median(pre, k), dec_ms = median(dec, k), tot_ms = median(tot, k);
    const cllm_shard *sh = cllm_runner_shard(cllm_model_runner(m));
    const char *card;
    double peak_bw, peak_flops;
    cllm_backend_ceilings(cllm_runner_backend(cllm_model_runner(m)), &card, &peak_bw, &peak_flops);
    double PEAK_TFLOPS = peak_flops / 1e12;
    double T = (double)o->input_len, V = sh->vocab_per_rank, E = c->hidden_size;
    double attn_flops = 4.0 * sh->num_heads * c->head_dim * (T * (T + 1) / 2) * c->num_hidden_layers;
    /* Mixture of experts: a token reads (and multiplies by) only its top-k experts of each MoE layer, so the
     * roofline and the FLOPs count the active parameters (Qwen3-30B-A3B: 3.3 B of 30.5 B), the convention of
     * the models' own cards. Per rank: this rank's experts, at most k of them active. */
    double inactive = 0;
    if (c->num_experts > 0) {
        int kk = c->num_experts_per_tok < sh->num_local_experts ? c->num_experts_per_tok : sh->num_local_experts;
        for (int l = 0; l < c->num_hidden_layers; l++)
            if (cllm_config_layer_is_moe(c, l))
                inactive += 3.0 * E * sh->moe_intermediate_size * (sh->num_local_experts - kk);
    }
    double active_params = (double)info->num_params - inactive;
    double active_bytes = (double)info->weight_bytes - inactive * (double)info->weight_bytes / (double)info->num_params;
    double body_params = active_params - V * E * (c->tie_word_embeddings ? 1 : 2);
    double pre_flops = 2.0 * body_params * T + attn_flops + 2.0 * V * E; /* lm_head on the last row */
    double pre_tflops = pre_ms > 0 ? pre_flops / (pre_ms / 1e3) / 1e12 : 0;
    double roof_tps = peak_bw / active_bytes;
    double dec_tps = dec_ms > 0 ? 1e3 / dec_ms : 0;
    printf("cllm bench latency: %s, %s backend (%s), tensor_parallel_size %d, %.3fB params (%.3fB active) and %.2f GB "
           "weights (%.2f GB active) per rank, input %ld, output %ld, batch %ld, %d iters\n",
           c->model_type, mp->device == CLLM_DEVICE_CUDA ? "cuda" : "cpu", card, sh->tp_size, info->num_params / 1e9,
           active_params / 1e9, info->weight_bytes / 1e9, active_bytes / 1e9, o->input_len, o->output_len,
           o->batch_size, k);
    printf("%-22s %14s %20s\n", "metric", "measured", "ceiling");
    printf("%-22s %14.1f %20s\n", "weight load (ms)", cllm_model_weights_ms(m), "-");
    printf("%-22s %14.2f %20s\n", "prefill (ms)", pre_ms, "-");
    printf("%-22s %14.1f %20s\n", "prefill (tokens/s)", pre_ms > 0 ? T / (pre_ms / 1e3) : 0, "-");
    if (peak_bw > 0) {
        printf("%-22s %14.3f %14.0f  %5.1f%% of %s%s\n", "prefill (TFLOP/s)", pre_tflops, PEAK_TFLOPS,
               100.0 * pre_tflops / PEAK_TFLOPS, card,
               mp->quantization == CLLM_QUANTIZATION_FP8 ? " (bf16 ceiling; FP8 linears: dense FP8 spec 1979)" : "");
        printf("%-22s %14.3f %14.3f  %5.1f%%\n", "decode (ms/token)", dec_ms, 1e3 / roof_tps,
               dec_ms > 0 ? 100.0 * (1e3 / roof_tps) / dec_ms : 0.0);
        printf("%-22s %14.1f %14.1f  %5.1f%% of %s (weights / %.2f TB/s)\n", "decode (tokens/s)", dec_tps, roof_tps,
               100.0 * dec_tps / roof_tps, card, peak_bw / 1e12);
    } else { /* no measured ceiling for this device (the CPU, an unknown card) */
        printf("%-22s %14.3f %20s\n", "prefill (TFLOP/s)", pre_tflops, "- (no ceiling)");
        printf("%-22s %14.3f %20s\n", "decode (ms/token)", dec_ms, "-");
        printf("%-22s %14.1f %20s\n", "decode (tokens/s)", dec_tps, "- (no ceiling)");
    }
    printf("%-22s %14.1f %20s\n", "total latency (ms)", tot_ms, "-");
    if (o->json_path) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                              "model_type", c->model_type, "device", mp->device == CLLM_DEVICE_CUDA ? "cuda" : "cpu",
                              "input_len", (json_int_t)o->input_len, "output_len", (json_int_t)o->output_len,
                              "batch_size", (json_int_t)o->batch_size, "num_iters", k, "weight_load_ms",
                              cllm_model_weights_ms(m), "prefill_ms", pre_ms, "prefill_tflops", pre_tflops,
                              "prefill_tflops_peak", PEAK_TFLOPS, "decode_ms_per_token", dec_ms,
                              "decode_tokens_per_s", dec_tps, "decode_tokens_per_s_roofline", roof_tps,
                              "avg_latency_ms", tot_ms, "weight_bytes", (double)info->weight_bytes, "num_params",
                              (double)info->num_params);
        if (j) {
            json_object_set_new(j, "card", json_string(card));
            json_object_set_new(j, "peak_bytes_per_s", json_real(peak_bw));
            json_object_set_new(j, "tensor_parallel_size", json_integer(sh->tp_size));
        }
        if (!j || json_dump_file(j, o->json_path, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "cllm: error: cannot write %s\n", o->json_path);
            json_decref(j);
            goto done;
        }
        json_decref(j);
    }
    rc = 0;
done:
    free(ids);
    free(pre);
    free(dec);
    free(tot);
    cllm_model_destroy(m);
    return rc;
}

int cllm_cli_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "serve")) return cllm_cli_bench_serve(argc, argv); /* cli/bench_serve.c */
    if (argc >= 2 && !strcmp(argv[1], "throughput")) return cllm_cli_bench_throughput(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "comm")) return cllm_cli_bench_comm(argc - 1, argv + 1); /* cli/bench_comm.c */
    if (argc >= 2 && !strcmp(argv[1], "moe")) return cllm_cli_bench_moe(argc - 1, argv + 1);   /* cli/bench_moe.c */
    if (argc < 2 || strcmp(argv[1], "latency") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { usage(stdout); return 0; }
        fprintf(stderr, "cllm bench: unknown or missing benchmark; available: latency, throughput, serve, comm, moe (cllm bench --help)\n");
        return 2;
    }
    cllm_engine_args ea;
    cllm_engine_args_init(&ea);
    bench_opts o = {.input_len = 128, .output_len = 256, .batch_size = 1, .iters = 5, .warmup = 1};
    long bs[MAX_BATCH_SIZES] = {1};
    int nbs = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        int e = cllm_engine_args_parse(&ea, argc, argv, &i);
        if (e < 0) return 2;
        if (e > 0) continue;
        if (!cllm_arg_value(argc, argv, &i, &v)) return 2;
        int ok = 1;
        if (!strcmp(a, "--input-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o.input_len);
        else if (!strcmp(a, "--output-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o.output_len);
        else if (!strcmp(a, "--batch-size")) ok = parse_batch_sizes(v, bs, &nbs);
        else if (!strcmp(a, "--num-iters")) ok = cllm_arg_long(a, v, 1, 100000, &o.iters);
        else if (!strcmp(a, "--num-iters-warmup")) ok = cllm_arg_long(a, v, 0, 100000, &o.warmup);
        else if (!strcmp(a, "--output-json")) o.json_path = v;
        else {
            fprintf(stderr, "cllm bench latency: unknown flag '%s' (cllm bench --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    cllm_model_params mp = ea.p.model;
    o.max_len = mp.max_model_len;
    if (!mp.model) { fprintf(stderr, "cllm bench latency: --model is required\n"); return 2; }
    if (nbs > 1 || bs[0] != 1)
        return cllm_bench_latency_sweep(&mp, bs, nbs, o.input_len, o.output_len, o.iters, o.warmup, o.json_path);
    return run(&mp, &o);
}
