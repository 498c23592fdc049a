/* comm_plugin.h - the ABI between libfmd and a transport plugin
 * (libfmd-mpi.so, plugins/mpi).  libfmd never links a transport: it
 * dlopen()s the plugin (lib/comm/comm.c) and calls its one exported symbol,
 * FMD_COMM_PLUGIN_SYMBOL, which fills this table.  The plugin sees only this
 * header (no libfmd symbol), so it can be built and loaded on its own.
 *
 * Every operation works on host memory and returns 0 on success, else
 * non-zero with a message in errmsg.  sum_f32 / sum_f64 leave on every rank
 * the same, bit-identical sums (the MPI plugin reduces to rank 0 and
 * broadcasts, so all ranks hold one rounding of the sum and their weights
 * stay identical). */
#ifndef FMD_COMM_PLUGIN_H
#define FMD_COMM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define FMD_COMM_ABI_VERSION 1u
#define FMD_COMM_PLUGIN_SYMBOL "fmd_comm_plugin_open"

typedef struct fmd_comm_plugin {
    uint32_t abi_version;   /* FMD_COMM_ABI_VERSION                               */
    uint32_t struct_size;   /* sizeof(fmd_comm_plugin) of the implementer         */
    void *ctx;              /* plugin-private                                      */
    int rank, size;         /* this process's rank and the world size              */
    int local_rank;         /* rank among the processes of this host               */
    char desc[128];         /* e.g. "mpi: Open MPI v4.1.4, 2 ranks"                */
    char errmsg[256];       /* message of the last failed operation                */
    /* buf[0..n) = sum over the ranks of buf[0..n) (in place) */
    int (*sum_f32)(struct fmd_comm_plugin *p, float *buf, int64_t n);
    int (*sum_f64)(struct fmd_comm_plugin *p, double *buf, int64_t n);
    /* buf[0..bytes) of rank root to every rank */
    int (*bcast)(struct fmd_comm_plugin *p, void *buf, int64_t bytes, int root);
    int (*barrier)(struct fmd_comm_plugin *p);
    /* end every process of the job with exit status code (does not return) */
    void (*abort)(struct fmd_comm_plugin *p, int code);
    /* finalise (when the plugin initialised the transport) and free ctx */
    void (*close)(struct fmd_comm_plugin *p);
} fmd_comm_plugin;

/* Fill *out (zeroed by the caller, struct_size set) for the transport kind
 * ("mpi").  Returns 0, or non-zero with a message in err (errlen bytes). */
typedef int (*fmd_comm_plugin_open_fn)(uint32_t abi_version, const char *kind,
                                       fmd_comm_plugin *out, char *err, size_t errlen);

#endif
