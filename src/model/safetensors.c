/* safetensors reader: mmap + full header validation. */
#include "model/safetensors.h"

#include "core/dtype.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REDOWNLOAD "; the file is corrupt or truncated: re-download the checkpoint"

int cllm_st_parse_dtype(const char *s, cllm_dtype *out) {
    static const struct { const char *name; cllm_dtype t; } map[] = {
        {"F64", CLLM_DTYPE_F64}, {"F32", CLLM_DTYPE_F32}, {"F16", CLLM_DTYPE_F16}, {"BF16", CLLM_DTYPE_BF16},
        {"I64", CLLM_DTYPE_I64}, {"I32", CLLM_DTYPE_I32}, {"I16", CLLM_DTYPE_I16}, {"I8", CLLM_DTYPE_I8},
        {"U8", CLLM_DTYPE_U8},   {"BOOL", CLLM_DTYPE_BOOL}, {"F8_E4M3", CLLM_DTYPE_F8_E4M3}, {"F8_E5M2", CLLM_DTYPE_F8_E5M2},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name)) { *out = map[i].t; return 0; }
    return -1;
}

/* Non-negative integer JSON value (jansson parses ints up to 2^63-1). */
static int get_size(json_t *v, size_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (size_t)json_integer_value(v);
    return 0;
}

static cllm_status parse_entry(const cllm_st_file *f, const char *name, json_t *e, size_t data_size,
                               cllm_st_tensor *t) {
    const char *p = f->path;
    if (!json_is_object(e))
        return cllm_error(CLLM_ERR_FORMAT, "%s: header entry for tensor '%s' is not an object" REDOWNLOAD, p, name);
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"), *off = json_object_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' lacks '%s'" REDOWNLOAD, p, name,
                          !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt) || cllm_st_parse_dtype(json_string_value(dt), &t->dtype) != 0)
        return cllm_error(CLLM_ERR_FORMAT,
                          "%s: tensor '%s' has unknown dtype %s%s%s (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2)"
                          REDOWNLOAD, p, name, json_is_string(dt) ? "'" : "",
                          json_is_string(dt) ? json_string_value(dt) : "(not a string)", json_is_string(dt) ? "'" : "");
    if (!json_is_array(sh))
        return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' has a shape that is not a list" REDOWNLOAD, p, name);
    if (json_array_size(sh) > CLLM_MAX_DIMS)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; cllm supports at most %d", p, name,
                          json_array_size(sh), CLLM_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    size_t nbytes = cllm_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        size_t v;
        if (get_size(json_array_get(sh, d), &v) != 0)
            return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' has a shape entry that is not a non-negative integer"
                              REDOWNLOAD, p, name);
        t->shape[d] = (int64_t)v;
        if (__builtin_mul_overflow(nbytes, v, &nbytes))
            return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' has an absurd shape (size overflows)" REDOWNLOAD, p, name);
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || get_size(json_array_get(off, 0), &t->begin) != 0 ||
        get_size(json_array_get(off, 1), &t->end) != 0)
        return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' data_offsets is not [begin, end] of non-negative integers"
                          REDOWNLOAD, p, name);
    if (t->end < t->begin)
        return cllm_error(CLLM_ERR_FORMAT, "%s: tensor '%s' data_offsets [%zu, %zu] ends before it begins" REDOWNLOAD, p,
                          name, t->begin, t->end);
    if (t->end > data_size)
        return cllm_error(CLLM_ERR_FORMAT,
                          "%s: tensor '%s' data_offsets [%zu, %zu] run past the end of the data (%zu bytes)" REDOWNLOAD,
                          p, name, t->begin, t->end, data_size);
    if (t->end - t->begin != nbytes)
        return cllm_error(CLLM_ERR_FORMAT,
                          "%s: tensor '%s' holds %zu bytes but its shape and dtype %s need %zu" REDOWNLOAD, p, name,
                          t->end - t->begin, json_string_value(dt), nbytes);
    t->name = cllm_strdup(name);
    if (!t->name) return CLLM_ERR_OOM;
    return CLLM_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const cllm_st_tensor *x = *(const cllm_st_tensor *const *)a, *y = *(const cllm_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static cllm_status check_overlap(cllm_st_file *f) {
    cllm_st_tensor **order = malloc((f->n ? f->n : 1) * sizeof *order);
    if (!order) return cllm_error(CLLM_ERR_OOM, "out of memory reading %s", f->path);
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->tensors[i].end > f->tensors[i].begin) order[m++] = &f->tensors[i]; /* empty tensors overlap nothing */
    qsort(order, m, sizeof *order, cmp_begin);
    cllm_status st = CLLM_OK;
    for (size_t i = 1; i < m; i++) {
        if (order[i]->begin < order[i - 1]->end) {
            st = cllm_error(CLLM_ERR_FORMAT, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap" REDOWNLOAD,
                            f->path, order[i - 1]->name, order[i - 1]->begin, order[i - 1]->end, order[i]->name,
                            order[i]->begin, order[i]->end);
            break;
        }
    }
    free(order);
    return st;
}

static cllm_status parse_header(cllm_st_file *f, const char *hdr, size_t n) {
    json_error_t jerr;
    json_t *root = json_loadb(hdr, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cllm_error(CLLM_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %d)" REDOWNLOAD, f->path, jerr.text,
                          jerr.position);
    cllm_status st = CLLM_OK;
    if (!json_is_object(root)) {
        st = cllm_error(CLLM_ERR_FORMAT, "%s: header is not a JSON object" REDOWNLOAD, f->path);
        goto done;
    }
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    if (!f->tensors) { st = cllm_error(CLLM_ERR_OOM, "out of memory reading %s", f->path); goto done; }
    const char *key;
    json_t *val;
    size_t data_size = f->size_bytes - f->data_offset;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st = parse_entry(f, key, val, data_size, &f->tensors[f->n]);
        if (st != CLLM_OK) goto done;
        f->n++;
    }
    st = check_overlap(f);
done:
    json_decref(root);
    return st;
}

cllm_status cllm_st_open(const char *path, cllm_st_file **out) {
    *out = NULL;
    cllm_status st = CLLM_OK;
    cllm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = cllm_strdup(path))) { free(f); return cllm_error(CLLM_ERR_OOM, "out of memory opening %s", path); }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = cllm_error(errno == ENOENT ? CLLM_ERR_NOT_FOUND : CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = cllm_error(CLLM_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    f->size_bytes = (size_t)sb.st_size;
    if (f->size_bytes < 8) {
        close(fd);
        st = cllm_error(CLLM_ERR_FORMAT, "%s is %zu bytes, shorter than the 8-byte safetensors header length" REDOWNLOAD,
                        path, f->size_bytes);
        goto fail;
    }
    f->map = mmap(NULL, f->size_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = cllm_error(CLLM_ERR_IO, "cannot mmap %s (%zu bytes): %s", path, f->size_bytes, strerror(errno));
        goto fail;
    }
    const unsigned char *b = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > CLLM_ST_MAX_HEADER_BYTES || n > f->size_bytes - 8) {
        st = cllm_error(CLLM_ERR_FORMAT, "%s: header length %llu is %s (file is %zu bytes)" REDOWNLOAD, path,
                        (unsigned long long)n, n > f->size_bytes - 8 ? "larger than the file" : "over 100 MB",
                        f->size_bytes);
        goto fail;
    }
    f->data_offset = 8 + (size_t)n;
    CLLM_TRY_GOTO(st, parse_header(f, (const char *)b + 8, (size_t)n), fail);
    *out = f;
    return CLLM_OK;
fail:
    cllm_st_close(f);
    return st;
}

void cllm_st_close(cllm_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size_bytes);
    for (size_t i = 0; i < f->n; i++) free(f->tensors[i].name);
    /* parse_entry sets name last, so a failed entry holds nothing to free. */
    free(f->tensors);
    free(f->path);
    free(f);
}
