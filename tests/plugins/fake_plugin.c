/* fake_plugin.c - stand-ins for libfmd-cuda.so, built by tests/cuda.cmake in
 * several variants (FAKE_MODE) to drive the plugin loader's error paths on a
 * machine without a GPU:
 *   1 ABI_CHECK  - a plugin built for ABI FMDB_ABI_VERSION+1 that checks the
 *                  requested ABI as the real plugin does (returns VERSION);
 *   2 ABI_FILL   - a plugin of another ABI that does not check and fills
 *                  ops->abi_version = FMDB_ABI_VERSION+1 (the loader must refuse it);
 *   3 NO_GPU     - answers BACKEND_UNAVAILABLE with a message, as the real
 *                  plugin does on a machine without a GPU;
 *   4 NO_SYMBOL  - a shared object that exports no entry point. */
#include <stdio.h>
#include <string.h>
#include "backend.h"

#define EXPORT __attribute__((visibility("default")))

#if FAKE_MODE == 1
EXPORT fmd_status fmd_backend_plugin_open(uint32_t abi, fmd_backend *be)
{
    const uint32_t mine = FMDB_ABI_VERSION + 1;
    if (abi != mine) {
        snprintf(be->errmsg, sizeof be->errmsg, "fake plugin: ABI %u requested, plugin implements %u",
                 abi, mine);
        return FMD_ERR_VERSION;
    }
    return FMD_ERR_INTERNAL;
}
#elif FAKE_MODE == 2
static void fake_destroy(fmd_backend *be) { be->ctx = NULL; }
static fmd_backend_ops fake_ops;
EXPORT fmd_status fmd_backend_plugin_open(uint32_t abi, fmd_backend *be)
{
    memset(&fake_ops, 0, sizeof fake_ops);
    fake_ops.abi_version = FMDB_ABI_VERSION + 1;
    fake_ops.struct_size = (uint32_t)sizeof fake_ops;
    fake_ops.destroy = fake_destroy;
    be->ops = &fake_ops;
    be->ctx = NULL;
    snprintf(be->name, sizeof be->name, "cuda");
    snprintf(be->device, sizeof be->device, "fake device of another ABI");
    return FMD_OK;
}
#elif FAKE_MODE == 3
EXPORT fmd_status fmd_backend_plugin_open(uint32_t abi, fmd_backend *be)
{
    snprintf(be->errmsg, sizeof be->errmsg, "fake plugin: no CUDA-capable device is detected");
    return FMD_ERR_BACKEND_UNAVAILABLE;
}
#else
EXPORT int fmd_fake_plugin_without_entry_point(void) { return 4; }
#endif
