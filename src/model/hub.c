/* Model argument -> local directory: a directory as is, else the Hugging Face
 * cache (huggingface_hub's layout: models--ORG--NAME/{refs/REV, snapshots/SHA/}),
 * else a download from the Hub with libcurl into that layout.
 * Files are written directly into snapshots/SHA/ (no blobs/ symlinks), which
 * transformers, huggingface_hub and vLLM read as a cached snapshot. */
#include "model/hub.h"

#include "core/progress.h"
#include "core/status.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* mkdir -p */
static cllm_status make_dirs(const char *path) {
    char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return cllm_error(CLLM_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    return CLLM_OK;
}

/* $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (XDG_CACHE_HOME honoured as huggingface_hub does). */
static void cache_root(char *out, size_t cap) {
    const char *e = getenv("HF_HUB_CACHE");
    if (e && *e) { snprintf(out, cap, "%s", e); return; }
    e = getenv("HF_HOME");
    if (e && *e) { snprintf(out, cap, "%s/hub", e); return; }
    e = getenv("XDG_CACHE_HOME");
    if (e && *e) { snprintf(out, cap, "%s/huggingface/hub", e); return; }
    e = getenv("HOME");
    snprintf(out, cap, "%s/.cache/huggingface/hub", e && *e ? e : ".");
}

/* Repo ids: NAME or ORG/NAME of [A-Za-z0-9._-], no "..", no leading '-' or '.'. */
static bool valid_repo_id(const char *id) {
    int slashes = 0;
    size_t len = strlen(id);
    if (len == 0 || len > 96 || strstr(id, "..") || strstr(id, "--")) return false;
    for (const char *p = id; *p; p++) {
        if (*p == '/') { slashes++; if (p == id || !p[1] || p[1] == '.' || p[1] == '-') return false; continue; }
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') return false;
    }
    return slashes <= 1 && id[0] != '.' && id[0] != '-';
}

/* Revisions: branch/tag names or commit shas; refs/pr/N allowed (subdirectory in refs/). */
static bool valid_revision(const char *r) {
    if (!*r || strlen(r) > 200 || strstr(r, "..") || r[0] == '/') return false;
    for (const char *p = r; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-/", *p)) return false;
    return true;
}

static bool valid_sha(const char *s) {
    size_t n = strlen(s);
    if (n < 7 || n > 64) return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s)) return false;
    return true;
}

/* refs/<rev> holds a commit sha; or rev names a snapshot itself. Returns true and
 * fills snap if the snapshot directory exists. */
static bool find_snapshot(const char *repo_dir, const char *rev, char *snap, size_t cap) {
    char path[PATH_CAP + 256], sha[128] = "";
    snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(sha, sizeof sha, f)) sha[0] = 0;
        fclose(f);
        sha[strcspn(sha, " \r\n\t")] = 0;
        if (valid_sha(sha)) {
            snprintf(snap, cap, "%s/snapshots/%s", repo_dir, sha);
            if (is_dir(snap)) return true;
        }
    }
    snprintf(snap, cap, "%s/snapshots/%s", repo_dir, rev);
    return is_dir(snap);
}

/* A snapshot we can run: config.json and safetensors weights. */
static bool snapshot_complete(const char *snap) {
    char p[PATH_CAP + 64];
    snprintf(p, sizeof p, "%s/config.json", snap);
    if (!is_file(p)) return false;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", snap);
    if (is_file(p)) return true;
    snprintf(p, sizeof p, "%s/model.safetensors", snap);
    return is_file(p);
}

/* Files of a repo cllm needs (top level only). */
static bool wanted_file(const char *f) {
    if (strchr(f, '/') || strstr(f, "..") || f[0] == '.') return false;
    size_t n = strlen(f);
    if (!strcmp(f, "config.json") || !strcmp(f, "generation_config.json") || !strcmp(f, "special_tokens_map.json") ||
        !strcmp(f, "model.safetensors.index.json"))
        return true;
    if (!strncmp(f, "tokenizer", 9) && n > 5 && !strcmp(f + n - 5, ".json")) return true;
    if (!strcmp(f, "tokenizer.model")) return true;
    return n > 12 && !strcmp(f + n - 12, ".safetensors");
}

/* ------------------------------------------------------------------ HTTP */

typedef struct http_ctx {
    const char *what;            /* for messages: "ORG/NAME" */
    FILE *out;                   /* body sink (file), or NULL: memory */
    char *mem;
    size_t mem_len, mem_cap;
    uint64_t base;               /* bytes already present (resume) */
    cllm_progress *bar;
    CURL *h;
    bool checked;                /* first body chunk seen */
} http_ctx;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    http_ctx *c = user;
    size_t n = size * nmemb;
    if (c->out && !c->checked) {
        c->checked = true;
        long code = 0;
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
        if (c->base > 0 && code == 200) { /* the server ignored our Range: take the whole file */
            if (fflush(c->out) != 0 || ftruncate(fileno(c->out), 0) != 0 || fseeko(c->out, 0, SEEK_SET) != 0) return 0;
            c->base = 0;
        }
    }
    if (c->out) return fwrite(data, 1, n, c->out);
    if (c->mem_len + n + 1 > c->mem_cap) {
        if (c->mem_len + n > (64u << 20)) return 0; /* an API answer this large is not one */
        size_t cap = (c->mem_len + n + 1) * 2;
        char *m = realloc(c->mem, cap);
        if (!m) return 0;
        c->mem = m;
        c->mem_cap = cap;
    }
    memcpy(c->mem + c->mem_len, data, n);
    c->mem_len += n;
    c->mem[c->mem_len] = 0;
    return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    http_ctx *c = user;
    cllm_progress_update(c->bar, c->base + (uint64_t)dlnow, dltotal > 0 ? c->base + (uint64_t)dltotal : 0);
    return 0;
}

/* GET url; range_from > 0 asks for bytes range_from-. *code: HTTP status. */
static cllm_status http_get(const char *url, http_ctx *ctx, uint64_t range_from, long *code) {
    CURL *h = curl_easy_init();
    if (!h) return cllm_error(CLLM_ERR_NETWORK, "cannot initialise libcurl");
    char errbuf[CURL_ERROR_SIZE] = "", auth[1024], range[64];
    struct curl_slist *hdrs = NULL;
    const char *token = getenv("HF_TOKEN");
    if (token && *token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "User-Agent: cllm/" CLLM_VERSION);
    ctx->h = h;
    ctx->checked = false;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L); /* HTTP >= 400: no body written, status in *code */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L); /* resolve/ redirects to a CDN; the token is not forwarded */
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* abort a stalled transfer after 60 s */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, ctx);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, ctx->bar ? 0L : 1L);
    if (range_from > 0) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)range_from);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(h);
    *code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK && !(rc == CURLE_HTTP_RETURNED_ERROR && *code >= 400))
        return cllm_error(CLLM_ERR_NETWORK, "downloading %s failed: %s (%s); check the network or set HF_HUB_OFFLINE=1 "
                          "to use the cache only", url, errbuf[0] ? errbuf : curl_easy_strerror(rc),
                          curl_easy_strerror(rc));
    return CLLM_OK;
}

static cllm_status http_status_error(long code, const char *repo, const char *rev, const char *url) {
    if (code == 401 || code == 403)
        return cllm_error(CLLM_ERR_NETWORK, "access to %s (revision %s) was refused (HTTP %ld at %s): the model is gated, "
                          "private or does not exist; check the name, accept its license on the Hub and set HF_TOKEN "
                          "to an access token", repo, rev, code, url);
    if (code == 404)
        return cllm_error(CLLM_ERR_NOT_FOUND, "no such model %s (revision %s) on the Hub (HTTP 404 at %s); check the "
                          "name and revision", repo, rev, url);
    return cllm_error(CLLM_ERR_NETWORK, "downloading %s failed with HTTP %ld; try again later", url, code);
}

/* Download one file to dest via dest.incomplete, resuming a partial file and
 * retrying (with a Range request) when the connection drops. */
static cllm_status download_file(const char *url, const char *dest, const char *repo, const char *rev,
                                 const char *fname, bool progress) {
    char tmp[2 * PATH_CAP + 16];
    snprintf(tmp, sizeof tmp, "%s.incomplete", dest);
    cllm_status st = CLLM_OK;
    for (int attempt = 0; attempt < 4; attempt++) {
        struct stat sb;
        uint64_t have = stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        FILE *f = fopen(tmp, have ? "ab" : "wb");
        if (!f) return cllm_error(CLLM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        char label[64];
        snprintf(label, sizeof label, "%.40s", fname);
        http_ctx ctx = {.what = repo, .out = f, .base = have};
        ctx.bar = progress ? cllm_progress_create(label, 0, true, true) : NULL;
        long code = 0;
        st = http_get(url, &ctx, have, &code);
        cllm_progress_finish(ctx.bar);
        int werr = fclose(f);
        if (st == CLLM_OK && werr != 0) return cllm_error(CLLM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        if (st == CLLM_OK && code == 416 && have > 0) { /* range past the end: start over */
            unlink(tmp);
            continue;
        }
        if (st == CLLM_OK && code >= 400) {
            if (have == 0) unlink(tmp);
            return http_status_error(code, repo, rev, url);
        }
        if (st == CLLM_OK) {
            if (rename(tmp, dest) != 0) return cllm_error(CLLM_ERR_IO, "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
            return CLLM_OK;
        }
        stat(tmp, &sb);
        if (!is_file(tmp) || (uint64_t)sb.st_size <= have) break; /* no progress: give up */
        CLLM_LOG_W("download of %s interrupted at %llu bytes; resuming", fname, (unsigned long long)sb.st_size);
    }
    return cllm_error_wrap(st, "%s (the partial file %s is kept; run again to resume)", repo, tmp);
}

/* Percent-encode a revision for the API path (huggingface_hub quotes it with safe=""). */
static void url_escape(const char *s, char *out, size_t cap) {
    size_t j = 0;
    for (; *s && j + 4 < cap; s++) {
        if (isalnum((unsigned char)*s) || strchr("-._~", *s)) out[j++] = *s;
        else j += (size_t)snprintf(out + j, cap - j, "%%%02X", (unsigned char)*s);
    }
    out[j] = 0;
}

static cllm_status download_repo(const char *repo, const char *rev, const char *repo_dir, bool progress,
                                 char *snap, size_t snap_cap) {
    const char *ep = getenv("HF_ENDPOINT");
    char endpoint[1024], url[2 * PATH_CAP], erev[600], path[2 * PATH_CAP];
    snprintf(endpoint, sizeof endpoint, "%s", ep && *ep ? ep : "https://huggingface.co");
    size_t el = strlen(endpoint);
    while (el > 0 && endpoint[el - 1] == '/') endpoint[--el] = 0;
    url_escape(rev, erev, sizeof erev);
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s", endpoint, repo, erev);
    http_ctx ctx = {.what = repo};
    long code = 0;
    cllm_status st = http_get(url, &ctx, 0, &code);
    if (st == CLLM_OK && code != 200) st = http_status_error(code, repo, rev, url);
    json_t *root = NULL;
    if (st == CLLM_OK) {
        json_error_t jerr;
        root = ctx.mem ? json_loads(ctx.mem, 0, &jerr) : NULL;
        if (!root) st = cllm_error(CLLM_ERR_NETWORK, "the Hub answered %s with something that is not JSON; check HF_ENDPOINT", url);
    }
    free(ctx.mem);
    if (st) return st;
    json_t *sha = json_object_get(root, "sha"), *sib = json_object_get(root, "siblings");
    if (!json_is_string(sha) || !valid_sha(json_string_value(sha)) || !json_is_array(sib)) {
        json_decref(root);
        return cllm_error(CLLM_ERR_NETWORK, "the Hub answer for %s lacks 'sha' or 'siblings'; check HF_ENDPOINT", url);
    }
    snprintf(snap, snap_cap, "%s/snapshots/%s", repo_dir, json_string_value(sha));
    bool has_config = false, has_weights = false;
    size_t i;
    json_t *e;
    json_array_foreach(sib, i, e) {
        const char *fn = json_string_value(json_object_get(e, "rfilename"));
        if (!fn || !wanted_file(fn)) continue;
        has_config |= !strcmp(fn, "config.json");
        has_weights |= strstr(fn, ".safetensors") != NULL;
    }
    if (!has_config || !has_weights) {
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "%s (revision %s) has no %s; cllm needs a Hugging Face checkpoint with "
                        "config.json and safetensors weights", repo, rev, !has_config ? "config.json" : "*.safetensors");
        goto done;
    }
    CLLM_TRY_GOTO(st, make_dirs(snap), done);
    json_array_foreach(sib, i, e) {
        const char *fn = json_string_value(json_object_get(e, "rfilename"));
        if (!fn || !wanted_file(fn)) continue;
        snprintf(path, sizeof path, "%s/%s", snap, fn);
        if (is_file(path)) continue;
        snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", endpoint, repo, json_string_value(sha), fn);
        CLLM_TRY_GOTO(st, download_file(url, path, repo, rev, fn, progress), done);
    }
    if (strcmp(rev, json_string_value(sha)) != 0) { /* refs/<rev> -> sha, as huggingface_hub writes it */
        snprintf(path, sizeof path, "%s/refs/%s", repo_dir, rev);
        char *slash = strrchr(path, '/');
        *slash = 0;
        CLLM_TRY_GOTO(st, make_dirs(path), done);
        *slash = '/';
        FILE *f = fopen(path, "w");
        if (!f || fputs(json_string_value(sha), f) < 0 || fclose(f) != 0) {
            st = cllm_error(CLLM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
            goto done;
        }
    }
done:
    json_decref(root);
    return st;
}

cllm_status cllm_hub_resolve(const char *model, const char *revision, bool progress, char **dir_out) {
    *dir_out = NULL;
    if (!model || !*model) return cllm_error(CLLM_ERR_INVALID_ARG, "no model given: pass a directory or ORG/NAME");
    if (is_dir(model)) {
        *dir_out = cllm_strdup(model);
        return *dir_out ? CLLM_OK : CLLM_ERR_OOM;
    }
    const char *rev = revision && *revision ? revision : "main";
    if (!valid_repo_id(model))
        return cllm_error(CLLM_ERR_NOT_FOUND, "no directory %s, and it is not a Hugging Face model id (ORG/NAME); "
                          "check the path", model);
    if (!valid_revision(rev)) return cllm_error(CLLM_ERR_INVALID_ARG, "revision '%s' is not a branch, tag or commit", rev);
    char root[1024], repo_dir[1280], snap[1536];
    cache_root(root, sizeof root);
    if (strlen(root) > 1000) return cllm_error(CLLM_ERR_INVALID_ARG, "the Hugging Face cache path %s is too long", root);
    char folder[128];            /* ORG/NAME -> models--ORG--NAME */
    size_t j = (size_t)snprintf(folder, sizeof folder, "models--");
    for (const char *p = model; *p && j + 3 < sizeof folder; p++) {
        if (*p == '/') { folder[j++] = '-'; folder[j++] = '-'; }
        else folder[j++] = *p;
    }
    folder[j] = 0;
    snprintf(repo_dir, sizeof repo_dir, "%s/%s", root, folder);
    bool found = find_snapshot(repo_dir, rev, snap, sizeof snap);
    const char *off = getenv("HF_HUB_OFFLINE");
    bool offline = off && (!strcmp(off, "1") || !strcasecmp(off, "true") || !strcasecmp(off, "yes"));
    if (found && (snapshot_complete(snap) || offline)) {
        *dir_out = cllm_strdup(snap);
        return *dir_out ? CLLM_OK : CLLM_ERR_OOM;
    }
    if (offline)
        return cllm_error(CLLM_ERR_NOT_FOUND, "no directory %s and not in the Hugging Face cache at %s (revision %s); "
                          "download it (unset HF_HUB_OFFLINE) or check the name", model, repo_dir, rev);
    CLLM_TRY(download_repo(model, rev, repo_dir, progress, snap, sizeof snap));
    *dir_out = cllm_strdup(snap);
    return *dir_out ? CLLM_OK : CLLM_ERR_OOM;
}
