/* Checkpoint tensors: safetensors files (single or sharded, mmap'd) behind a
 * name -> tensor hash map, or deterministic dummy tensors. */
#include "model/weights.h"

#include "core/dtype.h"
#include "core/status.h"
#include "model/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A dummy tensor handed out by get; info first so a cllm_tensor_info* is a node*. */
typedef struct dummy_node {
    cllm_tensor_info info;
    struct dummy_node *prev, *next;
    char *name;
    void *buf;
} dummy_node;

struct cllm_weights {
    char *dir;                   /* owned; "(dummy)" for dummy weights */
    cllm_st_file **files;        /* owned */
    size_t nfiles;
    cllm_tensor_info *infos;     /* owned array; names/paths borrowed from files */
    size_t n;
    uint32_t *table;             /* open addressing: index + 1, 0 = empty */
    size_t cap;                  /* power of two */
    size_t total_bytes;
    /* dummy */
    bool dummy;
    uint64_t seed;
    cllm_dtype dtype;
    dummy_node *live;            /* tensors handed out and not yet released */
    size_t live_n, live_bytes;
    void **copies;               /* aligned copies of misaligned tensors (owned) */
    size_t ncopies;
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static const cllm_tensor_info *lookup(const cllm_weights *w, const char *name) {
    if (!w->cap) return NULL;
    for (size_t i = fnv1a(name) & (w->cap - 1);; i = (i + 1) & (w->cap - 1)) {
        uint32_t e = w->table[i];
        if (!e) return NULL;
        if (!strcmp(w->infos[e - 1].name, name)) return &w->infos[e - 1];
    }
}

/* Insert infos[idx]; returns the earlier entry of the same name, or NULL. */
static const cllm_tensor_info *insert(cllm_weights *w, size_t idx) {
    const char *name = w->infos[idx].name;
    for (size_t i = fnv1a(name) & (w->cap - 1);; i = (i + 1) & (w->cap - 1)) {
        uint32_t e = w->table[i];
        if (!e) { w->table[i] = (uint32_t)idx + 1; return NULL; }
        if (!strcmp(w->infos[e - 1].name, name)) return &w->infos[e - 1];
    }
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Build infos + hash table from the opened files; duplicate names are errors. */
static cllm_status build_index(cllm_weights *w) {
    size_t total = 0;
    for (size_t f = 0; f < w->nfiles; f++) total += w->files[f]->n;
    if (total >= UINT32_MAX / 4) return cllm_error(CLLM_ERR_FORMAT, "%s: too many tensors (%zu)", w->dir, total);
    w->infos = calloc(total + 1, sizeof *w->infos);
    for (w->cap = 16; w->cap < 2 * total; w->cap *= 2) {}
    w->table = calloc(w->cap, sizeof *w->table);
    if (!w->infos || !w->table) return cllm_error(CLLM_ERR_OOM, "out of memory indexing %s", w->dir);
    for (size_t f = 0; f < w->nfiles; f++) {
        cllm_st_file *sf = w->files[f];
        for (size_t i = 0; i < sf->n; i++) {
            cllm_st_tensor *t = &sf->tensors[i];
            cllm_tensor_info *ti = &w->infos[w->n];
            ti->name = t->name;
            ti->dtype = t->dtype;
            ti->ndim = t->ndim;
            memcpy(ti->shape, t->shape, sizeof ti->shape);
            ti->data = (const char *)sf->map + sf->data_offset + t->begin;
            size_t esize = cllm_dtype_size(t->dtype);
            if ((uintptr_t)ti->data % esize != 0) {
                /* The spec does not require the header to be padded (writers
                 * pad it to 8 bytes); a misaligned tensor is copied once so
                 * that readers may use typed pointers. */
                void **nc = realloc(w->copies, (w->ncopies + 1) * sizeof *nc);
                if (!nc) return cllm_error(CLLM_ERR_OOM, "out of memory reading %s", sf->path);
                w->copies = nc;
                void *copy = malloc(t->end - t->begin ? t->end - t->begin : 1);
                if (!copy) return cllm_error(CLLM_ERR_OOM, "out of memory copying tensor '%s' of %s", t->name, sf->path);
                memcpy(copy, ti->data, t->end - t->begin);
                w->copies[w->ncopies++] = copy;
                ti->data = copy;
                if (w->ncopies == 1)
                    CLLM_LOG_W("%s: tensor data is not aligned (header length not a multiple of 8); copying", sf->path);
            }
            ti->nbytes = t->end - t->begin;
            ti->file = sf->path;
            const cllm_tensor_info *dup = insert(w, w->n);
            if (dup)
                return cllm_error(CLLM_ERR_FORMAT, "tensor '%s' is stored twice, in %s and in %s; re-download the checkpoint",
                                  t->name, dup->file, sf->path);
            w->n++;
            w->total_bytes += ti->nbytes;
        }
    }
    return CLLM_OK;
}

static cllm_status add_file(cllm_weights *w, const char *path) {
    cllm_st_file **nf = realloc(w->files, (w->nfiles + 1) * sizeof *nf);
    if (!nf) return cllm_error(CLLM_ERR_OOM, "out of memory opening %s", path);
    w->files = nf;
    cllm_status st = cllm_st_open(path, &w->files[w->nfiles]);
    if (st == CLLM_OK) w->nfiles++;
    return st;
}

/* model.safetensors.index.json: open each shard of weight_map once, then
 * check every listed tensor is in the shard the index names. */
static cllm_status open_sharded(cllm_weights *w, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, 0, &jerr);
    if (!root)
        return cllm_error(CLLM_ERR_FORMAT, "%s is not valid JSON (line %d: %s); re-download the checkpoint", index_path,
                          jerr.line, jerr.text);
    cllm_status st = CLLM_OK;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    const char *name;
    json_t *v;
    char path[4096];
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        st = cllm_error(CLLM_ERR_FORMAT, "%s has no 'weight_map' object (tensor name -> shard file); re-download the checkpoint",
                        index_path);
        goto done;
    }
    json_object_foreach(wm, name, v) {
        const char *shard = json_is_string(v) ? json_string_value(v) : NULL;
        if (!shard || !*shard || strstr(shard, "..") || shard[0] == '/') {
            st = cllm_error(CLLM_ERR_FORMAT, "%s: weight_map entry for '%s' is not a shard file name in this directory",
                            index_path, name);
            goto done;
        }
        snprintf(path, sizeof path, "%s/%s", w->dir, shard);
        bool seen = false;
        for (size_t i = 0; i < w->nfiles && !seen; i++) seen = !strcmp(w->files[i]->path, path);
        if (seen) continue;
        if (!is_file(path)) {
            st = cllm_error(CLLM_ERR_NOT_FOUND, "shard %s (named by %s for tensor '%s') does not exist; re-download the checkpoint",
                            path, index_path, name);
            goto done;
        }
        CLLM_TRY_GOTO(st, add_file(w, path), done);
    }
    CLLM_TRY_GOTO(st, build_index(w), done);
    json_object_foreach(wm, name, v) {
        snprintf(path, sizeof path, "%s/%s", w->dir, json_string_value(v));
        const cllm_tensor_info *t = lookup(w, name);
        if (!t || strcmp(t->file, path) != 0) {
            st = cllm_error(CLLM_ERR_FORMAT, "tensor '%s' is listed in %s as stored in %s but that shard does not hold it%s%s%s;"
                            " re-download the checkpoint", name, index_path, path, t ? " (it is in " : "",
                            t ? t->file : "", t ? ")" : "");
            goto done;
        }
    }
done:
    json_decref(root);
    return st;
}

cllm_status cllm_weights_open(const char *dir, cllm_weights **out) {
    *out = NULL;
    cllm_status st;
    cllm_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = cllm_strdup(dir))) { free(w); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (is_file(path)) {
        CLLM_TRY_GOTO(st, open_sharded(w, path), fail);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!is_file(path)) {
            st = cllm_error(CLLM_ERR_NOT_FOUND, "no model.safetensors or model.safetensors.index.json in %s; "
                            "is this a Hugging Face model directory with safetensors weights?", dir);
            goto fail;
        }
        CLLM_TRY_GOTO(st, add_file(w, path), fail);
        CLLM_TRY_GOTO(st, build_index(w), fail);
    }
    *out = w;
    return CLLM_OK;
fail:
    cllm_weights_destroy(w);
    return st;
}

/* ------------------------------------------------------------ dummy weights */

cllm_status cllm_weights_create_dummy(uint64_t seed, cllm_dtype dtype, cllm_weights **out) {
    *out = NULL;
    if (dtype == CLLM_DTYPE_AUTO) dtype = CLLM_DTYPE_F32;
    if (dtype != CLLM_DTYPE_F32 && dtype != CLLM_DTYPE_BF16 && dtype != CLLM_DTYPE_F16)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "dummy weights in %s are not supported; use float32, bfloat16 or float16",
                          cllm_dtype_name(dtype));
    cllm_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = cllm_strdup("(dummy weights)"))) { free(w); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
    w->dummy = true;
    w->seed = seed;
    w->dtype = dtype;
    *out = w;
    return CLLM_OK;
}

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Dummy values are generated in chunks of 2^16 elements, each with its own
 * key, so the result does not depend on the thread count. Element j of a
 * chunk: two 32-bit hashes (murmur3 finalizer) of the counter give four
 * uniform 16-bit integers whose sum (Irwin-Hall, variance 4 * 65536^2 / 12)
 * is approximately normal. Integer-only, branch-free: vectorizes. */
#define DUMMY_CHUNK 65536

static inline uint32_t mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static inline float chunk_value(uint32_t k1, uint32_t k2, uint32_t j, float mean, float scale) {
    uint32_t a = mix32(k1 + j), b = mix32(k2 + j);
    int32_t s = (int32_t)((a & 0xffffu) + (a >> 16) + (b & 0xffffu) + (b >> 16)) - 131070;
    return mean + (float)s * scale;
}

#define DUMMY_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

DUMMY_CLONES static void fill_f32(float *p, size_t n, uint32_t k1, uint32_t k2, float mean, float scale) {
    for (uint32_t j = 0; j < (uint32_t)n; j++) p[j] = chunk_value(k1, k2, j, mean, scale);
}

DUMMY_CLONES static void fill_bf16(uint16_t *p, size_t n, uint32_t k1, uint32_t k2, float mean, float scale) {
    for (uint32_t j = 0; j < (uint32_t)n; j++) {
        float f = chunk_value(k1, k2, j, mean, scale);
        uint32_t u;
        memcpy(&u, &f, 4);
        p[j] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* round to nearest even; never NaN */
    }
}

DUMMY_CLONES static void fill_f16(uint16_t *p, size_t n, uint32_t k1, uint32_t k2, float mean, float scale) {
#ifdef __FLT16_MAX__ /* hardware conversion (F16C), round to nearest even like cllm_f32_to_f16 */
    _Float16 *h = (_Float16 *)(void *)p;
    for (uint32_t j = 0; j < (uint32_t)n; j++) h[j] = (_Float16)chunk_value(k1, k2, j, mean, scale);
#else
    for (uint32_t j = 0; j < (uint32_t)n; j++) p[j] = cllm_f32_to_f16(chunk_value(k1, k2, j, mean, scale));
#endif
}

static void dummy_fill(void *buf, cllm_dtype dt, size_t n, uint64_t key, float mean, float std) {
    const float scale = std / (65536.0f * 0.57735026919f);
    const size_t nchunks = (n + DUMMY_CHUNK - 1) / DUMMY_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (size_t c = 0; c < nchunks; c++) {
        uint64_t ck = splitmix64(key + c);
        uint32_t k1 = (uint32_t)ck, k2 = (uint32_t)(ck >> 32);
        size_t off = c * DUMMY_CHUNK, len = n - off < DUMMY_CHUNK ? n - off : DUMMY_CHUNK;
        if (dt == CLLM_DTYPE_F32) fill_f32((float *)buf + off, len, k1, k2, mean, scale);
        else if (dt == CLLM_DTYPE_BF16) fill_bf16((uint16_t *)buf + off, len, k1, k2, mean, scale);
        else fill_f16((uint16_t *)buf + off, len, k1, k2, mean, scale);
    }
}

static cllm_status dummy_get(cllm_weights *w, const char *name, int ndim, const int64_t *shape,
                             const cllm_tensor_info **out) {
    if (ndim < 0 || ndim > CLLM_MAX_DIMS || (ndim > 0 && !shape))
        return cllm_error(CLLM_ERR_INVALID_ARG, "dummy tensor '%s': a shape of 0..%d dims is required", name, CLLM_MAX_DIMS);
    size_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(n, (size_t)shape[d], &n))
            return cllm_error(CLLM_ERR_INVALID_ARG, "dummy tensor '%s': bad shape", name);
    size_t nbytes;
    if (__builtin_mul_overflow(n, cllm_dtype_size(w->dtype), &nbytes))
        return cllm_error(CLLM_ERR_INVALID_ARG, "dummy tensor '%s': bad shape", name);
    dummy_node *node = calloc(1, sizeof *node);
    if (node) node->name = cllm_strdup(name);
    if (node && node->name) node->buf = malloc(nbytes ? nbytes : 1);
    if (!node || !node->name || !node->buf) {
        if (node) { free(node->name); free(node); }
        return cllm_error(CLLM_ERR_OOM, "out of memory for dummy tensor '%s' (%zu bytes)", name, nbytes);
    }
    bool is_norm = strstr(name, "norm") != NULL;
    uint64_t key = splitmix64(w->seed ^ splitmix64(fnv1a(name)));
    dummy_fill(node->buf, w->dtype, n, key, is_norm ? 1.0f : 0.0f, is_norm ? 0.1f : 0.02f);
    node->info.name = node->name;
    node->info.dtype = w->dtype;
    node->info.ndim = ndim;
    for (int d = 0; d < ndim; d++) node->info.shape[d] = shape[d];
    node->info.data = node->buf;
    node->info.nbytes = nbytes;
    node->info.file = w->dir;
    node->next = w->live;
    if (w->live) w->live->prev = node;
    w->live = node;
    w->live_n++;
    w->live_bytes += nbytes;
    *out = &node->info;
    return CLLM_OK;
}

/* ------------------------------------------------------------ queries */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

cllm_status cllm_weights_get(cllm_weights *w, const char *name, int ndim, const int64_t *shape,
                             const cllm_tensor_info **out) {
    *out = NULL;
    if (w->dummy) return dummy_get(w, name, ndim, shape, out);
    const cllm_tensor_info *t = lookup(w, name);
    if (!t)
        return cllm_error(CLLM_ERR_NOT_FOUND, "tensor %s not found in %s (%zu tensors); is the checkpoint complete and of the "
                          "architecture config.json names?", name, w->dir, w->n);
    if (shape) {
        bool ok = t->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
        if (!ok) {
            char have[160], want[160];
            fmt_shape(have, sizeof have, t->ndim, t->shape);
            fmt_shape(want, sizeof want, ndim, shape);
            return cllm_error(CLLM_ERR_FORMAT, "tensor %s in %s has shape %s, expected %s; config.json and the weights "
                              "disagree", name, t->file, have, want);
        }
    }
    if (t->dtype != CLLM_DTYPE_F32 && t->dtype != CLLM_DTYPE_BF16 && t->dtype != CLLM_DTYPE_F16 &&
        t->dtype != CLLM_DTYPE_F8_E4M3 && t->dtype != CLLM_DTYPE_F8_E5M2)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "tensor %s in %s has dtype %s; cllm reads float32, bfloat16, float16 "
                          "and FP8 (float8_e4m3fn, float8_e5m2) weights (integer-quantized checkpoints are not "
                          "supported)", name, t->file, cllm_dtype_name(t->dtype));
    *out = t;
    return CLLM_OK;
}

bool cllm_weights_has(const cllm_weights *w, const char *name) {
    return !w->dummy && lookup(w, name) != NULL;
}

cllm_dtype cllm_weights_dtype(const cllm_weights *w, const char *name) {
    if (w->dummy) return w->dtype;
    const cllm_tensor_info *t = lookup(w, name);
    return t ? t->dtype : CLLM_DTYPE_AUTO;
}

void cllm_weights_release(cllm_weights *w, const cllm_tensor_info *t) {
    if (!w || !t) return;
    if (w->dummy) {
        dummy_node *node = w->live;
        while (node && &node->info != t) node = node->next;
        CLLM_ASSERT(node != NULL); /* t must come from cllm_weights_get on w */
        if (node->prev) node->prev->next = node->next;
        else w->live = node->next;
        if (node->next) node->next->prev = node->prev;
        w->live_n--;
        w->live_bytes -= node->info.nbytes;
        free(node->buf);
        free(node->name);
        free(node);
        return;
    }
    /* Drop the page cache mapping of whole pages inside the tensor; a later
     * access faults the data back in from the file, so this is always safe. */
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < w->ncopies; i++)
        if (w->copies[i] == t->data) return; /* an aligned copy, kept until destroy */
    uintptr_t b = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t e = ((uintptr_t)t->data + t->nbytes) & ~((uintptr_t)page - 1);
    if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
}

size_t cllm_weights_count(const cllm_weights *w) { return w->dummy ? w->live_n : w->n; }
size_t cllm_weights_total_bytes(const cllm_weights *w) { return w->dummy ? w->live_bytes : w->total_bytes; }

void cllm_weights_destroy(cllm_weights *w) {
    if (!w) return;
    while (w->live) {
        dummy_node *next = w->live->next;
        free(w->live->buf);
        free(w->live->name);
        free(w->live);
        w->live = next;
    }
    for (size_t i = 0; i < w->nfiles; i++) cllm_st_close(w->files[i]);
    free(w->files);
    for (size_t i = 0; i < w->ncopies; i++) free(w->copies[i]);
    free(w->copies);
    free(w->infos);
    free(w->table);
    free(w->dir);
    free(w);
}
