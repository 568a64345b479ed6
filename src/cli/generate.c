/* cllm generate: load a model, stream a continuation of --prompt to stdout,
 * print a stats line on stderr. Sampling defaults: vLLM's, then the model's
 * generation_config.json, then the flags (temperature 0 = greedy). */
#include "cli/cli.h"
#include "cli/args.h"
#include "cli/engine_args.h"
#include "cllm.h"
#include "core/dtype.h"
#include "engine/generate.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cllm generate --model DIR|ORG/NAME --prompt TEXT [--max-tokens 64] [--temperature T]\n"
               "       [--top-p P] [--top-k K] [--min-p P] [--seed N] [--ignore-eos] [engine arguments]\n"
               "   or: cllm generate --model DIR --input prompts.jsonl [--output F] [engine arguments]\n"
               "       (one JSON request per line: {\"prompt\": ...} or {\"prompt_token_ids\": [...]} plus vLLM\n"
               "       sampling params)\n\n");
    cllm_engine_args_usage(f);
}

static bool on_delta(const char *delta, size_t len, int32_t id, void *user) {
    (void)id; (void)user;
    if (len) {
        fwrite(delta, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

int cllm_cli_generate(int argc, char **argv) {
    cllm_engine_args ea;
    cllm_engine_args_init(&ea);
    const char *prompt = NULL;
    /* flags given by the user override generation_config.json */
    double temperature = -1, top_p = -1, min_p = -1;
    long top_k = -2, max_tokens = 64, seed = 0;
    bool has_seed = false, ignore_eos = false;
    const char *input = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--ignore-eos")) { ignore_eos = true; continue; }
        int e = cllm_engine_args_parse(&ea, argc, argv, &i);
        if (e < 0) return 2;
        if (e > 0) continue;
        const char *v;
        if (!cllm_arg_value(argc, argv, &i, &v)) return 2;
        int ok = 1;
        if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--output")) output = v;
        else if (!strcmp(a, "--max-tokens")) ok = cllm_arg_long(a, v, 1, 1L << 30, &max_tokens);
        else if (!strcmp(a, "--temperature")) ok = cllm_arg_double(a, v, 0, 1e6, &temperature);
        else if (!strcmp(a, "--top-p")) ok = cllm_arg_double(a, v, 1e-9, 1, &top_p);
        else if (!strcmp(a, "--top-k")) ok = cllm_arg_long(a, v, -1, 1L << 30, &top_k);
        else if (!strcmp(a, "--min-p")) ok = cllm_arg_double(a, v, 0, 1, &min_p);
        else if (!strcmp(a, "--seed")) { ok = cllm_arg_long(a, v, 0, (1L << 62), &seed); has_seed = true; }
        else {
            fprintf(stderr, "cllm generate: unknown flag '%s' (cllm generate --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    cllm_model_params mp = ea.p.model;
    if (!mp.model) { fprintf(stderr, "cllm generate: --model is required\n"); return 2; }
    if (!prompt && !input) { fprintf(stderr, "cllm generate: --prompt or --input is required\n"); return 2; }
    if (prompt && input) { fprintf(stderr, "cllm generate: give --prompt or --input, not both\n"); return 2; }
    if (input) {
        cllm_engine_params ep = ea.p;
        if (mp.device == CLLM_DEVICE_CPU && !ea.max_num_seqs_set) ep.max_num_seqs = 32; /* cllm.h: CPU default */
        return cllm_cli_generate_jsonl(&ep, input, output);
    }
    mp.max_num_seqs = 1;

    cllm_model *m = NULL;
    if (cllm_model_load(&mp, &m) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        return 1;
    }
    cllm_sampling_params sp = cllm_sampling_default_params();
    cllm_model_apply_generation_config(m, &sp);
    if (temperature >= 0) sp.temperature = (float)temperature;
    if (top_p >= 0) sp.top_p = (float)top_p;
    if (top_k >= -1) sp.top_k = (int)top_k;
    if (min_p >= 0) sp.min_p = (float)min_p;
    sp.max_tokens = (int)max_tokens;
    sp.seed = (uint64_t)seed;
    sp.has_seed = has_seed;
    sp.ignore_eos = ignore_eos;

    cllm_generate_result res;
    cllm_status st = cllm_generate(m, prompt, &sp, on_delta, NULL, &res);
    printf("\n");
    fflush(stdout);
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        cllm_model_destroy(m);
        return 1;
    }
    fprintf(stderr, "[%d prompt + %d generated tokens, finish: %s, ttft %.1f ms, decode %.1f tokens/s, load %.0f ms]\n",
            res.num_prompt_tokens, res.num_generated_tokens, res.finish_reason, res.ttft_ms,
            res.decode_tokens_per_s, cllm_model_load_ms(m));
    cllm_model_destroy(m);
    return 0;
}
