/* comm.h - the communicator inside libfmd (the public handle fmd_comm is
 * declared in include/fmd.h; lib/comm/comm.c implements both).
 *
 * A communicator is "none" (one process: rank 0 of 1, every collective a
 * no-op) or a transport plugin (comm_plugin.h) loaded at run time.  The
 * trainers (lib/algo/freeflow.c, flowmatch.c) call the helpers below; a NULL
 * communicator is the single process.  Device buffers of a non-CPU backend
 * are staged through a host buffer the communicator keeps. */
#ifndef FMD_COMM_COMM_H
#define FMD_COMM_COMM_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"

/* 1 when c has more than one rank (NULL: 0). */
int comm_parallel(const fmd_comm *c);
/* Sums over the ranks, in place, of n host numbers; bit-identical on every
 * rank.  NULL or single-rank c: nothing.  Errors: FMD_ERR_INTERNAL naming
 * the transport's message. */
fmd_status comm_sum_f64(fmd_comm *c, double *buf, int64_t n);
fmd_status comm_sum_f32(fmd_comm *c, float *buf, int64_t n);
/* The same on n floats in be's memory (staged through host memory when be
 * is not the CPU).  Synchronises be. */
fmd_status comm_sum_dev(fmd_comm *c, fmd_backend *be, float *dev, int64_t n);
/* bytes of rank 0's host buffer / n floats of its device buffer to every rank. */
fmd_status comm_bcast(fmd_comm *c, void *buf, int64_t bytes);
fmd_status comm_bcast_dev(fmd_comm *c, fmd_backend *be, float *dev, int64_t n);
/* A 64-bit hash of the bits of n floats in be's memory (FNV-1a). */
fmd_status comm_hash_dev(fmd_backend *be, const float *dev, int64_t n, uint64_t *hash);
/* 1 when every rank's h equals rank 0's; *nbad = the number of ranks that
 * differ (the same on every rank).  Errors: the transport's. */
fmd_status comm_same_everywhere(fmd_comm *c, uint64_t h, int *nbad);

#endif
