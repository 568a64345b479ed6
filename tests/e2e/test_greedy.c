/* Greedy generation on the CPU reproduces, token for token, every case of a
 * model's reference_greedy.json (an independent numpy forward, which
 * transformers also reproduces).
 * usage: test_greedy MODEL_DIR REFERENCE_JSON ids|text [TENSOR_PARALLEL_SIZE [PIPELINE_PARALLEL_SIZE
 *        [PP_LAYER_PARTITION]]]
 *  ids:  generate from the case's prompt_ids (the forward pass alone);
 *  text: cllm_generate from the prompt text (tokenizer + BOS + forward),
 *        collecting token ids through the stream callback. */
#include "cllm.h"
#include "engine/generate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct collect {
    int32_t ids[4096];
    int n;
} collect;

static bool on_token(const char *delta, size_t len, int32_t id, void *user) {
    collect *c = user;
    if (id >= 0 && c->n < 4096) c->ids[c->n++] = id;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 7) {
        fprintf(stderr, "usage: %s MODEL_DIR REFERENCE_JSON ids|text [TP [PP [PP_LAYER_PARTITION]]]\n", argv[0]);
        return 2;
    }
    bool text = !strcmp(argv[3], "text");
    json_error_t je;
    json_t *ref = json_load_file(argv[2], 0, &je);
    json_t *cases = json_object_get(ref, "cases");
    if (!json_is_array(cases) || json_array_size(cases) == 0) {
        fprintf(stderr, "FAIL: %s: no cases (%s)\n", argv[2], je.text);
        json_decref(ref);
        return 1;
    }
    cllm_model_params mp = cllm_model_default_params();
    mp.model = argv[1];
    mp.progress = false;
    mp.tensor_parallel_size = argc >= 5 ? atoi(argv[4]) : 1; /* workers: $CLLM_WORKER_EXE */
    mp.pipeline_parallel_size = argc >= 6 ? atoi(argv[5]) : 1;
    mp.pp_layer_partition = argc >= 7 ? argv[6] : NULL;
    cllm_model *m = NULL;
    if (cllm_model_load(&mp, &m) != CLLM_OK) {
        fprintf(stderr, "FAIL: load: %s\n", cllm_last_error());
        json_decref(ref);
        return 1;
    }
    int fails = 0;
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        json_t *pids = json_object_get(c, "prompt_ids"), *want = json_object_get(c, "greedy_64_ids");
        int np = (int)json_array_size(pids), nw = (int)json_array_size(want);
        int32_t *prompt = malloc(sizeof(int32_t) * (np + 1));
        for (int i = 0; i < np; i++) prompt[i] = (int32_t)json_integer_value(json_array_get(pids, i));
        cllm_sampling_params sp = cllm_sampling_default_params();
        sp.temperature = 0.0f;
        sp.max_tokens = nw;
        sp.ignore_eos = true;
        collect got = {.n = 0};
        cllm_generate_result r;
        cllm_status st = text ? cllm_generate(m, json_string_value(json_object_get(c, "prompt")), &sp, on_token, &got, &r)
                              : cllm_generate_ids(m, prompt, np, &sp, false, on_token, &got, &r);
        int bad = st != CLLM_OK || got.n != nw;
        for (int i = 0; !bad && i < nw; i++)
            if (got.ids[i] != (int32_t)json_integer_value(json_array_get(want, i))) {
                fprintf(stderr, "  case %zu: token %d is %d, want %d\n", ci, i, got.ids[i],
                        (int)json_integer_value(json_array_get(want, i)));
                bad = 1;
            }
        if (text && st == CLLM_OK && r.num_prompt_tokens != np) {
            fprintf(stderr, "  case %zu: prompt has %d tokens, want %d\n", ci, r.num_prompt_tokens, np);
            bad = 1;
        }
        if (st != CLLM_OK) fprintf(stderr, "  case %zu: %s\n", ci, cllm_last_error());
        printf("case %zu (%d prompt tokens): %s\n", ci, np, bad ? "FAIL" : "ok");
        fails += bad;
        free(prompt);
    }
    cllm_model_destroy(m);
    json_decref(ref);
    return fails ? 1 : 0;
}
