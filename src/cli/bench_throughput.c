/* cllm bench throughput (vLLM's offline `vllm bench throughput` with the
 * random dataset): --num-prompts prompts of random token ids, all added to
 * the engine at once with ignore_eos so each produces exactly its output
 * length, then cllm_engine_step until done. Reports elapsed, requests/s,
 * output tokens/s and total tokens/s (vLLM's figures), the number of engine
 * steps, and with --profile (or CLLM_PROFILE=1) the per-step time split
 * between GEMMs, attention, other forward ops, sampling and the rest (host:
 * scheduling, metadata upload, detokenization; profiled steps run eagerly,
 * without CUDA graphs, so that decode time is split too). Lengths: fixed
 * --input-len/--output-len, or with --random-range-ratio R uniform integers
 * in [floor(L(1-R)), ceil(L(1+R))] (vLLM RandomDataset). */
#include "cli/args.h"
#include "cli/engine_args.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "core/profile.h"
#include "core/status.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cllm bench throughput --model DIR|ORG/NAME --num-prompts 1000 --input-len 1024 --output-len 128\n"
               "       [--random-range-ratio 0] [--seed 0] [--profile] [--output-json F] [engine arguments]\n"
               "  --profile (or CLLM_PROFILE=1): time per op category (synchronizes after each; slower)\n\n");
    cllm_engine_args_usage(f);
}

typedef struct tp_opts {
    long num_prompts, input_len, output_len, seed;
    double range_ratio;
    bool profile;
    const char *json_path;
} tp_opts;

static uint64_t next_rand(uint64_t *x) {
    *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
    return *x;
}

/* Uniform integer in [floor(L(1-R)), ceil(L(1+R))], at least 1. */
static long draw_len(uint64_t *x, long L, double R) {
    long lo = (long)floor(L * (1.0 - R)), hi = (long)ceil(L * (1.0 + R));
    if (lo < 1) lo = 1;
    if (hi < lo) hi = lo;
    return lo + (long)(next_rand(x) % (uint64_t)(hi - lo + 1));
}

static int run(cllm_engine_params *ep, const tp_opts *o) {
    cllm_engine *e = NULL;
    double t_load = cllm_now_ms();
    if (cllm_engine_create(ep, &e) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        return 1;
    }
    t_load = cllm_now_ms() - t_load;
    int V = cllm_tokenizer_vocab_size(cllm_engine_tokenizer(e));
    int rc = 1;
    long N = o->num_prompts;
    long *in_len = malloc(sizeof(long) * (size_t)N), *out_len = malloc(sizeof(long) * (size_t)N);
    int32_t *ids = NULL;
    if (!in_len || !out_len) { fprintf(stderr, "cllm: error: out of host memory\n"); goto done; }
    uint64_t x = 0x9E3779B97F4A7C15ull ^ ((uint64_t)o->seed * 0xD1B54A32D192ED03ull);
    if (!x) x = 1;
    long max_in = 0, sum_in = 0, sum_out = 0;
    for (long i = 0; i < N; i++) {
        in_len[i] = o->range_ratio > 0 ? draw_len(&x, o->input_len, o->range_ratio) : o->input_len;
        out_len[i] = o->range_ratio > 0 ? draw_len(&x, o->output_len, o->range_ratio) : o->output_len;
        if (in_len[i] > max_in) max_in = in_len[i];
        sum_in += in_len[i];
        sum_out += out_len[i];
    }
    ids = malloc(sizeof(int32_t) * (size_t)max_in);
    if (!ids) { fprintf(stderr, "cllm: error: out of host memory\n"); goto done; }
    if (o->profile) cllm_prof_enable(true);
    double t0 = cllm_now_ms();
    for (long i = 0; i < N; i++) {
        for (long t = 0; t < in_len[i]; t++) ids[t] = (int32_t)(next_rand(&x) % (uint64_t)V);
        cllm_request_params p = cllm_request_default_params();
        p.temperature = 1.0f, p.top_p = 1.0f, p.ignore_eos = true, p.max_tokens = (int)out_len[i];
        p.seed = (uint64_t)(o->seed + i), p.has_seed = true;
        uint64_t id;
        if (cllm_engine_add_request(e, NULL, ids, (size_t)in_len[i], &p, &id) != CLLM_OK) {
            fprintf(stderr, "cllm: error: prompt %ld (%ld + %ld tokens): %s\n", i, in_len[i], out_len[i], cllm_last_error());
            goto done;
        }
    }
    long steps = 0, finished = 0, out_tokens = 0;
    while (cllm_engine_has_unfinished(e)) {
        const cllm_request_output *outs;
        int n;
        if (cllm_engine_step(e, &outs, &n) != CLLM_OK) {
            fprintf(stderr, "cllm: error: step %ld: %s\n", steps, cllm_last_error());
            goto done;
        }
        if (cllm_prof_on) cllm_prof_switch(CLLM_PROF_NONE);
        steps++;
        for (int i = 0; i < n; i++) {
            out_tokens += outs[i].num_new_tokens;
            finished += outs[i].finished;
        }
    }
    double elapsed = (cllm_now_ms() - t0) / 1e3;
    double prof[CLLM_PROF_NCAT] = {0};
    if (o->profile) cllm_prof_get(prof), cllm_prof_enable(false);
    if (finished != N || out_tokens != sum_out) {
        fprintf(stderr, "cllm: error: %ld of %ld requests finished, %ld of %ld output tokens (ignore_eos should give "
                        "all)\n", finished, N, out_tokens, sum_out);
        goto done;
    }
    cllm_engine_stats st;
    cllm_engine_get_stats(e, &st);
    double step_ms = steps ? elapsed * 1e3 / steps : 0;
    printf("cllm bench throughput: %ld prompts, input %ld, output %ld%s, engine ready in %.1f s, KV cache %d blocks, "
           "%llu preemptions%s\n",
           N, o->input_len, o->output_len, o->range_ratio > 0 ? " (random lengths)" : "", t_load / 1e3,
           st.num_kv_blocks, (unsigned long long)st.num_preemptions, o->profile ? ", PROFILED (synchronizing)" : "");
    printf("Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s\n", N / elapsed,
           (sum_in + sum_out) / elapsed, sum_out / elapsed);
    printf("elapsed %.3f s, %ld prompt tokens, %ld output tokens, %ld steps, %.3f ms/step\n", elapsed, sum_in, sum_out,
           steps, step_ms);
    double prof_sum = 0;
    for (int c = 0; c < CLLM_PROF_NCAT; c++) prof_sum += prof[c];
    if (o->profile) {
        printf("time per step (ms): ");
        for (int c = 0; c < CLLM_PROF_NCAT; c++)
            printf("%s %.3f (%.1f%%), ", cllm_prof_name((cllm_prof_cat)c), prof[c] / steps,
                   100.0 * prof[c] / (elapsed * 1e3));
        printf("rest %.3f (%.1f%%)\n", step_ms - prof_sum / steps, 100.0 * (1.0 - prof_sum / (elapsed * 1e3)));
    }
    /* Distributed: rank 0's collectives per group and op (the tp all_gather is the vocabulary-parallel LM
     * head's logits, the all_reduces the row-parallel linears and the embedding), per step: what sampling on
     * the shards instead of gathering the logits could save at most. */
    cllm_comm_stats *cs = NULL;
    int ncs = 0;
    if (cllm_engine_get_distributed_stats(e, &cs, &ncs) == CLLM_OK) {
        for (int i = 0; i < ncs; i++) {
            if (cs[i].world_rank != 0) continue;
            bool any = false;
            for (int op = 0; op < CLLM_COMM_NUM_OPS; op++) {
                const cllm_comm_op_stats *q = &cs[i].ops[op];
                if (!q->calls) continue;
                if (!any)
                    printf("comm per step, rank 0, group %s (%s, size %d):", cs[i].name, cs[i].transport, cs[i].size);
                printf("%s %s %.1f calls, %.3f MiB, %.3f ms (%.1f%%)", any ? ";" : "",
                       cllm_comm_op_name((cllm_comm_op)op), (double)q->calls / (double)steps,
                       (double)q->bytes / (double)steps / 1048576.0, q->time_s * 1e3 / (double)steps,
                       100.0 * q->time_s / elapsed);
                any = true;
            }
            if (any) printf("\n");
        }
        cllm_free(cs);
    }
    if (o->json_path) {
        json_t *j = json_pack("{s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:f, s:b}", "elapsed_time", elapsed,
                              "num_requests", (json_int_t)N, "total_num_tokens", (json_int_t)(sum_in + sum_out),
                              "total_output_tokens", (json_int_t)sum_out, "requests_per_second", N / elapsed,
                              "tokens_per_second", (sum_in + sum_out) / elapsed, "output_tokens_per_second",
                              sum_out / elapsed, "num_steps", (json_int_t)steps, "ms_per_step", step_ms, "profiled",
                              o->profile);
        if (j && o->profile) {
            json_t *sp = json_object();
            for (int c = 0; c < CLLM_PROF_NCAT; c++)
                json_object_set_new(sp, cllm_prof_name((cllm_prof_cat)c), json_real(prof[c] / steps));
            json_object_set_new(sp, "rest", json_real(step_ms - prof_sum / steps));
            json_object_set_new(j, "ms_per_step_split", sp);
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
    if (cllm_prof_on) cllm_prof_enable(false);
    free(in_len), free(out_len), free(ids);
    cllm_engine_destroy(e);
    return rc;
}

int cllm_cli_bench_throughput(int argc, char **argv) {
    cllm_engine_args ea;
    cllm_engine_args_init(&ea);
    tp_opts o = {.num_prompts = 1000, .input_len = 1024, .output_len = 128, .profile = cllm_prof_env()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--profile")) { o.profile = true; continue; }
        int e = cllm_engine_args_parse(&ea, argc, argv, &i);
        if (e < 0) return 2;
        if (e > 0) continue;
        if (!cllm_arg_value(argc, argv, &i, &v)) return 2;
        int ok = 1;
        if (!strcmp(a, "--num-prompts")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o.num_prompts);
        else if (!strcmp(a, "--input-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o.input_len);
        else if (!strcmp(a, "--output-len")) ok = cllm_arg_long(a, v, 1, 1L << 24, &o.output_len);
        else if (!strcmp(a, "--random-range-ratio")) ok = cllm_arg_double(a, v, 0.0, 1.0, &o.range_ratio);
        else if (!strcmp(a, "--seed")) ok = cllm_arg_long(a, v, 0, 1L << 30, &o.seed);
        else if (!strcmp(a, "--output-json")) o.json_path = v;
        else {
            fprintf(stderr, "cllm bench throughput: unknown flag '%s' (cllm bench throughput --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    cllm_engine_params ep = ea.p;
    if (!ep.model.model) { fprintf(stderr, "cllm bench throughput: --model is required\n"); return 2; }
    ep.model.progress = false;
    if (!ea.max_num_seqs_set && ep.model.device == CLLM_DEVICE_CPU) ep.max_num_seqs = 32; /* the engine's CPU default */
    ep.max_num_waiting = o.num_prompts + 16 > (1L << 30) ? 1 << 30 : (int)(o.num_prompts + 16);
    return run(&ep, &o);
}
