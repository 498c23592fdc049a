/* test_cuda_plugin.c - the plugin loader and the CUDA plugin's entry point.
 *
 * Runs everywhere.  Without a GPU it still checks what a user meets there:
 * a missing plugin, a plugin of another ABI, a shared object that is no
 * plugin, a plugin that finds no GPU ("auto" falls back to the CPU), and the
 * real libfmd-cuda.so (when it was built) refusing a wrong ABI and reporting
 * "no GPU" with the CUDA message.  With a GPU the real plugin must open, say
 * "cuda", and produce the CPU's Philox numbers bit for bit.
 *
 * The fake plugins come from tests/plugins/fake_plugin.c (tests/cuda.cmake). */
#include <dlfcn.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "testutil.h"
#include "util/philox.h"

#ifndef FMD_FAKE_PLUGIN_DIR
#error "FMD_FAKE_PLUGIN_DIR is set by tests/cuda.cmake"
#endif

static char path_buf[4096];

static const char *fake(const char *variant)
{
    snprintf(path_buf, sizeof path_buf, "%s/libfmd-fake-%s.so", FMD_FAKE_PLUGIN_DIR, variant);
    return path_buf;
}

/* Open `name` with FMD_BACKEND_PATH=path; the backend (if any) is destroyed. */
static fmd_status open_with(const char *path, const char *name, char *got_name, size_t got_len)
{
    setenv("FMD_BACKEND_PATH", path, 1);
    fmd_backend *be = NULL;
    fmd_status st = fmd_backend_open(name, &be);
    if (got_name) snprintf(got_name, got_len, "%s", be ? fmd_backend_name(be) : "");
    if (st == FMD_OK) CHECK(be != NULL);
    else CHECK(be == NULL);
    fmd_backend_destroy(be);
    return st;
}

static void check_missing(void)
{
    const char *paths[] = {"/nonexistent-fmd-dir/libfmd-cuda.so", "/nonexistent-fmd-dir"};
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(open_with(paths[i], "cuda", NULL, 0), FMD_ERR_BACKEND_UNAVAILABLE);
        CHECK_MSG(strstr(fmd_last_error(), "/nonexistent-fmd-dir") != NULL,
                  "message should name the path looked at: '%s'", fmd_last_error());
        char nm[16];
        CHECK_OK(open_with(paths[i], "auto", nm, sizeof nm));
        CHECK_MSG(strcmp(nm, "cpu") == 0, "auto without a plugin should give cpu, got '%s'", nm);
    }
}

static void check_fakes(void)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", fake("abi_check"));
    CHECK_STATUS(open_with(p, "cuda", NULL, 0), FMD_ERR_VERSION);
    CHECK_MSG(strstr(fmd_last_error(), "ABI") != NULL, "plugin's ABI message lost: '%s'", fmd_last_error());

    snprintf(p, sizeof p, "%s", fake("abi_fill"));
    CHECK_STATUS(open_with(p, "cuda", NULL, 0), FMD_ERR_VERSION);
    CHECK_MSG(strlen(fmd_last_error()) > 0, "empty message for an ABI mismatch");

    snprintf(p, sizeof p, "%s", fake("no_symbol"));
    CHECK_STATUS(open_with(p, "cuda", NULL, 0), FMD_ERR_BACKEND_UNAVAILABLE);
    CHECK_MSG(strstr(fmd_last_error(), p) != NULL || strstr(fmd_last_error(), FMDB_PLUGIN_SYMBOL) != NULL,
              "message should name the plugin or the missing symbol: '%s'", fmd_last_error());

    snprintf(p, sizeof p, "%s", fake("no_gpu"));
    CHECK_STATUS(open_with(p, "cuda", NULL, 0), FMD_ERR_BACKEND_UNAVAILABLE);
    CHECK_MSG(strstr(fmd_last_error(), "no CUDA-capable device") != NULL,
              "plugin's message lost: '%s'", fmd_last_error());
    char nm[16];
    CHECK_OK(open_with(p, "auto", nm, sizeof nm));
    CHECK_MSG(strcmp(nm, "cpu") == 0, "auto with a GPU-less plugin should give cpu, got '%s'", nm);
    /* FMD_BACKEND chooses when the name is NULL */
    setenv("FMD_BACKEND", "cuda", 1);
    CHECK_STATUS(open_with(p, NULL, NULL, 0), FMD_ERR_BACKEND_UNAVAILABLE);
    unsetenv("FMD_BACKEND");
}

#ifdef FMD_CUDA_PLUGIN_FILE
/* The real plugin's entry point called directly; returns 1 when a GPU
 * answered. */
static int check_real_direct(void)
{
    void *h = dlopen(FMD_CUDA_PLUGIN_FILE, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "dlopen %s: %s", FMD_CUDA_PLUGIN_FILE, dlerror());
    if (!h) return 0;
    fmd_backend_plugin_open_fn open_fn = (fmd_backend_plugin_open_fn)dlsym(h, FMDB_PLUGIN_SYMBOL);
    CHECK(open_fn != NULL);
    if (!open_fn) {
        dlclose(h);
        return 0;
    }
    fmd_backend be;
    memset(&be, 0, sizeof be);
    CHECK_STATUS(open_fn(FMDB_ABI_VERSION + 1, &be), FMD_ERR_VERSION);
    CHECK_MSG(strstr(be.errmsg, "ABI") != NULL, "errmsg '%s'", be.errmsg);
    CHECK(be.ops == NULL && be.ctx == NULL);

    memset(&be, 0, sizeof be);
    fmd_status st = open_fn(FMDB_ABI_VERSION, &be);
    int gpu = st == FMD_OK;
    if (!gpu) {
        CHECK_STATUS(st, FMD_ERR_BACKEND_UNAVAILABLE);
        CHECK_MSG(strncmp(be.errmsg, "no usable GPU: ", 15) == 0 && strlen(be.errmsg) > 30,
                  "no-GPU message should come from the plugin with the CUDA text: '%s'", be.errmsg);
        CHECK(be.ops == NULL && be.ctx == NULL);
        printf("no GPU here: %s\n", be.errmsg);
    } else {
        printf("GPU: %s\n", be.device);
        CHECK(be.ops != NULL && be.ops->abi_version == FMDB_ABI_VERSION);
        CHECK(be.ops->struct_size == sizeof(fmd_backend_ops));
        CHECK(strcmp(be.name, "cuda") == 0);
        CHECK(strncmp(be.device, "cuda: ", 6) == 0);
        CHECK(be.threads == 0);
        /* every slot of this ABI is filled */
        const char *slots = (const char *)be.ops + offsetof(fmd_backend_ops, destroy);
        size_t nslots = (sizeof(fmd_backend_ops) - offsetof(fmd_backend_ops, destroy)) / sizeof(void *);
        for (size_t i = 0; i < nslots; i++) {
            void *fp;
            memcpy(&fp, slots + i * sizeof(void *), sizeof fp);
            CHECK_MSG(fp != NULL, "slot %zu of the CUDA ops is NULL", i);
        }
        /* Philox on the device = Philox on the host, bit for bit (uniforms are exact) */
        const int64_t n = 1001;
        float *d = be.ops->alloc(&be, n * sizeof(float));
        float *hu = malloc(n * sizeof(float));
        if (d && hu) {
            be.ops->fill_uniform(&be, d, n, 42, 7, 13);
            be.ops->download(&be, hu, d, n * sizeof(float));
            int bad = 0;
            for (int64_t i = 0; i < n; i++) bad += hu[i] != fmd_philox_uniform_at(42, 7, 13 + (uint64_t)i);
            CHECK_MSG(bad == 0, "%d of %lld device uniforms differ from the host's", bad, (long long)n);
        }
        CHECK_OK(be.ops->sync(&be));
        /* a failed allocation is an error on the backend, not a crash */
        void *huge = be.ops->alloc(&be, (size_t)1 << 60);
        CHECK(huge == NULL);
        CHECK_STATUS(be.ops->sync(&be), FMD_ERR_OOM);
        CHECK(strstr(be.errmsg, "cudaMalloc") != NULL);
        be.ops->free(&be, d);
        free(hu);
        be.ops->destroy(&be);
        CHECK(be.ctx == NULL);
    }
    dlclose(h);
    return gpu;
}

static void check_real_registry(int gpu)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", FMD_CUDA_PLUGIN_FILE);
    const char *paths[2] = {FMD_CUDA_PLUGIN_FILE, dirname(dir)};
    for (int i = 0; i < 2; i++) {
        char nm[16];
        fmd_status st = open_with(paths[i], "cuda", nm, sizeof nm);
        if (gpu) {
            CHECK_STATUS(st, FMD_OK);
            CHECK_MSG(strcmp(nm, "cuda") == 0, "got '%s'", nm);
        } else {
            CHECK_STATUS(st, FMD_ERR_BACKEND_UNAVAILABLE);
            CHECK_MSG(strstr(fmd_last_error(), "cuda") != NULL, "'%s'", fmd_last_error());
        }
        CHECK_OK(open_with(paths[i], "auto", nm, sizeof nm));
        CHECK_MSG(strcmp(nm, gpu ? "cuda" : "cpu") == 0, "auto gave '%s'", nm);
    }
}
#endif

int main(void)
{
    unsetenv("FMD_BACKEND");
    check_missing();
    check_fakes();
#ifdef FMD_CUDA_PLUGIN_FILE
    int gpu = check_real_direct();
    check_real_registry(gpu);
#else
    printf("libfmd-cuda.so not built here (no nvcc): real-plugin checks not run\n");
#endif
    return tu_finish("test_cuda_plugin");
}
