/* Communicator internals shared by comm.c (the common layer) and the
 * transports (comm_tcp.c, comm_nccl.c). Not for callers of comm.h.
 *
 * The common layer owns what every transport needs: argument checks,
 * statistics, the broken/aborted state and split bookkeeping; a transport
 * fills a vtable and keeps its own state behind impl.
 *
 * Failure state is per "family": a world communicator and every
 * communicator split from it (transitively) share one cllm_comm_family.
 * An error or an abort on any member breaks them all (TCP children share the
 * parent's sockets, so a broken stream breaks every member anyway); the
 * first message wins and every later call returns it. */
#ifndef CLLM_DIST_COMM_INTERNAL_H
#define CLLM_DIST_COMM_INTERNAL_H

#include "dist/comm.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct cllm_comm_vtable {
    const char *name; /* cllm_comm_transport: "tcp" | "nccl" */
    bool is_device;   /* buffers are device memory (cllm_comm_is_device) */
    /* Collectives: arguments already checked by comm.c, size > 1 or device
     * memory. Return CLLM_OK or an error with the message set. */
    cllm_status (*all_reduce)(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                              cllm_reduce_op op);
    cllm_status (*all_gather)(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt);
    cllm_status (*reduce_scatter)(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                  cllm_reduce_op op);
    cllm_status (*broadcast)(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int root);
    cllm_status (*send)(cllm_comm *c, const void *buf, size_t count, cllm_dtype dt, int peer);
    cllm_status (*recv)(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int peer);
    cllm_status (*all_to_allv)(cllm_comm *c, const void *send, const size_t *send_counts, const size_t *send_displs,
                               void *recv, const size_t *recv_counts, const size_t *recv_displs, cllm_dtype dt);
    cllm_status (*barrier)(cllm_comm *c);
    cllm_status (*sync)(cllm_comm *c);
    /* Gather every rank's (color, key) pair into ck (2 * size ints, host
     * memory, rank-major), collectively. */
    cllm_status (*gather_color_key)(cllm_comm *c, int color, int key, int *ck);
    /* Make the transport state of child (its common fields already set:
     * rank, size, world_ranks, name, family). color < 0 never reaches it,
     * but the transport is still called (NCCL's split is collective over
     * every rank) through split_none. */
    cllm_status (*split)(cllm_comm *c, int color, int key, cllm_comm *child);
    cllm_status (*split_none)(cllm_comm *c, int key);
    /* Unblock the driving thread (any thread; idempotent). */
    void (*abort)(cllm_comm *c);
    /* See cllm_comm_check_health; any thread. */
    cllm_status (*check_health)(cllm_comm *c);
    /* Free impl (not c). */
    void (*destroy)(cllm_comm *c);
    /* See cllm_comm_set_timeout; NULL: the transport has no per-operation
     * timeout of its own (NCCL: the watchdog times it). */
    void (*set_timeout)(cllm_comm *c, double timeout_s);
} cllm_comm_vtable;

#define CLLM_COMM_FAMILY_MAX 64

typedef struct cllm_comm_family {
    atomic_int broken;
    pthread_mutex_t mu;           /* guards msg and members; freed with the last member */
    char msg[1024];
    cllm_comm *members[CLLM_COMM_FAMILY_MAX];
    int num_members;
} cllm_comm_family;

struct cllm_comm {
    const cllm_comm_vtable *vt;
    void *impl;                   /* transport state */
    char name[16];
    int rank, size, world_rank;
    int *world_ranks;             /* size entries: world rank of each rank */
    cllm_comm *parent;            /* borrowed; NULL for a world communicator */
    atomic_int num_children;
    uint64_t seq;                 /* collectives called so far; during a call, its number (from 1); point to
                                   * point messages are numbered per pair by the transport instead */
    uint16_t tag;                 /* identifies this communicator in message headers */
    uint16_t num_splits;          /* splits made from it, for the children's tags */
    cllm_comm_family *family;
    pthread_mutex_t stats_mu;
    cllm_comm_op_stats ops[CLLM_COMM_NUM_OPS];
};

/* Allocate a communicator with its common fields (rank, size, name,
 * world_ranks copied) as a member of a new family (family == NULL) or of
 * family. Returns NULL with an error message set. */
cllm_comm *cllm_comm_alloc(const cllm_comm_vtable *vt, const char *name, int rank, int size, const int *world_ranks,
                           cllm_comm_family *family);
/* Free what cllm_comm_alloc made (not impl). */
void cllm_comm_free(cllm_comm *c);

/* Bytes of dt, 0 for dtypes the communicator does not take. */
size_t cllm_comm_dtype_size(cllm_dtype dt);

#endif
