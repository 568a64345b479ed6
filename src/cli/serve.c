/* cllm serve: the OpenAI-compatible HTTP server (vLLM's `vllm serve` flags).
 * `cllm serve NAME` takes a deployment from the model registry
 * (server/registry.h); flags given on the command line override it.
 * SIGTERM/SIGINT: stop accepting, finish in-flight requests within
 * --shutdown-timeout seconds, abort the rest, exit 0. */
#include "cli/args.h"
#include "cli/engine_args.h"
#include "cli/cli.h"
#include "cli/serve_plan.h"
#include "cllm.h"
#include "core/dtype.h"
#include "core/status.h"
#include "dist/dist_env.h"
#include "router/router.h"
#include "server/http_server.h"
#include "server/registry.h"
#include "server/tool_parser.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: cllm serve [NAME] --model DIR|ORG/NAME [--host 127.0.0.1] [--port 8000] [--api-key KEY]\n"
            "       [--served-model-name NAME] [--max-body-bytes N] [--shutdown-timeout SECONDS]\n"
            "       [--max-connections N] [--max-connections-per-ip N] [--timeout-keep-alive SECONDS]\n"
            "       [--timeout-request-read SECONDS] [--registry FILE] [--dry-run] [engine arguments]\n"
            "       [--allowed-origins JSON] [--allowed-methods JSON] [--allowed-headers JSON] [--allow-credentials]\n"
            "       [--enable-auto-tool-choice --tool-call-parser hermes|llama3_json|mistral]\n"
            "       [--data-parallel-size N [router flags]]\n"
            "NAME picks a deployment from the model registry (cllm models lists them). --port 0 picks a free\n"
            "port. The server prints 'listening on http://HOST:PORT' once bound. --enable-auto-tool-choice parses\n"
            "tool calls out of chat outputs (tool_choice \"auto\") in the format --tool-call-parser names:\n"
            "hermes (Qwen2.5/Qwen3), llama3_json (Llama 3.1/3.2), mistral (Mistral v0.3).\n"
            "--max-connections (default 10000; the open-file limit is raised to fit) bounds open connections\n"
            "(more get 503); --max-connections-per-ip (default 0: none) those of one client address (429);\n"
            "--timeout-keep-alive (default 5) closes idle connections; --timeout-request-read (default 30)\n"
            "bounds the time to receive a request's head and body (408).\n"
            "CORS, as vLLM: --allowed-origins / --allowed-methods / --allowed-headers take JSON lists (default\n"
            "'[\"*\"]': a web page on any origin may call the API from a browser; '[\"https://app.example.com\"]'\n"
            "limits it), --allow-credentials lets browsers send cookies / HTTP auth. Preflights (OPTIONS) are\n"
            "answered without the API key.\n"
            "--data-parallel-size N (-dp) starts N replicas of this server (child processes on loopback\n"
            "sockets, each with the same engine arguments; on CUDA replica i takes the GPUs [i*tp*pp,\n"
            "(i+1)*tp*pp)) behind a router listening on --host/--port (as `cllm router`; the router flags\n"
            "below apply); a replica that dies is restarted. --listen-fd FD and --parent-pid PID are what\n"
            "the router gives its replicas (serve on an inherited socket; exit when PID is gone).\n\n");
    cllm_engine_args_usage(f);
    fprintf(f, "\n");
    cllm_cli_router_usage(f);
}

/* Apply a registry entry to the params. 0 on a bad value (message printed). */
static int apply_entry(const cllm_registry_entry *e, cllm_server_params *p) {
    p->engine.model.model = e->model;
    if (e->revision) p->engine.model.revision = e->revision;
    p->served_model_name = e->served_model_name ? e->served_model_name : e->name;
    if (e->dtype && !cllm_arg_dtype("dtype (registry)", e->dtype, &p->engine.model.dtype)) return 0;
    if (e->device && !cllm_arg_device("device (registry)", e->device, &p->engine.model.device)) return 0;
    if (e->tensor_parallel_size > 1) p->engine.model.tensor_parallel_size = e->tensor_parallel_size;
    if (e->pipeline_parallel_size > 1) p->engine.model.pipeline_parallel_size = e->pipeline_parallel_size;
    if (e->gpu_memory_utilization > 0) p->engine.gpu_memory_utilization = (float)e->gpu_memory_utilization;
    if (e->max_num_seqs > 0) p->engine.max_num_seqs = e->max_num_seqs;
    if (e->max_model_len > 0) p->engine.model.max_model_len = e->max_model_len;
    if (e->max_num_batched_tokens > 0) p->engine.max_num_batched_tokens = e->max_num_batched_tokens;
    if (e->block_size > 0) p->engine.model.block_size = e->block_size;
    if (e->enable_prefix_caching >= 0) p->engine.enable_prefix_caching = e->enable_prefix_caching != 0;
    if (e->seed >= 0) p->engine.model.seed = (uint64_t)e->seed;
    return 1;
}

static void print_command(const cllm_server_params *p) {
    const cllm_engine_params *e = &p->engine;
    printf("cllm serve --model '%s' --host %s --port %d --served-model-name '%s'", e->model.model, p->host, p->port,
           p->served_model_name ? p->served_model_name : e->model.model);
    if (e->model.revision) printf(" --revision '%s'", e->model.revision);
    printf(" --device %s --dtype %s", e->model.device == CLLM_DEVICE_CUDA ? "cuda" : "cpu",
           e->model.dtype == CLLM_DTYPE_AUTO ? "auto" : cllm_dtype_name(e->model.dtype));
    if (e->model.max_model_len) printf(" --max-model-len %d", e->model.max_model_len);
    if (e->model.tensor_parallel_size > 1) printf(" --tensor-parallel-size %d", e->model.tensor_parallel_size);
    if (e->model.pipeline_parallel_size > 1) printf(" --pipeline-parallel-size %d", e->model.pipeline_parallel_size);
    if (e->model.pp_layer_partition) printf(" --pp-layer-partition %s", e->model.pp_layer_partition);
    if (e->model.pp_micro_batches) printf(" --pp-micro-batches %d", e->model.pp_micro_batches);
    printf(" --max-num-seqs %d --max-num-batched-tokens %d --gpu-memory-utilization %g --block-size %d",
           e->max_num_seqs, e->max_num_batched_tokens, (double)e->gpu_memory_utilization, e->model.block_size);
    printf(" %s", e->enable_prefix_caching ? "--enable-prefix-caching" : "--no-enable-prefix-caching");
    if (e->enforce_eager) printf(" --enforce-eager");
    if (p->api_key) printf(" --api-key '***'");
    if (p->enable_auto_tool_choice) printf(" --enable-auto-tool-choice");
    if (p->tool_call_parser) printf(" --tool-call-parser %s", p->tool_call_parser);
    printf(" --max-connections %d --timeout-keep-alive %g --timeout-request-read %g", p->max_connections,
           p->timeout_keep_alive_s, p->timeout_request_read_s);
    if (p->max_connections_per_ip) printf(" --max-connections-per-ip %d", p->max_connections_per_ip);
    printf(" --allowed-origins '%s' --allowed-methods '%s' --allowed-headers '%s'%s",
           p->cors.allowed_origins ? p->cors.allowed_origins : "[\"*\"]",
           p->cors.allowed_methods ? p->cors.allowed_methods : "[\"*\"]",
           p->cors.allowed_headers ? p->cors.allowed_headers : "[\"*\"]", p->cors.allow_credentials ? " --allow-credentials" : "");
    printf(" --shutdown-timeout %g\n", p->shutdown_timeout_s);
}

/* Server flags of the data-parallel parent alone: its replicas do not get
 * them (they get --host 127.0.0.1 --port 0 --listen-fd 3 --parent-pid
 * instead). --data-parallel-size, --dry-run and the router flags are not
 * passed on either: the loop takes them before it gets here. */
static bool parent_only(const char *a) {
    static const char *const F[] = {"--host", "--port", "--listen-fd", "--parent-pid"};
    for (size_t k = 0; k < sizeof F / sizeof *F; k++)
        if (!strcmp(a, F[k])) return true;
    return false;
}

/* --data-parallel-size N --dry-run: the router and each replica's command. */
static bool print_dp_plan(const cllm_router_params *rp) {
    bool ok = true;
    printf("cllm router on %s:%d over %d data-parallel replicas (policy %s):\n", rp->host, rp->port,
           rp->data_parallel_size, cllm_router_policy_name(rp->policy));
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    for (int i = 0; i < rp->data_parallel_size; i++) {
        char dev[256] = "";
        if (rp->gpus_per_replica > 0 &&
            cllm_router_replica_devices(visible, i, rp->gpus_per_replica, dev, sizeof dev) != CLLM_OK) {
            printf("  replica %d: %s\n", i, cllm_last_error());
            ok = false;
            continue;
        }
        printf("  replica %d:%s%s cllm serve", i, dev[0] ? " CUDA_VISIBLE_DEVICES=" : "", dev);
        for (int k = 0; k < rp->replica_argc; k++) printf(" %s", rp->replica_args[k]);
        printf(" --host 127.0.0.1 --port 0 --listen-fd 3 --parent-pid <router pid>\n");
    }
    return ok;
}

static bool is_switch(const char *a) {
    return !strcmp(a, "--dry-run") || !strcmp(a, "--enable-prefix-caching") || !strcmp(a, "--no-enable-prefix-caching") ||
           !strcmp(a, "--enforce-eager") || !strcmp(a, "--enable-auto-tool-choice") ||
           !strcmp(a, "--enable-expert-parallel") || !strcmp(a, "--allow-credentials");
}

int cllm_cli_serve(int argc, char **argv) {
    cllm_server_params p = cllm_server_default_params();
    cllm_router_params rp = cllm_router_default_params();
    bool router_flags = false;
    long parent_pid = 0;
    const char **replica_args = calloc((size_t)argc + 1, sizeof *replica_args);
    if (!replica_args) { fprintf(stderr, "cllm serve: out of memory\n"); return 1; }
    int n_replica_args = 0, dp = 1;
    const char *name = NULL, *registry_flag = NULL;
    bool dry_run = false;
    cllm_registry *reg = NULL;
    const cllm_registry_entry *entry = NULL; /* borrowed from reg */
    int rc = 2;
    /* flags are read twice: first to find NAME/--registry, then to override the registry entry */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); rc = 0; goto out; }
        if (a[0] != '-') {
            if (name) { fprintf(stderr, "cllm serve: unexpected argument '%s' (one NAME at most)\n", a); goto out; }
            name = a;
        } else if (!strcmp(a, "--registry") && i + 1 < argc) {
            registry_flag = argv[++i];
        } else if (!is_switch(a) && i + 1 < argc) {
            i++; /* the flag's value */
        }
    }
    if (name) {
        char *path = NULL;
        if (cllm_registry_resolve_path(registry_flag, &path) != CLLM_OK ||
            cllm_registry_load(path, &reg) != CLLM_OK) {
            fprintf(stderr, "cllm serve: %s\n", cllm_last_error());
            cllm_free(path);
            rc = 1;
            goto out;
        }
        cllm_free(path);
        if (cllm_registry_lookup(reg, name, &entry) != CLLM_OK) {
            fprintf(stderr, "cllm serve: %s\n", cllm_last_error());
            goto out;
        }
        if (!apply_entry(entry, &p)) goto out;
    }
    long l;
    cllm_engine_args ea; /* the engine flags, over the registry entry */
    cllm_engine_args_init(&ea);
    ea.p = p.engine;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int first = i; /* argv[first..i]: this flag and its value, which the data-parallel replicas get too */
        if (a[0] != '-') { replica_args[n_replica_args++] = a; continue; } /* NAME */
        if (!strcmp(a, "--dry-run")) { dry_run = true; continue; }
        if (!strcmp(a, "--data-parallel-size") || !strcmp(a, "-dp")) {
            if (i + 1 >= argc) { fprintf(stderr, "cllm serve: flag %s needs a value\n", a); goto out; }
            if (!cllm_arg_long(a, argv[++i], 1, 1024, &l)) goto out;
            dp = (int)l;
            continue;
        }
        int e = cllm_engine_args_parse(&ea, argc, argv, &i);
        if (e < 0) goto out;
        if (e == 0 && !strcmp(a, "--enable-auto-tool-choice")) { p.enable_auto_tool_choice = true; e = 1; }
        if (e == 0 && !strcmp(a, "--allow-credentials")) { p.cors.allow_credentials = true; e = 1; }
        if (e == 0) {
            e = cllm_cli_router_flag(&rp, argc, argv, &i);
            if (e < 0) goto out;
            if (e > 0) { router_flags = true; continue; }
        }
        if (e > 0) {
            for (int k = first; k <= i; k++) replica_args[n_replica_args++] = argv[k];
            continue;
        }
        if (!cllm_arg_value(argc, argv, &i, &v)) goto out;
        int ok = 1;
        if (!strcmp(a, "--registry")) {} /* read by the first pass; the replicas need it to resolve NAME too */
        else if (cllm_cli_http_flag(&p, a, v, &ok)) {} /* --host, --port, --api-key, ... */
        else if (!strcmp(a, "--served-model-name")) p.served_model_name = v;
        else if (!strcmp(a, "--listen-fd")) { ok = cllm_arg_long(a, v, 0, 1 << 20, &l); p.listen_fd = (int)l; }
        else if (!strcmp(a, "--parent-pid")) ok = cllm_arg_long(a, v, 1, 1L << 30, &parent_pid);
        else if (!strcmp(a, "--tool-call-parser")) {
            cllm_tool_parser_kind k;
            if (cllm_tool_parser_from_name(v, &k) != CLLM_OK) {
                fprintf(stderr, "cllm serve: --tool-call-parser '%s' is not known: valid parsers are %s\n", v,
                        cllm_tool_parser_names());
                goto out;
            }
            p.tool_call_parser = v;
        }
        else {
            fprintf(stderr, "cllm serve: unknown flag '%s' (cllm serve --help)\n", a);
            goto out;
        }
        if (!ok) goto out;
        if (!parent_only(a))
            for (int k = first; k <= i; k++) replica_args[n_replica_args++] = argv[k];
    }
    p.engine = ea.p;
    if (!p.engine.model.model) {
        fprintf(stderr, "cllm serve: --model DIR|ORG/NAME (or a registry NAME) is required (cllm serve --help)\n");
        goto out;
    }
    if (p.enable_auto_tool_choice && !p.tool_call_parser) {
        fprintf(stderr, "cllm serve: --enable-auto-tool-choice needs a parser: add --tool-call-parser NAME (one of "
                        "%s) matching the model's tool-call format\n", cllm_tool_parser_names());
        goto out;
    }
    p.engine.model.max_num_seqs = p.engine.max_num_seqs;
    if (dp > 1 && p.listen_fd >= 0) {
        fprintf(stderr, "cllm serve: --data-parallel-size and --listen-fd exclude each other (a replica is one server)\n");
        goto out;
    }
    if (dp <= 1 && router_flags) {
        fprintf(stderr, "cllm serve: the router flags (--policy, --health-check-*, --max-rpc-retries, ...) need "
                        "--data-parallel-size N > 1 (or use cllm router)\n");
        goto out;
    }
    if (dp > 1) { /* the router in this process, the replicas in children */
        rp.data_parallel_size = dp;
        rp.replica_args = replica_args;
        rp.replica_argc = n_replica_args;
        cllm_cli_router_front(&rp, &p);
        const cllm_model_params *m = &p.engine.model;
        if (m->device == CLLM_DEVICE_CUDA)
            rp.gpus_per_replica = (m->tensor_parallel_size > 1 ? m->tensor_parallel_size : 1) *
                                  (m->pipeline_parallel_size > 1 ? m->pipeline_parallel_size : 1);
        if (dry_run) {
            rc = print_dp_plan(&rp) ? 0 : 1;
            goto out;
        }
        rc = cllm_cli_router_run(&rp, "cllm serve");
        goto out;
    }
    if (dry_run) {
        print_command(&p);
        cllm_serve_plan plan = {.tensor_parallel_size = p.engine.model.tensor_parallel_size,
                                .pipeline_parallel_size = p.engine.model.pipeline_parallel_size,
                                .data_parallel_size = entry ? entry->data_parallel_size : 1,
                                .cuda = p.engine.model.device == CLLM_DEVICE_CUDA};
        cllm_serve_plan_make(&plan);
        cllm_serve_plan_print(stdout, &plan, name, argc, argv);
        rc = 0;
        goto out;
    }
    if (entry && entry->data_parallel_size > 1 && parent_pid == 0)
        fprintf(stderr, "cllm serve: note: deployment '%s' has data-parallel-size %d; this process serves one replica "
                        "(`cllm serve %s --dry-run` prints the launch lines of one: start %d behind a router, or add "
                        "--data-parallel-size %d to start them on this node)\n",
                name, entry->data_parallel_size, name, entry->data_parallel_size, entry->data_parallel_size);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (parent_pid > 0) cllm_dist_watch_parent((pid_t)parent_pid, "data-parallel replica");
    cllm_server *s = NULL;
    if (cllm_server_start(&p, &s) != CLLM_OK) {
        fprintf(stderr, "cllm serve: %s\n", cllm_last_error());
        rc = 1;
        goto out;
    }
    fprintf(stderr, "cllm serve: listening on http://%s:%d (model %s loading)\n", p.host, cllm_server_port(s),
            p.engine.model.model);
    fflush(stderr);
    cllm_status st = cllm_server_wait(s, &g_stop);
    if (st != CLLM_OK) fprintf(stderr, "cllm serve: %s\n", cllm_last_error());
    else fprintf(stderr, "cllm serve: stopped\n");
    cllm_server_destroy(s);
    rc = st == CLLM_OK ? 0 : 1;
out:
    cllm_registry_destroy(reg);
    free(replica_args);
    return rc;
}
