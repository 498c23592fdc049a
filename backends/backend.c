/* backend.c - the backend registry: opening "cpu", "cuda" (a dlopen'ed
 * plugin) or "auto", and the handle's accessors. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "backend.h"
#include "util/util.h"

static const char *const k_names[] = {"cpu", "cuda"};
#define PLUGIN_FILE "libfmd-cuda.so"

int fmd_backend_count(void) { return (int)(sizeof k_names / sizeof k_names[0]); }

const char *fmd_backend_name_at(int i)
{
    return (i >= 0 && i < fmd_backend_count()) ? k_names[i] : NULL;
}

static fmd_backend *new_handle(void)
{
    fmd_backend *be = fmd_xcalloc(1, sizeof *be, "fmd_backend");
    if (be) be->status = FMD_OK;
    return be;
}

fmd_status fmdb_open_reference(fmd_backend **out)
{
    fmd_backend *be = new_handle();
    if (!be) return FMD_ERR_OOM;
    fmdb_ref_open(be);
    *out = be;
    return FMD_OK;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Candidate plugin paths, in order: FMD_BACKEND_PATH (file or directory),
 * the directory libfmd itself was loaded from, then the loader's search. */
static void *load_plugin(char *tried, size_t tried_len)
{
    char path[1024];
    void *h = NULL;
    tried[0] = '\0';
    const char *env = getenv("FMD_BACKEND_PATH");
    if (env && *env) {
        if (is_dir(env)) snprintf(path, sizeof path, "%s/%s", env, PLUGIN_FILE);
        else snprintf(path, sizeof path, "%s", env);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        snprintf(tried + strlen(tried), tried_len - strlen(tried), "%s (%s)", path, h ? "ok" : dlerror());
        if (h) return h;
    }
    Dl_info info;
    if (dladdr((void *)&fmd_backend_open, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) {
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, PLUGIN_FILE);
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            size_t n = strlen(tried);
            snprintf(tried + n, tried_len - n, "%s%s (%s)", n ? "; " : "", path, h ? "ok" : dlerror());
            if (h) return h;
        }
    }
    h = dlopen(PLUGIN_FILE, RTLD_NOW | RTLD_LOCAL);
    size_t n = strlen(tried);
    snprintf(tried + n, tried_len - n, "%s%s (%s)", n ? "; " : "", PLUGIN_FILE, h ? "ok" : dlerror());
    return h;
}

static fmd_status open_cuda(fmd_backend *be)
{
    char tried[4096];
    void *h = load_plugin(tried, sizeof tried);
    if (!h)
        return fmd_seterr(FMD_ERR_BACKEND_UNAVAILABLE,
                          "fmd_backend_open: the CUDA plugin %s could not be loaded; tried: %s", PLUGIN_FILE,
                          tried);
    fmd_backend_plugin_open_fn fn;
    *(void **)&fn = dlsym(h, FMDB_PLUGIN_SYMBOL);
    if (!fn) {
        dlclose(h);
        return fmd_seterr(FMD_ERR_BACKEND_UNAVAILABLE, "fmd_backend_open: %s has no symbol %s (not a libfmd "
                          "plugin?)", PLUGIN_FILE, FMDB_PLUGIN_SYMBOL);
    }
    fmd_status st = fn(FMDB_ABI_VERSION, be);
    if (st != FMD_OK) {
        fmd_status ret = fmd_seterr(st, "fmd_backend_open: cuda: %s", be->errmsg[0] ? be->errmsg : fmd_status_string(st));
        dlclose(h);
        return ret;
    }
    if (!be->ops || be->ops->abi_version != FMDB_ABI_VERSION || be->ops->struct_size < sizeof(fmd_backend_ops)) {
        unsigned v = be->ops ? be->ops->abi_version : 0;
        if (be->ops && be->ops->destroy) be->ops->destroy(be);
        dlclose(h);
        return fmd_seterr(FMD_ERR_VERSION, "fmd_backend_open: CUDA plugin ABI version %u, this libfmd needs %u",
                          v, FMDB_ABI_VERSION);
    }
    be->dl_handle = h;
    be->status = FMD_OK;
    be->errmsg[0] = '\0';
    return FMD_OK;
}

fmd_status fmd_backend_open(const char *name, fmd_backend **out)
{
    FMD_CHECK_ARG(out, "fmd_backend_open: out is NULL");
    const char *want = name;
    if (!want) {
        want = getenv("FMD_BACKEND");
        if (!want || !*want) want = "auto";
    }
    int is_cpu = strcmp(want, "cpu") == 0, is_cuda = strcmp(want, "cuda") == 0, is_auto = strcmp(want, "auto") == 0;
    FMD_CHECK_ARG(is_cpu || is_cuda || is_auto,
                  "fmd_backend_open: unknown backend name '%s'%s (expected cpu, cuda or auto)", want,
                  name ? "" : " from FMD_BACKEND");
    fmd_backend *be = new_handle();
    if (!be) return FMD_ERR_OOM;
    fmd_status st;
    if (is_cpu) {
        st = fmdb_cpu_open(be);
    } else {
        st = open_cuda(be);
        if (st != FMD_OK && is_auto) {
            fmd_log(FMD_LOG_INFO, "fmd_backend_open: auto: %s; using the CPU", fmd_last_error());
            memset(be, 0, sizeof *be);
            st = fmdb_cpu_open(be);
            if (st == FMD_OK) fmd_clear_error();
        }
    }
    if (st != FMD_OK) {
        fmd_free(be);
        return st;
    }
    *out = be;
    return FMD_OK;
}

void fmd_backend_destroy(fmd_backend *be)
{
    if (!be) return;
    if (be->ops && be->ops->destroy) be->ops->destroy(be);
    if (be->dl_handle) dlclose(be->dl_handle);
    fmd_free(be);
}

int fmd_backend_available(const char *name)
{
    fmd_backend *be = NULL;
    if (fmd_backend_open(name, &be) != FMD_OK) return 0;
    fmd_backend_destroy(be);
    return 1;
}

const char *fmd_backend_name(const fmd_backend *be) { return be ? be->name : ""; }
const char *fmd_backend_device(const fmd_backend *be) { return be ? be->device : ""; }
int fmd_backend_threads(const fmd_backend *be) { return be ? be->threads : 0; }
