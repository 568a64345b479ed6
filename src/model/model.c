/* cllm_model_load: hub resolve -> config -> tokenizer -> backend -> weights
 * -> model runner with its paged KV cache. */
#include "model/model.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/hub.h"
#include "model/weights.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double cllm_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

cllm_model_params cllm_model_default_params(void) {
    cllm_model_params p;
    memset(&p, 0, sizeof p);
    p.revision = "main";
    p.device = CLLM_DEVICE_CPU;
    p.dtype = CLLM_DTYPE_AUTO;
    p.load_format = CLLM_LOAD_AUTO;
    p.block_size = 16;
    p.max_num_seqs = 1;
    p.progress = true;
    return p;
}

cllm_sampling_params cllm_sampling_default_params(void) {
    cllm_sampling_params s;
    memset(&s, 0, sizeof s);
    s.temperature = 1.0f;
    s.top_p = 1.0f;
    s.top_k = -1;
    s.min_p = 0.0f;
    s.max_tokens = 16;
    return s;
}

void cllm_model_apply_generation_config(const cllm_model *m, cllm_sampling_params *sp) {
    const cllm_model_config *c = &m->cfg;
    if (!c->gen.present) return;
    if (c->gen.temperature >= 0) sp->temperature = c->gen.temperature;
    if (c->gen.top_p >= 0) sp->top_p = c->gen.top_p;
    if (c->gen.top_k >= 0) sp->top_k = c->gen.top_k;
    if (c->gen.min_p >= 0) sp->min_p = c->gen.min_p;
}

/* Check the dtype against the backend; returns the act dtype. */
static cllm_status check_dtype(const cllm_model_params *p, const cllm_backend *be) {
    if (p->dtype == CLLM_DTYPE_AUTO || p->dtype == be->act) return CLLM_OK;
    return cllm_error(CLLM_ERR_UNSUPPORTED, "dtype %s is not supported on the %s backend; it runs %s (use --dtype auto)",
                      cllm_dtype_name(p->dtype), be->ops->name, cllm_dtype_name(be->act));
}

static cllm_status check_params(const cllm_model_params *p) {
    if (!p->model || !*p->model) return cllm_error(CLLM_ERR_INVALID_ARG, "no model given (--model DIR or ORG/NAME)");
    if (p->block_size <= 0 || p->block_size > 4096)
        return cllm_error(CLLM_ERR_INVALID_ARG, "block_size %d must be in [1, 4096]", p->block_size);
    if (p->max_model_len < 0 || p->num_kv_blocks < 0 || p->max_num_seqs < 0 || p->num_threads < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "max_model_len, num_kv_blocks, max_num_seqs, num_threads must be >= 0");
    if (p->device != CLLM_DEVICE_CPU && p->device != CLLM_DEVICE_CUDA)
        return cllm_error(CLLM_ERR_INVALID_ARG, "unknown device %d", (int)p->device);
    return CLLM_OK;
}

void cllm_model_destroy(cllm_model *m) {
    if (!m) return;
    cllm_runner_destroy(m->runner);
    cllm_tokenizer_destroy(m->tok);
    free(m->free_blocks);
    free(m->dir);
    free(m);
}

cllm_status cllm_model_load(const cllm_model_params *params, cllm_model **out) {
    *out = NULL;
    CLLM_TRY(check_params(params));
    double t0 = cllm_now_ms();
    cllm_status st;
    cllm_backend *be = NULL;
    cllm_weights *w = NULL;
    cllm_model *m = calloc(1, sizeof *m);
    if (!m) return cllm_error(CLLM_ERR_OOM, "out of memory");
    m->params = *params;
    m->params.model = NULL;
    m->params.revision = NULL;
    CLLM_TRY_GOTO(st, cllm_hub_resolve(params->model, params->revision, params->progress, &m->dir), fail);
    CLLM_TRY_GOTO(st, cllm_config_load(m->dir, &m->cfg), fail);
    if (!cllm_arch_find(m->cfg.model_type)) { st = CLLM_ERR_UNSUPPORTED; goto fail; }
    int max_len = params->max_model_len ? params->max_model_len : m->cfg.max_position_embeddings;
    if (max_len > m->cfg.max_position_embeddings) {
        st = cllm_error(CLLM_ERR_INVALID_ARG, "max_model_len %d is larger than the model's max_position_embeddings %d",
                        max_len, m->cfg.max_position_embeddings);
        goto fail;
    }
    if (m->cfg.sliding_window > 0 && max_len > m->cfg.sliding_window) {
        st = cllm_error(CLLM_ERR_UNSUPPORTED,
                        "the model uses sliding-window attention (window %d) which cllm does not implement; "
                        "pass --max-model-len %d or less",
                        m->cfg.sliding_window, m->cfg.sliding_window);
        goto fail;
    }
    m->max_model_len = max_len;
    m->max_num_seqs = params->max_num_seqs > 0 ? params->max_num_seqs : 1;
    CLLM_TRY_GOTO(st, cllm_tokenizer_load(m->dir, &m->tok), fail);

    if (params->device == CLLM_DEVICE_CUDA) CLLM_TRY_GOTO(st, cllm_backend_cuda_create(params->device_id, &be), fail);
    else CLLM_TRY_GOTO(st, cllm_backend_cpu_create(params->num_threads, &be), fail);
    CLLM_TRY_GOTO(st, check_dtype(params, be), fail);

    double tw = cllm_now_ms();
    if (params->load_format == CLLM_LOAD_DUMMY) {
        cllm_dtype dt = m->cfg.torch_dtype;
        if (dt != CLLM_DTYPE_F32 && dt != CLLM_DTYPE_BF16 && dt != CLLM_DTYPE_F16) dt = be->act;
        CLLM_TRY_GOTO(st, cllm_weights_create_dummy(params->seed, dt, &w), fail);
    } else {
        CLLM_TRY_GOTO(st, cllm_weights_open(m->dir, &w), fail);
    }
    int P = params->block_size, per_seq = (max_len + P - 1) / P;
    int nblocks = params->num_kv_blocks ? params->num_kv_blocks : m->max_num_seqs * per_seq;
    cllm_runner_params rp = {
        .cfg = &m->cfg, .backend = be, .weights = w, .block_size = P, .num_kv_blocks = nblocks,
        .max_model_len = max_len, .max_num_seqs = m->max_num_seqs, .progress = params->progress,
        .comm = NULL, .rank = 0, .world_size = 1,
    };
    CLLM_TRY_GOTO(st, cllm_runner_create(&rp, &m->runner), fail);
    be = NULL; /* owned by the runner now */
    cllm_weights_destroy(w);
    w = NULL;
    m->weights_ms = cllm_now_ms() - tw;

    /* CUDA graphs for decode (a no-op on CPU). The engine loads with
     * enforce_eager and captures itself once the KV cache is sized. */
    if (!params->enforce_eager) CLLM_TRY_GOTO(st, cllm_runner_capture_graphs(m->runner), fail);

    m->free_blocks = malloc(sizeof(int32_t) * (size_t)nblocks);
    if (!m->free_blocks) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    for (int i = 0; i < nblocks; i++) m->free_blocks[i] = nblocks - 1 - i; /* pop gives 0, 1, ... */
    m->num_free_blocks = nblocks;
    m->load_ms = cllm_now_ms() - t0;
    *out = m;
    return CLLM_OK;
fail:
    cllm_weights_destroy(w);
    cllm_backend_destroy(be);
    cllm_model_destroy(m);
    return st;
}

const cllm_tokenizer *cllm_model_tokenizer(const cllm_model *m) { return m->tok; }
int32_t cllm_model_vocab_size(const cllm_model *m) { return m->cfg.vocab_size; }
int32_t cllm_model_max_model_len(const cllm_model *m) { return m->max_model_len; }
const cllm_model_config *cllm_model_config_of(const cllm_model *m) { return &m->cfg; }
cllm_runner *cllm_model_runner(cllm_model *m) { return m->runner; }
