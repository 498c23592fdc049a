/* make_seeds.c - writes the seed corpus of the fuzz targets (small valid
 * .fmd and safetensors files):  make_seeds DIR_FMD DIR_SAFETENSORS */
#include <stdio.h>
#include <string.h>
#include "io/fmdfile.h"
#include "io/safetensors.h"

static int fmd_seed(const char *path, int level, int shuffle, int with_meta)
{
    fmdf_writer *w;
    if (fmdf_writer_begin(path, &w)) return 1;
    float f[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int32_t i[3] = {1, -1, 65536};
    uint8_t u[4] = {0, 1, 254, 255};
    double d[2] = {0.5, -1e100};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[1] = {4}, s211[3] = {2, 1, 1};
    fmdf_writer_set_level(w, level);
    fmdf_writer_set_shuffle(w, shuffle);
    if (with_meta) {
        fmdf_writer_add_meta(w, "format", "libfmd");
        fmdf_writer_add_meta(w, "arch", "mlp");
        fmdf_writer_add_meta_i64(w, "dim", 2);
        fmdf_writer_add_meta_f64(w, "time_scale", 30);
    }
    fmdf_writer_add_tensor(w, "w", FMDF_F32, 2, s23, f);
    fmdf_writer_add_tensor(w, "i", FMDF_I32, 1, s3, i);
    fmdf_writer_add_tensor(w, "u", FMDF_U8, 1, s4, u);
    fmdf_writer_add_tensor(w, "d", FMDF_F64, 3, s211, d);
    fmdf_writer_add_tensor(w, "scalar", FMDF_F32, 0, NULL, f);
    return fmdf_writer_commit(w) != FMD_OK;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds DIR_FMD DIR_SAFETENSORS\n");
        return 2;
    }
    char p[4096];
    int bad = 0;
    snprintf(p, sizeof p, "%s/deflate.fmd", argv[1]);
    bad += fmd_seed(p, 6, 0, 1);
    snprintf(p, sizeof p, "%s/shuffled.fmd", argv[1]);
    bad += fmd_seed(p, 1, 1, 1);
    snprintf(p, sizeof p, "%s/stored.fmd", argv[1]);
    bad += fmd_seed(p, 0, 0, 0);
    fmdf_writer *w;
    snprintf(p, sizeof p, "%s/empty.fmd", argv[1]);
    if (fmdf_writer_begin(p, &w) || fmdf_writer_commit(w)) bad++;
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.25f};
    int64_t s23[2] = {2, 3}, s2[1] = {2};
    st_entry e[2] = {{"layer.weight", 2, s23, a}, {"layer.bias", 1, s2, b}};
    const char *meta[2] = {"format", "pt"};
    snprintf(p, sizeof p, "%s/two.safetensors", argv[2]);
    bad += st_write(p, e, 2, meta, 1) != FMD_OK;
    snprintf(p, sizeof p, "%s/one.safetensors", argv[2]);
    bad += st_write(p, e + 1, 1, NULL, 0) != FMD_OK;
    return bad != 0;
}
