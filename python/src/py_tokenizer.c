/* cllm._cllm.Tokenizer: a cllm_tokenizer (owned, loaded from a path, or
 * borrowed from an Engine that it keeps alive). The tokenizer is read-only
 * after loading, so its calls run with the GIL released and may overlap. */
#include "pycllm.h"

#include <stdlib.h>

PyObject *pycllm_TokenizerType;

typedef struct {
    PyObject_HEAD
    cllm_tokenizer *owned;       /* loaded by Tokenizer(path), or NULL */
    const cllm_tokenizer *tok;   /* owned, or borrowed from owner */
    PyObject *owner;             /* strong reference keeping a borrowed tok alive, or NULL */
} PyTokenizer;

static PyObject *tok_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U:Tokenizer", kwlist, &path)) return NULL;
    PyObject *keep = NULL;
    const char *p = NULL;
    if (pycllm_utf8(path, "path", &keep, &p, NULL) < 0) return NULL;
    cllm_tokenizer *t = NULL;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    st = cllm_tokenizer_load(p, &t);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    Py_DECREF(keep);
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    PyTokenizer *self = (PyTokenizer *)PyType_GenericAlloc(type, 0);
    if (!self) {
        cllm_tokenizer_destroy(t);
        return NULL;
    }
    self->owned = t;
    self->tok = t;
    return (PyObject *)self;
}

PyObject *pycllm_tokenizer_borrowed(const cllm_tokenizer *tok, PyObject *owner) {
    PyTokenizer *self = (PyTokenizer *)PyType_GenericAlloc((PyTypeObject *)pycllm_TokenizerType, 0);
    if (!self) return NULL;
    self->tok = tok;
    Py_INCREF(owner);
    self->owner = owner;
    return (PyObject *)self;
}

static void tok_dealloc(PyObject *o) {
    PyTokenizer *self = (PyTokenizer *)o;
    PyTypeObject *type = Py_TYPE(o);
    cllm_tokenizer_destroy(self->owned);
    Py_XDECREF(self->owner);
    freefunc f = (freefunc)PyType_GetSlot(type, Py_tp_free);
    f(o);
    Py_DECREF(type);
}

static PyObject *tok_encode(PyObject *o, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"text", "add_special_tokens", NULL};
    PyObject *text = NULL;
    int add_special = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|p:encode", kwlist, &text, &add_special)) return NULL;
    PyObject *keep = NULL;
    const char *s = NULL;
    Py_ssize_t len = 0;
    if (pycllm_utf8(text, "text", &keep, &s, &len) < 0) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    st = cllm_tokenizer_encode(((PyTokenizer *)o)->tok, s, (size_t)len, add_special != 0, &ids, &n);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    Py_DECREF(keep);
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    PyObject *l = pycllm_int32_list(ids, n);
    cllm_free(ids);
    return l;
}

static PyObject *tok_decode(PyObject *o, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ids", "skip_special_tokens", NULL};
    PyObject *seq = NULL;
    int skip = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:decode", kwlist, &seq, &skip)) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (pycllm_int32_array(seq, "ids", &ids, &n) < 0) return NULL;
    char *text = NULL;
    size_t len = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    st = cllm_tokenizer_decode(((PyTokenizer *)o)->tok, ids, n, skip != 0, &text, &len);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    free(ids);
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    cllm_free(text);
    return r;
}

static PyObject *tok_vocab_size(PyObject *o, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(cllm_tokenizer_vocab_size(((PyTokenizer *)o)->tok));
}

static PyObject *tok_token_to_id(PyObject *o, PyObject *token) {
    PyObject *keep = NULL;
    const char *s = NULL;
    if (pycllm_utf8(token, "token", &keep, &s, NULL) < 0) return NULL;
    int32_t id = cllm_tokenizer_token_to_id(((PyTokenizer *)o)->tok, s);
    Py_DECREF(keep);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *tok_id_to_token(PyObject *o, PyObject *arg) {
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    const char *s = id >= 0 && id <= INT32_MAX ? cllm_tokenizer_id_to_token(((PyTokenizer *)o)->tok, (int32_t)id) : NULL;
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *tok_is_special(PyObject *o, PyObject *arg) {
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    return PyBool_FromLong(id >= 0 && id <= INT32_MAX && cllm_tokenizer_is_special(((PyTokenizer *)o)->tok, (int32_t)id));
}

static PyObject *id_or_none(int32_t id) {
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *tok_bos_id(PyObject *o, PyObject *unused) {
    (void)unused;
    return id_or_none(cllm_tokenizer_bos_id(((PyTokenizer *)o)->tok));
}

static PyObject *tok_eos_id(PyObject *o, PyObject *unused) {
    (void)unused;
    return id_or_none(cllm_tokenizer_eos_id(((PyTokenizer *)o)->tok));
}

static PyObject *tok_chat_template(PyObject *o, PyObject *unused) {
    (void)unused;
    const char *s = cllm_tokenizer_chat_template(((PyTokenizer *)o)->tok);
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *tok_render_chat(PyObject *o, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"context_json", "chat_template", NULL};
    PyObject *ctx = NULL, *tmpl = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|O:render_chat", kwlist, &ctx, &tmpl)) return NULL;
    PyObject *kc = NULL, *kt = NULL;
    const char *c = NULL, *t = NULL;
    if (pycllm_utf8(ctx, "context_json", &kc, &c, NULL) < 0) return NULL;
    if (tmpl != Py_None && pycllm_utf8(tmpl, "chat_template", &kt, &t, NULL) < 0) {
        Py_DECREF(kc);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    cllm_status st;
    const char *msg = "";
    Py_BEGIN_ALLOW_THREADS
    st = cllm_tokenizer_apply_chat_template(((PyTokenizer *)o)->tok, t, c, &text, &len);
    if (st != CLLM_OK) msg = cllm_last_error();
    Py_END_ALLOW_THREADS
    Py_DECREF(kc);
    Py_XDECREF(kt);
    if (st != CLLM_OK) return pycllm_raise(st, msg);
    PyObject *r = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    cllm_free(text);
    return r;
}

static PyMethodDef k_tok_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))tok_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, add_special_tokens=True) -> list[int]: Hugging Face Tokenizer.encode(text).ids"},
    {"decode", (PyCFunction)(void (*)(void))tok_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, skip_special_tokens=True) -> str: Hugging Face Tokenizer.decode"},
    {"vocab_size", tok_vocab_size, METH_NOARGS, "vocab_size() -> int: including added tokens (max id + 1)"},
    {"token_to_id", tok_token_to_id, METH_O, "token_to_id(token: str) -> int | None"},
    {"id_to_token", tok_id_to_token, METH_O, "id_to_token(id: int) -> str | None"},
    {"is_special", tok_is_special, METH_O, "is_special(id: int) -> bool: a special added token"},
    {"bos_id", tok_bos_id, METH_NOARGS, "bos_id() -> int | None (tokenizer_config.json's bos_token)"},
    {"eos_id", tok_eos_id, METH_NOARGS, "eos_id() -> int | None (tokenizer_config.json's eos_token)"},
    {"chat_template", tok_chat_template, METH_NOARGS, "chat_template() -> str | None (tokenizer_config.json)"},
    {"render_chat", (PyCFunction)(void (*)(void))tok_render_chat, METH_VARARGS | METH_KEYWORDS,
     "render_chat(context_json: str, chat_template: str | None = None) -> str: cllm_tokenizer_apply_chat_template"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot k_tok_slots[] = {
    {Py_tp_new, tok_new},
    {Py_tp_dealloc, tok_dealloc},
    {Py_tp_methods, k_tok_methods},
    {Py_tp_doc, "Tokenizer(path): a Hugging Face tokenizer (directory with tokenizer.json, or the file), "
                "as cllm_tokenizer_load reads it."},
    {0, NULL},
};

PyType_Spec pycllm_tokenizer_spec = {"cllm._cllm.Tokenizer", sizeof(PyTokenizer), 0, Py_TPFLAGS_DEFAULT,
                                      k_tok_slots};
