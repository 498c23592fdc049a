/* fuzz_teacher_st.c - libFuzzer target for the safetensors teacher
 * (fmd_teacher_load_safetensors) on the CPU backend: the first input byte
 * picks the architecture - an MLP (dim 2, width 8, depth 1, temb_dim 8) or
 * a small DiT (input 4, patch 2, 2 channels, hidden 8, 2 heads, depth 1) -
 * the rest is the file.  A loaded teacher is asked for one velocity. */
#include "fuzz_memfile.h"
#include "fmd.h"

static fmd_backend *be;
static fmd_options *opt[2];

static void setup(void)
{
    if (fmd_backend_open("cpu", &be) != FMD_OK) return;
    fmd_options_create(&opt[0]);
    fmd_options_set_i64(opt[0], "dim", 2);
    fmd_options_set_i64(opt[0], "width", 8);
    fmd_options_set_i64(opt[0], "depth", 1);
    fmd_options_set_i64(opt[0], "temb_dim", 8);
    fmd_options_create(&opt[1]);
    fmd_options_set_i64(opt[1], "input_size", 4);
    fmd_options_set_i64(opt[1], "patch_size", 2);
    fmd_options_set_i64(opt[1], "in_channels", 2);
    fmd_options_set_i64(opt[1], "hidden_size", 8);
    fmd_options_set_i64(opt[1], "num_heads", 2);
    fmd_options_set_i64(opt[1], "depth", 1);
    fmd_options_set_i64(opt[1], "temb_dim", 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!be) setup();
    if (!be || size < 1) return 0;
    const int dit = data[0] & 1;
    char path[64];
    int fd = fuzz_memfile(data + 1, size - 1, path, sizeof path);
    if (fd < 0) return 0;
    fmd_teacher *T = NULL;
    if (fmd_teacher_load_safetensors(be, path, dit ? "dit" : "mlp", opt[dit], &T) == FMD_OK) {
        float x[32] = {0}, v[32], t = 0.5f;
        (void)fmd_teacher_velocity(T, v, x, &t, NULL, 1);
    }
    fmd_teacher_destroy(T);
    close(fd);
    return 0;
}
