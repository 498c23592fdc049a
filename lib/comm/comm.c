/* comm.c - fmd_comm: the single process ("none") or a transport plugin
 * loaded at run time (lib/comm/comm_plugin.h; libfmd-mpi.so), its option
 * table, and the collectives the trainers use (comm.h). */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "api/option_tables.h"
#include "comm/comm.h"
#include "comm/comm_plugin.h"
#include "util/optable.h"
#include "util/util.h"

struct fmd_comm {
    int rank, size;
    fmd_comm_plugin p;      /* zero for "none"                                  */
    int plugin;             /* 1: p is live                                     */
    char kind[8];
    char desc[160];
    float *stage;           /* host staging of device buffers (non-CPU backends) */
    int64_t stage_n;
};

typedef struct comm_config {
    const char *plugin;
} comm_config;

#define OPT_CFG comm_config
static const opt_spec k_spec[] = {
    OPT_STRING("plugin", plugin, 0, NULL,
               "the transport plugin (libfmd-mpi.so) or its folder; default: FMD_COMM_PATH, the folder of libfmd, then the loader's search"),
};
#undef OPT_CFG
const opt_table opt_table_comm = OPT_TABLE("comm", "fmd_comm_open", k_spec, NULL);

#define MPI_PLUGIN "libfmd-mpi.so"

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void *try_open(const char *dir_or_file, char *tried, size_t len)
{
    char path[1024];
    if (is_dir(dir_or_file)) snprintf(path, sizeof path, "%s/%s", dir_or_file, MPI_PLUGIN);
    else snprintf(path, sizeof path, "%s", dir_or_file);
    /* RTLD_GLOBAL: Open MPI's own components (dlopen'ed by libmpi) resolve
     * libmpi's symbols through the global scope */
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    size_t n = strlen(tried);
    snprintf(tried + n, len - n, "%s%s (%s)", n ? "; " : "", path, h ? "ok" : dlerror());
    return h;
}

/* Candidates, in order: option plugin, FMD_COMM_PATH (file or folder), the
 * folder libfmd was loaded from, the loader's search. */
static void *load_plugin(const char *opt, char *tried, size_t len)
{
    void *h = NULL;
    tried[0] = '\0';
    if (opt && *opt) return try_open(opt, tried, len);
    const char *env = getenv("FMD_COMM_PATH");
    if (env && *env && (h = try_open(env, tried, len))) return h;
    Dl_info info;
    if (dladdr((void *)&fmd_comm_open, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
            if ((h = try_open(dir, tried, len))) return h;
        }
    }
    return try_open(MPI_PLUGIN, tried, len);
}

/* The process was started by an MPI launcher (Open MPI, PMI, PMIx). */
static int launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                       "PMI_RANK", "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return 1;
    }
    return 0;
}

fmd_status fmd_comm_open(const char *kind, const fmd_options *opts, fmd_comm **out)
{
    const char *fn = "fmd_comm_open";
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    *out = NULL;
    const char *want = kind && *kind ? kind : "auto";
    int is_mpi = strcmp(want, "mpi") == 0, is_none = strcmp(want, "none") == 0;
    if (strcmp(want, "auto") == 0) {
        is_mpi = launched_by_mpi();
        is_none = !is_mpi;
    }
    FMD_CHECK_ARG(is_mpi || is_none, "%s: unknown communicator kind '%.40s' (expected mpi, none or "
                  "auto)", fn, want);
    comm_config cfg;
    opt_defaults(&opt_table_comm, &cfg);
    fmd_status st = opt_apply(&opt_table_comm, opts, &cfg, NULL);
    if (st) return st;
    fmd_comm *c = fmd_xcalloc(1, sizeof *c, "fmd_comm");
    if (!c) return FMD_ERR_OOM;
    c->size = 1;
    if (is_none) {
        snprintf(c->kind, sizeof c->kind, "none");
        snprintf(c->desc, sizeof c->desc, "none: one process");
        *out = c;
        return FMD_OK;
    }
    snprintf(c->kind, sizeof c->kind, "mpi");
    char tried[4096];
    void *h = load_plugin(cfg.plugin, tried, sizeof tried);
    if (!h) {
        fmd_free(c);
        return fmd_seterr(FMD_ERR_BACKEND_UNAVAILABLE, "%s: the MPI transport %s could not be "
                          "loaded (libfmd is built without MPI, or Open MPI is not installed); "
                          "tried: %s", fn, MPI_PLUGIN, tried);
    }
    fmd_comm_plugin_open_fn open_fn;
    *(void **)&open_fn = dlsym(h, FMD_COMM_PLUGIN_SYMBOL);
    if (!open_fn) {
        fmd_free(c);
        return fmd_seterr(FMD_ERR_BACKEND_UNAVAILABLE, "%s: %s has no symbol %s (not a libfmd "
                          "transport?)", fn, MPI_PLUGIN, FMD_COMM_PLUGIN_SYMBOL);
    }
    /* the plugin stays loaded: MPI cannot be unloaded and initialised again */
    char err[256] = "";
    c->p.struct_size = sizeof c->p;
    if (open_fn(FMD_COMM_ABI_VERSION, "mpi", &c->p, err, sizeof err) != 0) {
        fmd_free(c);
        return fmd_seterr(FMD_ERR_BACKEND_UNAVAILABLE, "%s: mpi: %s", fn, err);
    }
    if (c->p.abi_version != FMD_COMM_ABI_VERSION || c->p.struct_size < sizeof c->p) {
        unsigned v = c->p.abi_version;
        if (c->p.close) c->p.close(&c->p);
        fmd_free(c);
        return fmd_seterr(FMD_ERR_VERSION, "%s: %s has ABI version %u, this libfmd needs %u", fn,
                          MPI_PLUGIN, v, FMD_COMM_ABI_VERSION);
    }
    c->plugin = 1;
    c->rank = c->p.rank;
    c->size = c->p.size;
    snprintf(c->desc, sizeof c->desc, "%s", c->p.desc);
    *out = c;
    return FMD_OK;
}

int fmd_comm_rank(const fmd_comm *c) { return c ? c->rank : 0; }
int fmd_comm_size(const fmd_comm *c) { return c ? c->size : 1; }
const char *fmd_comm_describe(const fmd_comm *c) { return c ? c->desc : ""; }

fmd_status fmd_comm_barrier(fmd_comm *c)
{
    FMD_CHECK_ARG(c, "fmd_comm_barrier: comm is NULL");
    if (c->plugin && c->p.barrier(&c->p))
        return fmd_seterr(FMD_ERR_INTERNAL, "fmd_comm_barrier: %s", c->p.errmsg);
    return FMD_OK;
}

void fmd_comm_abort(fmd_comm *c, int code)
{
    if (c && c->plugin) c->p.abort(&c->p, code);
    exit(code);
}

void fmd_comm_close(fmd_comm *c)
{
    if (!c) return;
    if (c->plugin) c->p.close(&c->p);
    fmd_free(c->stage);
    fmd_free(c);
}

/* ---- collectives of the trainers ------------------------------------------------- */

int comm_parallel(const fmd_comm *c) { return c && c->size > 1; }

static fmd_status failed(fmd_comm *c, const char *what)
{
    return fmd_seterr(FMD_ERR_INTERNAL, "communicator (rank %d of %d): %s failed: %s", c->rank,
                      c->size, what, c->p.errmsg);
}

fmd_status comm_sum_f64(fmd_comm *c, double *buf, int64_t n)
{
    if (!comm_parallel(c) || n <= 0) return FMD_OK;
    return c->p.sum_f64(&c->p, buf, n) ? failed(c, "sum") : FMD_OK;
}

fmd_status comm_sum_f32(fmd_comm *c, float *buf, int64_t n)
{
    if (!comm_parallel(c) || n <= 0) return FMD_OK;
    return c->p.sum_f32(&c->p, buf, n) ? failed(c, "sum") : FMD_OK;
}

fmd_status comm_bcast(fmd_comm *c, void *buf, int64_t bytes)
{
    if (!comm_parallel(c) || bytes <= 0) return FMD_OK;
    return c->p.bcast(&c->p, buf, bytes, 0) ? failed(c, "broadcast") : FMD_OK;
}

static int host_memory(const fmd_backend *be) { return strcmp(be->name, "cpu") == 0; }

static float *stage(fmd_comm *c, int64_t n)
{
    if (c->stage_n >= n) return c->stage;
    float *p = fmd_malloc((size_t)n * sizeof(float));
    if (!p) return NULL;
    fmd_free(c->stage);
    c->stage = p;
    c->stage_n = n;
    return p;
}

/* op 0: sum, 1: broadcast from rank 0, on n floats of be's memory */
static fmd_status dev_collective(fmd_comm *c, fmd_backend *be, float *dev, int64_t n, int op)
{
    if (!comm_parallel(c) || n <= 0) return FMD_OK;
    fmd_status st = be->ops->sync(be);
    if (st) return fmd_seterr(st, "communicator: %s", be->errmsg);
    float *h = dev;
    if (!host_memory(be)) {
        if (!(h = stage(c, n)))
            return fmd_seterr(FMD_ERR_OOM, "communicator: out of memory staging %lld floats",
                              (long long)n);
        be->ops->download(be, h, dev, (size_t)n * sizeof(float));
        if ((st = be->ops->sync(be))) return fmd_seterr(st, "communicator: %s", be->errmsg);
    }
    st = op == 0 ? comm_sum_f32(c, h, n) : comm_bcast(c, h, n * (int64_t)sizeof(float));
    if (st || h == dev) return st;
    be->ops->upload(be, dev, h, (size_t)n * sizeof(float));
    return be->ops->sync(be);
}

fmd_status comm_sum_dev(fmd_comm *c, fmd_backend *be, float *dev, int64_t n)
{
    return dev_collective(c, be, dev, n, 0);
}

fmd_status comm_bcast_dev(fmd_comm *c, fmd_backend *be, float *dev, int64_t n)
{
    return dev_collective(c, be, dev, n, 1);
}

fmd_status comm_hash_dev(fmd_backend *be, const float *dev, int64_t n, uint64_t *hash)
{
    const float *h = dev;
    float *tmp = NULL;
    fmd_status st = be->ops->sync(be);
    if (st) return st;
    if (!host_memory(be)) {
        if (!(tmp = fmd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float))))
            return fmd_seterr(FMD_ERR_OOM, "communicator: out of memory for a checksum");
        be->ops->download(be, tmp, dev, (size_t)n * sizeof(float));
        if ((st = be->ops->sync(be))) {
            fmd_free(tmp);
            return st;
        }
        h = tmp;
    }
    uint64_t x = 1469598103934665603ull;
    const unsigned char *b = (const unsigned char *)h;
    for (size_t i = 0; i < (size_t)n * sizeof(float); i++) x = (x ^ b[i]) * 1099511628211ull;
    fmd_free(tmp);
    *hash = x;
    return FMD_OK;
}

fmd_status comm_same_everywhere(fmd_comm *c, uint64_t h, int *nbad)
{
    *nbad = 0;
    if (!comm_parallel(c)) return FMD_OK;
    uint64_t root = h;
    fmd_status st = comm_bcast(c, &root, sizeof root);
    double bad = root != h ? 1.0 : 0.0;
    if (!st) st = comm_sum_f64(c, &bad, 1);
    if (!st) *nbad = (int)bad;
    return st;
}
