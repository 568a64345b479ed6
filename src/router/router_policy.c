/* Replica selection (router_policy.h). */
#include "router/router_policy.h"

#include "core/status.h"

#include <jansson.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static const char *const NAMES[] = {"round_robin", "least_load", "prefix_aware"};

const char *cllm_router_policy_name(cllm_router_policy p) {
    return (unsigned)p < sizeof NAMES / sizeof NAMES[0] ? NAMES[p] : "unknown";
}

cllm_status cllm_router_policy_from_name(const char *name, cllm_router_policy *out) {
    for (int i = 0; i < (int)(sizeof NAMES / sizeof NAMES[0]); i++)
        if (name && !strcmp(name, NAMES[i])) {
            *out = (cllm_router_policy)i;
            return CLLM_OK;
        }
    return cllm_error(CLLM_ERR_INVALID_ARG, "--policy '%s' is not known: use round_robin, least_load or prefix_aware",
                      name ? name : "");
}

/* The eligible replica with the least load; ties go to the first one at or
 * after position start (so equal replicas take turns). */
static int least_loaded(const cllm_router_candidate *c, int n, unsigned start) {
    int best = -1;
    for (int k = 0; k < n; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)n);
        if (c[i].eligible && (best < 0 || c[i].load < c[best].load)) best = i;
    }
    return best;
}

/* splitmix64's finalizer: a well-mixed weight for (key, replica). */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

int cllm_router_pick(cllm_router_policy policy, const cllm_router_candidate *c, int n, unsigned *rr, bool has_key,
                     uint64_t key, int balance_abs_threshold) {
    int eligible = 0;
    for (int i = 0; i < n; i++) eligible += c[i].eligible;
    if (!eligible) return -1;
    unsigned turn = (*rr)++;
    switch (policy) {
    case CLLM_ROUTER_LEAST_LOAD: return least_loaded(c, n, turn);
    case CLLM_ROUTER_PREFIX_AWARE: {
        if (!has_key) return least_loaded(c, n, turn);
        int best = -1;
        uint64_t best_w = 0;
        for (int i = 0; i < n; i++) {
            if (!c[i].eligible) continue;
            uint64_t w = mix64(key ^ mix64(c[i].id));
            if (best < 0 || w > best_w) best = i, best_w = w;
        }
        int least = least_loaded(c, n, turn);
        if (c[best].load - c[least].load > balance_abs_threshold) return least;
        return best;
    }
    case CLLM_ROUTER_ROUND_ROBIN:
    default: {
        int k = (int)(turn % (unsigned)eligible);
        for (int i = 0; i < n; i++)
            if (c[i].eligible && k-- == 0) return i;
        return -1; /* unreachable */
    }
    }
}

/* ------------------------------------------------------------ prefix key */
typedef struct prefix_acc {
    XXH3_state_t st;
    size_t left; /* bytes still taken */
} prefix_acc;

static void acc_add(prefix_acc *a, const void *p, size_t n) {
    if (n > a->left) n = a->left;
    if (n) XXH3_64bits_update(&a->st, p, n);
    a->left -= n;
}

static void acc_str(prefix_acc *a, json_t *s) {
    if (json_is_string(s)) acc_add(a, json_string_value(s), json_string_length(s));
}

/* A completions prompt: string, token ids, or a batch (its first prompt). */
static bool acc_prompt(prefix_acc *a, json_t *p) {
    if (json_is_string(p)) { acc_str(a, p); return true; }
    if (!json_is_array(p) || !json_array_size(p)) return false;
    json_t *first = json_array_get(p, 0);
    if (json_is_string(first) || json_is_array(first)) return acc_prompt(a, first);
    size_t i;
    json_t *v;
    json_array_foreach(p, i, v) {
        if (!a->left) break;
        if (!json_is_integer(v)) return false;
        uint32_t id = (uint32_t)json_integer_value(v);
        unsigned char b[4] = {(unsigned char)id, (unsigned char)(id >> 8), (unsigned char)(id >> 16),
                              (unsigned char)(id >> 24)};
        acc_add(a, b, 4);
    }
    return true;
}

static bool acc_messages(prefix_acc *a, json_t *msgs) {
    if (!json_is_array(msgs) || !json_array_size(msgs)) return false;
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(msgs, i, m) {
        if (!a->left) break;
        if (!json_is_object(m)) return false;
        acc_str(a, json_object_get(m, "role"));
        acc_add(a, "\n", 1);
        json_t *content = json_object_get(m, "content");
        if (json_is_array(content)) {
            json_array_foreach(content, k, part) acc_str(a, json_object_get(part, "text"));
        } else {
            acc_str(a, content);
        }
        acc_add(a, "\n", 1);
    }
    return true;
}

bool cllm_router_prefix_key(const char *body, size_t len, bool chat, size_t prefix_bytes, uint64_t *key) {
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) { json_decref(root); return false; }
    prefix_acc a;
    XXH3_64bits_reset(&a.st);
    a.left = prefix_bytes ? prefix_bytes : 1;
    bool ok = chat ? acc_messages(&a, json_object_get(root, "messages"))
                   : acc_prompt(&a, json_object_get(root, "prompt"));
    json_decref(root);
    if (ok) *key = XXH3_64bits_digest(&a.st);
    return ok;
}
