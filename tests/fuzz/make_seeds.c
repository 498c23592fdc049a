/* make_seeds.c - writes the seed corpus of the fuzz targets (small valid
 * files of each loader):  make_seeds tests/fuzz/corpus
 * (the directories fmd, safetensors, npy, idx, spec, teacher_st and
 * fmd_model must exist). */
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include "api/teacher_internal.h"
#include "fmd.h"
#include "io/fmdfile.h"
#include "io/safetensors.h"
#include "nn/model.h"

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

/* dir/name with prefix bytes (npre) then the content of file src (removed) */
static int prefixed(const char *dir, const char *name, const uint8_t *pre, size_t npre,
                    const char *src)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = fopen(p, "wb");
    int ok = in && out && fwrite(pre, 1, npre, out) == npre;
    int c;
    while (ok && (c = fgetc(in)) != EOF) ok = fputc(c, out) != EOF;
    if (in) fclose(in);
    if (out) ok = fclose(out) == 0 && ok;
    remove(src);
    return !ok;
}

static int write_bytes(const char *dir, const char *name, const void *b, size_t n, int gz)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (gz) {
        gzFile g = gzopen(p, "wb9");
        int ok = g && gzwrite(g, b, (unsigned)n) == (int)n;
        return !(g && gzclose(g) == Z_OK && ok);
    }
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(b, 1, n, f) == n;
    return !(f && fclose(f) == 0 && ok);
}

static int npy_seeds(const char *dir)
{
    char p[4096];
    int bad = 0;
    float f[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int32_t i[3] = {0, 4, 2};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s0[2] = {0, 5};
    snprintf(p, sizeof p, "%s/f4_2x3.npy", dir);
    bad += fmd_npy_save(p, "f4", 2, s23, f) != FMD_OK;
    snprintf(p, sizeof p, "%s/i4_3.npy", dir);
    bad += fmd_npy_save(p, "i4", 1, s3, i) != FMD_OK;
    snprintf(p, sizeof p, "%s/empty.npy", dir);
    bad += fmd_npy_save(p, "f4", 2, s0, f) != FMD_OK;
    return bad;
}

static int idx_seeds(const char *dir)
{
    uint8_t img[16 + 60] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    for (int k = 0; k < 60; k++) img[16 + k] = (uint8_t)(k * 4);
    uint8_t lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 2};
    int bad = write_bytes(dir, "img.idx", img, sizeof img, 0);
    bad += write_bytes(dir, "img.idx.gz", img, sizeof img, 1);
    bad += write_bytes(dir, "lab.idx", lab, sizeof lab, 0);
    bad += write_bytes(dir, "lab.idx.gz", lab, sizeof lab, 1);
    return bad;
}

static int spec_seeds(const char *dir)
{
    const char *a = "dim 2\ncomponent weight=1 std=0.1 mean=1,0\ncomponent weight=2 std=0.2 mean=-1,0.5\n";
    const char *b = "# two classes\ndim 3\nclasses 2\n"
                    "component weight=1 std=0.1 mean=1,0,0 class=0   # first\n"
                    "component weight=3 std=0.2 mean=0,1,0 class=1\n";
    return write_bytes(dir, "plain.spec", a, strlen(a), 0) +
           write_bytes(dir, "classes.spec", b, strlen(b), 0);
}

/* safetensors of the two architectures fuzz_teacher_st builds (first byte
 * 0: mlp, 1: dit), checked to load */
static int st_teacher_seeds(const char *dir, fmd_backend *be)
{
    nn_config c[2];
    memset(c, 0, sizeof c);
    c[0].arch = NN_ARCH_MLP;
    c[0].dim = 2;
    c[0].width = 8;
    c[0].depth = 1;
    c[0].temb_dim = 8;
    c[1].arch = NN_ARCH_DIT;
    c[1].input_size = 4;
    c[1].patch_size = 2;
    c[1].in_channels = 2;
    c[1].hidden_size = 8;
    c[1].num_heads = 2;
    c[1].dit_depth = 1;
    c[1].temb_dim = 8;
    c[1].mlp_ratio = 4;
    c[1].time_scale = 1;
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        nn_model *m = NULL;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s/tmp.safetensors", dir);
        if (nn_model_create(be, &c[k], 5, &m) || st_save_model(m, tmp)) {
            fprintf(stderr, "make_seeds: %s\n", fmd_last_error());
            bad++;
        }
        nn_model_destroy(m);
        uint8_t pre = (uint8_t)k;
        bad += prefixed(dir, k ? "dit.st" : "mlp.st", &pre, 1, tmp);
    }
    return bad;
}

static int fmd_model_seeds(const char *dir, fmd_backend *be)
{
    char p[4096];
    int bad = 0;
    fmd_teacher *T = NULL;
    snprintf(p, sizeof p, "%s/mixture.fmd", dir);
    bad += fmd_teacher_create_preset("ring8", &T) || fmd_teacher_save(T, p);
    fmd_options *o = NULL;
    fmd_student *S = NULL;
    bad += fmd_options_create(&o) || fmd_options_set_i64(o, "width", 8) ||
           fmd_options_set_i64(o, "depth", 1) || fmd_options_set_i64(o, "temb_dim", 8);
    snprintf(p, sizeof p, "%s/student.fmd", dir);
    bad += fmd_student_create(T, be, o, &S) || fmd_student_save(S, p);
    fmd_student_destroy(S);
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
    /* a network teacher */
    nn_config c;
    memset(&c, 0, sizeof c);
    c.arch = NN_ARCH_MLP;
    c.dim = 2;
    c.width = 8;
    c.depth = 1;
    c.temb_dim = 8;
    nn_model *m = NULL;
    T = NULL;
    snprintf(p, sizeof p, "%s/network.fmd", dir);
    if (nn_model_create(be, &c, 9, &m) || teacher_wrap_network(be, m, 0, &T)) bad++;
    else bad += fmd_teacher_save(T, p) != FMD_OK;
    fmd_teacher_destroy(T);
    if (bad) fprintf(stderr, "make_seeds: %s\n", fmd_last_error());
    return bad;
}

/* make_seeds ROOT: writes ROOT/<target>/ for every target (the directories
 * must exist): fmd, safetensors, npy, idx, spec, teacher_st, fmd_model. */
static int fmd_st_seeds(const char *dir_fmd, const char *dir_st)
{
    char p[4096];
    int bad = 0;
    snprintf(p, sizeof p, "%s/deflate.fmd", dir_fmd);
    bad += fmd_seed(p, 6, 0, 1);
    snprintf(p, sizeof p, "%s/shuffled.fmd", dir_fmd);
    bad += fmd_seed(p, 1, 1, 1);
    snprintf(p, sizeof p, "%s/stored.fmd", dir_fmd);
    bad += fmd_seed(p, 0, 0, 0);
    fmdf_writer *w;
    snprintf(p, sizeof p, "%s/empty.fmd", dir_fmd);
    if (fmdf_writer_begin(p, &w) || fmdf_writer_commit(w)) bad++;
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.25f};
    int64_t s23[2] = {2, 3}, s2[1] = {2};
    st_entry e[2] = {{"layer.weight", 2, s23, a}, {"layer.bias", 1, s2, b}};
    const char *meta[2] = {"format", "pt"};
    snprintf(p, sizeof p, "%s/two.safetensors", dir_st);
    bad += st_write(p, e, 2, meta, 1) != FMD_OK;
    snprintf(p, sizeof p, "%s/one.safetensors", dir_st);
    bad += st_write(p, e + 1, 1, NULL, 0) != FMD_OK;
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_ROOT\n");
        return 2;
    }
    char d1[2048], d2[2048];
    snprintf(d1, sizeof d1, "%s/fmd", argv[1]);
    snprintf(d2, sizeof d2, "%s/safetensors", argv[1]);
    int bad = fmd_st_seeds(d1, d2);
    fmd_backend *be = NULL;
    if (fmd_backend_open("cpu", &be)) return 1;
    char d[2048];
    snprintf(d, sizeof d, "%s/npy", argv[1]);
    bad += npy_seeds(d);
    snprintf(d, sizeof d, "%s/idx", argv[1]);
    bad += idx_seeds(d);
    snprintf(d, sizeof d, "%s/spec", argv[1]);
    bad += spec_seeds(d);
    snprintf(d, sizeof d, "%s/teacher_st", argv[1]);
    bad += st_teacher_seeds(d, be);
    snprintf(d, sizeof d, "%s/fmd_model", argv[1]);
    bad += fmd_model_seeds(d, be);
    fmd_backend_destroy(be);
    return bad != 0;
}
