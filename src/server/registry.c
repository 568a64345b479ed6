/* YAML model registry (see registry.h), parsed with libyaml's document API. */
#include "server/registry.h"

#include "core/status.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

/* messages and tried-path lists are bounded buffers: truncation is harmless */
#pragma GCC diagnostic ignored "-Wformat-truncation"

struct cllm_registry {
    cllm_registry_entry *entries;
    size_t n;
    char *source;
};

static const char *KEYS =
    "model, revision, served-model-name, dtype, device, tensor-parallel-size, pipeline-parallel-size, "
    "data-parallel-size, gpu-memory-utilization, max-num-seqs, max-model-len, max-num-batched-tokens, block-size, "
    "enable-prefix-caching, seed, description";

typedef struct rctx {
    const char *src;
    yaml_document_t *doc;
} rctx;

static cllm_status fail_at(rctx *c, yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static cllm_status fail_at(rctx *c, yaml_node_t *n, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cllm_error(CLLM_ERR_FORMAT, "%s:%zu:%zu: %s", c->src, n->start_mark.line + 1, n->start_mark.column + 1,
                      msg);
}

static void entry_free(cllm_registry_entry *e) {
    free(e->name); free(e->model); free(e->revision); free(e->served_model_name);
    free(e->dtype); free(e->device); free(e->description);
}

void cllm_registry_destroy(cllm_registry *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++) entry_free(&reg->entries[i]);
    free(reg->entries);
    free(reg->source);
    free(reg);
}

static const char *scalar(yaml_node_t *n) { return (const char *)n->data.scalar.value; }
static bool quoted(yaml_node_t *n) {
    return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static cllm_status get_string(rctx *c, const char *key, yaml_node_t *v, char **out) {
    if (v->type != YAML_SCALAR_NODE) return fail_at(c, v, "'%s' must be a string", key);
    if (strlen(scalar(v)) != v->data.scalar.length) return fail_at(c, v, "'%s' contains a NUL character", key);
    free(*out);
    if (!(*out = cllm_strdup(scalar(v)))) return CLLM_ERR_OOM;
    return CLLM_OK;
}

static cllm_status get_int(rctx *c, const char *key, yaml_node_t *v, long long lo, long long hi, long long *out) {
    if (v->type != YAML_SCALAR_NODE || quoted(v)) return fail_at(c, v, "'%s' must be an integer", key);
    const char *s = scalar(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno) return fail_at(c, v, "'%s' must be an integer, got '%s'", key, s);
    if (x < lo || x > hi) return fail_at(c, v, "'%s' must be in [%lld, %lld], got %lld", key, lo, hi, x);
    *out = x;
    return CLLM_OK;
}

static cllm_status get_choice(rctx *c, const char *key, yaml_node_t *v, const char *const *choices, char **out) {
    CLLM_TRY(get_string(c, key, v, out));
    char list[256] = "";
    for (size_t i = 0; choices[i]; i++) {
        if (!strcmp(*out, choices[i])) return CLLM_OK;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    }
    return fail_at(c, v, "'%s' must be one of %s, got '%s'", key, list, *out);
}

/* One key of an entry; key spelled with dashes (underscores normalized). */
static cllm_status set_field(rctx *c, cllm_registry_entry *e, const char *key, yaml_node_t *kn, yaml_node_t *v) {
    static const char *const DTYPES[] = {"auto", "float32", "float", "bfloat16", "float16", "half", NULL};
    static const char *const DEVICES[] = {"cpu", "cuda", NULL};
    long long x;
    if (!strcmp(key, "model")) {
        CLLM_TRY(get_string(c, key, v, &e->model));
        if (!e->model[0]) return fail_at(c, v, "'model' must not be empty: give ORG/NAME or a directory");
        return CLLM_OK;
    }
    if (!strcmp(key, "revision")) return get_string(c, key, v, &e->revision);
    if (!strcmp(key, "served-model-name")) return get_string(c, key, v, &e->served_model_name);
    if (!strcmp(key, "description")) return get_string(c, key, v, &e->description);
    if (!strcmp(key, "dtype")) return get_choice(c, key, v, DTYPES, &e->dtype);
    if (!strcmp(key, "device")) return get_choice(c, key, v, DEVICES, &e->device);
    struct { const char *k; int *dst; long long lo, hi; } ints[] = {
        {"tensor-parallel-size", &e->tensor_parallel_size, 1, 1024},
        {"pipeline-parallel-size", &e->pipeline_parallel_size, 1, 1024},
        {"data-parallel-size", &e->data_parallel_size, 1, 1024},
        {"max-num-seqs", &e->max_num_seqs, 1, 1 << 20},
        {"max-model-len", &e->max_model_len, 1, INT_MAX},
        {"max-num-batched-tokens", &e->max_num_batched_tokens, 1, INT_MAX},
        {"block-size", &e->block_size, 1, 128},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(key, ints[i].k)) continue;
        CLLM_TRY(get_int(c, key, v, ints[i].lo, ints[i].hi, &x));
        if (!strcmp(key, "block-size") && x != 1 && x != 8 && x != 16 && x != 32 && x != 64 && x != 128)
            return fail_at(c, v, "'block-size' must be one of 1, 8, 16, 32, 64, 128, got %lld", x);
        *ints[i].dst = (int)x;
        return CLLM_OK;
    }
    if (!strcmp(key, "seed")) {
        CLLM_TRY(get_int(c, key, v, 0, LLONG_MAX, &x));
        e->seed = x;
        return CLLM_OK;
    }
    if (!strcmp(key, "gpu-memory-utilization")) {
        char *end;
        const char *s = v->type == YAML_SCALAR_NODE ? scalar(v) : "";
        double d = v->type == YAML_SCALAR_NODE && !quoted(v) ? strtod(s, &end) : 0;
        if (v->type != YAML_SCALAR_NODE || quoted(v) || !*s || *end)
            return fail_at(c, v, "'gpu-memory-utilization' must be a number in (0, 1]");
        if (!(d > 0 && d <= 1)) return fail_at(c, v, "'gpu-memory-utilization' must be in (0, 1], got %s", s);
        e->gpu_memory_utilization = d;
        return CLLM_OK;
    }
    if (!strcmp(key, "enable-prefix-caching")) {
        const char *s = v->type == YAML_SCALAR_NODE ? scalar(v) : "";
        if (v->type == YAML_SCALAR_NODE && !quoted(v) && (!strcmp(s, "true") || !strcmp(s, "True"))) e->enable_prefix_caching = 1;
        else if (v->type == YAML_SCALAR_NODE && !quoted(v) && (!strcmp(s, "false") || !strcmp(s, "False"))) e->enable_prefix_caching = 0;
        else return fail_at(c, v, "'enable-prefix-caching' must be true or false");
        return CLLM_OK;
    }
    return fail_at(c, kn, "unknown key '%s'; allowed keys are: %s", key, KEYS);
}

static cllm_status parse_entry(rctx *c, yaml_node_t *kn, yaml_node_t *vn, cllm_registry_entry *e) {
    e->enable_prefix_caching = -1;
    e->seed = -1;
    e->line = (int)kn->start_mark.line + 1;
    if (kn->type != YAML_SCALAR_NODE || !scalar(kn)[0]) return fail_at(c, kn, "a model name must be a non-empty string");
    if (!(e->name = cllm_strdup(scalar(kn)))) return CLLM_ERR_OOM;
    if (vn->type != YAML_MAPPING_NODE)
        return fail_at(c, vn, "model '%s' must be a mapping of settings (model: ORG/NAME, dtype: ..., ...)", e->name);
    for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE) return fail_at(c, k, "keys of model '%s' must be strings", e->name);
        char key[64];
        snprintf(key, sizeof key, "%s", scalar(k));
        for (char *q = key; *q; q++)
            if (*q == '_') *q = '-';
        CLLM_TRY(set_field(c, e, key, k, v));
    }
    if (!e->model) return fail_at(c, vn, "model '%s' has no 'model' key: give the checkpoint (ORG/NAME or a directory)", e->name);
    return CLLM_OK;
}

static cllm_status parse_doc(rctx *c, cllm_registry *reg) {
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (!root) return cllm_error(CLLM_ERR_FORMAT, "%s: the registry is empty; expected a top-level 'models:' mapping", c->src);
    if (root->type != YAML_MAPPING_NODE) return fail_at(c, root, "expected a top-level mapping with a 'models:' key");
    yaml_node_t *models = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), "models")) {
            models = yaml_document_get_node(c->doc, p->value);
        } else {
            return fail_at(c, k, "unknown top-level key '%s'; the only allowed key is 'models'",
                           k->type == YAML_SCALAR_NODE ? scalar(k) : "(non-scalar)");
        }
    }
    if (!models) return fail_at(c, root, "no 'models:' key");
    if (models->type != YAML_MAPPING_NODE) return fail_at(c, models, "'models' must be a mapping of name -> settings");
    size_t n = (size_t)(models->data.mapping.pairs.top - models->data.mapping.pairs.start);
    if (n == 0) return fail_at(c, models, "'models' is empty: add at least one deployment");
    if (!(reg->entries = cllm_calloc(n, sizeof *reg->entries))) return CLLM_ERR_OOM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &models->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
        reg->n = i + 1;
        CLLM_TRY(parse_entry(c, k, v, &reg->entries[i]));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(reg->entries[j].name, reg->entries[i].name))
                return fail_at(c, k, "duplicate model name '%s' (first defined on line %d)", reg->entries[i].name,
                               reg->entries[j].line);
    }
    return CLLM_OK;
}

cllm_status cllm_registry_load_string(const char *yaml, size_t len, const char *source, cllm_registry **out) {
    *out = NULL;
    cllm_registry *reg = cllm_calloc(1, sizeof *reg);
    if (!reg) return CLLM_ERR_OOM;
    if (!(reg->source = cllm_strdup(source ? source : "<registry>"))) { free(reg); return CLLM_ERR_OOM; }
    yaml_parser_t parser;
    yaml_document_t doc;
    cllm_status st;
    if (!yaml_parser_initialize(&parser)) { cllm_registry_destroy(reg); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = cllm_error(CLLM_ERR_FORMAT, "%s:%zu:%zu: malformed YAML: %s%s%s", reg->source,
                        parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                        parser.problem ? parser.problem : "parse error", parser.context ? " " : "",
                        parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        cllm_registry_destroy(reg);
        return st;
    }
    rctx c = {.src = reg->source, .doc = &doc};
    st = parse_doc(&c, reg);
    if (st == CLLM_ERR_OOM) cllm_error(CLLM_ERR_OOM, "out of host memory loading the registry %s", reg->source);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st != CLLM_OK) { cllm_registry_destroy(reg); return st; }
    *out = reg;
    return CLLM_OK;
}

cllm_status cllm_registry_load(const char *path, cllm_registry **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_error(CLLM_ERR_IO, "cannot open the model registry %s: %s (set --registry or $CLLM_REGISTRY)",
                              path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = cllm_malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *b = realloc(buf, cap *= 2);
        if (!b) { free(buf); buf = NULL; }
        else buf = b;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return cllm_error(CLLM_ERR_OOM, "out of memory reading %s", path);
    if (err) { free(buf); return cllm_error(CLLM_ERR_IO, "cannot read the model registry %s", path); }
    cllm_status st = cllm_registry_load_string(buf, n, path, out);
    free(buf);
    return st;
}

size_t cllm_registry_count(const cllm_registry *reg) { return reg ? reg->n : 0; }
const cllm_registry_entry *cllm_registry_get(const cllm_registry *reg, size_t i) {
    return reg && i < reg->n ? &reg->entries[i] : NULL;
}

cllm_status cllm_registry_lookup(const cllm_registry *reg, const char *name, const cllm_registry_entry **out) {
    *out = NULL;
    for (size_t i = 0; i < reg->n; i++)
        if (!strcmp(reg->entries[i].name, name)) { *out = &reg->entries[i]; return CLLM_OK; }
    char list[600] = "";
    for (size_t i = 0; i < reg->n && strlen(list) < sizeof list - 64; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", reg->entries[i].name);
    return cllm_error(CLLM_ERR_NOT_FOUND, "no model named '%s' in the registry %s; available: %s", name, reg->source,
                      list);
}

/* ---------------------------------------------------------------- command line */
/* Append " --flag value" (value single-quoted for the shell when needed). */
static int append_arg(char **s, size_t *len, size_t *cap, const char *flag, const char *value) {
    bool plain = *value != 0;
    for (const char *p = value; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,", *p)) plain = false;
    size_t need = strlen(flag) + 4 * strlen(value) + 8;
    if (*len + need >= *cap) {
        size_t nc = (*cap + need) * 2;
        char *b = realloc(*s, nc);
        if (!b) return -1;
        *s = b;
        *cap = nc;
    }
    *len += (size_t)sprintf(*s + *len, " %s ", flag);
    if (plain) { *len += (size_t)sprintf(*s + *len, "%s", value); return 0; }
    (*s)[(*len)++] = '\'';
    for (const char *p = value; *p; p++) {
        if (*p == '\'') { memcpy(*s + *len, "'\\''", 4); *len += 4; }
        else (*s)[(*len)++] = *p;
    }
    (*s)[(*len)++] = '\'';
    (*s)[*len] = 0;
    return 0;
}

cllm_status cllm_registry_command_line(const cllm_registry_entry *e, char **out) {
    size_t cap = 256, len = strlen("cllm serve");
    char *s = cllm_malloc(cap), num[32];
    if (!s) return CLLM_ERR_OOM;
    strcpy(s, "cllm serve");
    int rc = append_arg(&s, &len, &cap, "--model", e->model);
    if (!rc && e->revision) rc = append_arg(&s, &len, &cap, "--revision", e->revision);
    if (!rc) rc = append_arg(&s, &len, &cap, "--served-model-name", e->served_model_name ? e->served_model_name : e->name);
    if (!rc && e->dtype) rc = append_arg(&s, &len, &cap, "--dtype", e->dtype);
    if (!rc && e->device) rc = append_arg(&s, &len, &cap, "--device", e->device);
    struct { const char *flag; long long v; } ints[] = {
        {"--tensor-parallel-size", e->tensor_parallel_size}, {"--pipeline-parallel-size", e->pipeline_parallel_size},
        {"--data-parallel-size", e->data_parallel_size},
        {"--max-num-seqs", e->max_num_seqs}, {"--max-model-len", e->max_model_len},
        {"--max-num-batched-tokens", e->max_num_batched_tokens}, {"--block-size", e->block_size},
    };
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) {
        if (ints[i].v <= 0) continue;
        snprintf(num, sizeof num, "%lld", ints[i].v);
        rc = append_arg(&s, &len, &cap, ints[i].flag, num);
    }
    if (!rc && e->gpu_memory_utilization > 0) {
        snprintf(num, sizeof num, "%g", e->gpu_memory_utilization);
        rc = append_arg(&s, &len, &cap, "--gpu-memory-utilization", num);
    }
    if (!rc && e->seed >= 0) {
        snprintf(num, sizeof num, "%lld", (long long)e->seed);
        rc = append_arg(&s, &len, &cap, "--seed", num);
    }
    if (!rc && e->enable_prefix_caching >= 0) {
        const char *flag = e->enable_prefix_caching ? "--enable-prefix-caching" : "--no-enable-prefix-caching";
        if (len + strlen(flag) + 2 >= cap) {
            char *b = realloc(s, cap + 64);
            if (!b) rc = -1;
            else { s = b; cap += 64; }
        }
        if (!rc) len += (size_t)sprintf(s + len, " %s", flag);
    }
    if (rc) { free(s); return cllm_error(CLLM_ERR_OOM, "out of memory rendering a command line"); }
    *out = s;
    return CLLM_OK;
}

/* ---------------------------------------------------------------- path lookup */
cllm_status cllm_registry_resolve_path(const char *flag_value, char **out) {
    *out = NULL;
    if (flag_value && *flag_value) return (*out = cllm_strdup(flag_value)) ? CLLM_OK : CLLM_ERR_OOM;
    const char *env = getenv("CLLM_REGISTRY");
    if (env && *env) return (*out = cllm_strdup(env)) ? CLLM_OK : CLLM_ERR_OOM;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return cllm_error(CLLM_ERR_NOT_FOUND, "no model registry: pass --registry FILE or set $CLLM_REGISTRY");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    static const char *rel[] = {"../configs/models.yaml", "../share/cllm/models.yaml", "configs/models.yaml"};
    char tried[3 * PATH_MAX / 4] = "", cand[PATH_MAX + 64];
    for (size_t i = 0; i < 3; i++) {
        snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]);
        if (access(cand, R_OK) == 0) return (*out = cllm_strdup(cand)) ? CLLM_OK : CLLM_ERR_OOM;
        snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", i ? ", " : "", cand);
    }
    return cllm_error(CLLM_ERR_NOT_FOUND, "no model registry found (tried %s): pass --registry FILE or set "
                      "$CLLM_REGISTRY", tried);
}
