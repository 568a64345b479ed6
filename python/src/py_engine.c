/* cllm._cllm.Engine: a cllm_engine (the continuous-batching engine) driven
 * from Python. Engine(params: dict) creates it (cllm_engine_params field
 * names, model fields included); add_request / step / abort follow
 * include/cllm.h. Each call takes the engine's mutex with the GIL released
 * (see pycllm.h), and step() runs the model with the GIL released: other
 * Python threads run meanwhile. The engine (and its worker processes) is
 * destroyed when the object goes; a Tokenizer from tokenizer() keeps it. */
#include "pycllm.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

PyObject *pycllm_EngineType;

typedef struct {
    PyObject_HEAD
    cllm_engine *e;
    pthread_mutex_t mu;
    bool mu_ok;
    char *model, *revision;  /* owned copies of the strings cllm_engine_params points to */
} PyEngine;

/* Take / drop the engine's mutex; call with the GIL released. */
#define ENGINE_LOCK(self) pthread_mutex_lock(&(self)->mu)
#define ENGINE_UNLOCK(self) pthread_mutex_unlock(&(self)->mu)

#define M(name, kind) {#name, kind, offsetof(cllm_engine_params, model) + offsetof(cllm_model_params, name)}
#define E(name, kind) {#name, kind, offsetof(cllm_engine_params, name)}
static const pycllm_field k_engine_fields[] = {
    M(device, PYCLLM_DEVICE), M(device_id, PYCLLM_INT), M(dtype, PYCLLM_DTYPE), M(load_format, PYCLLM_LOAD_FORMAT),
    M(block_size, PYCLLM_INT), M(max_model_len, PYCLLM_INT), M(num_kv_blocks, PYCLLM_INT),
    M(num_threads, PYCLLM_INT), M(progress, PYCLLM_BOOL), M(seed, PYCLLM_U64), M(tensor_parallel_size, PYCLLM_INT),
    M(dist_timeout_s, PYCLLM_DOUBLE), M(pipeline_parallel_size, PYCLLM_INT), M(pp_micro_batches, PYCLLM_INT),
    M(enable_expert_parallel, PYCLLM_BOOL), M(kv_cache_dtype, PYCLLM_DTYPE),
    M(quantization, PYCLLM_INT),
    E(max_num_batched_tokens, PYCLLM_INT), E(gpu_memory_utilization, PYCLLM_FLOAT),
    E(num_gpu_blocks_override, PYCLLM_INT), E(kv_cache_memory_bytes, PYCLLM_U64), E(enable_prefix_caching, PYCLLM_BOOL), E(max_num_waiting, PYCLLM_INT),
    /* both structs carry these (the CLI sets both) */
    E(max_num_seqs, PYCLLM_INT), M(max_num_seqs, PYCLLM_INT), E(enforce_eager, PYCLLM_BOOL),
    M(enforce_eager, PYCLLM_BOOL),
};
#undef M
#undef E

static char *dup_str(PyObject *v, const char *what) {
    PyObject *keep = NULL;
    const char *s = NULL;
    if (pycllm_utf8(v, what, &keep, &s, NULL) < 0) return NULL;
    char *d = strdup(s);
    Py_DECREF(keep);
    if (!d) PyErr_NoMemory();
    return d;
}

/* params dict -> *p (strings into self). 0 or -1 with an exception. */
static int parse_engine_params(PyEngine *self, PyObject *dict, cllm_engine_params *p) {
    *p = cllm_engine_default_params();
    PyObject *key, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &key, &v)) {
        PyObject *kb = NULL;
        const char *k = NULL;
        if (pycllm_utf8(key, "an engine parameter name", &kb, &k, NULL) < 0) return -1;
        int r = 0;
        if (v == Py_None) {
            /* the default */
        } else if (!strcmp(k, "model")) {
            r = (self->model = dup_str(v, "model")) ? 0 : -1;
        } else if (!strcmp(k, "revision")) {
            r = (self->revision = dup_str(v, "revision")) ? 0 : -1;
        } else {
            r = pycllm_set_field(p, k_engine_fields, sizeof k_engine_fields / sizeof k_engine_fields[0], k, v,
                                 "engine");
        }
        Py_DECREF(kb);
        if (r < 0) return -1;
    }
    p->model.model = self->model;
    p->model.revision = self->revision;
    return 0;
}

static void engine_dealloc(PyObject *o) {
    PyEngine *self = (PyEngine *)o;
    PyTypeObject *type = Py_TYPE(o);
    if (self->e) {
        cllm_engine *e = self->e;
        self->e = NULL;
        Py_BEGIN_ALLOW_THREADS
        cllm_engine_destroy(e); /* stops and reaps the worker processes */
        Py_END_ALLOW_THREADS
    }
    if (self->mu_ok) pthread_mutex_destroy(&self->mu);
    free(self->model);
    free(self->revision);
    freefunc f = (freefunc)PyType_GetSlot(type, Py_tp_free);
    f(o);
    Py_DECREF(type);
}

static PyObject *engine_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"params", NULL};
    PyObject *dict = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Engine", kwlist, &PyDict_Type, &dict)) return NULL;
    PyEngine *self = (PyEngine *)PyType_GenericAlloc(type, 0);
    if (!self) return NULL;
    if (pthread_mutex_init(&self->mu, NULL) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->mu_ok = true;
    cllm_engine_params p;
    if (parse_engine_params(self, dict, &p) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    cllm_status st;
    const char *msg = "";
    cllm_engine *e = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = cllm_engine_create(&p, &e);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    if (st != CLLM_OK) {
        pycllm_raise(st, msg);
        Py_DECREF(self);
        return NULL;
    }
    self->e = e;
    return (PyObject *)self;
}

static PyObject *engine_add_request(PyObject *o, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"prompt_token_ids", "params", NULL};
    PyEngine *self = (PyEngine *)o;
    PyObject *ids_obj = NULL, *pdict = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:add_request", kwlist, &ids_obj, &pdict)) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (pycllm_int32_array(ids_obj, "prompt_token_ids", &ids, &n) < 0) return NULL;
    cllm_request_params p;
    pycllm_req_bufs b;
    if (pycllm_request_params(pdict, &p, &b) < 0) {
        free(ids);
        return NULL;
    }
    uint64_t id = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    st = cllm_engine_add_request(self->e, NULL, ids, n, &p, &id);
    if (st != CLLM_OK) msg = cllm_last_error();
    ENGINE_UNLOCK(self);
    Py_END_ALLOW_THREADS
    free(ids);
    pycllm_req_bufs_free(&b);
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    return PyLong_FromUnsignedLongLong(id);
}

/* One logprob entry -> (token_id, logprob, [(id, logprob), ...]), or None
 * for a prompt's first token (vLLM's None). */
static PyObject *logprob_entry(const cllm_logprob_entry *le) {
    if (isnan(le->logprob) && le->num_top == 0) Py_RETURN_NONE;
    PyObject *top = PyList_New(le->num_top);
    if (!top) return NULL;
    for (int j = 0; j < le->num_top; j++) {
        PyObject *pair = Py_BuildValue("(id)", le->top_ids[j], (double)le->top_logprobs[j]);
        if (!pair) {
            Py_DECREF(top);
            return NULL;
        }
        PyList_SetItem(top, j, pair);
    }
    return Py_BuildValue("(idN)", le->token_id, (double)le->logprob, top);
}

static PyObject *logprob_list(const cllm_logprob_entry *v, int n) {
    if (!v) Py_RETURN_NONE;
    PyObject *l = PyList_New(n);
    if (!l) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *x = logprob_entry(&v[i]);
        if (!x) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SetItem(l, i, x);
    }
    return l;
}

/* One cllm_request_output -> the tuple documented at step(). */
static PyObject *output_tuple(const cllm_request_output *r) {
    PyObject *ids = pycllm_int32_list(r->new_token_ids, (size_t)r->num_new_tokens);
    PyObject *text = PyUnicode_DecodeUTF8(r->text_delta ? r->text_delta : "", (Py_ssize_t)r->text_delta_len, "replace");
    PyObject *lp = logprob_list(r->logprobs, r->num_new_tokens);
    PyObject *plp = logprob_list(r->prompt_logprobs, r->num_prompt_logprobs);
    if (!ids || !text || !lp || !plp) {
        Py_XDECREF(ids), Py_XDECREF(text), Py_XDECREF(lp), Py_XDECREF(plp);
        return NULL;
    }
    PyObject *reason = r->finish_reason ? PyUnicode_FromString(r->finish_reason) : (Py_INCREF(Py_None), Py_None);
    if (!reason) {
        Py_DECREF(ids), Py_DECREF(text), Py_DECREF(lp), Py_DECREF(plp);
        return NULL;
    }
    return Py_BuildValue("(KiNNNNNNiid)", (unsigned long long)r->request_id, r->index, ids, text, lp, plp,
                         PyBool_FromLong(r->finished), reason, r->num_prompt_tokens, r->num_output_tokens,
                         r->first_token_time_s);
}

static PyObject *engine_step(PyObject *o, PyObject *unused) {
    (void)unused;
    PyEngine *self = (PyEngine *)o;
    const cllm_request_output *outs = NULL;
    int n = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    st = cllm_engine_step(self->e, &outs, &n);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    /* still holding the engine's mutex: outs stay valid until the next step */
    PyObject *list = NULL;
    if (st != CLLM_OK) {
        pycllm_raise(st, msg);
    } else if ((list = PyList_New(n))) {
        for (int i = 0; i < n; i++) {
            PyObject *t = output_tuple(&outs[i]);
            if (!t) {
                Py_CLEAR(list);
                break;
            }
            PyList_SetItem(list, i, t);
        }
    }
    ENGINE_UNLOCK(self);
    return list;
}

static PyObject *engine_abort(PyObject *o, PyObject *arg) {
    PyEngine *self = (PyEngine *)o;
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    cllm_status st;
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    st = cllm_engine_abort(self->e, (uint64_t)id);
    ENGINE_UNLOCK(self);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(st == CLLM_OK); /* False: unknown or already finished */
}

static PyObject *engine_has_unfinished(PyObject *o, PyObject *unused) {
    (void)unused;
    PyEngine *self = (PyEngine *)o;
    bool r;
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    r = cllm_engine_has_unfinished(self->e);
    ENGINE_UNLOCK(self);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(r);
}

static PyObject *engine_tokenizer(PyObject *o, PyObject *unused) {
    (void)unused;
    return pycllm_tokenizer_borrowed(cllm_engine_tokenizer(((PyEngine *)o)->e), o);
}

static PyObject *engine_max_model_len(PyObject *o, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(cllm_engine_max_model_len(((PyEngine *)o)->e));
}

static PyObject *engine_check_health(PyObject *o, PyObject *unused) {
    (void)unused;
    cllm_status st = cllm_engine_check_health(((PyEngine *)o)->e); /* thread-safe, no lock */
    if (st != CLLM_OK) return pycllm_raise(st, cllm_last_error());
    Py_RETURN_NONE;
}

static PyObject *engine_stats(PyObject *o, PyObject *unused) {
    (void)unused;
    PyEngine *self = (PyEngine *)o;
    cllm_engine_stats s;
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    cllm_engine_get_stats(self->e, &s);
    ENGINE_UNLOCK(self);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:d,s:K,s:K,s:K,s:K,s:K}", "num_running", s.num_running, "num_waiting",
                         s.num_waiting, "num_kv_blocks", s.num_kv_blocks, "num_free_kv_blocks", s.num_free_kv_blocks,
                         "kv_cache_usage", (double)s.kv_cache_usage, "prefix_cache_queries",
                         (unsigned long long)s.prefix_cache_queries, "prefix_cache_hits",
                         (unsigned long long)s.prefix_cache_hits, "prompt_tokens_total",
                         (unsigned long long)s.prompt_tokens_total, "generation_tokens_total",
                         (unsigned long long)s.generation_tokens_total, "num_preemptions",
                         (unsigned long long)s.num_preemptions);
}

static PyObject *engine_dist_stats(PyObject *o, PyObject *unused) {
    (void)unused;
    PyEngine *self = (PyEngine *)o;
    cllm_comm_stats *v = NULL;
    int n = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    ENGINE_LOCK(self);
    st = cllm_engine_get_distributed_stats(self->e, &v, &n);
    if (st != CLLM_OK) msg = cllm_last_error();
    ENGINE_UNLOCK(self);
    Py_END_ALLOW_THREADS
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        PyObject *ops = PyDict_New();
        for (int k = 0; ops && k < CLLM_COMM_NUM_OPS; k++) {
            PyObject *x = Py_BuildValue("{s:K,s:K,s:d}", "calls", (unsigned long long)v[i].ops[k].calls, "bytes",
                                        (unsigned long long)v[i].ops[k].bytes, "time_s", v[i].ops[k].time_s);
            if (!x || PyDict_SetItemString(ops, cllm_comm_op_name((cllm_comm_op)k), x) < 0) Py_CLEAR(ops);
            Py_XDECREF(x);
        }
        PyObject *d = ops ? Py_BuildValue("{s:s,s:s,s:i,s:i,s:i,s:N}", "name", v[i].name, "transport", v[i].transport,
                                          "rank", v[i].rank, "size", v[i].size, "world_rank", v[i].world_rank, "ops", ops)
                          : NULL;
        if (!d) {
            Py_CLEAR(list);
            break;
        }
        PyList_SetItem(list, i, d);
    }
    cllm_free(v);
    return list;
}

static PyMethodDef k_engine_methods[] = {
    {"add_request", (PyCFunction)(void (*)(void))engine_add_request, METH_VARARGS | METH_KEYWORDS,
     "add_request(prompt_token_ids: list[int], params: dict | None = None) -> int\n\n"
     "Queue a request (cllm_engine_add_request); params uses cllm_request_params' field names. Returns the "
     "request id. CllmValueError: a bad parameter or a prompt beyond max_model_len (the engine's message)."},
    {"step", engine_step, METH_NOARGS,
     "step() -> list[tuple]\n\nOne engine step with the GIL released. One tuple per (request, index) that "
     "produced tokens or finished: (request_id, index, new_token_ids, text_delta, logprobs, prompt_logprobs, "
     "finished, finish_reason, num_prompt_tokens, num_output_tokens, first_token_time_s); logprobs: None or one "
     "(token_id, logprob, [(id, logprob), ...top-k]) per new token; prompt_logprobs: None, or (first output "
     "only) one entry per prompt token, None for the first."},
    {"abort", engine_abort, METH_O, "abort(request_id) -> bool: False if no such unfinished request"},
    {"has_unfinished", engine_has_unfinished, METH_NOARGS, "has_unfinished() -> bool"},
    {"tokenizer", engine_tokenizer, METH_NOARGS, "tokenizer() -> Tokenizer (keeps this engine alive)"},
    {"max_model_len", engine_max_model_len, METH_NOARGS, "max_model_len() -> int (tokens)"},
    {"check_health", engine_check_health, METH_NOARGS,
     "check_health() -> None; raises CllmError when a worker died or a collective failed"},
    {"stats", engine_stats, METH_NOARGS, "stats() -> dict (cllm_engine_stats)"},
    {"distributed_stats", engine_dist_stats, METH_NOARGS,
     "distributed_stats() -> list[dict]: per rank and group, collective calls/bytes/time (empty for one rank)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot k_engine_slots[] = {
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_methods, k_engine_methods},
    {Py_tp_doc, "Engine(params: dict): cllm_engine_create with cllm_engine_params / cllm_model_params field names "
                "(model, device, dtype, max_model_len, tensor_parallel_size, ...). Use cllm.LLM."},
    {0, NULL},
};

PyType_Spec pycllm_engine_spec = {"cllm._cllm.Engine", sizeof(PyEngine), 0, Py_TPFLAGS_DEFAULT, k_engine_slots};
