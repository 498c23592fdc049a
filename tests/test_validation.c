/* test_validation.c - bad values refused where they enter, with messages that
 * name them: dataset labels (negative, past 2^24 classes, INT32_MAX - with
 * num_classes = -1 inferring the largest label + 1), non-finite network
 * weights on teacher save (FMD_ERR_NONFINITE) and load (FMD_ERR_FORMAT),
 * both naming tensor and element, a mixture std under the documented
 * minimum 1e-6 (spec file and array), and an .npy shape whose element count
 * overflows. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api/teacher_internal.h"
#include "backend.h"
#include "io/fmdfile.h"
#include "io/model_io.h"
#include "nn/model.h"
#include "testutil.h"

#define tmp_path tu_tmp_path

#define CHECK_ERR(expr, want, text)                                                   \
    do {                                                                              \
        fmd_status s_ = (expr);                                                       \
        CHECK_MSG(s_ == (want) && strstr(fmd_last_error(), (text)) != NULL,          \
                  "%s -> %s '%s' (want %s and '%s')", #expr, fmd_status_name(s_),    \
                  fmd_last_error(), #want, (text));                                   \
    } while (0)

static void labels(void)
{
    float x[3 * 2] = {0, 1, 2, 3, 4, 5};
    fmd_dataset *d = NULL;
    int32_t big[3] = {0, INT32_MAX, 1};
    CHECK_ERR(fmd_dataset_create(x, big, 3, 2, -1, &d), FMD_ERR_INVALID_ARG,
              "labels[1] = 2147483647");
    int32_t over[3] = {0, 1, (1 << 24) + 5};
    CHECK_ERR(fmd_dataset_create(x, over, 3, 2, -1, &d), FMD_ERR_INVALID_ARG,
              "labels[2] = 16777221");
    int32_t neg[3] = {0, -3, 1};
    CHECK_ERR(fmd_dataset_create(x, neg, 3, 2, -1, &d), FMD_ERR_INVALID_ARG,
              "labels[1] = -3 is negative");
    CHECK_ERR(fmd_dataset_create(x, neg, 3, 2, 4, &d), FMD_ERR_INVALID_ARG,
              "labels[1] = -3 is negative");
    CHECK_ERR(fmd_dataset_create(x, over, 3, 2, 2, &d), FMD_ERR_INVALID_ARG,
              "labels[2] = 16777221 outside [0, 2)");
    CHECK_ERR(fmd_dataset_create(x, NULL, 3, 2, -2, &d), FMD_ERR_INVALID_ARG, "num_classes -2");
    CHECK_ERR(fmd_dataset_create(x, NULL, 3, 2, 3, &d), FMD_ERR_INVALID_ARG, "needs labels");
    CHECK(d == NULL);
    int32_t ok[3] = {0, 4, 1};
    CHECK_OK(fmd_dataset_create(x, ok, 3, 2, -1, &d));
    CHECK(fmd_dataset_num_classes(d) == 5);
    fmd_dataset_destroy(d);
    d = NULL;
    CHECK_OK(fmd_dataset_create(x, NULL, 3, 2, -1, &d));
    CHECK(fmd_dataset_num_classes(d) == 0);
    fmd_dataset_destroy(d);
}

/* Write a network teacher file by hand with element bad_at of view vi set
 * to value (the library's writer refuses such files). */
static fmd_status write_poisoned(fmd_backend *be, nn_model *m, int vi, int64_t bad_at, float value,
                                 const char *path)
{
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "kind", "teacher");
    if (!st) st = fmdf_writer_add_meta(w, "teacher_kind", "network");
    if (!st) st = model_io_write_config(w, "", nn_model_config(m));
    if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(m));
    float *host = malloc((size_t)nn_model_num_params(m) * sizeof(float));
    be->ops->download(be, host, nn_model_params(m), (size_t)nn_model_num_params(m) * sizeof(float));
    if (!st) st = be->ops->sync(be);
    for (int i = 0; !st && i < nn_model_num_views(m); i++) {
        const nn_param *p = nn_model_view(m, i);
        if (i == vi) host[p->offset + bad_at] = value;
        st = fmdf_writer_add_tensor(w, p->name, FMDF_F32, p->ndim, p->shape, host + p->offset);
    }
    free(host);
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

static void weights(void)
{
    fmd_backend *be = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be));
    if (!be) return;
    nn_config c;
    memset(&c, 0, sizeof c);
    c.arch = NN_ARCH_MLP;
    c.dim = 2;
    c.width = 8;
    c.depth = 1;
    c.temb_dim = 8;
    nn_model *m = NULL;
    CHECK_OK(nn_model_create(be, &c, 3, &m));
    if (!m) return;
    const int vi = nn_model_num_views(m) - 1;
    const nn_param *p = nn_model_view(m, vi);
    char want[200];
    const float bads[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++) {
        /* load: a file holding NaN / Inf */
        CHECK_OK(write_poisoned(be, m, vi, 1, bads[b], tmp_path("bad.fmd")));
        fmd_teacher *L = NULL;
        snprintf(want, sizeof want, "tensor '%s' element 1 = %s is not finite", p->name,
                 b ? "inf" : "nan");
        CHECK_ERR(fmd_teacher_load(be, tmp_path("bad.fmd"), NULL, &L), FMD_ERR_FORMAT, want);
        CHECK(L == NULL);
        fmd_teacher_destroy(L);
    }
    /* save: a teacher whose weights went NaN */
    nn_model *m2 = NULL;
    CHECK_OK(nn_model_create(be, &c, 3, &m2));
    fmd_teacher *T = NULL;
    if (m2) CHECK_OK(teacher_wrap_network(be, m2, 0, &T));
    if (T) {
        const nn_param *q = nn_model_view(m2, 0);
        float nan = NAN;
        be->ops->upload(be, nn_model_params(m2) + q->offset + 3, &nan, sizeof nan);
        CHECK_OK(be->ops->sync(be));
        snprintf(want, sizeof want, "tensor '%s' element 3 = nan is not finite", q->name);
        CHECK_ERR(fmd_teacher_save(T, tmp_path("nan.fmd")), FMD_ERR_NONFINITE, want);
        CHECK(access(tmp_path("nan.fmd"), F_OK) != 0);
        fmd_teacher_destroy(T);
    }
    nn_model_destroy(m);
    fmd_backend_destroy(be);
}

static void mixture_std(void)
{
    FILE *f = fopen(tmp_path("tiny.spec"), "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("dim 2\ncomponent weight=1 std=1e-300 mean=0,0\n", f);
    fclose(f);
    fmd_teacher *T = NULL;
    CHECK_ERR(fmd_teacher_load_spec(tmp_path("tiny.spec"), &T), FMD_ERR_FORMAT, "1e-06");
    CHECK(T == NULL);
    double w = 1, mu[2] = {0, 0}, s = 5e-7;
    CHECK_ERR(fmd_teacher_create_mixture(2, 1, &w, mu, &s, NULL, 0, &T), FMD_ERR_INVALID_ARG,
              "std[0] = 5e-07 must be finite and > 0, in [1e-06, 1e+06)");
    s = 1e-6;
    CHECK_OK(fmd_teacher_create_mixture(2, 1, &w, mu, &s, NULL, 0, &T));
    fmd_teacher_destroy(T);
}

static void npy_overflow(void)
{
    const char *hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
    char h[128];
    size_t n = strlen(hdr);
    size_t tot = (10 + n + 1 + 63) / 64 * 64;
    memset(h, ' ', sizeof h);
    memcpy(h, hdr, n);
    h[tot - 10 - 1] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(tot - 10), 0};
    FILE *f = fopen(tmp_path("big.npy"), "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(pre, 1, 10, f);
    fwrite(h, 1, tot - 10, f);
    fclose(f);
    const char *dt;
    int nd;
    int64_t sh[8];
    void *data = NULL;
    CHECK_ERR(fmd_npy_load(tmp_path("big.npy"), &dt, &nd, sh, 8, &data), FMD_ERR_FORMAT,
              "shape (4294967296,4294967296,16) at offset 10: the element count overflows");
    CHECK(data == NULL);
}

int main(void)
{
    if (tu_tmp_dir("test_validation")) return tu_skip("test_validation", "no temporary directory");
    labels();
    weights();
    mixture_std();
    npy_overflow();
    tu_tmp_remove();
    return tu_finish("test_validation");
}
