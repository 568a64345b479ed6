/* Model registry: a YAML file of named deployments for `cllm serve <name>`.
 *
 *   models:
 *     llama3-8b:
 *       model: meta-llama/Llama-3.1-8B-Instruct   # required: ORG/NAME or a directory
 *       dtype: bfloat16
 *       tensor-parallel-size: 1
 *       gpu-memory-utilization: 0.9
 *       max-num-seqs: 256
 *       max-model-len: 8192
 *       description: Llama 3.1 8B Instruct on one GPU
 *
 * Keys are vLLM's engine-argument flag names (dashes; underscores are
 * accepted too): model, revision, served-model-name, dtype (auto, float32,
 * float, bfloat16, float16, half), device (cpu, cuda), tensor-parallel-size,
 * pipeline-parallel-size, data-parallel-size (replicas of the tp x pp world,
 * each its own `cllm serve`; read by the launch plan, src/cli/serve_plan.h),
 * gpu-memory-utilization (0, 1], max-num-seqs,
 * max-model-len, max-num-batched-tokens, block-size (1, 8, 16, 32, 64, 128),
 * enable-prefix-caching (true/false), seed, description. Unknown keys, wrong
 * types and out-of-range values are errors that name the file, line and
 * column; malformed YAML reports libyaml's problem and its line:column.
 *
 * Path lookup (cllm_registry_resolve_path): the --registry flag, else
 * $CLLM_REGISTRY, else configs/models.yaml of the install (next to the
 * executable: <bindir>/../configs/models.yaml, <bindir>/../share/cllm/models.yaml).
 */
#ifndef CLLM_SERVER_REGISTRY_H
#define CLLM_SERVER_REGISTRY_H

#include "cllm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One deployment. Strings are owned by the registry (NULL when not given);
 * numbers are 0 (or -1 for the tri-states) when not given, meaning "the
 * engine's default". */
typedef struct cllm_registry_entry {
    char *name;                   /* the mapping key under `models:` */
    char *model;                  /* required */
    char *revision;
    char *served_model_name;      /* default: name */
    char *dtype;
    char *device;
    char *description;
    int tensor_parallel_size;
    int pipeline_parallel_size;
    int data_parallel_size;
    double gpu_memory_utilization;
    int max_num_seqs;
    int max_model_len;
    int max_num_batched_tokens;
    int block_size;
    int enable_prefix_caching;    /* -1 unset, 0 false, 1 true */
    int64_t seed;                 /* -1 unset */
    int line;                     /* 1-based line of the entry in the file */
} cllm_registry_entry;

typedef struct cllm_registry cllm_registry;

/* Load and validate a registry file. *out is caller-owned
 * (cllm_registry_destroy). Errors (message names path:line:column):
 * CLLM_ERR_IO (cannot read), CLLM_ERR_FORMAT (malformed YAML, wrong
 * structure, unknown key, bad value), CLLM_ERR_OOM. */
cllm_status cllm_registry_load(const char *path, cllm_registry **out);
/* As cllm_registry_load, from len bytes of YAML text; source names it in messages. */
cllm_status cllm_registry_load_string(const char *yaml, size_t len, const char *source, cllm_registry **out);
/* NULL is a no-op. */
void cllm_registry_destroy(cllm_registry *reg);

/* Entries in file order; the pointers are borrowed (valid while reg lives). */
size_t cllm_registry_count(const cllm_registry *reg);
const cllm_registry_entry *cllm_registry_get(const cllm_registry *reg, size_t i);

/* Find a deployment by name. CLLM_ERR_NOT_FOUND with a message listing the
 * available names. *out is borrowed. */
cllm_status cllm_registry_lookup(const cllm_registry *reg, const char *name, const cllm_registry_entry **out);

/* The equivalent command line, for `cllm serve <name> --dry-run`:
 * "cllm serve --model M --served-model-name N --dtype D --tensor-parallel-size 1 ..."
 * (only the fields given; values shell-quoted when needed). *out is
 * caller-owned (cllm_free). Returns CLLM_OK or CLLM_ERR_OOM. */
cllm_status cllm_registry_command_line(const cllm_registry_entry *e, char **out);

/* Pick the registry file: flag_value if non-NULL, else $CLLM_REGISTRY, else
 * the install's configs/models.yaml. *out is caller-owned (cllm_free).
 * CLLM_ERR_NOT_FOUND (message lists the places tried) when no file exists. */
cllm_status cllm_registry_resolve_path(const char *flag_value, char **out);

#ifdef __cplusplus
}
#endif
#endif
