/* The process's distributed environment: launcher detection (see
 * dist_env.h for the order and the variables), the rendezvous address and
 * the session secret; under mpirun, rank 0's address and secret go to the
 * other ranks through one MPI_Bcast (built with Open MPI) and MPI is
 * finalized right after: every collective afterwards is cllm's own TCP or
 * NCCL. Self-launch and child monitoring are in dist_launch.c. */
#include "dist/dist_env.h"

#include "core/status.h"
#include "dist/tcp_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#ifdef CLLM_HAVE_MPI
#include <mpi.h>
#endif

static const char *env_get(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Integer variable in [lo, hi]. Missing: *out = dflt unless required. */
static cllm_status env_int(const char *name, long lo, long hi, bool required, int dflt, int *out) {
    const char *v = env_get(name);
    if (!v) {
        if (required)
            return cllm_error(CLLM_ERR_INVALID_ARG, "distributed launch: %s is not set (the launcher sets it; set it "
                                                    "by hand only for a manual launch)", name);
        *out = dflt;
        return CLLM_OK;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cllm_error(CLLM_ERR_INVALID_ARG, "distributed launch: %s='%s' is not an integer in [%ld, %ld]", name,
                          v, lo, hi);
    *out = (int)x;
    return CLLM_OK;
}

/* ---------------------------------------------------------------- secret */

cllm_status cllm_dist_secret_generate(uint8_t *out) {
    size_t got = 0;
    while (got < CLLM_DIST_SECRET_BYTES) {
        ssize_t r = getrandom(out + got, CLLM_DIST_SECRET_BYTES - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return cllm_error(CLLM_ERR_IO, "getrandom failed: %s", strerror(errno));
        got += (size_t)r;
    }
    return CLLM_OK;
}

void cllm_dist_secret_hex(const uint8_t *secret, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < CLLM_DIST_SECRET_BYTES; i++) {
        hex[2 * i] = digits[secret[i] >> 4];
        hex[2 * i + 1] = digits[secret[i] & 15];
    }
    hex[2 * CLLM_DIST_SECRET_BYTES] = 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static cllm_status secret_from_env(cllm_dist_env *env) {
    const char *v = env_get("CLLM_DIST_SECRET");
    if (!v)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "distributed launch (%s, world size %d): CLLM_DIST_SECRET is not set; export the same "
                          "secret to every rank, e.g. export CLLM_DIST_SECRET=$(openssl rand -hex 32) "
                          "(docs/distributed.md)", env->launcher, env->world_size);
    if (strlen(v) != 2 * CLLM_DIST_SECRET_BYTES)
        return cllm_error(CLLM_ERR_INVALID_ARG, "CLLM_DIST_SECRET must be %d hex digits (got %zu characters)",
                          2 * CLLM_DIST_SECRET_BYTES, strlen(v));
    for (int i = 0; i < CLLM_DIST_SECRET_BYTES; i++) {
        int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
        if (hi < 0 || lo < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "CLLM_DIST_SECRET must be hex digits only");
        env->secret[i] = (uint8_t)(hi << 4 | lo);
    }
    return CLLM_OK;
}

/* --------------------------------------------------------- rendezvous */

/* "host:port" (the last colon separates). */
static cllm_status parse_host_port(const char *var, const char *v, cllm_dist_env *env) {
    const char *colon = strrchr(v, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof env->init_host || *end || port < 1 || port > 65535)
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s='%s' must be HOST:PORT (IPv4 address or host name, port 1-65535)",
                          var, v);
    memcpy(env->init_host, v, (size_t)(colon - v));
    env->init_host[colon - v] = 0;
    env->init_port = (int)port;
    return CLLM_OK;
}

/* True if a rendezvous is given by the environment. */
static bool have_rendezvous(void) {
    return env_get("CLLM_DIST_INIT_ADDR") || (env_get("MASTER_ADDR") && env_get("MASTER_PORT"));
}

static cllm_status rendezvous_from_env(cllm_dist_env *env) {
    const char *a = env_get("CLLM_DIST_INIT_ADDR");
    if (a) CLLM_TRY(parse_host_port("CLLM_DIST_INIT_ADDR", a, env));
    else {
        const char *h = env_get("MASTER_ADDR");
        if (!h || !env_get("MASTER_PORT"))
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "distributed launch (%s, world size %d): no rendezvous address; set MASTER_ADDR (rank "
                              "0's host) and MASTER_PORT (a free port), or CLLM_DIST_INIT_ADDR=HOST:PORT, the same "
                              "on every rank (docs/distributed.md)", env->launcher, env->world_size);
        if (strlen(h) >= sizeof env->init_host)
            return cllm_error(CLLM_ERR_INVALID_ARG, "MASTER_ADDR is longer than %zu characters",
                              sizeof env->init_host - 1);
        snprintf(env->init_host, sizeof env->init_host, "%s", h);
        CLLM_TRY(env_int("MASTER_PORT", 1, 65535, true, 0, &env->init_port));
    }
    return secret_from_env(env);
}

cllm_status cllm_dist_port_range(int *lo, int *hi) {
    *lo = *hi = 0;
    const char *v = env_get("CLLM_DIST_PORT_RANGE");
    if (!v) return CLLM_OK;
    char *end, *end2 = NULL;
    errno = 0;
    long a = strtol(v, &end, 10), b = *end == '-' ? strtol(end + 1, &end2, 10) : -1;
    if (errno || end == v || *end != '-' || end2 == end + 1 || *end2 || a < 1 || b > 65535 || a > b)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "CLLM_DIST_PORT_RANGE='%s' must be LO-HI with 1 <= LO <= HI <= 65535 (e.g. 29500-29599)",
                          v);
    *lo = (int)a;
    *hi = (int)b;
    return CLLM_OK;
}

/* ------------------------------------------------------------- mpirun */

#ifdef CLLM_HAVE_MPI
typedef struct mpi_msg {
    char host[256];
    int32_t port, ok;
    uint8_t secret[CLLM_DIST_SECRET_BYTES];
    char err[256];
} mpi_msg;

/* Rank 0 binds its rendezvous socket now (kept as listen_fd, so the port is
 * never free for someone else to take) and broadcasts host, port, secret. */
static cllm_status mpi_rendezvous(cllm_dist_env *env) {
    int inited = 0, mine = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
            return cllm_error(CLLM_ERR_DISTRIBUTED, "mpirun launch: MPI_Init failed");
        mine = 1;
    }
    mpi_msg msg;
    memset(&msg, 0, sizeof msg);
    if (env->rank == 0) {
        const char *h = env_get("MASTER_ADDR");
        snprintf(msg.host, sizeof msg.host, "%s", h ? h : cllm_dist_hostname());
        int port = 0;
        cllm_status st = cllm_dist_secret_generate(msg.secret);
        if (st == CLLM_OK) env->listen_fd = tcp_listen(NULL, 0, &port);
        msg.port = port;
        msg.ok = st == CLLM_OK && env->listen_fd >= 0;
        if (!msg.ok) snprintf(msg.err, sizeof msg.err, "%s", cllm_last_error());
    }
    int rc = MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (mine) MPI_Finalize();
    if (rc != MPI_SUCCESS) return cllm_error(CLLM_ERR_DISTRIBUTED, "mpirun launch: MPI_Bcast of the rendezvous failed");
    if (!msg.ok) return cllm_error(CLLM_ERR_DISTRIBUTED, "mpirun launch: rank 0 could not listen: %s", msg.err);
    snprintf(env->init_host, sizeof env->init_host, "%s", msg.host);
    env->init_port = msg.port;
    memcpy(env->secret, msg.secret, sizeof env->secret);
    return CLLM_OK;
}
#endif

static cllm_status detect_mpirun(cllm_dist_env *env) {
    snprintf(env->launcher, sizeof env->launcher, "mpirun");
    CLLM_TRY(env_int("OMPI_COMM_WORLD_SIZE", 1, INT_MAX, true, 1, &env->world_size));
    CLLM_TRY(env_int("OMPI_COMM_WORLD_RANK", 0, env->world_size - 1, true, 0, &env->rank));
    CLLM_TRY(env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, env->world_size, false, 1, &env->local_world_size));
    CLLM_TRY(env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, env->local_world_size - 1, false, 0, &env->local_rank));
    if (env->world_size == 1) return CLLM_OK;
    if (have_rendezvous() && env_get("CLLM_DIST_SECRET")) return rendezvous_from_env(env);
#ifdef CLLM_HAVE_MPI
    return mpi_rendezvous(env);
#else
    return cllm_error(CLLM_ERR_UNSUPPORTED,
                      "launched by mpirun (world size %d) but this cllm was built without MPI: export MASTER_ADDR "
                      "(rank 0's host), MASTER_PORT and CLLM_DIST_SECRET (e.g. $(openssl rand -hex 32)) to every "
                      "rank (mpirun -x), or rebuild with libopenmpi-dev installed",
                      env->world_size);
#endif
}

/* ----------------------------------------------------------- slurm */

/* SLURM_STEP_TASKS_PER_NODE ("2(x3),1": 2 tasks on each of 3 nodes, then 1)
 * at node index node; -1 if it cannot be read. */
static int slurm_tasks_on_node(const char *v, int node) {
    int idx = 0;
    while (v && *v) {
        char *end;
        long n = strtol(v, &end, 10), reps = 1;
        if (end == v || n < 1) return -1;
        v = end;
        if (*v == '(') {
            if (v[1] != 'x') return -1;
            reps = strtol(v + 2, &end, 10);
            if (end == v + 2 || *end != ')' || reps < 1) return -1;
            v = end + 1;
        }
        if (node < idx + reps) return (int)n;
        idx += (int)reps;
        if (*v == ',') v++;
        else if (*v) return -1;
    }
    return -1;
}

static cllm_status detect_srun(cllm_dist_env *env) {
    snprintf(env->launcher, sizeof env->launcher, "srun");
    CLLM_TRY(env_int("SLURM_STEP_NUM_TASKS", 1, INT_MAX, true, 1, &env->world_size));
    CLLM_TRY(env_int("SLURM_PROCID", 0, env->world_size - 1, true, 0, &env->rank));
    CLLM_TRY(env_int("SLURM_LOCALID", 0, env->world_size - 1, false, 0, &env->local_rank));
    int node = 0;
    CLLM_TRY(env_int("SLURM_NODEID", 0, INT_MAX, false, 0, &node));
    int n = slurm_tasks_on_node(env_get("SLURM_STEP_TASKS_PER_NODE"), node);
    env->local_world_size = n > env->local_rank ? n : env->local_rank + 1;
    return rendezvous_from_env(env);
}

static cllm_status detect_torchrun(cllm_dist_env *env) {
    snprintf(env->launcher, sizeof env->launcher, "env");
    CLLM_TRY(env_int("WORLD_SIZE", 1, INT_MAX, true, 1, &env->world_size));
    CLLM_TRY(env_int("RANK", 0, env->world_size - 1, true, 0, &env->rank));
    CLLM_TRY(env_int("LOCAL_WORLD_SIZE", 1, env->world_size, false, env->world_size, &env->local_world_size));
    CLLM_TRY(env_int("LOCAL_RANK", 0, env->local_world_size - 1, false, env->rank % env->local_world_size,
                     &env->local_rank));
    return env->world_size > 1 ? rendezvous_from_env(env) : CLLM_OK;
}

static cllm_status detect_mp(cllm_dist_env *env) {
    snprintf(env->launcher, sizeof env->launcher, "mp");
    CLLM_TRY(env_int("CLLM_DIST_WORLD_SIZE", 1, CLLM_DIST_MAX_LOCAL, true, 1, &env->world_size));
    CLLM_TRY(env_int("CLLM_DIST_RANK", 0, env->world_size - 1, true, 0, &env->rank));
    CLLM_TRY(env_int("CLLM_DIST_LOCAL_WORLD_SIZE", 1, env->world_size, false, env->world_size,
                     &env->local_world_size));
    CLLM_TRY(env_int("CLLM_DIST_LOCAL_RANK", 0, env->local_world_size - 1, false, env->rank, &env->local_rank));
    int ppid = 0;
    CLLM_TRY(env_int("CLLM_DIST_PARENT_PID", 0, INT_MAX, false, 0, &ppid));
    env->parent_pid = (pid_t)ppid;
    if (!env_get("CLLM_DIST_INIT_ADDR"))
        return cllm_error(CLLM_ERR_INVALID_ARG, "self-launched worker: CLLM_DIST_INIT_ADDR is not set");
    return rendezvous_from_env(env);
}

static long env_long0(const char *name) {
    const char *v = env_get(name);
    return v ? strtol(v, NULL, 10) : 0;
}

cllm_status cllm_dist_env_detect(cllm_dist_env *env) {
    if (!env) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_dist_env_detect: NULL env");
    memset(env, 0, sizeof *env);
    env->world_size = env->local_world_size = 1;
    env->listen_fd = -1;
    snprintf(env->launcher, sizeof env->launcher, "single");
    cllm_status st = CLLM_OK;
    if (env_get("CLLM_DIST_RANK")) st = detect_mp(env);
    else if (env_get("OMPI_COMM_WORLD_RANK")) st = detect_mpirun(env);
    else if (env_long0("SLURM_STEP_NUM_TASKS") > 1) st = detect_srun(env);
    else if (env_get("RANK") && env_get("WORLD_SIZE")) st = detect_torchrun(env);
    if (st != CLLM_OK) return st;
    int lo, hi;
    if (env->world_size > 1) CLLM_TRY(cllm_dist_port_range(&lo, &hi));
    env->cuda_device = env->local_rank;
    const char *vis = env_get("CUDA_VISIBLE_DEVICES"); /* one device per task (srun --gpus-per-task=1) */
    if (vis && !strchr(vis, ',') && env->local_world_size > 1) env->cuda_device = 0;
    CLLM_LOG_D("distributed environment: launcher %s, rank %d of %d, local rank %d of %d, rendezvous %s:%d",
               env->launcher, env->rank, env->world_size, env->local_rank, env->local_world_size, env->init_host,
               env->init_port);
    return CLLM_OK;
}

int cllm_dist_env_peek_rank(void) {
    const char *v;
    if ((v = env_get("CLLM_DIST_RANK"))) return atoi(v);
    if ((v = env_get("OMPI_COMM_WORLD_RANK"))) return atoi(v);
    if (env_long0("SLURM_STEP_NUM_TASKS") > 1 && (v = env_get("SLURM_PROCID"))) return atoi(v);
    if (env_long0("WORLD_SIZE") > 1 && (v = env_get("RANK"))) return atoi(v);
    return 0;
}

void cllm_dist_env_close(cllm_dist_env *env) {
    if (env && env->listen_fd >= 0) {
        close(env->listen_fd);
        env->listen_fd = -1;
    }
}

const char *cllm_dist_hostname(void) {
    static char name[256];
    if (!name[0] && gethostname(name, sizeof name - 1) != 0) snprintf(name, sizeof name, "localhost");
    return name;
}
