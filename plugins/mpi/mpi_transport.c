/* mpi_transport.c - libfmd-mpi.so, the MPI transport of fmd_comm
 * (lib/comm/comm_plugin.h).  It links libmpi; libfmd does not, and loads
 * this file only when fmd_comm_open("mpi") asks for it.
 *
 * Sums are MPI_Reduce to rank 0 followed by MPI_Bcast, so every rank holds
 * the same rounding of the sum (MPI_Allreduce does not promise bit-identical
 * results across ranks); buffers longer than INT_MAX elements go in chunks.
 * MPI_COMM_WORLD keeps MPI's default error handler (MPI_ERRORS_ARE_FATAL):
 * a failed or vanished peer ends the job instead of leaving ranks waiting.
 * Several communicators may be open at once (they share MPI_COMM_WORLD); MPI
 * is finalised when the last one that this plugin started closes. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm/comm_plugin.h"

typedef struct {
    int unused;
} mpi_ctx;

/* Communicators open in this process, and whether this plugin initialised
 * MPI (then the last close finalises it). */
static int g_open, g_we_initialised;

static int chunk(int64_t n) { return n > (INT_MAX / 8) ? INT_MAX / 8 : (int)n; }

static int fail(fmd_comm_plugin *p, const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    snprintf(p->errmsg, sizeof p->errmsg, "%s: %.*s", what, len, s);
    return 1;
}

static int sum_any(fmd_comm_plugin *p, void *buf, int64_t n, MPI_Datatype type, size_t esz)
{
    char *b = buf;
    for (int64_t off = 0; off < n;) {
        int k = chunk(n - off);
        void *at = b + (size_t)off * esz;
        int rc = MPI_Reduce(p->rank == 0 ? MPI_IN_PLACE : at, p->rank == 0 ? at : NULL, k, type,
                            MPI_SUM, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return fail(p, "MPI_Reduce", rc);
        rc = MPI_Bcast(at, k, type, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return fail(p, "MPI_Bcast", rc);
        off += k;
    }
    return 0;
}

static int sum_f32(fmd_comm_plugin *p, float *buf, int64_t n)
{
    return sum_any(p, buf, n, MPI_FLOAT, sizeof(float));
}

static int sum_f64(fmd_comm_plugin *p, double *buf, int64_t n)
{
    return sum_any(p, buf, n, MPI_DOUBLE, sizeof(double));
}

static int bcast(fmd_comm_plugin *p, void *buf, int64_t bytes, int root)
{
    char *b = buf;
    for (int64_t off = 0; off < bytes;) {
        int k = chunk(bytes - off);
        int rc = MPI_Bcast(b + off, k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return fail(p, "MPI_Bcast", rc);
        off += k;
    }
    return 0;
}

static int barrier(fmd_comm_plugin *p)
{
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : fail(p, "MPI_Barrier", rc);
}

static void do_abort(fmd_comm_plugin *p, int code)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void do_close(fmd_comm_plugin *p)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (p->ctx && --g_open == 0 && g_we_initialised && !fin) MPI_Finalize();
    free(p->ctx);
    p->ctx = NULL;
}

__attribute__((visibility("default"))) int fmd_comm_plugin_open(uint32_t abi, const char *kind,
                                                                fmd_comm_plugin *p, char *err,
                                                                size_t errlen)
{
    if (abi != FMD_COMM_ABI_VERSION) {
        snprintf(err, errlen, "libfmd-mpi.so speaks transport ABI %u, libfmd %u",
                 FMD_COMM_ABI_VERSION, abi);
        return 1;
    }
    if (!kind || strcmp(kind, "mpi") != 0) {
        snprintf(err, errlen, "libfmd-mpi.so serves 'mpi', not '%s'", kind ? kind : "(null)");
        return 1;
    }
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) {
        snprintf(err, errlen, "MPI was finalised in this process and cannot start again (open one "
                 "communicator per process and close it at the end)");
        return 1;
    }
    mpi_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            free(c);
            snprintf(err, errlen, "MPI_Init_thread failed (%d)", rc);
            return 1;
        }
        g_we_initialised = 1;
    }
    g_open++;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &p->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &p->size);
    MPI_Comm local;
    p->local_rank = 0;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, p->rank, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(local, &p->local_rank);
        MPI_Comm_free(&local);
    }
    char ver[MPI_MAX_LIBRARY_VERSION_STRING];
    int vlen = 0;
    MPI_Get_library_version(ver, &vlen);
    char *nl = strchr(ver, ',');
    if (nl) *nl = '\0';
    p->abi_version = FMD_COMM_ABI_VERSION;
    p->struct_size = sizeof *p;
    p->ctx = c;
    snprintf(p->desc, sizeof p->desc, "mpi: %.80s, rank %d of %d", ver, p->rank, p->size);
    p->sum_f32 = sum_f32;
    p->sum_f64 = sum_f64;
    p->bcast = bcast;
    p->barrier = barrier;
    p->abort = do_abort;
    p->close = do_close;
    return 0;
}
