/* cllm's CPython extension (`cllm._cllm`): shared declarations.
 *
 * Written against the stable ABI (Py_LIMITED_API = 3.9), so one build serves
 * every CPython >= 3.9. It binds include/cllm.h only: Engine (cllm_engine),
 * Tokenizer (cllm_tokenizer), check_request_params, and the exception
 * classes every cllm_status maps to. The Python package (python/cllm/) builds
 * vLLM's classes (LLM, SamplingParams, RequestOutput, AsyncLLM) on top.
 *
 * Threads: every call that may take time (engine create/step/destroy, add
 * request, encode, decode, chat-template render) runs with the GIL released.
 * An Engine is driven under its own mutex (cllm_engine is not thread-safe),
 * always taken with the GIL released so a thread waiting for it never blocks
 * one that waits for the GIL. */
#ifndef PYCLLM_H
#define PYCLLM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cllm.h"

/* Types and exceptions, created once by the module's init (single-phase
 * init: one module per process, no sub-interpreter support). */
extern PyObject *pycllm_EngineType;
extern PyObject *pycllm_TokenizerType;
extern PyObject *pycllm_Error;       /* CllmError(RuntimeError) */
extern PyObject *pycllm_ValueError;  /* CllmValueError(CllmError, ValueError) */
extern PyObject *pycllm_OSError;     /* CllmOSError(CllmError, OSError) */
extern PyObject *pycllm_MemoryError; /* CllmMemoryError(CllmError, MemoryError) */

/* Raise the exception of status st with `message` (normally cllm_last_error(),
 * read on the thread that made the failing call), attribute .status =
 * cllm_status_str(st). Returns NULL. */
PyObject *pycllm_raise(cllm_status st, const char *message);

/* UTF-8 of a str: *keep (a new bytes object) owns *s until Py_DECREF(*keep).
 * Returns 0, or -1 with TypeError/UnicodeEncodeError set. */
int pycllm_utf8(PyObject *str, const char *what, PyObject **keep, const char **s, Py_ssize_t *len);

/* Sequence of ints -> malloc'd int32 array (*out, *n; free()). -1 with
 * TypeError/OverflowError set. */
int pycllm_int32_array(PyObject *seq, const char *what, int32_t **out, size_t *n);

/* int32 array -> new list of ints, or NULL. */
PyObject *pycllm_int32_list(const int32_t *v, size_t n);

/* A field of a parameter struct that a dict key sets (the key is the C field
 * name). Enums arrive as ints: the Python layer maps vLLM's strings. */
typedef enum {
    PYCLLM_INT, PYCLLM_FLOAT, PYCLLM_DOUBLE, PYCLLM_BOOL, PYCLLM_U64, PYCLLM_DEVICE, PYCLLM_DTYPE, PYCLLM_LOAD_FORMAT
} pycllm_kind;
typedef struct pycllm_field {
    const char *name;
    pycllm_kind kind;
    size_t off;          /* offsetof in the struct */
} pycllm_field;

/* Store value into every field of fields[0..n) named key (a name may appear
 * twice: a value both structs carry), in the struct at base. 0, or -1 with
 * TypeError / OverflowError, or ValueError "unknown <what> parameter 'key'"
 * when no field has that name. */
int pycllm_set_field(void *base, const pycllm_field *fields, size_t n, const char *key, PyObject *value,
                     const char *what);

/* Owned conversion buffers of a request-parameter dict (see
 * pycllm_request_params): hold stop strings and ids alive while used. */
typedef struct pycllm_req_bufs {
    PyObject **keep;     /* bytes objects of the stop strings */
    const char **stop;
    int32_t *stop_ids;
    int32_t *bias_ids;   /* logit_bias_token_ids */
    float *bias_values;  /* logit_bias_values */
    size_t num_bias_ids, num_bias_values;
    int num_keep;
} pycllm_req_bufs;

/* Fill *p from a dict with cllm_request_params' field names (missing or None:
 * the default; seed None: unseeded). Unknown keys: ValueError. Returns 0, or
 * -1 with an exception set. Release *b with pycllm_req_bufs_free. */
int pycllm_request_params(PyObject *dict, cllm_request_params *p, pycllm_req_bufs *b);
void pycllm_req_bufs_free(pycllm_req_bufs *b);

/* Tokenizer object over a borrowed tokenizer whose owner (an Engine object)
 * is kept alive by a strong reference. Returns a new reference or NULL. */
PyObject *pycllm_tokenizer_borrowed(const cllm_tokenizer *tok, PyObject *owner);

/* The types' specs (py_engine.c, py_tokenizer.c); the module's init creates
 * the types from them. */
extern PyType_Spec pycllm_engine_spec, pycllm_tokenizer_spec;

#endif
