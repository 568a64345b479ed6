/* cllm public C API.
 *
 * cllm is an LLM inference engine: it loads Hugging Face checkpoints
 * (config.json + safetensors + tokenizer.json), tokenizes exactly as Hugging
 * Face `tokenizers` does, and runs the transformer on a CPU reference backend
 * (fp32) or a CUDA backend (bf16).
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - Opaque handles, created by *_create / *_load and released by *_destroy;
 *    *_destroy(NULL) is a no-op.
 *  - Every fallible call returns a cllm_status. On failure a one-line message
 *    saying what was wrong and what to do is available from cllm_last_error()
 *    (thread-local, valid until the next failing call on the same thread).
 *  - Memory returned through an out-pointer (ids, text) is owned by the caller
 *    and released with cllm_free().
 *  - Enum values are only ever appended.
 */
#ifndef CLLM_H
#define CLLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLLM_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */
typedef enum cllm_status {
    CLLM_OK = 0,
    CLLM_ERR_INVALID_ARG = 1,    /* a parameter or flag is out of range */
    CLLM_ERR_IO = 2,             /* a file could not be opened/read/mapped */
    CLLM_ERR_FORMAT = 3,         /* a file is malformed (JSON, safetensors) */
    CLLM_ERR_UNSUPPORTED = 4,    /* valid input cllm does not support (model_type, dtype) */
    CLLM_ERR_OOM = 5,            /* host or device allocation failed */
    CLLM_ERR_NOT_FOUND = 6,      /* model, tensor or token not found */
    CLLM_ERR_NETWORK = 7,        /* download failed */
    CLLM_ERR_NO_DEVICE = 8,      /* CUDA requested but no GPU / not built with CUDA */
    CLLM_ERR_CUDA = 9,           /* CUDA, cuBLAS or NCCL call failed */
    CLLM_ERR_CONTEXT_LENGTH = 10,/* prompt (+ max_tokens) longer than max_model_len */
    CLLM_ERR_NO_KV_BLOCKS = 11,  /* KV cache is full */
    CLLM_ERR_INTERNAL = 12,      /* broken invariant (a bug) */
    CLLM_ERR_DISTRIBUTED = 13,   /* a peer rank died, a collective timed out or failed (NCCL/TCP) */
} cllm_status;

/* Short name of a status ("CLLM_ERR_IO"). Never NULL. */
const char *cllm_status_str(cllm_status s);
/* Message of the last failing call on this thread ("" if none). Never NULL. */
const char *cllm_last_error(void);
/* Release memory returned by cllm (ids, text). NULL is a no-op. */
void cllm_free(void *p);

/* ------------------------------------------------------------- tokenizer */
typedef struct cllm_tokenizer cllm_tokenizer;

/* Load a Hugging Face tokenizer. path: a directory holding tokenizer.json
 * (tokenizer_config.json is read too when present: chat_template, bos/eos
 * names), or the path of a tokenizer.json file.
 * Returns CLLM_OK, CLLM_ERR_IO (missing file), CLLM_ERR_FORMAT (bad JSON),
 * CLLM_ERR_UNSUPPORTED (a model/normalizer/pre-tokenizer type not handled). */
cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out);
void cllm_tokenizer_destroy(cllm_tokenizer *tok);

/* Encode UTF-8 text (len bytes; need not be NUL-terminated) into token ids,
 * as Hugging Face `Tokenizer.encode(text, add_special_tokens=...)`.
 * *ids is caller-owned (cllm_free). Invalid UTF-8 gives CLLM_ERR_INVALID_ARG. */
cllm_status cllm_tokenizer_encode(const cllm_tokenizer *tok, const char *text, size_t len,
                                  bool add_special_tokens, int32_t **ids, size_t *n_ids);

/* Decode ids to UTF-8 text, as Hugging Face `Tokenizer.decode(ids,
 * skip_special_tokens=...)`. *text is NUL-terminated, caller-owned (cllm_free).
 * Ids past the vocabulary decode to nothing (as Hugging Face skips ids it
 * has no token for); negative ids give CLLM_ERR_INVALID_ARG. */
cllm_status cllm_tokenizer_decode(const cllm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                  bool skip_special_tokens, char **text, size_t *len);

/* Vocabulary size including added tokens (max id + 1). */
int32_t cllm_tokenizer_vocab_size(const cllm_tokenizer *tok);
/* Id of a token string (vocab or added token), or -1. */
int32_t cllm_tokenizer_token_to_id(const cllm_tokenizer *tok, const char *token);
/* Token string of an id (borrowed, valid while tok lives), or NULL. */
const char *cllm_tokenizer_id_to_token(const cllm_tokenizer *tok, int32_t id);
/* True if id is a special added token (skipped by skip_special_tokens). */
bool cllm_tokenizer_is_special(const cllm_tokenizer *tok, int32_t id);
/* bos/eos ids from tokenizer_config.json (bos_token / eos_token), or -1. */
int32_t cllm_tokenizer_bos_id(const cllm_tokenizer *tok);
int32_t cllm_tokenizer_eos_id(const cllm_tokenizer *tok);

/* chat_template of tokenizer_config.json (the "default" one when it is a
 * list of named templates; else chat_template.jinja beside it), or NULL when
 * the tokenizer has none. Borrowed: valid while tok lives. */
const char *cllm_tokenizer_chat_template(const cllm_tokenizer *tok);

/* Render a chat template as transformers' apply_chat_template(tokenize=False)
 * does (src/tokenizer/chat_template.h: a Jinja subset, bounded in time and
 * memory). context_json: UTF-8 JSON object, NUL-terminated, holding
 * "messages" (a list of {"role", "content", ...}) and any other template
 * variables ("add_generation_prompt", "tools", "documents", extra kwargs);
 * "bos_token" / "eos_token" default to the tokenizer's (tokenizer_config.json).
 * chat_template: Jinja source, or NULL for the tokenizer's own.
 * *text: the rendered prompt, NUL-terminated, caller-owned (cllm_free); *len
 * its length in bytes (len may be NULL). The text is not tokenized: encode it
 * with add_special_tokens=false, as vLLM does, since templates write BOS.
 * Returns CLLM_OK; CLLM_ERR_NOT_FOUND (chat_template NULL and the tokenizer
 * has none); CLLM_ERR_FORMAT (context_json is not a JSON object with a
 * "messages" list; the template does not compile: line and column);
 * CLLM_ERR_INVALID_ARG (the template called raise_exception: the message is
 * its argument, as transformers' TemplateError; or failed at run time);
 * CLLM_ERR_OOM. Thread-safe: compiles the template on every call. */
cllm_status cllm_tokenizer_apply_chat_template(const cllm_tokenizer *tok, const char *chat_template,
                                               const char *context_json, char **text, size_t *len);

/* Incremental detokenizer: turns a stream of ids into text deltas that never
 * split a UTF-8 character and equal, concatenated, decode(all ids) minus
 * decode(prompt ids) (vLLM's prefix/read-offset algorithm). */
typedef struct cllm_detokenizer cllm_detokenizer;
cllm_status cllm_detokenizer_create(const cllm_tokenizer *tok, const int32_t *prompt_ids,
                                    size_t n_prompt, bool skip_special_tokens,
                                    cllm_detokenizer **out);
/* Feed one id; *delta (NUL-terminated, caller-owned, cllm_free) is the new
 * text, possibly "" while a character is incomplete. */
cllm_status cllm_detokenizer_step(cllm_detokenizer *d, int32_t id, char **delta, size_t *len);
/* Text still held back (e.g. an incomplete UTF-8 tail), returned at the end. */
cllm_status cllm_detokenizer_flush(cllm_detokenizer *d, char **delta, size_t *len);
void cllm_detokenizer_destroy(cllm_detokenizer *d);

/* ----------------------------------------------------------------- model */
typedef enum cllm_device { CLLM_DEVICE_CPU = 0, CLLM_DEVICE_CUDA = 1 } cllm_device;

/* Storage/compute dtypes. AUTO: the backend's natural dtype (CPU: float32,
 * CUDA: bfloat16). The FP8 types are storage types of checkpoint tensors;
 * they are never an activation dtype. */
typedef enum cllm_dtype {
    CLLM_DTYPE_AUTO = 0,
    CLLM_DTYPE_F32 = 1,
    CLLM_DTYPE_BF16 = 2,
    CLLM_DTYPE_F16 = 3,
    CLLM_DTYPE_I32 = 4,
    CLLM_DTYPE_I64 = 5,
    CLLM_DTYPE_U8 = 6,
    CLLM_DTYPE_F64 = 7,
    CLLM_DTYPE_I16 = 8,
    CLLM_DTYPE_I8 = 9,
    CLLM_DTYPE_BOOL = 10,
    CLLM_DTYPE_F8_E4M3 = 11,     /* float8_e4m3fn (FP8 checkpoint weights; the fp8 KV cache) */
    CLLM_DTYPE_F8_E5M2 = 12,     /* float8_e5m2 (checkpoint storage only) */
} cllm_dtype;

/* vLLM's --load-format: AUTO reads safetensors; DUMMY builds random weights
 * from config.json alone (benchmarks). */
typedef enum cllm_load_format { CLLM_LOAD_AUTO = 0, CLLM_LOAD_DUMMY = 1 } cllm_load_format;

/* vLLM's --quantization: NONE uses the checkpoint as stored (FP8
 * checkpoints are read from their quantization_config either way); FP8
 * ("fp8") quantizes a float checkpoint's q/k/v/o/gate/up/down weights to
 * float8_e4m3fn per output channel on load (not the embedding, norms,
 * lm_head or MoE experts). */
typedef enum cllm_quantization { CLLM_QUANTIZATION_NONE = 0, CLLM_QUANTIZATION_FP8 = 1 } cllm_quantization;

typedef struct cllm_model_params {
    const char *model;           /* directory or ORG/NAME (Hugging Face cache / Hub) */
    const char *revision;        /* Hub revision, default "main" */
    cllm_device device;          /* default CPU */
    int device_id;               /* CUDA device ordinal, default 0 */
    cllm_dtype dtype;            /* default AUTO */
    cllm_load_format load_format;/* default AUTO */
    int block_size;              /* KV-cache block size in tokens, default 16 */
    int max_model_len;           /* 0: the model's max_position_embeddings */
    int num_kv_blocks;           /* 0: enough for max_num_seqs * max_model_len */
    int max_num_seqs;            /* default 1 (issue 2 runs one sequence) */
    int num_threads;             /* CPU threads, 0: all cores */
    bool progress;               /* progress bar on stderr while loading (TTY only) */
    uint64_t seed;               /* seed of dummy weights, default 0 */
    bool enforce_eager;          /* vLLM: true = no CUDA graphs; default false: on CUDA, the
                                  * load captures decode graphs for batch sizes 1..max_num_seqs */
    int tensor_parallel_size;    /* vLLM's -tp: ranks the model is sharded over (Megatron layout),
                                  * default 1. Without a launcher cllm starts the other ranks' worker
                                  * processes itself (`cllm worker`: $CLLM_WORKER_EXE or this
                                  * executable); under mpirun / srun the launcher's ranks are used
                                  * (docs/distributed.md). CPU ranks talk over TCP, CUDA ranks
                                  * (device = local rank) over NCCL. */
    double dist_timeout_s;       /* a collective, a step or a worker that does not answer within
                                  * this long fails the engine (CLLM_ERR_DISTRIBUTED); default 60 */
    int pipeline_parallel_size;  /* vLLM's -pp: pipeline stages (contiguous layer ranges), default 1;
                                  * world = tensor_parallel_size x pipeline_parallel_size ranks,
                                  * rank = stage * tensor_parallel_size + tp rank */
    const char *pp_layer_partition; /* "14,18": layers per stage (NULL: even split, the remainder on
                                  * the last stages, as vLLM) */
    int pp_micro_batches;        /* a step is cut into this many micro-batches of whole sequences
                                  * that flow through the stages (0: pipeline_parallel_size) */
    bool enable_expert_parallel; /* vLLM's --enable-expert-parallel (MoE models): the experts are
                                  * spread whole over the tensor-parallel ranks and tokens are
                                  * dispatched to them with all-to-all; default false: every rank
                                  * holds a slice of every expert */
    cllm_dtype kv_cache_dtype;   /* vLLM's --kv-cache-dtype: AUTO (default) = the activation dtype;
                                  * F8_E4M3 ("fp8", "fp8_e4m3") = float8_e4m3fn codes, one byte per
                                  * element, scaled by each layer's k_scale / v_scale from the
                                  * checkpoint (1.0 when absent), so the same memory holds 2x (vs
                                  * bf16) / 4x (vs fp32) the blocks. CPU and CUDA backends (the CUDA
                                  * kernels convert the codes to bf16 on read). */
    cllm_quantization quantization; /* vLLM's --quantization: NONE (default) or FP8: the layers' linears
                                  * quantized to e4m3 with one f32 scale per output channel on load
                                  * (works with load_format DUMMY). CUDA keeps them in FP8 (1 byte per
                                  * weight: W8A8 cuBLASLt GEMMs, FP8-weight GEMV for decode); the CPU
                                  * backend runs the same quantized weights dequantized to float32. */
} cllm_model_params;

cllm_model_params cllm_model_default_params(void);

typedef struct cllm_model cllm_model;
/* Load config, weights (converted to the backend dtype) and tokenizer, and
 * allocate the paged KV cache. Errors: CLLM_ERR_NOT_FOUND (no such model),
 * CLLM_ERR_IO, CLLM_ERR_FORMAT (corrupt file, naming it), CLLM_ERR_UNSUPPORTED
 * (model_type), CLLM_ERR_NO_DEVICE, CLLM_ERR_OOM. */
cllm_status cllm_model_load(const cllm_model_params *params, cllm_model **out);
void cllm_model_destroy(cllm_model *m);
/* Borrowed; valid while the model lives. */
const cllm_tokenizer *cllm_model_tokenizer(const cllm_model *m);
int32_t cllm_model_vocab_size(const cllm_model *m);
int32_t cllm_model_max_model_len(const cllm_model *m);

/* --------------------------------------------------------------- sampling */
/* vLLM SamplingParams subset used by generate. Defaults come from
 * cllm_sampling_default_params() and then generation_config.json. */
typedef struct cllm_sampling_params {
    float temperature;   /* 0 = greedy; default 1.0 */
    float top_p;         /* (0,1], default 1.0 */
    int top_k;           /* <=0: off (vLLM uses -1), default -1 */
    float min_p;         /* [0,1], default 0 */
    uint64_t seed;       /* per-request seed */
    bool has_seed;       /* false: seeded from the clock */
    int max_tokens;      /* default 16 (vLLM), CLI default 64 */
    bool ignore_eos;
} cllm_sampling_params;
cllm_sampling_params cllm_sampling_default_params(void);

/* Called with each text delta as tokens arrive. Return false to stop. */
typedef bool (*cllm_stream_fn)(const char *delta, size_t len, int32_t token_id, void *user);

typedef struct cllm_generate_result {
    int32_t num_prompt_tokens;
    int32_t num_generated_tokens;
    const char *finish_reason;   /* "stop" | "length" | "abort" (static string) */
    double ttft_ms;              /* prompt -> first token */
    double decode_tokens_per_s;  /* after the first token */
} cllm_generate_result;

/* Generate a continuation of prompt (UTF-8; BOS added as the tokenizer's
 * post-processor says) on one sequence. Streams deltas through cb (may be
 * NULL). Errors: CLLM_ERR_CONTEXT_LENGTH (prompt longer than max_model_len),
 * CLLM_ERR_INVALID_ARG, backend errors. */
cllm_status cllm_generate(cllm_model *m, const char *prompt, const cllm_sampling_params *sp,
                          cllm_stream_fn cb, void *user, cllm_generate_result *result);


/* ---------------------------------------------------------------- engine */
/* The continuous-batching engine (vLLM's LLMEngine): many requests share the
 * device; each cllm_engine_step() runs one batch mixing prefill chunks and
 * decode tokens. Not thread-safe: one thread drives it (the server wraps it
 * with its own queue). Sources: vLLM v1 engine/scheduler design. */
typedef struct cllm_engine cllm_engine;

typedef struct cllm_engine_params {
    cllm_model_params model;        /* model, device, dtype, block_size, max_model_len, ... */
    int max_num_seqs;               /* max running sequences per step; default 256 (CPU: 32) */
    int max_num_batched_tokens;     /* token budget per step (chunked prefill); default 2048 */
    float gpu_memory_utilization;   /* fraction of device memory for weights+activations+KV; 0.9 */
    int num_gpu_blocks_override;    /* >0: use this many KV blocks instead of profiling */
    bool enable_prefix_caching;     /* default true */
    bool enforce_eager;             /* true: no CUDA graphs */
    int max_num_waiting;            /* bound of the waiting queue; add_request beyond it
                                     * returns CLLM_ERR_NO_KV_BLOCKS (server: 503); 0 = 4096 */
    uint64_t kv_cache_memory_bytes; /* vLLM's --kv-cache-memory-bytes: > 0 sizes the KV cache to this
                                     * many bytes per rank (blocks = bytes / bytes per block, which
                                     * model.kv_cache_dtype sets) instead of profiling (CUDA) or
                                     * max_num_seqs x max_model_len (CPU); 0 = off.
                                     * num_gpu_blocks_override wins over it. */
} cllm_engine_params;
cllm_engine_params cllm_engine_default_params(void);

/* Per-request sampling parameters, vLLM SamplingParams names and meaning. */
typedef struct cllm_request_params {
    int n;                          /* completions per prompt; default 1 */
    float temperature;              /* default 1.0; 0 = greedy */
    float top_p;                    /* default 1.0 */
    int top_k;                      /* default -1 (off) */
    float min_p;                    /* default 0 */
    float repetition_penalty;       /* default 1.0 (HF/vLLM semantics, prompt+output tokens) */
    float presence_penalty;         /* default 0 (OpenAI semantics, output tokens) */
    float frequency_penalty;        /* default 0 */
    uint64_t seed; bool has_seed;   /* per-request seed */
    const char *const *stop;        /* stop strings (borrowed during add_request, copied) */
    int num_stop;
    const int32_t *stop_token_ids;  /* copied */
    int num_stop_token_ids;
    /* logit_bias (OpenAI; vLLM SamplingParams.logit_bias): before the penalties and every sampler step,
     * logits[logit_bias_token_ids[i]] += logit_bias_values[i]. num_logit_bias entries (copied); ids in
     * [0, vocab_size) (add_request checks), values finite (the OpenAI server clamps them to [-100, 100]);
     * a repeated id keeps its last value, as a dict built from the pairs would. */
    const int32_t *logit_bias_token_ids;
    const float *logit_bias_values;
    int num_logit_bias;
    bool ignore_eos;
    int max_tokens;                 /* default 16; <=0: up to max_model_len */
    int min_tokens;                 /* default 0 */
    int logprobs;                   /* -1: none; k>=0: logprob of sampled token + top-k */
    int prompt_logprobs;            /* -1: none; k>=0: per prompt token */
    bool skip_special_tokens;       /* detokenization; default true */
    bool include_stop_str_in_output;/* default false */
} cllm_request_params;
cllm_request_params cllm_request_default_params(void);
/* Check request parameters the way cllm_engine_add_request does, without an
 * engine (vLLM's SamplingParams._verify_args): ranges of n, temperature,
 * top_p, top_k, min_p, penalties, min/max_tokens (max_tokens <= 0: no limit),
 * logprobs and prompt_logprobs (<= 20), stop strings. What needs the model
 * (stop_token_ids against the vocabulary, prompt + max_tokens against
 * max_model_len) is checked by add_request. Returns CLLM_OK or
 * CLLM_ERR_INVALID_ARG with a message naming the field and its range. */
cllm_status cllm_request_params_check(const cllm_request_params *p);

typedef struct cllm_logprob_entry {
    int32_t token_id;
    float logprob;                  /* natural log */
    const int32_t *top_ids;         /* top-k alternatives (k = request logprobs) */
    const float *top_logprobs;
    int num_top;
} cllm_logprob_entry;

typedef struct cllm_request_output {
    uint64_t request_id;
    int index;                      /* completion index 0..n-1 */
    const int32_t *new_token_ids;   /* tokens produced this step */
    int num_new_tokens;
    const char *text_delta;         /* detokenized new text (stop strings removed) */
    size_t text_delta_len;
    const cllm_logprob_entry *logprobs; /* num_new_tokens entries, or NULL */
    const cllm_logprob_entry *prompt_logprobs; /* on the first output only, or NULL: one entry per
                                     * prompt token (num_prompt_logprobs = prompt length); entry i >= 1
                                     * scores token i given tokens < i, top-k = request prompt_logprobs;
                                     * entry 0 has none (logprob NAN, num_top 0; vLLM's None) */
    int num_prompt_logprobs;
    bool finished;
    const char *finish_reason;      /* "stop" | "length" | "abort" | NULL while running */
    int num_prompt_tokens;
    int num_output_tokens;          /* total so far */
    double first_token_time_s;      /* seconds since add_request (TTFT), 0 until known */
} cllm_request_output;

typedef struct cllm_engine_stats {
    int num_running, num_waiting;
    int num_kv_blocks, num_free_kv_blocks;
    float kv_cache_usage;           /* 0..1 */
    uint64_t prefix_cache_queries, prefix_cache_hits; /* tokens */
    uint64_t prompt_tokens_total, generation_tokens_total;
    uint64_t num_preemptions;
} cllm_engine_stats;

/* Load the model, size the KV cache (profiling run, gpu_memory_utilization),
 * capture CUDA graphs; logs blocks, token capacity and max concurrency. */
cllm_status cllm_engine_create(const cllm_engine_params *params, cllm_engine **out);
void cllm_engine_destroy(cllm_engine *e);
const cllm_tokenizer *cllm_engine_tokenizer(const cllm_engine *e); /* borrowed */
int32_t cllm_engine_max_model_len(const cllm_engine *e);

/* Queue a request: prompt text (encoded with special tokens) or prompt_ids
 * (prompt may then be NULL). Errors: CLLM_ERR_CONTEXT_LENGTH (prompt+max_tokens
 * beyond max_model_len; the message gives the numbers), CLLM_ERR_INVALID_ARG
 * (a parameter out of range, naming it), CLLM_ERR_NO_KV_BLOCKS (waiting queue
 * full, or the request can never fit in the KV cache). */
cllm_status cllm_engine_add_request(cllm_engine *e, const char *prompt, const int32_t *prompt_ids,
                                    size_t num_prompt_ids, const cllm_request_params *params,
                                    uint64_t *request_id);
/* Abort a waiting or running request at any time; frees its KV blocks. Its
 * final output (finish_reason "abort") comes from the next step. Unknown ids:
 * CLLM_ERR_NOT_FOUND. */
cllm_status cllm_engine_abort(cllm_engine *e, uint64_t request_id);
/* Run one scheduling step and the model on it. *outputs (borrowed) is valid
 * until the next step or destroy; one entry per (request, index) that
 * produced tokens or finished. */
cllm_status cllm_engine_step(cllm_engine *e, const cllm_request_output **outputs, int *num_outputs);
bool cllm_engine_has_unfinished(const cllm_engine *e);
void cllm_engine_get_stats(const cllm_engine *e, cllm_engine_stats *stats);

/* CLLM_OK while the engine can run; otherwise the error that stopped it for
 * good (a worker rank died, a collective failed or timed out: the engine
 * then only answers with that error; vLLM's check_health). Thread-safe:
 * a server's monitoring thread may call it while another thread steps. */
cllm_status cllm_engine_check_health(const cllm_engine *e);

/* Communicator statistics (vLLM's distributed stats): one entry per rank and
 * group, cumulative. group: "world" (rank 0's commands to the workers, TCP),
 * "tp" (the tensor-parallel collectives: TCP on CPU, NCCL on CUDA, whose
 * time_s counts only the host-side enqueue and whose CUDA-graph replays add
 * the captured collectives). */
typedef enum cllm_comm_op {
    CLLM_COMM_ALL_REDUCE = 0,
    CLLM_COMM_ALL_GATHER,
    CLLM_COMM_REDUCE_SCATTER,
    CLLM_COMM_BROADCAST,
    CLLM_COMM_SEND,
    CLLM_COMM_RECV,
    CLLM_COMM_ALL_TO_ALLV,
    CLLM_COMM_BARRIER,
    CLLM_COMM_NUM_OPS
} cllm_comm_op;

typedef struct cllm_comm_op_stats {
    uint64_t calls;
    uint64_t bytes;                 /* payload bytes of this rank's buffer (nccl-tests' size) */
    double time_s;                  /* host wall time inside the calls */
} cllm_comm_op_stats;

typedef struct cllm_comm_stats {
    char name[16];                  /* "world", "tp" */
    char transport[8];              /* "tcp" | "nccl" */
    int rank, size;                 /* in the group */
    int world_rank;
    cllm_comm_op_stats ops[CLLM_COMM_NUM_OPS];
} cllm_comm_stats;

/* "all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "recv",
 * "all_to_allv", "barrier". */
const char *cllm_comm_op_name(cllm_comm_op op);

/* Mixture-of-experts load, cumulative since start (vLLM's expert load
 * statistics): tokens_per_expert (num_experts) = (token, expert)
 * assignments the routers sent to each expert over every MoE layer;
 * tokens_per_rank (num_ranks) = (token, expert) rows each rank's experts
 * computed (with --enable-expert-parallel the load imbalance across ranks;
 * without it every rank computes a slice of every assignment). Arrays are
 * caller-owned (cllm_free); dense models: num_experts 0, NULL arrays.
 * Collective with the workers: call it from the thread that steps the
 * engine. Errors: CLLM_ERR_DISTRIBUTED, CLLM_ERR_OOM. */
typedef struct cllm_expert_stats {
    int num_experts;
    uint64_t *tokens_per_expert;
    int num_ranks;
    uint64_t *tokens_per_rank;
} cllm_expert_stats;
cllm_status cllm_engine_get_expert_stats(cllm_engine *e, cllm_expert_stats *stats);

/* Every rank's statistics (collective: must be called by the thread that
 * steps the engine). *stats (cllm_free) has *n entries; one rank: *n = 0.
 * Errors: CLLM_ERR_DISTRIBUTED. */
cllm_status cllm_engine_get_distributed_stats(cllm_engine *e, cllm_comm_stats **stats, int *n);

#ifdef __cplusplus
}
#endif
#endif /* CLLM_H */
