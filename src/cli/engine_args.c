/* Shared engine flags (see engine_args.h). */
#include "cli/engine_args.h"
#include "cli/args.h"
#include "core/dtype.h"

#include <stdlib.h>
#include <string.h>

/* vLLM's human_readable_int: digits with an optional suffix, k/m/g decimal
 * (1e3/1e6/1e9), K/M/G binary (2^10/2^20/2^30). */
static int parse_bytes(const char *flag, const char *v, uint64_t *out) {
    char *end = NULL;
    double x = strtod(v, &end);
    double mult = 1;
    if (end && *end) {
        const char *suf = "kmgKMG";
        const double mul[] = {1e3, 1e6, 1e9, 1024.0, 1048576.0, 1073741824.0};
        const char *k = end[1] == 0 ? strchr(suf, *end) : NULL;
        mult = k ? mul[k - suf] : 0;
    }
    if (end == v || !(mult > 0) || !(x > 0) || x * mult > 1e18) {
        fprintf(stderr, "cllm: %s expects a positive byte count (e.g. 4G, 512M, 1000000), got '%s'\n", flag, v);
        return 0;
    }
    *out = (uint64_t)(x * mult);
    return 1;
}

void cllm_engine_args_init(cllm_engine_args *a) {
    memset(a, 0, sizeof *a);
    a->p = cllm_engine_default_params();
}

void cllm_engine_args_usage(FILE *f) {
    fprintf(f,
            "engine arguments (vLLM's names):\n"
            "  --model DIR|ORG/NAME          checkpoint directory or Hugging Face repo (cache, then the Hub)\n"
            "  --revision REV                Hub revision (main)\n"
            "  --device cpu|cuda             backend (cpu)\n"
            "  --dtype auto|bfloat16|float32 activation/weight dtype (auto: the backend's)\n"
            "  --load-format auto|dummy      dummy: random weights from config.json\n"
            "  --tensor-parallel-size, -tp N shard the model over N ranks (self-launched workers, or the\n"
            "                                ranks of mpirun / srun; see docs/distributed.md)\n"
            "  --pipeline-parallel-size, -pp N  split the layers into N stages (world = tp x pp ranks)\n"
            "  --pp-layer-partition L,L,...  layers per stage (even split by default)\n"
            "  --pp-micro-batches M          micro-batches per step flowing through the stages (pp)\n"
            "  --enable-expert-parallel      MoE models: whole experts spread over the -tp ranks, tokens\n"
            "                                dispatched with all-to-all (default: every rank a slice of each)\n"
            "  --dist-timeout S              a collective or worker silent this long fails the engine (60)\n"
            "  --max-model-len N             context length (config's max_position_embeddings)\n"
            "  --block-size N                KV-cache block size in tokens (16)\n"
            "  --kv-cache-dtype auto|fp8|fp8_e4m3  KV-cache storage: auto = the activation dtype; fp8 =\n"
            "                                float8_e4m3fn, 1 byte per element (2x/4x the blocks of bf16/fp32),\n"
            "                                scaled by the checkpoint's k_scale/v_scale (1.0 if none); CPU only\n"
            "  --quantization fp8            quantize the layers' linears to float8_e4m3fn per output channel on\n"
            "                                load (CUDA keeps them in FP8: W8A8 GEMMs; CPU runs them dequantized)\n"
            "  --max-num-seqs N              sequences per step (CUDA 256, CPU 32)\n"
            "  --max-num-batched-tokens N    token budget per step, chunked prefill (2048)\n"
            "  --max-num-waiting N           bound of the waiting queue (4096)\n"
            "  --gpu-memory-utilization F    fraction of device memory for weights + KV cache (0.9)\n"
            "  --num-gpu-blocks-override N   KV-cache blocks instead of profiling\n"
            "  --kv-cache-memory-bytes N     KV-cache bytes per rank instead of profiling (suffixes k/m/g =\n"
            "                                1e3/1e6/1e9, K/M/G = 2^10/2^20/2^30)\n"
            "  --enable-prefix-caching | --no-enable-prefix-caching   (on)\n"
            "  --enforce-eager               no CUDA graphs\n"
            "  --num-threads N               CPU threads (0: all cores)\n");
}

int cllm_engine_args_parse(cllm_engine_args *a, int argc, char **argv, int *i) {
    const char *f = argv[*i];
    cllm_engine_params *p = &a->p;
    cllm_model_params *m = &p->model;
    if (!strcmp(f, "--enforce-eager")) { p->enforce_eager = m->enforce_eager = true; return 1; }
    if (!strcmp(f, "--enable-expert-parallel")) { m->enable_expert_parallel = true; return 1; }
    if (!strcmp(f, "--enable-prefix-caching")) { p->enable_prefix_caching = true; return 1; }
    if (!strcmp(f, "--no-enable-prefix-caching")) { p->enable_prefix_caching = false; return 1; }
    static const char *const with_value[] = {
        "--model", "--revision", "--device", "--dtype", "--load-format", "--tensor-parallel-size", "-tp",
        "--pipeline-parallel-size", "-pp", "--pp-layer-partition", "--pp-micro-batches",
        "--dist-timeout", "--max-model-len", "--block-size", "--kv-cache-dtype", "--quantization", "-q", "--max-num-seqs", "--max-num-batched-tokens",
        "--max-num-waiting", "--gpu-memory-utilization", "--num-gpu-blocks-override", "--kv-cache-memory-bytes", "--num-threads", NULL};
    int k = 0;
    while (with_value[k] && strcmp(f, with_value[k])) k++;
    if (!with_value[k]) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "cllm: flag %s needs a value\n", f);
        return -1;
    }
    const char *v = argv[++*i];
    long l = 0;
    double d = 0;
    int ok = 1;
    if (!strcmp(f, "--model")) m->model = v;
    else if (!strcmp(f, "--revision")) m->revision = v;
    else if (!strcmp(f, "--device")) ok = cllm_arg_device(f, v, &m->device);
    else if (!strcmp(f, "--dtype")) ok = cllm_arg_dtype(f, v, &m->dtype);
    else if (!strcmp(f, "--load-format")) ok = cllm_arg_load_format(f, v, &m->load_format);
    else if (!strcmp(f, "--kv-cache-dtype")) {
        if (cllm_kv_cache_dtype_parse(v, &m->kv_cache_dtype) != 0) {
            fprintf(stderr, "cllm: %s expects one of %s, got '%s'\n", f, CLLM_KV_CACHE_DTYPES, v);
            ok = 0;
        }
    }
    else if (!strcmp(f, "--quantization") || !strcmp(f, "-q")) {
        if (!strcmp(v, "fp8")) m->quantization = CLLM_QUANTIZATION_FP8;
        else if (!strcmp(v, "none")) m->quantization = CLLM_QUANTIZATION_NONE;
        else {
            fprintf(stderr, "cllm: %s expects fp8 (or none), got '%s'\n", f, v);
            ok = 0;
        }
    }
    else if (!strcmp(f, "--tensor-parallel-size") || !strcmp(f, "-tp")) {
        ok = cllm_arg_long(f, v, 1, 64, &l);
        m->tensor_parallel_size = (int)l;
    } else if (!strcmp(f, "--pipeline-parallel-size") || !strcmp(f, "-pp")) {
        ok = cllm_arg_long(f, v, 1, 64, &l);
        m->pipeline_parallel_size = (int)l;
    } else if (!strcmp(f, "--pp-layer-partition")) {
        m->pp_layer_partition = v;
    } else if (!strcmp(f, "--pp-micro-batches")) {
        ok = cllm_arg_long(f, v, 1, 1024, &l);
        m->pp_micro_batches = (int)l;
    } else if (!strcmp(f, "--dist-timeout")) ok = cllm_arg_double(f, v, 0.1, 1e6, &m->dist_timeout_s);
    else if (!strcmp(f, "--max-model-len")) {
        ok = cllm_arg_long(f, v, 1, 1L << 30, &l);
        m->max_model_len = (int)l;
    } else if (!strcmp(f, "--block-size")) {
        ok = cllm_arg_long(f, v, 1, 4096, &l);
        m->block_size = (int)l;
    } else if (!strcmp(f, "--max-num-seqs")) {
        ok = cllm_arg_long(f, v, 1, 1 << 20, &l);
        p->max_num_seqs = m->max_num_seqs = (int)l;
        a->max_num_seqs_set = true;
    } else if (!strcmp(f, "--max-num-batched-tokens")) {
        ok = cllm_arg_long(f, v, 1, 1L << 30, &l);
        p->max_num_batched_tokens = (int)l;
        a->max_num_batched_tokens_set = true;
    } else if (!strcmp(f, "--max-num-waiting")) {
        ok = cllm_arg_long(f, v, 1, 1 << 24, &l);
        p->max_num_waiting = (int)l;
    } else if (!strcmp(f, "--gpu-memory-utilization")) {
        ok = cllm_arg_double(f, v, 1e-6, 1, &d);
        p->gpu_memory_utilization = (float)d;
    } else if (!strcmp(f, "--num-gpu-blocks-override")) {
        ok = cllm_arg_long(f, v, 1, 1L << 30, &l);
        p->num_gpu_blocks_override = (int)l;
    } else if (!strcmp(f, "--kv-cache-memory-bytes")) {
        ok = parse_bytes(f, v, &p->kv_cache_memory_bytes);
    } else if (!strcmp(f, "--num-threads")) {
        ok = cllm_arg_long(f, v, 0, 4096, &l);
        m->num_threads = (int)l;
    }
    return ok ? 1 : -1;
}
