/* Golden logits: teacher-forced full-sequence logits of a fixture checkpoint
 * (tests/fixtures/<name>/golden.safetensors: input_ids.N I32 [T], logits.N
 * F32 [T, V] from transformers fp32) against cllm's forward, one prefill per
 * sequence with logits for every position (gather_rows over all T rows).
 * usage: test_golden_logits FIXTURE_DIR cpu|cuda TOL [--tp N] [--pp N] [--ep] [--vs-tp1 TOL] [GOLDEN_FILE]
 * GOLDEN_FILE defaults to FIXTURE_DIR/golden.safetensors. --tp N runs the
 * model sharded over N ranks (tensor parallelism, workers from
 * $CLLM_WORKER_EXE) through the executor (--pp N: pipeline stages too;
 * --ep: expert parallelism for MoE models); with --vs-tp1 TOL the same sequences
 * also run on one rank in this process and the two must agree within
 * max|a-b| / max|tp1| <= TOL (tighter than the transformers tolerance:
 * only the summation order differs).
 * --ref-model DIR: the reference logits are not read from the golden file
 * (which then needs only input_ids.N) but computed by cllm from the model
 * in DIR on one rank in this process (FP8 checkpoints vs their dequantized
 * float32 copies, tests/model/test_fp8.py).
 * --router-tie EPS (MoE fixtures on bf16 backends): from the first position
 * whose router margin (FIXTURE_DIR/router_margins.safetensors, margin.N F32
 * [T], written by tools/moe_router_margins.py: the smallest k-th minus
 * (k+1)-th router logit over MoE layers, float32) is below EPS, the positions
 * are left out of the error bound, and the cut is printed: there bf16 rounding
 * may pick the other expert, a valid choice whose logits differ by far more
 * than rounding, and every later position reads that token through attention
 * (measured on an H100: 0.37 at the tie, 0.11 four positions later).
 * --quantization fp8: the tested model (and the one-rank model of --vs-tp1,
 * not --ref-model's) is loaded with vLLM's --quantization fp8 (linears
 * quantized to e4m3 per channel on load).
 * --min-top1 F: also fail unless the top-1 agreement over all positions of
 * all sequences is at least F (0..1); the FP8 checks, whose logits differ
 * from the reference by more than rounding, use it with a loose TOL.
 * --kv-cache-dtype fp8: the model under test keeps its KV cache in fp8 e4m3
 * (the reference, golden or --vs-tp1, stays exact); TOL then bounds the fp8
 * cache's error too (tests/e2e/CMakeLists.txt says how it was set).
 * Passes if max|a-b| / max|ref| <= TOL for every N; prints max abs/rel error,
 * relative L2 error ||a-b|| / ||ref|| and top-1 agreement. */
#include "cllm.h"
#include "engine/generate.h"
#include "core/clock.h"
#include "model/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cllm_st_tensor *find(const cllm_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

int main(int argc, char **argv) {
    int tp = 1, pp = 1;
    bool ep = false;
    double tp1_tol = -1, tie_eps = -1, min_top1 = -1;
    bool quant_fp8 = false, kv_fp8 = false;
    const char *golden = NULL, *ref_model = NULL;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--ref-model") && i + 1 < argc) {
            ref_model = argv[++i];
        } else if (!strcmp(argv[i], "--tp") && i + 1 < argc) {
            tp = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--quantization") && i + 1 < argc) {
            quant_fp8 = !strcmp(argv[++i], "fp8");
        } else if (!strcmp(argv[i], "--min-top1") && i + 1 < argc) {
            min_top1 = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--ep")) {
            ep = true;
        } else if (!strcmp(argv[i], "--pp") && i + 1 < argc) {
            pp = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--router-tie") && i + 1 < argc) {
            tie_eps = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--vs-tp1") && i + 1 < argc) {
            tp1_tol = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--kv-cache-dtype") && i + 1 < argc) {
            kv_fp8 = !strcmp(argv[++i], "fp8");
        } else {
            golden = argv[i];
        }
    }
    if (argc < 4 || tp < 1 || pp < 1 || (ref_model && tp1_tol >= 0)) {
        fprintf(stderr, "usage: %s FIXTURE_DIR cpu|cuda TOL [--tp N] [--pp N] [--ep] [--vs-tp1 TOL | --ref-model DIR] "
                "[--router-tie EPS] [--kv-cache-dtype auto|fp8] [--quantization fp8] [--min-top1 F] [GOLDEN_FILE]\n", argv[0]);
        return 2;
    }
    double tol = atof(argv[3]);
    char path[4096];
    if (golden) snprintf(path, sizeof path, "%s", golden);
    else snprintf(path, sizeof path, "%s/golden.safetensors", argv[1]);
    cllm_st_file *g = NULL;
    if (cllm_st_open(path, &g) != CLLM_OK) { fprintf(stderr, "FAIL: %s\n", cllm_last_error()); return 1; }
    cllm_st_file *rm = NULL; /* router margins (--router-tie) */
    if (tie_eps >= 0) {
        snprintf(path, sizeof path, "%s/router_margins.safetensors", argv[1]);
        if (cllm_st_open(path, &rm) != CLLM_OK) {
            fprintf(stderr, "FAIL: --router-tie: %s (make it with tools/moe_router_margins.py)\n", cllm_last_error());
            cllm_st_close(g);
            return 1;
        }
    }
    cllm_model_params mp = cllm_model_default_params();
    mp.model = argv[1];
    mp.device = strcmp(argv[2], "cuda") ? CLLM_DEVICE_CPU : CLLM_DEVICE_CUDA;
    mp.progress = false;
    cllm_model *m = NULL, *m1 = NULL;
    if (ref_model) mp.model = ref_model;
    else if (quant_fp8) mp.quantization = CLLM_QUANTIZATION_FP8; /* --vs-tp1: the same quantized weights */
    if ((tp1_tol >= 0 || ref_model) && cllm_model_load(&mp, &m1) != CLLM_OK) {
        fprintf(stderr, "FAIL: load %s (one rank): %s\n", mp.model, cllm_last_error());
        cllm_st_close(g);
        return 1;
    }
    mp.model = argv[1];
    mp.tensor_parallel_size = tp;
    mp.pipeline_parallel_size = pp;
    mp.enable_expert_parallel = ep;
    if (quant_fp8) mp.quantization = CLLM_QUANTIZATION_FP8;
    if (kv_fp8) mp.kv_cache_dtype = CLLM_DTYPE_F8_E4M3;
    if (cllm_model_load(&mp, &m) != CLLM_OK) {
        fprintf(stderr, "FAIL: load %s (tensor_parallel_size %d, pipeline_parallel_size %d): %s\n", argv[1], tp, pp,
                cllm_last_error());
        cllm_model_destroy(m1);
        cllm_st_close(g);
        return 1;
    }
    int V = cllm_model_vocab_size(m), P = mp.block_size, fails = 0, cases = 0, agree_all = 0, pos_all = 0;
    for (int n = 0;; n++) {
        char in_name[64], lg_name[64];
        snprintf(in_name, sizeof in_name, "input_ids.%d", n);
        snprintf(lg_name, sizeof lg_name, "logits.%d", n);
        const cllm_st_tensor *ti = find(g, in_name), *tl = find(g, lg_name);
        if (!ti || (!tl && !ref_model)) break;
        int T = (int)ti->shape[0];
        if (ti->dtype != CLLM_DTYPE_I32 ||
            (!ref_model && (tl->dtype != CLLM_DTYPE_F32 || tl->shape[0] != T || tl->shape[1] != V))) {
            fprintf(stderr, "FAIL: %s/%s have unexpected dtype/shape\n", in_name, lg_name);
            fails++;
            break;
        }
        const int32_t *ids = (const int32_t *)((const char *)g->map + g->data_offset + ti->begin);
        const float *ref = ref_model ? NULL : (const float *)((const char *)g->map + g->data_offset + tl->begin);
        int nb = (T + P - 1) / P;
        int32_t *pos = malloc(sizeof(int32_t) * T), *slots = malloc(sizeof(int32_t) * T);
        int32_t *lidx = malloc(sizeof(int32_t) * T), *bt = malloc(sizeof(int32_t) * nb);
        float *out = malloc(sizeof(float) * (size_t)T * V), *out1 = malloc(sizeof(float) * (size_t)T * V);
        for (int j = 0; j < nb; j++) bt[j] = nb - 1 - j; /* any blocks will do; reversed to exercise paging */
        for (int t = 0; t < T; t++) pos[t] = t, lidx[t] = t, slots[t] = bt[t / P] * P + t % P;
        int32_t qsl[2] = {0, T}, lens[1] = {T};
        cllm_batch_host b = {.num_seqs = 1, .num_tokens = T, .token_ids = (int32_t *)ids, .positions = pos,
                             .query_start_loc = qsl, .seq_lens = lens, .block_tables = bt, .max_blocks_per_seq = nb,
                             .slot_mapping = slots, .logits_indices = lidx, .num_logits = T};
        if (cllm_executor_execute(cllm_model_executor(m), &b, NULL, NULL, out) != CLLM_OK) {
            fprintf(stderr, "FAIL: execute: %s\n", cllm_last_error());
            fails++;
        } else if (m1 && cllm_executor_execute(cllm_model_executor(m1), &b, NULL, NULL, out1) != CLLM_OK) {
            fprintf(stderr, "FAIL: execute (one rank): %s\n", cllm_last_error());
            fails++;
        } else {
            if (ref_model) ref = out1; /* the reference model's logits */
            else if (m1) { /* sharded vs one rank: the same math, another summation order */
                double d1 = 0, r1max = 0;
                for (size_t i = 0; i < (size_t)T * V; i++) {
                    double d = fabs((double)out[i] - out1[i]);
                    if (!(d <= d1)) d1 = d;
                    if (fabs(out1[i]) > r1max) r1max = fabs(out1[i]);
                }
                double rel1 = r1max > 0 ? d1 / r1max : d1;
                bool ok1 = rel1 <= tp1_tol;
                printf("%s %s T=%d: tp %d x pp %d vs one rank: max abs diff %.3g, max rel diff %.3g (tol %.1g) %s\n",
                       argv[1], in_name, T, tp, pp, d1, rel1, tp1_tol, ok1 ? "ok" : "FAIL");
                fails += !ok1;
            }
            const float *margin = NULL;
            if (rm) {
                char mn[64];
                snprintf(mn, sizeof mn, "margin.%d", n);
                const cllm_st_tensor *tm = find(rm, mn);
                if (!tm || tm->dtype != CLLM_DTYPE_F32 || tm->shape[0] != T) {
                    fprintf(stderr, "FAIL: router_margins.safetensors has no F32 [%d] %s\n", T, mn);
                    fails++;
                    break;
                }
                margin = (const float *)((const char *)rm->map + rm->data_offset + tm->begin);
            }
            double max_abs = 0, max_ref = 0, se = 0, sr = 0;
            int agree = 0, cut = T; /* positions from cut on are left out of the bound */
            for (int t = 0; margin && t < T && cut == T; t++)
                if (margin[t] < tie_eps) cut = t;
            for (int t = 0; t < T; t++) {
                int a1 = 0, r1 = 0;
                bool tie = t >= cut;
                for (int v = 0; v < V; v++) {
                    size_t i = (size_t)t * V + v;
                    double d = fabs((double)out[i] - ref[i]);
                    if (!tie && !(d <= max_abs)) max_abs = d; /* NaN propagates */
                    se += d * d;
                    sr += (double)ref[i] * ref[i];
                    if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
                    if (out[i] > out[(size_t)t * V + a1]) a1 = v;
                    if (ref[i] > ref[(size_t)t * V + r1]) r1 = v;
                }
                agree += a1 == r1;
            }
            agree_all += agree, pos_all += T;
            double rel = max_ref > 0 ? max_abs / max_ref : max_abs;
            bool ok = rel <= tol;
            char tie_note[128] = "";
            if (margin && cut < T)
                snprintf(tie_note, sizeof tie_note, " (positions %d..%d left out: router margin %.2g < %g at %d)", cut,
                         T - 1, margin[cut], tie_eps, cut);
            else if (margin) snprintf(tie_note, sizeof tie_note, " (no router margin < %g)", tie_eps);
            printf("%s %s T=%d: max abs err %.3g, max rel err %.3g (tol %.1g)%s, rel L2 err %.3g, top-1 agreement "
                   "%d/%d %s\n", argv[1], in_name, T, max_abs, rel, tol, tie_note, sr > 0 ? sqrt(se / sr) : sqrt(se),
                   agree, T, ok ? "ok" : "FAIL");
            fails += !ok;
        }
        cases++;
        free(pos); free(slots); free(lidx); free(bt); free(out); free(out1);
    }
    cllm_model_destroy(m);
    cllm_model_destroy(m1);
    cllm_st_close(g);
    cllm_st_close(rm);
    if (min_top1 >= 0 && pos_all > 0) {
        double f = (double)agree_all / pos_all;
        printf("%s: top-1 agreement over all %d positions %d/%d = %.3f (min %.3f) %s\n", argv[1], pos_all, agree_all,
               pos_all, f, min_top1, f >= min_top1 ? "ok" : "FAIL");
        fails += f < min_top1;
    }
    if (cases == 0) {
        fprintf(stderr, "FAIL: no input_ids.N%s in %s\n", ref_model ? "" : " / logits.N pairs", path);
        return 1;
    }
    return fails ? 1 : 0;
}
