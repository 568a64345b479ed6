/* cllm bench latency --batch-size N[,N...]: batched decode through the model
 * runner directly (no scheduler), so the time is the step itself: upload of
 * the batch metadata, forward, greedy sampling, one sync. The KV cache is
 * filled once by a real prefill of the largest batch; every batch size then
 * decodes its first N sequences from context input_len. See bench.h. */
#include "cli/bench.h"
#include "cli/cli.h"
#include "core/dtype.h"
#include "core/status.h"
#include "backend/backend.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cllm_bench_median(double *v, int n) {
    if (n <= 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct sweep {
    cllm_executor *ex;            /* every rank runs each step (tensor parallelism) */
    cllm_runner *r;               /* rank 0's: its shard sets the per-rank roofline */
    int P, bps;                 /* block size, blocks per sequence */
    int32_t *ids, *pos, *slots, *qsl, *lens, *bt, *lidx, *tok;
    cllm_sample_params *sp;
} sweep;

/* Batch of n sequences s0..s0+n-1, each with q new tokens at positions
 * [start, start+q); one logits row per sequence (its last token). */
static cllm_batch_host make_batch(sweep *w, int s0, int n, int start, int q, const int32_t *tokens) {
    int T = 0;
    for (int s = 0; s < n; s++) {
        w->qsl[s] = T;
        for (int i = 0; i < q; i++, T++) {
            int p = start + i, seq = s0 + s;
            w->ids[T] = tokens[(size_t)seq * q + i];
            w->pos[T] = p;
            w->slots[T] = w->bt[(size_t)seq * w->bps + p / w->P] * w->P + p % w->P;
        }
        w->lens[s] = start + q;
        w->lidx[s] = T - 1;
    }
    w->qsl[n] = T;
    cllm_batch_host b = {.num_seqs = n, .num_tokens = T, .token_ids = w->ids, .positions = w->pos,
                         .query_start_loc = w->qsl, .seq_lens = w->lens, .block_tables = w->bt + (size_t)s0 * w->bps,
                         .max_blocks_per_seq = w->bps, .slot_mapping = w->slots, .logits_indices = w->lidx,
                         .num_logits = n};
    return b;
}

int cllm_bench_latency_sweep(cllm_model_params *mp, const long *bs, int nbs, long input_len, long output_len,
                             long iters, long warmup, const char *json_path) {
    long maxN = 0;
    for (int i = 0; i < nbs; i++) if (bs[i] > maxN) maxN = bs[i];
    long ctx = input_len + output_len;
    if (!mp->max_model_len) mp->max_model_len = (int)ctx;
    if (mp->max_model_len < ctx) {
        fprintf(stderr, "cllm: error: --max-model-len %d < input-len + output-len = %ld\n", mp->max_model_len, ctx);
        return 1;
    }
    int P = mp->block_size > 0 ? mp->block_size : 16;
    int bps = (int)((ctx + P - 1) / P);
    if ((double)maxN * bps > 1e8) { fprintf(stderr, "cllm: error: batch %ld x context %ld is too large\n", maxN, ctx); return 1; }
    mp->block_size = P;
    mp->num_kv_blocks = (int)(maxN * bps);
    mp->max_num_seqs = (int)maxN;
    cllm_model *m = NULL;
    if (cllm_model_load(mp, &m) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        return 1;
    }
    const cllm_model_config *c = cllm_model_config_of(m);
    sweep w = {.ex = cllm_model_executor(m), .r = cllm_model_runner(m), .P = P, .bps = bps};
    const cllm_shard *sh = cllm_runner_shard(w.r);
    const char *card;
    double peak_bw, peak_flops;
    cllm_backend_ceilings(cllm_runner_backend(w.r), &card, &peak_bw, &peak_flops);
    if (peak_bw <= 0) peak_bw = 1e30, peak_flops = 1e30; /* no ceiling: the ratio columns read 0 */
    const cllm_arch_info *info = cllm_runner_info(w.r);
    size_t as = cllm_dtype_size(cllm_runner_backend(w.r)->act);
    /* prefill groups: whole sequences, about 8192 tokens per forward */
    long group = input_len >= 8192 ? 1 : 8192 / input_len;
    if (group > maxN) group = maxN;
    long Tmax = group * input_len > maxN ? group * input_len : maxN;
    int rc = 1;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(maxN * input_len));
    int32_t *cur = malloc(sizeof(int32_t) * (size_t)maxN);
    w.ids = malloc(sizeof(int32_t) * (size_t)Tmax), w.pos = malloc(sizeof(int32_t) * (size_t)Tmax);
    w.slots = malloc(sizeof(int32_t) * (size_t)Tmax), w.qsl = malloc(sizeof(int32_t) * (size_t)(maxN + 1));
    w.lens = malloc(sizeof(int32_t) * (size_t)maxN), w.lidx = malloc(sizeof(int32_t) * (size_t)maxN);
    w.tok = malloc(sizeof(int32_t) * (size_t)maxN), w.bt = malloc(sizeof(int32_t) * (size_t)(maxN * bps));
    w.sp = calloc((size_t)maxN, sizeof *w.sp);
    long nsteps = iters * output_len;
    double *steps = malloc(sizeof(double) * (size_t)(nsteps > 0 ? nsteps : 1));
    json_t *rows = json_array();
    if (!prompt || !cur || !w.ids || !w.pos || !w.slots || !w.qsl || !w.lens || !w.lidx || !w.tok || !w.bt ||
        !w.sp || !steps || !rows) {
        fprintf(stderr, "cllm: error: out of host memory\n");
        goto done;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < maxN * input_len; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)c->vocab_size);
    }
    for (long i = 0; i < maxN * bps; i++) w.bt[i] = (int32_t)i;
    for (long s = 0; s < maxN; s++) w.sp[s] = (cllm_sample_params){.temperature = 0.0f, .top_p = 1.0f, .top_k = -1};
    double t0 = cllm_now_ms();
    for (long s0 = 0; s0 < maxN; s0 += group) {
        int n = (int)(maxN - s0 < group ? maxN - s0 : group);
        cllm_batch_host b = make_batch(&w, (int)s0, n, 0, (int)input_len, prompt);
        if (cllm_executor_execute(w.ex, &b, w.sp, w.tok, NULL) != CLLM_OK) goto fail;
        memcpy(cur + s0, w.tok, sizeof(int32_t) * (size_t)n);
    }
    double prefill_ms = cllm_now_ms() - t0;
    printf("cllm bench latency (batched decode): %s, %s backend (%s: %.2f TB/s, %.0f TFLOP/s), tensor_parallel_size "
           "%d, %.3fB params per rank, input %ld, output %ld, %ld iters (+%ld warm-up); prefill of %ld x %ld tokens "
           "took %.0f ms\n",
           c->model_type, mp->device == CLLM_DEVICE_CUDA ? "cuda" : "cpu", card, peak_bw < 1e29 ? peak_bw / 1e12 : 0.0,
           peak_flops < 1e29 ? peak_flops / 1e12 : 0.0, sh->tp_size, info->num_params / 1e9, input_len, output_len,
           iters, warmup, maxN, input_len, prefill_ms);
    /* per rank: each rank reads its shard at the same time (tensor parallelism), so the step's floor is one
     * rank's bytes / bandwidth; V is this rank's vocabulary rows */
    double V = sh->vocab_per_rank, E = c->hidden_size, L = c->num_hidden_layers;
    double wbytes = (double)info->weight_bytes - (c->tie_word_embeddings ? 0.0 : V * E * (double)as); /* embedding rows only */
    double body_params = (double)info->num_params - V * E * (c->tie_word_embeddings ? 1 : 2);
    /* the cache's element size (--kv-cache-dtype fp8: one byte) */
    double kv_es = (double)cllm_dtype_size(cllm_runner_kv_cache_dtype(w.r));
    double kv_per_tok = L * 2.0 * sh->num_kv_heads * c->head_dim * kv_es;
    /* Mixture of experts: a token multiplies by k of this rank's NL experts per MoE layer, and a step of N tokens
     * reads the experts any of them chose: NL (1 - (1 - k/NL)^N) of them on average under uniform routing (the
     * random weights' routing is close to uniform; a trained model's is more skewed, so fewer). */
    double n_moe = 0, expert_params = 3.0 * E * sh->moe_intermediate_size, NL = sh->num_local_experts, kk = 0;
    if (c->num_experts > 0) {
        kk = c->num_experts_per_tok < NL ? c->num_experts_per_tok : NL;
        for (int l = 0; l < c->num_hidden_layers; l++) n_moe += cllm_config_layer_is_moe(c, l);
        body_params -= n_moe * expert_params * (NL - kk);
    }
    double ctx_avg = input_len + (output_len + 1) / 2.0; /* mean seq_len over the decode steps */
    printf("%6s %12s %14s %14s %12s %16s %8s\n", "batch", "step (ms)", "tokens/s", "floor (ms)", "bound",
           "ceiling tok/s", "ratio");
    for (int bi = 0; bi < nbs; bi++) {
        int N = (int)bs[bi];
        long k = 0;
        for (long it = 0; it < warmup + iters; it++) {
            int32_t *tokens = malloc(sizeof(int32_t) * (size_t)N);
            if (!tokens) goto done;
            memcpy(tokens, cur, sizeof(int32_t) * (size_t)N);
            for (long j = 0; j < output_len; j++) {
                double a = cllm_now_ms();
                cllm_batch_host b = make_batch(&w, 0, N, (int)(input_len + j), 1, tokens);
                cllm_status st = cllm_executor_execute(w.ex, &b, w.sp, tokens, NULL);
                double d = cllm_now_ms() - a;
                if (st != CLLM_OK) { free(tokens); goto fail; }
                if (it >= warmup) steps[k++] = d;
            }
            free(tokens);
        }
        double mean = 0;
        for (long i = 0; i < k; i++) mean += steps[i];
        mean = k ? mean / (double)k : 0;
        double med = cllm_bench_median(steps, (int)k);
        double kv_bytes = N * ctx_avg * kv_per_tok;
        double wbytes_n = n_moe > 0 ? wbytes - n_moe * expert_params * (double)as * NL * pow(1.0 - kk / NL, N) : wbytes;
        double flops = N * (2.0 * body_params + 2.0 * V * E) + N * L * 4.0 * sh->num_heads * c->head_dim * ctx_avg;
        double t_mem = (wbytes_n + kv_bytes) / peak_bw, t_fl = flops / peak_flops;
        double floor_ms = 1e3 * (t_mem > t_fl ? t_mem : t_fl);
        double tps = med > 0 ? N * 1e3 / med : 0, ceil_tps = N * 1e3 / floor_ms;
        printf("%6d %12.3f %14.1f %14.3f %12s %16.1f %7.1f%%\n", N, med, tps, floor_ms, t_mem > t_fl ? "memory" : "compute",
               ceil_tps, 100.0 * tps / ceil_tps);
        json_array_append_new(rows, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:f, s:f}", "batch_size", N,
                                              "median_step_ms", med, "mean_step_ms", mean, "ms_per_token", med,
                                              "tokens_per_s", tps, "floor_ms", floor_ms, "ceiling_tokens_per_s",
                                              ceil_tps, "ratio", tps / ceil_tps, "bound",
                                              t_mem > t_fl ? "memory" : "compute", "bytes_per_step",
                                              wbytes_n + kv_bytes, "flops_per_step", flops));
    }
    if (json_path) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:o}", "model_type", c->model_type,
                              "device", mp->device == CLLM_DEVICE_CUDA ? "cuda" : "cpu", "input_len",
                              (json_int_t)input_len, "output_len", (json_int_t)output_len, "num_iters",
                              (json_int_t)iters, "num_iters_warmup", (json_int_t)warmup, "num_params",
                              (double)info->num_params, "weight_bytes_read_per_step", wbytes, "prefill_ms",
                              prefill_ms, "peak_bytes_per_s", peak_bw, "peak_flops",
                              peak_flops, "results", rows);
        if (j) json_object_set_new(j, "card", json_string(card));
        rows = NULL;
        if (!j || json_dump_file(j, json_path, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "cllm: error: cannot write %s\n", json_path);
            json_decref(j);
            goto done;
        }
        json_decref(j);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
done:
    json_decref(rows);
    free(prompt), free(cur), free(w.ids), free(w.pos), free(w.slots), free(w.qsl), free(w.lens), free(w.lidx);
    free(w.tok), free(w.bt), free(w.sp), free(steps);
    cllm_model_destroy(m);
    return rc;
}
