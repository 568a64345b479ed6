/* cllm router: an OpenAI-compatible front over `cllm serve` replicas
 * (router/router.h), sglang-router's and vLLM router's flags where they
 * exist. The flags it shares with `cllm serve --data-parallel-size` are
 * parsed by cllm_cli_router_flag. SIGTERM/SIGINT: stop accepting, let
 * requests in flight finish within --shutdown-timeout seconds, exit 0. */
#include "cli/args.h"
#include "cli/cli.h"
#include "core/status.h"
#include "router/router.h"
#include "server/http_server.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

void cllm_cli_router_usage(FILE *f) {
    fprintf(f,
            "router flags:\n"
            "  --policy round_robin|least_load|prefix_aware   how requests are spread (round_robin)\n"
            "  --health-check-interval S     each replica's /health is polled this often (10)\n"
            "  --health-check-timeout S      a check (or a connection to a replica) fails after this (5)\n"
            "  --load-poll-interval S        least_load, prefix_aware: each replica's /load this often (0.5)\n"
            "  --max-rpc-retries N           other replicas tried when one fails before answering (3)\n"
            "  --rpc-timeout S               no retry starts once a request is this old (60)\n"
            "  --prefix-bytes N              prefix_aware: prompt bytes hashed to pick the replica (256)\n"
            "  --balance-abs-threshold N     prefix_aware: least load instead once the chosen replica has\n"
            "                                more than N requests beyond the least loaded one (32)\n");
}

int cllm_cli_router_flag(cllm_router_params *p, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    static const char *const FLAGS[] = {"--policy", "--health-check-interval", "--health-check-timeout",
                                        "--load-poll-interval", "--max-rpc-retries", "--rpc-timeout",
                                        "--prefix-bytes", "--balance-abs-threshold"};
    bool known = false;
    for (size_t k = 0; k < sizeof FLAGS / sizeof *FLAGS; k++) known |= !strcmp(a, FLAGS[k]);
    if (!known) return 0;
    if (!cllm_arg_value(argc, argv, i, &v)) return -1;
    long l = 0;
    int ok = 1;
    if (!strcmp(a, "--policy")) {
        if (cllm_router_policy_from_name(v, &p->policy) != CLLM_OK) {
            fprintf(stderr, "cllm: %s\n", cllm_last_error());
            return -1;
        }
    } else if (!strcmp(a, "--health-check-interval")) ok = cllm_arg_double(a, v, 0.01, 86400, &p->health_check_interval_s);
    else if (!strcmp(a, "--health-check-timeout")) ok = cllm_arg_double(a, v, 0.01, 86400, &p->health_check_timeout_s);
    else if (!strcmp(a, "--load-poll-interval")) ok = cllm_arg_double(a, v, 0.01, 86400, &p->load_poll_interval_s);
    else if (!strcmp(a, "--rpc-timeout")) ok = cllm_arg_double(a, v, 0, 86400 * 7, &p->rpc_timeout_s);
    else if (!strcmp(a, "--max-rpc-retries")) { ok = cllm_arg_long(a, v, 0, 1000, &l); p->max_rpc_retries = (int)l; }
    else if (!strcmp(a, "--prefix-bytes")) { ok = cllm_arg_long(a, v, 1, 1 << 20, &l); p->prefix_bytes = (int)l; }
    else { ok = cllm_arg_long(a, v, 0, 1 << 24, &l); p->balance_abs_threshold = (int)l; }
    return ok ? 1 : -1;
}

int cllm_cli_http_flag(cllm_server_params *p, const char *a, const char *v, int *ok) {
    long l = 0;
    if (!strcmp(a, "--host")) p->host = v;
    else if (!strcmp(a, "--port")) { *ok = cllm_arg_long(a, v, 0, 65535, &l); p->port = (int)l; }
    else if (!strcmp(a, "--api-key")) p->api_key = v;
    else if (!strcmp(a, "--max-body-bytes")) { *ok = cllm_arg_long(a, v, 1024, 1L << 34, &l); p->max_body_bytes = (size_t)l; }
    else if (!strcmp(a, "--shutdown-timeout")) *ok = cllm_arg_double(a, v, 0, 86400, &p->shutdown_timeout_s);
    else if (!strcmp(a, "--max-connections")) { *ok = cllm_arg_long(a, v, 1, 1 << 24, &l); p->max_connections = (int)l; }
    else if (!strcmp(a, "--max-connections-per-ip")) { *ok = cllm_arg_long(a, v, 0, 1 << 24, &l); p->max_connections_per_ip = (int)l; }
    else if (!strcmp(a, "--timeout-keep-alive")) *ok = cllm_arg_double(a, v, 0.001, 86400, &p->timeout_keep_alive_s);
    else if (!strcmp(a, "--timeout-request-read")) *ok = cllm_arg_double(a, v, 0.001, 86400, &p->timeout_request_read_s);
    else if (!strcmp(a, "--allowed-origins")) p->cors.allowed_origins = v;
    else if (!strcmp(a, "--allowed-methods")) p->cors.allowed_methods = v;
    else if (!strcmp(a, "--allowed-headers")) p->cors.allowed_headers = v;
    else return 0;
    return 1;
}

void cllm_cli_router_front(cllm_router_params *rp, const cllm_server_params *p) {
    rp->host = p->host;
    rp->port = p->port;
    rp->api_key = p->api_key;
    rp->max_body_bytes = p->max_body_bytes;
    rp->max_connections = p->max_connections;
    rp->max_connections_per_ip = p->max_connections_per_ip;
    rp->timeout_keep_alive_s = p->timeout_keep_alive_s;
    rp->timeout_request_read_s = p->timeout_request_read_s;
    rp->shutdown_timeout_s = p->shutdown_timeout_s;
    rp->cors = p->cors;
}

int cllm_cli_router_run(const cllm_router_params *p, const char *what) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "%s: cannot initialise libcurl\n", what);
        return 1;
    }
    cllm_router *r = NULL;
    if (cllm_router_start(p, &r) != CLLM_OK) {
        fprintf(stderr, "%s: %s\n", what, cllm_last_error());
        curl_global_cleanup();
        return 1;
    }
    int n = p->data_parallel_size > 0 ? p->data_parallel_size : p->num_workers;
    fprintf(stderr, "%s: router listening on http://%s:%d (%d replica%s, policy %s)\n", what, p->host,
            cllm_router_port(r), n, n == 1 ? "" : "s", cllm_router_policy_name(p->policy));
    fflush(stderr);
    cllm_status st = cllm_router_wait(r, &g_stop);
    if (st != CLLM_OK) fprintf(stderr, "%s: %s\n", what, cllm_last_error());
    else fprintf(stderr, "%s: stopped\n", what);
    cllm_router_destroy(r);
    curl_global_cleanup();
    return st == CLLM_OK ? 0 : 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cllm router --worker-urls URL [URL...] [--policy round_robin|least_load|prefix_aware]\n"
            "       [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-body-bytes N]\n"
            "       [--max-connections N] [--max-connections-per-ip N] [--timeout-keep-alive S]\n"
            "       [--timeout-request-read S] [--shutdown-timeout S] [CORS flags as cllm serve] [router flags]\n"
            "An OpenAI-compatible front over `cllm serve` replicas (URL: http://HOST:PORT): completions,\n"
            "chat (streams passed through event by event), models, tokenize go to one replica; /health,\n"
            "/metrics and /v1/distributed/stats are the router's. --port 0 picks a free port; the router\n"
            "prints 'router listening on http://HOST:PORT' once bound. --api-key is required from clients\n"
            "and passed on to the replicas.\n\n");
    cllm_cli_router_usage(f);
}

int cllm_cli_router(int argc, char **argv) {
    cllm_router_params p = cllm_router_default_params();
    cllm_server_params front = cllm_server_default_params(); /* the HTTP flags, as cllm serve's */
    const char **urls = calloc((size_t)argc, sizeof *urls);
    if (!urls) { fprintf(stderr, "cllm router: out of memory\n"); return 1; }
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); rc = 0; goto out; }
        if (!strcmp(a, "--worker-urls")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) urls[p.num_workers++] = argv[++i];
            continue;
        }
        int e = cllm_cli_router_flag(&p, argc, argv, &i);
        if (e < 0) goto out;
        if (e > 0) continue;
        if (a[0] != '-') {
            fprintf(stderr, "cllm router: unexpected argument '%s' (replicas follow --worker-urls)\n", a);
            goto out;
        }
        if (!strcmp(a, "--allow-credentials")) { front.cors.allow_credentials = true; continue; }
        if (!cllm_arg_value(argc, argv, &i, &v)) goto out;
        int ok = 1;
        if (!cllm_cli_http_flag(&front, a, v, &ok)) {
            fprintf(stderr, "cllm router: unknown flag '%s' (cllm router --help)\n", a);
            goto out;
        }
        if (!ok) goto out;
    }
    if (!p.num_workers) {
        fprintf(stderr, "cllm router: --worker-urls URL [URL...] is required: the `cllm serve` replicas to route to\n");
        goto out;
    }
    p.worker_urls = urls;
    cllm_cli_router_front(&p, &front);
    rc = cllm_cli_router_run(&p, "cllm router");
out:
    free(urls);
    return rc;
}
