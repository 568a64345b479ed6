/* The process's distributed environment (internal): who am I (rank, local
 * rank, world size), how was I launched, where is the rendezvous, and the
 * session secret that every rank presents at bootstrap. One per process,
 * detected once (vLLM's / the seeds' "NCCL environment").
 *
 * Launchers, detected in this order:
 *   - "mp": a worker process that cllm started itself (self-launch; the
 *     parent set CLLM_DIST_RANK, CLLM_DIST_WORLD_SIZE, CLLM_DIST_LOCAL_RANK,
 *     CLLM_DIST_INIT_ADDR=host:port, CLLM_DIST_SECRET=hex, CLLM_DIST_PARENT_PID).
 *   - "mpirun": Open MPI (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK /
 *     _LOCAL_SIZE). Rank 0 makes the secret and its rendezvous address and
 *     broadcasts both with MPI (built with MPI), unless CLLM_DIST_INIT_ADDR /
 *     MASTER_ADDR+MASTER_PORT and CLLM_DIST_SECRET are set.
 *   - "srun": Slurm job step of several tasks (SLURM_STEP_NUM_TASKS > 1;
 *     SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE); rendezvous
 *     from CLLM_DIST_INIT_ADDR or MASTER_ADDR + MASTER_PORT, secret from
 *     CLLM_DIST_SECRET (scripts/slurm/ set them).
 *   - "env": torchrun-style RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
 *     MASTER_PORT, with CLLM_DIST_SECRET.
 *   - "single": none of these: rank 0 of a world of 1. cllm may then
 *     self-launch workers (cllm_dist_launch_local).
 */
#ifndef CLLM_DIST_DIST_ENV_H
#define CLLM_DIST_DIST_ENV_H

#include "cllm.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CLLM_DIST_SECRET_BYTES 32
#define CLLM_DIST_MAX_LOCAL 64

struct cllm_dist_env {
    int rank, world_size;            /* in the world */
    int local_rank, local_world_size;/* on this node */
    char launcher[16];               /* "single" | "mp" | "mpirun" | "srun" | "env" */
    char init_host[256];             /* rendezvous: rank 0's address (host name or IP) */
    int init_port;                   /* 0 before known */
    int listen_fd;                   /* rank 0 of a self-launch (or of mpirun with MPI): the rendezvous socket, already
                                      * listening (the workers were given its port); else -1 */
    uint8_t secret[CLLM_DIST_SECRET_BYTES];
    int cuda_device;                 /* local_rank, unless CUDA_VISIBLE_DEVICES-style mapping says */
    pid_t parent_pid;                /* "mp" workers: the process that launched them; else 0 */
    /* rank 0 of a self-launch: the worker processes (index = rank, 0 unused) */
    pid_t child_pids[CLLM_DIST_MAX_LOCAL];
    int num_children;
    /* Once cllm_dist_check_children / _reap_children reaped worker r:
     * child_pids[r] = -pid and child_status[r] its waitpid status. */
    int child_status[CLLM_DIST_MAX_LOCAL];
};
typedef struct cllm_dist_env cllm_dist_env;

/* Detect the launcher from the environment (see above) and fill env. For
 * "mpirun" with world_size > 1 this is collective (MPI_Init + broadcast of
 * rank 0's rendezvous address and secret). Errors: CLLM_ERR_INVALID_ARG (an
 * inconsistent or incomplete environment, naming the variable to set),
 * CLLM_ERR_UNSUPPORTED (mpirun without MPI support and no MASTER_ADDR). */
cllm_status cllm_dist_env_detect(cllm_dist_env *env);

/* This process's world rank as the launcher variables say (CLLM_DIST_RANK,
 * OMPI_COMM_WORLD_RANK, SLURM_PROCID of a multi-task step, RANK with
 * WORLD_SIZE > 1), without side effects (no MPI_Init); 0 when none is set.
 * main() uses it to turn ranks > 0 into workers before parsing a command. */
int cllm_dist_env_peek_rank(void);

/* Self-launch (launcher "single" -> "mp"): make the secret (getrandom),
 * listen on 127.0.0.1 port 0, and start world_size - 1 worker processes:
 * exe (NULL: $CLLM_WORKER_EXE, else /proc/self/exe) with argv (NULL-
 * terminated; argv[0] is replaced by exe) and the CLLM_DIST_* variables for
 * ranks 1..world_size-1, local ranks equal to ranks. env becomes rank 0 of
 * world_size, listen_fd set, child_pids filled. Errors: CLLM_ERR_IO (spawn
 * failed, naming exe), CLLM_ERR_INVALID_ARG (world_size out of range). */
cllm_status cllm_dist_launch_local(cllm_dist_env *env, int world_size, const char *exe, char *const argv[]);

/* Rank 0 of a self-launch: check the workers without blocking. Returns
 * CLLM_OK while all run; CLLM_ERR_DISTRIBUTED with "worker rank R (pid P)
 * exited with status S / was killed by signal N" once one has ended. */
cllm_status cllm_dist_check_children(cllm_dist_env *env);
/* Rank 0 of a self-launch: wait up to timeout_s for the workers to exit,
 * then SIGKILL the rest and reap them. */
void cllm_dist_reap_children(cllm_dist_env *env, double timeout_s);
/* After cllm_dist_reap_children: CLLM_OK if every worker exited with status
 * 0, else CLLM_ERR_DISTRIBUTED describing the first that did not (exit
 * status or signal). */
cllm_status cllm_dist_children_result(cllm_dist_env *env);

/* A worker process of a self-launch: die with the parent (a thread polling getppid)
 * and exit at once if the parent is already gone. No-op otherwise. */
void cllm_dist_worker_bind_parent(const cllm_dist_env *env);

/* Die with process `parent` (a thread polls getppid every 200 ms; the
 * thread-bound PR_SET_PDEATHSIG would follow the spawning thread): exit(1)
 * with "cllm: <who>: the launching process (pid P) is gone". Exits at once
 * if it is already gone. Used by self-launched workers and by the replicas
 * of cllm serve --data-parallel-size. */
void cllm_dist_watch_parent(pid_t parent, const char *who);

/* CLLM_DIST_PORT_RANGE=LO-HI (e.g. 29500-29599): the ports that the TCP
 * listeners of this process bind when no port is prescribed (a rank's mesh
 * listener; rank 0's rendezvous socket under mpirun or a self-launch), the
 * first free one of the range, so that a firewall between nodes needs to
 * open only MASTER_PORT and the range (one port per rank on a host). Unset:
 * *lo = *hi = 0 (the kernel's ephemeral ports). CLLM_ERR_INVALID_ARG naming
 * the variable when it is malformed. Self-launched workers inherit it. */
cllm_status cllm_dist_port_range(int *lo, int *hi);

/* Host name of this machine, for logs and error messages. */
const char *cllm_dist_hostname(void);

/* Close env->listen_fd (rank 0's rendezvous socket of a self-launch or an
 * mpirun launch) once the world communicator exists; idempotent. */
void cllm_dist_env_close(cllm_dist_env *env);

/* CLLM_DIST_SECRET_BYTES from getrandom(2). CLLM_ERR_IO if it fails. */
cllm_status cllm_dist_secret_generate(uint8_t *out);
/* secret as 2 * CLLM_DIST_SECRET_BYTES lowercase hex digits + NUL into hex
 * (at least 65 bytes): the CLLM_DIST_SECRET format. */
void cllm_dist_secret_hex(const uint8_t *secret, char *hex);

#endif
