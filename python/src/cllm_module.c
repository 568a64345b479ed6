/* The `cllm._cllm` module: exception classes, conversions shared by the
 * types, request-parameter dicts, check_request_params. See pycllm.h. */
#include "pycllm.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

PyObject *pycllm_Error, *pycllm_ValueError, *pycllm_OSError, *pycllm_MemoryError;

PyObject *pycllm_raise(cllm_status st, const char *message) {
    PyObject *type = pycllm_Error;
    switch (st) {
    case CLLM_ERR_INVALID_ARG:
    case CLLM_ERR_CONTEXT_LENGTH:
    case CLLM_ERR_FORMAT:
    case CLLM_ERR_UNSUPPORTED: type = pycllm_ValueError; break;
    case CLLM_ERR_IO:
    case CLLM_ERR_NOT_FOUND: type = pycllm_OSError; break;
    case CLLM_ERR_OOM: type = pycllm_MemoryError; break;
    default: break;
    }
    const char *msg = message && *message ? message : cllm_status_str(st);
    PyObject *exc = PyObject_CallFunction(type, "s", msg);
    if (!exc) return NULL;
    PyObject *name = PyUnicode_FromString(cllm_status_str(st));
    if (!name || PyObject_SetAttrString(exc, "status", name) < 0) {
        Py_XDECREF(name);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(name);
    PyErr_SetObject(type, exc);
    Py_DECREF(exc);
    return NULL;
}

int pycllm_utf8(PyObject *str, const char *what, PyObject **keep, const char **s, Py_ssize_t *len) {
    *keep = NULL;
    if (!PyUnicode_Check(str)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        return -1;
    }
    PyObject *b = PyUnicode_AsUTF8String(str);
    if (!b) return -1;
    char *p = NULL;
    Py_ssize_t n = 0;
    if (PyBytes_AsStringAndSize(b, &p, &n) < 0) {
        Py_DECREF(b);
        return -1;
    }
    *keep = b;
    *s = p;
    if (len) *len = n;
    return 0;
}

int pycllm_int32_array(PyObject *seq, const char *what, int32_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!PySequence_Check(seq) || PyUnicode_Check(seq) || PyBytes_Check(seq)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints", what);
        return -1;
    }
    Py_ssize_t len = PySequence_Size(seq);
    if (len < 0) return -1;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(len > 0 ? len : 1));
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *item = PySequence_GetItem(seq, i);
        if (!item) goto fail;
        long x = PyLong_Check(item) ? PyLong_AsLong(item) : (PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int",
                                                                         what, i), -1L);
        Py_DECREF(item);
        if (x == -1 && PyErr_Occurred()) goto fail;
        if (x < INT32_MIN || x > INT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "%s[%zd] = %ld does not fit a token id (int32)", what, i, x);
            goto fail;
        }
        v[i] = (int32_t)x;
    }
    *out = v;
    *n = (size_t)len;
    return 0;
fail:
    free(v);
    return -1;
}

PyObject *pycllm_int32_list(const int32_t *v, size_t n) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLong(v[i]);
        if (!x) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SetItem(l, (Py_ssize_t)i, x); /* steals x */
    }
    return l;
}

/* ---- parameter dicts: a value stored into a struct field found by name ---- */

static int set_one(void *base, const pycllm_field *f, PyObject *value, const char *what) {
    char *at = (char *)base + f->off;
    if (f->kind == PYCLLM_BOOL) {
        int b = PyObject_IsTrue(value);
        if (b < 0) return -1;
        *(bool *)at = b != 0;
        return 0;
    }
    if (f->kind == PYCLLM_FLOAT || f->kind == PYCLLM_DOUBLE) {
        double d = PyFloat_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        if (f->kind == PYCLLM_FLOAT) *(float *)at = (float)d;
        else *(double *)at = d;
        return 0;
    }
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s parameter %s must be an int", what, f->name);
        return -1;
    }
    if (f->kind == PYCLLM_U64) {
        unsigned long long u = PyLong_AsUnsignedLongLongMask(value);
        if (PyErr_Occurred()) return -1;
        *(uint64_t *)at = (uint64_t)u;
        return 0;
    }
    long x = PyLong_AsLong(value);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < INT32_MIN || x > INT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s parameter %s = %ld is out of range", what, f->name, x);
        return -1;
    }
    switch (f->kind) {
    case PYCLLM_DEVICE: *(cllm_device *)at = (cllm_device)x; break;
    case PYCLLM_DTYPE: *(cllm_dtype *)at = (cllm_dtype)x; break;
    case PYCLLM_LOAD_FORMAT: *(cllm_load_format *)at = (cllm_load_format)x; break;
    default: *(int *)at = (int)x; break;
    }
    return 0;
}

int pycllm_set_field(void *base, const pycllm_field *fields, size_t n, const char *key, PyObject *value,
                     const char *what) {
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(key, fields[i].name)) continue;
        if (set_one(base, &fields[i], value, what) < 0) return -1;
        found = true;
    }
    if (!found) {
        PyErr_Format(PyExc_ValueError, "unknown %s parameter '%s'", what, key);
        return -1;
    }
    return 0;
}

/* ---- request parameters: dict -> cllm_request_params ---- */

#define RP(name, kind) {#name, kind, offsetof(cllm_request_params, name)}
static const pycllm_field k_request_fields[] = {
    RP(n, PYCLLM_INT), RP(temperature, PYCLLM_FLOAT), RP(top_p, PYCLLM_FLOAT), RP(top_k, PYCLLM_INT),
    RP(min_p, PYCLLM_FLOAT), RP(repetition_penalty, PYCLLM_FLOAT), RP(presence_penalty, PYCLLM_FLOAT),
    RP(frequency_penalty, PYCLLM_FLOAT), RP(ignore_eos, PYCLLM_BOOL), RP(max_tokens, PYCLLM_INT),
    RP(min_tokens, PYCLLM_INT), RP(logprobs, PYCLLM_INT), RP(prompt_logprobs, PYCLLM_INT),
    RP(skip_special_tokens, PYCLLM_BOOL), RP(include_stop_str_in_output, PYCLLM_BOOL),
};
#undef RP

void pycllm_req_bufs_free(pycllm_req_bufs *b) {
    for (int i = 0; i < b->num_keep; i++) Py_XDECREF(b->keep[i]);
    free(b->keep);
    free(b->stop);
    free(b->stop_ids);
    free(b->bias_ids);
    free(b->bias_values);
    memset(b, 0, sizeof *b);
}

/* A sequence of numbers -> a malloc'ed float array (*n entries). */
static int float_array(PyObject *seq, const char *what, float **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!PySequence_Check(seq) || PyUnicode_Check(seq) || PyBytes_Check(seq)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of numbers", what);
        return -1;
    }
    Py_ssize_t len = PySequence_Size(seq);
    if (len < 0) return -1;
    float *v = malloc(sizeof(float) * (size_t)(len > 0 ? len : 1));
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *item = PySequence_GetItem(seq, i);
        double x = item ? PyFloat_AsDouble(item) : -1.0;
        Py_XDECREF(item);
        if (x == -1.0 && PyErr_Occurred()) {
            free(v);
            return -1;
        }
        v[i] = (float)x;
    }
    *out = v;
    *n = (size_t)len;
    return 0;
}

static int set_stop(PyObject *value, cllm_request_params *p, pycllm_req_bufs *b) {
    if (!PyList_Check(value) && !PyTuple_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "stop must be a list of str");
        return -1;
    }
    Py_ssize_t n = PySequence_Size(value);
    if (n < 0) return -1;
    b->keep = calloc((size_t)n + 1, sizeof *b->keep);
    b->stop = calloc((size_t)n + 1, sizeof *b->stop);
    if (!b->keep || !b->stop) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PySequence_GetItem(value, i);
        if (!s) return -1;
        int r = pycllm_utf8(s, "stop[i]", &b->keep[i], &b->stop[i], NULL);
        Py_DECREF(s);
        if (r < 0) return -1;
        b->num_keep++;
    }
    p->stop = b->stop;
    p->num_stop = (int)n;
    return 0;
}

int pycllm_request_params(PyObject *dict, cllm_request_params *p, pycllm_req_bufs *b) {
    *p = cllm_request_default_params();
    memset(b, 0, sizeof *b);
    if (!dict || dict == Py_None) return 0;
    if (!PyDict_Check(dict)) {
        PyErr_SetString(PyExc_TypeError, "request parameters must be a dict");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        PyObject *kb = NULL;
        const char *k = NULL;
        if (pycllm_utf8(key, "a request parameter name", &kb, &k, NULL) < 0) goto fail;
        int r = 0;
        if (value == Py_None) {
            /* the default */
        } else if (!strcmp(k, "seed")) {
            unsigned long long s = PyLong_Check(value) ? PyLong_AsUnsignedLongLongMask(value) : 0;
            if (!PyLong_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "seed must be an int");
                r = -1;
            } else if (PyErr_Occurred()) {
                r = -1;
            } else {
                p->seed = (uint64_t)s;
                p->has_seed = true;
            }
        } else if (!strcmp(k, "stop")) {
            r = set_stop(value, p, b);
        } else if (!strcmp(k, "stop_token_ids")) {
            size_t n = 0;
            r = pycllm_int32_array(value, "stop_token_ids", &b->stop_ids, &n);
            p->stop_token_ids = b->stop_ids;
            p->num_stop_token_ids = (int)n;
        } else if (!strcmp(k, "logit_bias_token_ids")) {
            r = pycllm_int32_array(value, "logit_bias_token_ids", &b->bias_ids, &b->num_bias_ids);
            p->logit_bias_token_ids = b->bias_ids;
        } else if (!strcmp(k, "logit_bias_values")) {
            r = float_array(value, "logit_bias_values", &b->bias_values, &b->num_bias_values);
            p->logit_bias_values = b->bias_values;
        } else {
            r = pycllm_set_field(p, k_request_fields, sizeof k_request_fields / sizeof k_request_fields[0], k, value,
                                 "request");
        }
        Py_DECREF(kb);
        if (r < 0) goto fail;
    }
    if (b->num_bias_ids != b->num_bias_values) {
        PyErr_Format(PyExc_ValueError, "logit_bias_token_ids has %zu entries but logit_bias_values %zu",
                     b->num_bias_ids, b->num_bias_values);
        goto fail;
    }
    p->num_logit_bias = (int)b->num_bias_ids;
    return 0;
fail:
    pycllm_req_bufs_free(b);
    return -1;
}

/* check_request_params(dict) -> None; ValueError with the engine's message. */
static PyObject *check_request_params(PyObject *self, PyObject *arg) {
    (void)self;
    cllm_request_params p;
    pycllm_req_bufs b;
    if (pycllm_request_params(arg, &p, &b) < 0) return NULL;
    cllm_status st = cllm_request_params_check(&p);
    pycllm_req_bufs_free(&b);
    if (st != CLLM_OK) return pycllm_raise(st, cllm_last_error());
    Py_RETURN_NONE;
}

static PyMethodDef k_methods[] = {
    {"check_request_params", check_request_params, METH_O,
     "check_request_params(params: dict) -> None\n\nValidate request parameters (cllm_request_params field names) "
     "as the engine does (cllm_request_params_check); raises CllmValueError with the engine's message."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef k_module = {
    PyModuleDef_HEAD_INIT, "_cllm",
    "cllm's C engine (include/cllm.h) for Python: Engine, Tokenizer, exceptions. Use the `cllm` package.",
    -1, k_methods, NULL, NULL, NULL, NULL,
};

/* Add o (a new reference, or NULL with an exception set) to m as `name`.
 * Returns o, still holding one reference for the caller's C global, or NULL. */
static PyObject *add_object(PyObject *m, const char *name, PyObject *o) {
    if (!o) return NULL;
    Py_INCREF(o);
    if (PyModule_AddObject(m, name, o) < 0) {
        Py_DECREF(o);
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

/* A new exception class named cllm.<name> with the given bases; added to m. */
static PyObject *add_exception(PyObject *m, const char *name, PyObject *bases, const char *doc) {
    char full[64];
    snprintf(full, sizeof full, "cllm.%s", name);
    PyObject *e = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    Py_XDECREF(bases);
    return add_object(m, name, e);
}

PyMODINIT_FUNC PyInit__cllm(void) {
    PyObject *m = PyModule_Create(&k_module);
    if (!m) return NULL;
    if (!(pycllm_Error = add_exception(m, "CllmError", Py_BuildValue("(O)", PyExc_RuntimeError),
                                       "An error of the cllm engine; .status names the cllm_status (\"CLLM_ERR_IO\").")))
        goto fail;
    if (!(pycllm_ValueError = add_exception(m, "CllmValueError", Py_BuildValue("(OO)", pycllm_Error, PyExc_ValueError),
                                            "Bad parameter, prompt too long, malformed or unsupported input.")))
        goto fail;
    if (!(pycllm_OSError = add_exception(m, "CllmOSError", Py_BuildValue("(OO)", pycllm_Error, PyExc_OSError),
                                         "A file or model could not be found or read.")))
        goto fail;
    if (!(pycllm_MemoryError = add_exception(m, "CllmMemoryError",
                                             Py_BuildValue("(OO)", pycllm_Error, PyExc_MemoryError),
                                             "Host or device memory ran out.")))
        goto fail;
    if (PyModule_AddStringConstant(m, "CLLM_VERSION", CLLM_VERSION) < 0) goto fail;
    if (!(pycllm_EngineType = add_object(m, "Engine", PyType_FromSpec(&pycllm_engine_spec))) ||
        !(pycllm_TokenizerType = add_object(m, "Tokenizer", PyType_FromSpec(&pycllm_tokenizer_spec))))
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
