/* cllm bench comm: communicator bandwidth, as nccl-tests prints it.
 *
 *   cllm bench comm --device cpu|cuda --world-size N --op all_reduce|...|all
 *       --dtype float32 --min-bytes 8 --max-bytes 64M --step-factor 2
 *       --iters 20 --warmup-iters 5 [--check] [--dist-timeout 60] [--output-json F]
 *
 * One row per size: size (bytes, nccl-tests' meaning: all_gather the
 * gathered output, reduce_scatter the input, all_to_all what one rank
 * sends), count (size / dtype size), type, redop, root, time (us per call,
 * the slowest rank's mean over --iters after --warmup-iters), algbw = size /
 * time, busbw = algbw * factor (nccl-tests' PERFORMANCE.md: all_reduce
 * 2(n-1)/n, all_gather, reduce_scatter and all_to_all (n-1)/n, broadcast 1),
 * #wrong (with --check: elements differing from a host reference, summed
 * over ranks; N/A otherwise), then the average busbw. The ceiling printed
 * beside it: for cpu, this host's single-thread memcpy bandwidth (loopback
 * TCP copies every byte at least twice); for cuda, NVLink's.
 *
 * With --world-size N and no launcher, it starts N-1 copies of itself
 * (cllm_dist_launch_local); under mpirun / srun every rank runs this (SPMD)
 * and rank 0 prints. --device cuda: NCCL on device local_rank, on a stream
 * of its own. */
#include "cli/args.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/dtype.h"
#include "core/status.h"
#include "dist/comm.h"
#include "dist/dist_env.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLLM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#define NUM_BENCH_OPS 5
static const char *const k_ops[NUM_BENCH_OPS] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast",
                                                 "all_to_all"};
static const double k_nvlink_gbps = 450.0; /* H100/H200 NVLink 4, one direction */

typedef struct bench_opts {
    cllm_device device;
    long world_size;  /* 0: the launcher's, or 1 */
    int op;           /* index into k_ops, -1 = all */
    cllm_dtype dtype;
    long min_bytes, max_bytes, step, iters, warmup;
    bool check;
    double timeout_s;
    const char *json_path;
} bench_opts;

static void usage(FILE *f) {
    fprintf(f, "usage: cllm bench comm [--device cpu|cuda] [--world-size N] [--op all_reduce|all_gather|"
               "reduce_scatter|broadcast|all_to_all|all]\n"
               "       [--dtype float32|bfloat16|float16|int32] [--min-bytes 8] [--max-bytes 64M] "
               "[--step-factor 2]\n"
               "       [--iters 20] [--warmup-iters 5] [--check] [--dist-timeout 60] [--output-json F]\n"
               "sizes take K, M, G suffixes (powers of 1024). Without a launcher, --world-size N starts N-1 "
               "worker processes;\nunder mpirun/srun every rank runs it and rank 0 prints.\n");
}

/* "64M" -> 67108864; 0 with a message. */
static int parse_bytes(const char *flag, const char *v, long *out) {
    char *end;
    double x = strtod(v, &end);
    long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1L << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1L << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1L << 30, end++;
    if (end == v || *end || !(x >= 1) || x * (double)mul > (double)(16L << 30)) {
        fprintf(stderr, "cllm bench comm: %s expects a size such as 8, 512K, 64M or 1G (at most 16G), got '%s'\n",
                flag, v);
        return 0;
    }
    *out = (long)(x * (double)mul);
    return 1;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.device = CLLM_DEVICE_CPU, .op = 0, .dtype = CLLM_DTYPE_F32, .min_bytes = 8,
                      .max_bytes = 64L << 20, .step = 2, .iters = 20, .warmup = 5, .timeout_s = 60};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return -1; }
        if (!strcmp(a, "--check")) { o->check = true; continue; }
        if (!cllm_arg_value(argc, argv, &i, &v)) return 0;
        int ok = 1;
        if (!strcmp(a, "--device")) ok = cllm_arg_device(a, v, &o->device);
        else if (!strcmp(a, "--world-size")) ok = cllm_arg_long(a, v, 1, CLLM_DIST_MAX_LOCAL, &o->world_size);
        else if (!strcmp(a, "--op")) {
            o->op = -2;
            for (int k = 0; k < NUM_BENCH_OPS; k++) if (!strcmp(v, k_ops[k])) o->op = k;
            if (!strcmp(v, "all")) o->op = -1;
            if (o->op == -2) {
                fprintf(stderr, "cllm bench comm: --op expects all_reduce, all_gather, reduce_scatter, broadcast, "
                                "all_to_all or all, got '%s'\n", v);
                return 0;
            }
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "int32")) o->dtype = CLLM_DTYPE_I32;
            else if (cllm_dtype_parse(v, &o->dtype) != 0 || o->dtype == CLLM_DTYPE_AUTO) {
                fprintf(stderr, "cllm bench comm: --dtype expects float32, bfloat16, float16 or int32, got '%s'\n", v);
                return 0;
            }
        } else if (!strcmp(a, "--min-bytes")) ok = parse_bytes(a, v, &o->min_bytes);
        else if (!strcmp(a, "--max-bytes")) ok = parse_bytes(a, v, &o->max_bytes);
        else if (!strcmp(a, "--step-factor")) ok = cllm_arg_long(a, v, 2, 1024, &o->step);
        else if (!strcmp(a, "--iters")) ok = cllm_arg_long(a, v, 1, 1000000, &o->iters);
        else if (!strcmp(a, "--warmup-iters")) ok = cllm_arg_long(a, v, 0, 1000000, &o->warmup);
        else if (!strcmp(a, "--dist-timeout")) ok = cllm_arg_double(a, v, 0.1, 1e6, &o->timeout_s);
        else if (!strcmp(a, "--output-json")) o->json_path = v;
        else {
            fprintf(stderr, "cllm bench comm: unknown flag '%s' (cllm bench comm --help)\n", a);
            return 0;
        }
        if (!ok) return 0;
    }
    if (o->min_bytes > o->max_bytes) {
        fprintf(stderr, "cllm bench comm: --min-bytes %ld is larger than --max-bytes %ld\n", o->min_bytes,
                o->max_bytes);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------ buffers (host or device) */

static void *buf_alloc(bool dev, size_t bytes) {
#ifdef CLLM_HAVE_CUDA
    if (dev) {
        void *p = NULL;
        return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
    }
#endif
    (void)dev;
    return malloc(bytes ? bytes : 1);
}

static void buf_free(bool dev, void *p) {
#ifdef CLLM_HAVE_CUDA
    if (dev) { if (p) cudaFree(p); return; }
#endif
    (void)dev;
    free(p);
}

/* Copy bytes between host memory and a benchmark buffer (either way); 0 or -1. */
static int buf_copy(bool dev, void *dst, const void *src, size_t bytes) {
#ifdef CLLM_HAVE_CUDA
    /* cudaMemcpy from pageable memory may return before the DMA lands, and the
     * collectives run on a non-blocking stream that does not wait for it. */
    if (dev) return cudaMemcpy(dst, src, bytes, cudaMemcpyDefault) == cudaSuccess &&
                    cudaDeviceSynchronize() == cudaSuccess ? 0 : -1;
#endif
    (void)dev;
    memcpy(dst, src, bytes);
    return 0;
}

/* ------------------------------------------------------------ one size */

static int value(int rank, size_t i) { return (int)((rank * 7 + i * 13) % 9) - 4; }

typedef struct bench_ctx {
    cllm_comm *c;     /* the benchmarked communicator */
    cllm_comm *host;  /* TCP world, for timing/#wrong reductions */
    bool dev;
    cllm_dtype dt;
    size_t es;
    int P, me;
    void *send, *recv;       /* max_bytes each, host or device */
    uint8_t *hsend, *hrecv;  /* host staging, max_bytes each */
    size_t *counts, *displs; /* all_to_all: P entries */
} bench_ctx;

/* Run op once on (count per rank as each op defines it). */
static cllm_status run_op(bench_ctx *b, int op, size_t n) {
    switch (op) {
    case 0: return cllm_comm_all_reduce(b->c, b->send, b->recv, n, b->dt, CLLM_REDUCE_SUM);
    case 1: return cllm_comm_all_gather(b->c, b->send, b->recv, n, b->dt);
    case 2: return cllm_comm_reduce_scatter(b->c, b->send, b->recv, n, b->dt, CLLM_REDUCE_SUM);
    case 3: return cllm_comm_broadcast(b->c, b->recv, n, b->dt, 0);
    default:
        for (int p = 0; p < b->P; p++) { b->counts[p] = n; b->displs[p] = (size_t)p * n; }
        return cllm_comm_all_to_allv(b->c, b->send, b->counts, b->displs, b->recv, b->counts, b->displs, b->dt);
    }
}

/* Fill the inputs for op, run once, count wrong elements on this rank. */
static cllm_status check_op(bench_ctx *b, int op, size_t n, int64_t *wrong) {
    size_t in_elems = op == 2 || op == 4 ? (size_t)b->P * n : n;  /* reduce_scatter, all_to_all: P blocks in */
    size_t out_elems = op == 1 || op == 4 ? (size_t)b->P * n : n; /* all_gather, all_to_all: P blocks out */
    uint8_t *in = op == 3 ? b->hrecv : b->hsend;
    for (size_t i = 0; i < in_elems; i++) {
        double v = op == 3 ? (b->me == 0 ? value(0, i) : 99) : value(b->me, i);
        float f = (float)v;
        switch (b->dt) {
        case CLLM_DTYPE_F32: ((float *)in)[i] = f; break;
        case CLLM_DTYPE_BF16: ((uint16_t *)in)[i] = cllm_f32_to_bf16(f); break;
        case CLLM_DTYPE_F16: ((uint16_t *)in)[i] = cllm_f32_to_f16(f); break;
        default: ((int32_t *)in)[i] = (int32_t)v; break;
        }
    }
    if (buf_copy(b->dev, op == 3 ? b->recv : b->send, in, in_elems * b->es))
        return cllm_error(CLLM_ERR_CUDA, "cudaMemcpy failed");
    CLLM_TRY(run_op(b, op, n));
    CLLM_TRY(cllm_comm_sync(b->c));
    if (buf_copy(b->dev, b->hrecv, b->recv, out_elems * b->es)) return cllm_error(CLLM_ERR_CUDA, "cudaMemcpy failed");
    int64_t bad = 0;
    for (size_t i = 0; i < out_elems; i++) {
        double want = 0;
        if (op == 0 || op == 2) { /* sum over ranks of element i (reduce_scatter: of this rank's block) */
            size_t j = op == 0 ? i : (size_t)b->me * n + i;
            for (int r = 0; r < b->P; r++) want += value(r, j);
        } else if (op == 1) want = value((int)(i / n), i % n);
        else if (op == 3) want = value(0, i);
        else want = value((int)(i / n), (size_t)b->me * n + i % n); /* block p came from rank p */
        double got;
        switch (b->dt) {
        case CLLM_DTYPE_F32: got = ((float *)b->hrecv)[i]; break;
        case CLLM_DTYPE_BF16: got = cllm_bf16_to_f32(((uint16_t *)b->hrecv)[i]); break;
        case CLLM_DTYPE_F16: got = cllm_f16_to_f32(((uint16_t *)b->hrecv)[i]); break;
        default: got = ((int32_t *)b->hrecv)[i]; break;
        }
        bad += got != want;
    }
    *wrong = bad;
    return CLLM_OK;
}

/* Mean seconds per call over iters (after warmup), the slowest rank's. */
static cllm_status time_op(bench_ctx *b, int op, size_t n, long iters, long warmup, double *sec) {
    for (long i = 0; i < warmup; i++) CLLM_TRY(run_op(b, op, n));
    CLLM_TRY(cllm_comm_sync(b->c));
    CLLM_TRY(cllm_comm_barrier(b->host));
    double t0 = cllm_now_s();
    for (long i = 0; i < iters; i++) CLLM_TRY(run_op(b, op, n));
    CLLM_TRY(cllm_comm_sync(b->c));
    int64_t ns = (int64_t)((cllm_now_s() - t0) / (double)iters * 1e9), mx = 0;
    CLLM_TRY(cllm_comm_all_reduce(b->host, &ns, &mx, 1, CLLM_DTYPE_I64, CLLM_REDUCE_MAX));
    *sec = (double)mx * 1e-9;
    return CLLM_OK;
}

/* ------------------------------------------------------------- tables */

static const char *type_name(cllm_dtype dt) { /* nccl-tests' names */
    switch (dt) {
    case CLLM_DTYPE_F32: return "float";
    case CLLM_DTYPE_BF16: return "bfloat16";
    case CLLM_DTYPE_F16: return "half";
    default: return "int32";
    }
}

static double bus_factor(int op, int P) {
    if (op == 0) return 2.0 * (P - 1) / P;
    if (op == 3) return 1.0;
    return (double)(P - 1) / P;
}

/* Single-thread memcpy bandwidth of this host (GB/s), the CPU ceiling. */
static double memcpy_gbps(void) {
    size_t n = 64u << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) { free(a); free(b); return 0; }
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 0;
    for (int k = 0; k < 3; k++) {
        double t0 = cllm_now_s();
        memcpy(b, a, n);
        double dt = cllm_now_s() - t0;
        if (dt > 0 && n / dt / 1e9 > best) best = n / dt / 1e9;
    }
    volatile char sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return best;
}

/* One op over every size; prints (rank 0) and appends to results. */
static cllm_status bench_one(bench_ctx *b, const bench_opts *o, int op, json_t *results, const char *transport,
                             const char *launcher, double ceiling) {
    int P = b->P;
    bool print = b->me == 0;
    if (print) {
        printf("# cllm bench comm: %s, world %d (%s on %s, launcher %s), %ld iters after %ld warmup\n", k_ops[op], P,
               transport, b->dev ? "cuda" : "cpu", launcher, o->iters, o->warmup);
        printf("#\n#%12s %12s %9s %7s %6s %10s %8s %8s %7s\n", "size", "count", "type", "redop", "root", "time",
               "algbw", "busbw", "#wrong");
        printf("#%12s %12s %9s %7s %6s %10s %8s %8s %7s\n", "(B)", "(elements)", "", "", "", "(us)", "(GB/s)",
               "(GB/s)", "");
    }
    json_t *rows = json_array(), *obj = NULL;
    double bw_sum = 0;
    int nrows = 0;
    int64_t wrong_total = 0;
    cllm_status st = CLLM_OK;
    for (long size = o->min_bytes; size <= o->max_bytes; size *= o->step) {
        size_t per = op == 0 || op == 3 ? (size_t)size / b->es : (size_t)size / b->es / (size_t)P;
        if (!per) continue;
        size_t bytes = (op == 0 || op == 3 ? per : per * (size_t)P) * b->es;
        int64_t wrong = 0, wrong_sum = 0;
        if (o->check) {
            CLLM_TRY_GOTO(st, check_op(b, op, per, &wrong), done);
            CLLM_TRY_GOTO(st, cllm_comm_all_reduce(b->host, &wrong, &wrong_sum, 1, CLLM_DTYPE_I64, CLLM_REDUCE_SUM),
                          done);
        }
        double sec = 0;
        CLLM_TRY_GOTO(st, time_op(b, op, per, o->iters, o->warmup, &sec), done);
        double algbw = sec > 0 ? (double)bytes / sec / 1e9 : 0, busbw = algbw * bus_factor(op, P);
        bw_sum += busbw;
        nrows++;
        wrong_total += wrong_sum;
        if (print) {
            char w[24];
            if (o->check) snprintf(w, sizeof w, "%lld", (long long)wrong_sum);
            else snprintf(w, sizeof w, "N/A");
            printf(" %12zu %12zu %9s %7s %6d %10.2f %8.2f %8.2f %7s\n", bytes, bytes / b->es, type_name(b->dt),
                   op == 0 || op == 2 ? "sum" : "none", op == 3 ? 0 : -1, sec * 1e6, algbw, busbw, w);
            fflush(stdout);
        }
        json_array_append_new(rows, json_pack("{s:I, s:I, s:s, s:s, s:i, s:f, s:f, s:f, s:I}", "size",
                                              (json_int_t)bytes, "count", (json_int_t)(bytes / b->es), "type",
                                              type_name(b->dt), "redop", op == 0 || op == 2 ? "sum" : "none",
                                              "root", op == 3 ? 0 : -1, "time_us", sec * 1e6, "algbw_gbps", algbw,
                                              "busbw_gbps", busbw, "wrong", (json_int_t)(o->check ? wrong_sum : -1)));
    }
    double avg = nrows ? bw_sum / nrows : 0;
    if (print) {
        printf("# Out of bounds values : %lld %s\n", (long long)wrong_total, o->check ? "OK" : "(not checked)");
        printf("# Avg bus bandwidth    : %.4f GB/s   (ceiling: %s %.1f GB/s)\n#\n", avg,
               b->dev ? "NVLink per direction" : "host memcpy", ceiling);
    }
    obj = json_pack("{s:s, s:i, s:s, s:s, s:s, s:f, s:f, s:o}", "op", k_ops[op], "world_size", P, "device",
                    b->dev ? "cuda" : "cpu", "transport", transport, "launcher", launcher, "avg_busbw_gbps", avg,
                    "ceiling_gbps", ceiling, "rows", rows);
    rows = NULL;
    json_array_append_new(results, obj);
    if (o->check && wrong_total) st = cllm_error(CLLM_ERR_INTERNAL, "%s: %lld wrong elements", k_ops[op],
                                                 (long long)wrong_total);
done:
    json_decref(rows);
    return st;
}

/* ------------------------------------------------------------- command */

static void *stream_create(int device) {
#ifdef CLLM_HAVE_CUDA
    cudaStream_t s = NULL;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cllm_error(CLLM_ERR_CUDA, "cannot use CUDA device %d (the local rank): %s", device, cudaGetErrorString(e));
        return NULL;
    }
    return s;
#else
    (void)device;
    return NULL;
#endif
}

static void stream_destroy(void *s) {
#ifdef CLLM_HAVE_CUDA
    if (s) cudaStreamDestroy((cudaStream_t)s);
#else
    (void)s;
#endif
}

/* Self-launch the workers: each runs `cllm bench comm` with the same flags. */
static cllm_status launch(cllm_dist_env *env, int world, int argc, char **argv) {
    char **av = cllm_malloc(sizeof(char *) * (size_t)(argc + 3));
    if (!av) return CLLM_ERR_OOM;
    av[0] = "cllm";
    av[1] = "bench";
    for (int i = 0; i < argc; i++) av[2 + i] = argv[i]; /* argv[0] is "comm" */
    av[argc + 2] = NULL;
    cllm_status st = cllm_dist_launch_local(env, world, NULL, av);
    free(av);
    return st;
}

int cllm_cli_bench_comm(int argc, char **argv) {
    bench_opts o;
    int pr = parse_args(argc, argv, &o);
    if (pr < 0) return 0;
    if (!pr) return 2;
    cllm_dist_env env;
    if (cllm_dist_env_detect(&env) != CLLM_OK) {
        fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
        return 1;
    }
    if (!strcmp(env.launcher, "single") && o.world_size > 1) {
        if (launch(&env, (int)o.world_size, argc, argv) != CLLM_OK) {
            fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
            return 1;
        }
    } else if (o.world_size && o.world_size != env.world_size) {
        fprintf(stderr, "cllm bench comm: --world-size %ld but the launcher (%s) started %d ranks\n", o.world_size,
                env.launcher, env.world_size);
        return 2;
    }
    cllm_dist_worker_bind_parent(&env);
    bool dev = o.device == CLLM_DEVICE_CUDA;
    bench_ctx b = {.dev = dev, .dt = o.dtype, .es = cllm_dtype_size(o.dtype)};
    void *stream = NULL;
    cllm_comm *nc = NULL;
    json_t *results = json_array();
    int rc = 1;
    cllm_status st = cllm_comm_tcp_create_world(&env, o.timeout_s, &b.host);
    cllm_dist_env_close(&env);
    if (st != CLLM_OK) goto done;
    b.c = b.host;
    if (dev) {
        if (!(stream = stream_create(env.cuda_device))) {
#ifdef CLLM_HAVE_CUDA
            st = cllm_error_wrap(CLLM_ERR_CUDA, "rank %d", env.rank);
            goto done;
#endif
        }
        CLLM_TRY_GOTO(st, cllm_comm_nccl_create(b.host, env.cuda_device, stream, "bench", o.timeout_s, &nc), done);
        b.c = nc;
    }
    b.P = cllm_comm_size(b.c);
    b.me = cllm_comm_rank(b.c);
    size_t maxb = (size_t)o.max_bytes;
    b.send = buf_alloc(dev, maxb);
    b.recv = buf_alloc(dev, maxb);
    b.hsend = o.check ? malloc(maxb) : NULL;
    b.hrecv = o.check ? malloc(maxb) : NULL;
    b.counts = calloc((size_t)b.P, sizeof(size_t));
    b.displs = calloc((size_t)b.P, sizeof(size_t));
    if (!b.send || !b.recv || (o.check && (!b.hsend || !b.hrecv)) || !b.counts || !b.displs) {
        st = cllm_error(CLLM_ERR_OOM, "rank %d: cannot allocate 2 x %zu bytes of %s buffers", env.rank, maxb,
                        dev ? "device" : "host");
        goto done;
    }
    if (dev) { /* defined contents (timing only) */
        uint8_t *z = calloc(1, maxb);
        if (z) { buf_copy(dev, b.send, z, maxb); buf_copy(dev, b.recv, z, maxb); free(z); }
    } else {
        memset(b.send, 0, maxb);
        memset(b.recv, 0, maxb);
    }
    double ceiling = dev ? k_nvlink_gbps : (b.me == 0 ? memcpy_gbps() : 0);
    for (int op = 0; op < NUM_BENCH_OPS; op++) {
        if (o.op >= 0 && op != o.op) continue;
        CLLM_TRY_GOTO(st, bench_one(&b, &o, op, results, cllm_comm_transport(b.c), env.launcher, ceiling), done);
    }
    if (b.me == 0 && o.json_path) {
        json_t *top = json_pack("{s:i, s:s, s:s, s:O}", "world_size", b.P, "device", dev ? "cuda" : "cpu", "dtype",
                                cllm_dtype_name(o.dtype), "results", results);
        if (!top || json_dump_file(top, o.json_path, JSON_INDENT(2)) != 0) {
            json_decref(top);
            st = cllm_error(CLLM_ERR_IO, "cannot write %s", o.json_path);
            goto done;
        }
        json_decref(top);
    }
    rc = 0;
done:
    if (st != CLLM_OK) fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
    buf_free(dev, b.send);
    buf_free(dev, b.recv);
    free(b.hsend);
    free(b.hrecv);
    free(b.counts);
    free(b.displs);
    json_decref(results);
    cllm_comm_destroy(nc);
    stream_destroy(stream);
    cllm_comm_destroy(b.host);
    if (env.rank == 0 && env.num_children) {
        cllm_dist_reap_children(&env, rc == 0 ? 30.0 : 5.0);
        if (cllm_dist_children_result(&env) != CLLM_OK) {
            if (rc == 0) fprintf(stderr, "cllm: error: %s\n", cllm_last_error());
            rc = 1;
        }
    }
    return rc;
}
