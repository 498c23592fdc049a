/* test_teacher.c - the fmd_teacher kinds and their common machinery:
 *   - mixture teacher velocity = the double-precision oracle (gmm.c);
 *   - classifier-free guidance: v_w = v(null) + w (v(c) - v(null)) inside
 *     [t_lo, t_hi], v(c) outside, null rows unchanged - for the mixture,
 *     callback and network kinds alike;
 *   - callback teacher wrapping the mixture = the mixture;
 *   - teacher_velocity_dev on the CPU backend = the host call (every kind);
 *   - network teacher = nn_model_forward; the SiT time convention gives
 *     -net(x, 1 - t); .fmd and safetensors round trips are bit-exact;
 *   - mixture .fmd round trip (with its guidance); spec files;
 *   - argument errors name the row / option; callback refusal cancels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api/teacher_internal.h"
#include "io/model_io.h"
#include "io/safetensors.h"
#include "testutil.h"

#define tmp_path tu_tmp_path

/* callback that forwards to another teacher (user data) */
static int g_calls = 0;
static int cb_forward(void *user, float *v, const float *x, const float *t, const int32_t *labels,
                      int64_t batch, int64_t dim)
{
    (void)dim;
    g_calls++;
    fmd_teacher *inner = user;
    return fmd_teacher_velocity(inner, v, x, t, labels, batch) == FMD_OK ? 0 : 1;
}
static int cb_refuse(void *user, float *v, const float *x, const float *t, const int32_t *labels,
                     int64_t batch, int64_t dim)
{
    (void)user; (void)v; (void)x; (void)t; (void)labels; (void)batch; (void)dim;
    return 7;
}

enum { B = 48 };

static void make_batch(int64_t d, int nc, float *x, float *t, int32_t *lab)
{
    for (int64_t i = 0; i < B * d; i++) x[i] = (float)(2 * tu_normal());
    for (int i = 0; i < B; i++) {
        t[i] = (float)tu_uniform();
        if (i == 0) t[i] = 0.0f;
        if (i == 1) t[i] = 1.0f;
        if (lab) lab[i] = i % (nc + 1); /* includes the null class */
    }
}

/* expected guided velocity from two unguided evaluations */
static void expect_guided(fmd_teacher *T, float *vexp, const float *x, const float *t,
                          const int32_t *lab, double w, double lo, double hi)
{
    int64_t d = fmd_teacher_dim(T);
    int nc = fmd_teacher_num_classes(T);
    float *vc = malloc(sizeof(float) * B * d), *vu = malloc(sizeof(float) * B * d);
    int32_t nul[B];
    for (int i = 0; i < B; i++) nul[i] = nc;
    double s0, l0, h0;
    fmd_teacher_get_guidance(T, &s0, &l0, &h0);
    CHECK_OK(fmd_teacher_set_guidance(T, 1.0, 0, 1));
    CHECK_OK(fmd_teacher_velocity(T, vc, x, t, lab, B));
    CHECK_OK(fmd_teacher_velocity(T, vu, x, t, nul, B));
    CHECK_OK(fmd_teacher_set_guidance(T, s0, l0, h0));
    for (int i = 0; i < B; i++)
        for (int64_t j = 0; j < d; j++) {
            int in = t[i] >= lo && t[i] <= hi;
            float c = vc[i * d + j], u = vu[i * d + j];
            vexp[i * d + j] = in ? (float)(u + w * (c - u)) : c;
        }
    free(vc);
    free(vu);
}

static void test_mixture_and_callback(fmd_backend *be)
{
    fmd_teacher *T, *C;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &T));
    if (!T) return;
    CHECK(strcmp(fmd_teacher_kind(T), "mixture") == 0);
    CHECK(fmd_teacher_dim(T) == 32 && fmd_teacher_num_classes(T) == 4);
    const int64_t d = 32;
    float x[B * 32], t[B], v[B * 32], v2[B * 32], ve[B * 32];
    int32_t lab[B];
    make_batch(d, 4, x, t, lab);
    /* = the oracle in double */
    CHECK_OK(fmd_teacher_velocity(T, v, x, t, lab, B));
    const gmm *g = teacher_mixture(T);
    double xd[32], vd[32], work[64];
    double maxe = 0;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < d; j++) xd[j] = x[i * d + j];
        gmm_velocity_row(g, vd, xd, t[i], lab[i] == 4 ? -1 : lab[i], work);
        for (int j = 0; j < d; j++) maxe = fmax(maxe, fabs(v[i * d + j] - vd[j]) / (1 + fabs(vd[j])));
    }
    CHECK_MSG(maxe < 1e-6, "mixture velocity vs oracle: %g", maxe);
    /* guidance */
    CHECK_OK(fmd_teacher_set_guidance(T, 3.0, 0.2, 0.7));
    expect_guided(T, ve, x, t, lab, 3.0, 0.2, 0.7);
    CHECK_OK(fmd_teacher_velocity(T, v, x, t, lab, B));
    CHECK_MSG(tu_max_abs_diff(v, ve, B * d) < 1e-4, "mixture CFG: %g", tu_max_abs_diff(v, ve, B * d));
    double moved = 0;
    for (int i = 0; i < B; i++)
        if (t[i] >= 0.2f && t[i] <= 0.7f && lab[i] != 4) moved = 1;
    CHECK(moved); /* the batch has guided rows */
    /* callback wrapping the (unguided) mixture, guidance applied by the callback teacher */
    fmd_teacher *inner;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &inner));
    CHECK_OK(fmd_teacher_create_callback(32, 4, cb_forward, inner, &C));
    CHECK(strcmp(fmd_teacher_kind(C), "callback") == 0);
    CHECK_OK(fmd_teacher_set_guidance(C, 3.0, 0.2, 0.7));
    g_calls = 0;
    CHECK_OK(fmd_teacher_velocity(C, v2, x, t, lab, B));
    CHECK(g_calls == 2); /* conditional + null pass */
    CHECK_MSG(tu_max_abs_diff(v2, v, B * d) < 1e-5, "callback CFG vs mixture CFG: %g",
              tu_max_abs_diff(v2, v, B * d));
    /* teacher_velocity_dev on a backend equals the host call */
    if (be) {
        float *dx = be->ops->alloc(be, sizeof x), *dt = be->ops->alloc(be, sizeof t);
        float *dv = be->ops->alloc(be, sizeof v);
        int32_t *dl = be->ops->alloc(be, sizeof lab);
        be->ops->upload(be, dx, x, sizeof x);
        be->ops->upload(be, dt, t, sizeof t);
        be->ops->upload(be, dl, lab, sizeof lab);
        fmd_guidance gg = {3.0f, 0.2f, 0.7f};
        float vdev[B * 32];
        fmd_teacher *both[2] = {T, C};
        for (int k = 0; k < 2; k++) {
            CHECK_OK(teacher_velocity_dev(both[k], be, dv, dx, dt, dl, B, &gg));
            be->ops->download(be, vdev, dv, sizeof vdev);
            CHECK_OK(be->ops->sync(be));
            CHECK_MSG(tu_max_abs_diff(vdev, k ? v2 : v, B * d) == 0, "%s dev vs host: %g",
                      fmd_teacher_kind(both[k]), tu_max_abs_diff(vdev, k ? v2 : v, B * d));
        }
        /* no guidance argument = unguided, whatever the teacher's setting */
        CHECK_OK(teacher_velocity_dev(T, be, dv, dx, dt, dl, B, NULL));
        be->ops->download(be, vdev, dv, sizeof vdev);
        CHECK_OK(fmd_teacher_set_guidance(T, 1.0, 0, 1));
        CHECK_OK(fmd_teacher_velocity(T, v, x, t, lab, B));
        CHECK(tu_max_abs_diff(vdev, v, B * d) == 0);
        /* bad label through the device path */
        int32_t badl[B];
        memcpy(badl, lab, sizeof badl);
        badl[5] = 9;
        be->ops->upload(be, dl, badl, sizeof badl);
        CHECK_STATUS(teacher_velocity_dev(T, be, dv, dx, dt, dl, B, NULL), FMD_ERR_INVALID_ARG);
        be->ops->free(be, dx); be->ops->free(be, dt); be->ops->free(be, dv); be->ops->free(be, dl);
    }
    /* argument errors */
    int32_t bad[B];
    memcpy(bad, lab, sizeof bad);
    bad[3] = 5;
    CHECK_STATUS(fmd_teacher_velocity(T, v, x, t, bad, B), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "labels[3]") != NULL);
    float tb[B];
    memcpy(tb, t, sizeof tb);
    tb[7] = 1.5f;
    CHECK_STATUS(fmd_teacher_velocity(T, v, x, tb, lab, B), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "t[7]") != NULL);
    tb[7] = NAN;
    CHECK_STATUS(fmd_teacher_velocity(T, v, x, tb, lab, B), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_teacher_velocity(T, NULL, x, t, lab, B), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_teacher_set_guidance(T, 2.0, 0.8, 0.2), FMD_ERR_INVALID_ARG);
    fmd_teacher *R;
    CHECK_OK(fmd_teacher_create_preset("ring8", &R));
    CHECK_STATUS(fmd_teacher_set_guidance(R, 2.0, 0, 1), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_teacher_save(C, tmp_path("cb.fmd")), FMD_ERR_UNSUPPORTED);
    CHECK_STATUS(fmd_teacher_sample_data(C, 4, 1, 0, NULL, v, NULL), FMD_ERR_UNSUPPORTED);
    fmd_teacher *Z;
    CHECK_OK(fmd_teacher_create_callback(2, 0, cb_refuse, NULL, &Z));
    CHECK_STATUS(fmd_teacher_velocity(Z, v, x, t, NULL, 4), FMD_ERR_CANCELLED);
    CHECK_STATUS(fmd_teacher_sample(Z, v, NULL, 4, 1, 0, NULL, NULL), FMD_ERR_CANCELLED);
    CHECK_STATUS(fmd_teacher_create_callback(0, 0, cb_refuse, NULL, &Z), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_teacher_create_preset("nope", &Z), FMD_ERR_INVALID_ARG);
    fmd_teacher_destroy(Z);
    fmd_teacher_destroy(R);
    fmd_teacher_destroy(C);
    fmd_teacher_destroy(inner);
    fmd_teacher_destroy(T);
    fmd_teacher_destroy(NULL);
}

static void test_mixture_files(void)
{
    fmd_teacher *T, *L;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &T));
    CHECK_OK(fmd_teacher_set_guidance(T, 2.5, 0.1, 0.9));
    CHECK_OK(fmd_teacher_save(T, tmp_path("mix.fmd")));
    CHECK_OK(fmd_teacher_load(NULL, tmp_path("mix.fmd"), NULL, &L));
    if (!L) return;
    double s, lo, hi;
    CHECK_OK(fmd_teacher_get_guidance(L, &s, &lo, &hi));
    CHECK(s == 2.5 && fabs(lo - 0.1) < 1e-7 && fabs(hi - 0.9) < 1e-7);
    float x[B * 32], t[B], v1[B * 32], v2[B * 32];
    int32_t lab[B];
    make_batch(32, 4, x, t, lab);
    CHECK_OK(fmd_teacher_velocity(T, v1, x, t, lab, B));
    CHECK_OK(fmd_teacher_velocity(L, v2, x, t, lab, B));
    CHECK(memcmp(v1, v2, sizeof v1) == 0);
    float s1[64], s2[64];
    int32_t c1[2], c2[2];
    CHECK_OK(fmd_teacher_sample_data(T, 2, 5, 9, NULL, s1, c1));
    CHECK_OK(fmd_teacher_sample_data(L, 2, 5, 9, NULL, s2, c2));
    CHECK(memcmp(s1, s2, sizeof s1) == 0 && c1[0] == c2[0] && c1[1] == c2[1]);
    fmd_teacher_destroy(L);
    L = NULL;
    /* a corrupt copy is refused with a format error */
    FILE *f = fopen(tmp_path("mix.fmd"), "r+b");
    if (f) {
        fseek(f, 40, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 40, SEEK_SET);
        fputc(ch ^ 0x55, f);
        fclose(f);
    }
    CHECK_STATUS(fmd_teacher_load(NULL, tmp_path("mix.fmd"), NULL, &L), FMD_ERR_FORMAT);
    /* spec files */
    const char *spec = "dim 2\nclasses 2\n"
                       "component weight=1 std=0.2 mean=1,1 class=0\n"
                       "component weight=2 std=0.3 mean=-1,0 class=1\n";
    f = fopen(tmp_path("mix.spec"), "w");
    if (f) {
        fputs(spec, f);
        fclose(f);
    }
    CHECK_OK(fmd_teacher_load_spec(tmp_path("mix.spec"), &L));
    CHECK(fmd_teacher_dim(L) == 2 && fmd_teacher_num_classes(L) == 2);
    double w[2] = {1, 2}, mu[4] = {1, 1, -1, 0}, sd[2] = {0.2, 0.3};
    int32_t cl[2] = {0, 1};
    fmd_teacher *A;
    CHECK_OK(fmd_teacher_create_mixture(2, 2, w, mu, sd, cl, 2, &A));
    int32_t lab2[20];
    for (int i = 0; i < 20; i++) lab2[i] = i % 3;
    CHECK_OK(fmd_teacher_velocity(L, v1, x, t, lab2, 20));
    CHECK_OK(fmd_teacher_velocity(A, v2, x, t, lab2, 20));
    CHECK(memcmp(v1, v2, sizeof(float) * 40) == 0);
    CHECK_STATUS(fmd_teacher_load_spec(tmp_path("missing.spec"), &A), FMD_ERR_IO);
    fmd_teacher_destroy(A);
    fmd_teacher_destroy(L);
    fmd_teacher_destroy(T);
}

static void test_network(fmd_backend *be)
{
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = NN_ARCH_MLP;
    cfg.dim = 3;
    cfg.width = 32;
    cfg.depth = 2;
    cfg.num_classes = 3;
    nn_model *net;
    CHECK_OK(nn_model_create(be, &cfg, 5, &net));
    if (!net) return;
    CHECK_OK(nn_model_randomize(net, 9, 0.3f));
    /* reference: the raw network on the same inputs */
    const int64_t d = 3;
    float x[B * 3], t[B], vref[B * 3], vnull[B * 3], v[B * 3], ve[B * 3];
    int32_t lab[B], nul[B];
    make_batch(d, 3, x, t, lab);
    for (int i = 0; i < B; i++) nul[i] = 3;
    float *dx = be->ops->alloc(be, sizeof x), *dt = be->ops->alloc(be, sizeof t),
          *dv = be->ops->alloc(be, sizeof v);
    int32_t *dl = be->ops->alloc(be, sizeof lab);
    be->ops->upload(be, dx, x, sizeof x);
    be->ops->upload(be, dt, t, sizeof t);
    be->ops->upload(be, dl, lab, sizeof lab);
    CHECK_OK(nn_model_reserve(net, B));
    CHECK_OK(nn_model_forward(net, dv, dx, dt, NULL, dl, B));
    be->ops->download(be, vref, dv, sizeof vref);
    be->ops->upload(be, dl, nul, sizeof nul);
    CHECK_OK(nn_model_forward(net, dv, dx, dt, NULL, dl, B));
    be->ops->download(be, vnull, dv, sizeof vnull);
    be->ops->upload(be, dl, lab, sizeof lab);
    CHECK_OK(be->ops->sync(be));
    CHECK_OK(st_save_model(net, tmp_path("net.safetensors")));

    fmd_teacher *T;
    CHECK_OK(teacher_wrap_network(be, net, 0, &T));
    if (!T) return;
    CHECK(strcmp(fmd_teacher_kind(T), "network") == 0 && teacher_network(T) == net);
    CHECK_OK(fmd_teacher_velocity(T, v, x, t, lab, B));
    CHECK_MSG(tu_max_abs_diff(v, vref, B * d) == 0, "network teacher vs forward: %g",
              tu_max_abs_diff(v, vref, B * d));
    /* guidance on the device path */
    CHECK_OK(fmd_teacher_set_guidance(T, 2.0, 0.3, 0.8));
    for (int i = 0; i < B; i++)
        for (int j = 0; j < d; j++) {
            int in = t[i] >= 0.3f && t[i] <= 0.8f;
            float c = vref[i * d + j], u = vnull[i * d + j];
            ve[i * d + j] = in ? u + 2.0f * (c - u) : c;
        }
    CHECK_OK(fmd_teacher_velocity(T, v, x, t, lab, B));
    CHECK_MSG(tu_max_abs_diff(v, ve, B * d) < 1e-5, "network CFG: %g", tu_max_abs_diff(v, ve, B * d));
    fmd_guidance gg = {2.0f, 0.3f, 0.8f};
    float vdev[B * 3];
    CHECK_OK(teacher_velocity_dev(T, be, dv, dx, dt, dl, B, &gg));
    be->ops->download(be, vdev, dv, sizeof vdev);
    CHECK_OK(be->ops->sync(be));
    CHECK(tu_max_abs_diff(vdev, v, B * d) == 0);
    /* from another backend handle: the batch goes through the host */
    fmd_backend *be2 = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be2));
    if (be2) {
        float *ex = be2->ops->alloc(be2, sizeof x), *et = be2->ops->alloc(be2, sizeof t),
              *ev = be2->ops->alloc(be2, sizeof v);
        int32_t *el = be2->ops->alloc(be2, sizeof lab);
        be2->ops->upload(be2, ex, x, sizeof x);
        be2->ops->upload(be2, et, t, sizeof t);
        be2->ops->upload(be2, el, lab, sizeof lab);
        memset(vdev, 0, sizeof vdev);
        CHECK_OK(teacher_velocity_dev(T, be2, ev, ex, et, el, B, &gg));
        be2->ops->download(be2, vdev, ev, sizeof vdev);
        CHECK_OK(be2->ops->sync(be2));
        CHECK_MSG(tu_max_abs_diff(vdev, v, B * d) == 0, "network via host: %g",
                  tu_max_abs_diff(vdev, v, B * d));
        CHECK_OK(teacher_velocity_dev(T, be2, ev, ex, et, NULL, B, NULL));
        be2->ops->download(be2, vdev, ev, sizeof vdev);
        CHECK_OK(be2->ops->sync(be2));
        CHECK(tu_max_abs_diff(vdev, vnull, B * d) == 0);
        be2->ops->free(be2, ex); be2->ops->free(be2, et); be2->ops->free(be2, ev);
        be2->ops->free(be2, el);
        fmd_backend_destroy(be2);
    }
    /* .fmd round trip */
    CHECK_OK(fmd_teacher_save(T, tmp_path("net.fmd")));
    fmd_teacher *L = NULL;
    CHECK_OK(fmd_teacher_load(be, tmp_path("net.fmd"), NULL, &L));
    if (L) {
        float v2[B * 3];
        CHECK_OK(fmd_teacher_velocity(L, v2, x, t, lab, B));
        CHECK(memcmp(v2, v, sizeof v) == 0); /* guidance restored too */
        fmd_teacher_destroy(L);
    }
    CHECK_STATUS(fmd_teacher_load(NULL, tmp_path("net.fmd"), NULL, &L), FMD_ERR_INVALID_ARG);
    /* SiT convention: v = -net(x, 1 - t) */
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_str(o, "time_convention", "sit"));
    CHECK_OK(fmd_teacher_load(be, tmp_path("net.fmd"), o, &L));
    if (L) {
        CHECK_OK(fmd_teacher_set_guidance(L, 1.0, 0, 1));
        float t1[B], v2[B * 3], v3[B * 3];
        for (int i = 0; i < B; i++) t1[i] = 1.0f - t[i];
        CHECK_OK(fmd_teacher_set_guidance(T, 1.0, 0, 1));
        CHECK_OK(fmd_teacher_velocity(T, v2, x, t1, lab, B));
        CHECK_OK(fmd_teacher_velocity(L, v3, x, t, lab, B));
        double e = 0;
        for (int i = 0; i < B * d; i++) e = fmax(e, fabs(v3[i] + v2[i]));
        /* 1 - (1 - t) differs from t by rounding only */
        CHECK_MSG(e < 1e-4, "sit convention: %g", e);
        fmd_teacher_destroy(L);
        L = NULL;
    }
    /* safetensors + arch description */
    fmd_options *so;
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_set_i64(so, "dim", 3));
    CHECK_OK(fmd_options_set_i64(so, "width", 32));
    CHECK_OK(fmd_options_set_i64(so, "depth", 2));
    CHECK_OK(fmd_options_set_i64(so, "num_classes", 3));
    CHECK_OK(fmd_teacher_load_safetensors(be, tmp_path("net.safetensors"), "mlp", so, &L));
    if (L) {
        float v2[B * 3];
        CHECK_OK(fmd_teacher_velocity(L, v2, x, t, lab, B));
        CHECK(memcmp(v2, vref, sizeof v2) == 0);
        fmd_teacher_destroy(L);
        L = NULL;
    }
    CHECK_OK(fmd_options_set_i64(so, "width", 16));
    CHECK_STATUS(fmd_teacher_load_safetensors(be, tmp_path("net.safetensors"), "mlp", so, &L),
                 FMD_ERR_FORMAT);
    CHECK_OK(fmd_options_set_i64(so, "bogus", 1));
    CHECK_STATUS(fmd_teacher_load_safetensors(be, tmp_path("net.safetensors"), "mlp", so, &L),
                 FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "bogus") != NULL);
    CHECK_STATUS(fmd_teacher_load_safetensors(be, tmp_path("net.safetensors"), "SiT-Q/2", NULL, &L),
                 FMD_ERR_INVALID_ARG);
    /* a hostile config (a huge MLP) next to a tiny tensor is refused before allocating */
    {
        fmdf_writer *w;
        nn_config big = cfg;
        big.width = 60000;
        big.depth = 200;
        float one = 1;
        int64_t sh[1] = {1};
        CHECK_OK(fmdf_writer_begin(tmp_path("huge.fmd"), &w));
        CHECK_OK(fmdf_writer_add_meta(w, "teacher_kind", "network"));
        CHECK_OK(model_io_write_config(w, "", &big));
        CHECK_OK(fmdf_writer_add_tensor(w, "w", FMDF_F32, 1, sh, &one));
        CHECK_OK(fmdf_writer_commit(w));
        CHECK_STATUS(fmd_teacher_load(be, tmp_path("huge.fmd"), NULL, &L), FMD_ERR_FORMAT);
        CHECK(strstr(fmd_last_error(), "parameters") != NULL);
        unlink(tmp_path("huge.fmd"));
    }
    fmd_options_destroy(so);
    fmd_options_destroy(o);
    be->ops->free(be, dx); be->ops->free(be, dt); be->ops->free(be, dv); be->ops->free(be, dl);
    fmd_teacher_destroy(T);
}

int main(void)
{
    if (tu_tmp_dir("test_teacher")) return tu_skip("test_teacher", "no temporary directory");
    tu_seed(11);
    fmd_backend *be = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be));
    test_mixture_and_callback(be);
    test_mixture_files();
    if (be) test_network(be);
    fmd_backend_destroy(be);
    /* the same on the GPU when the CUDA plugin and a GPU are there */
    if (fmd_backend_available("cuda")) {
        fmd_backend *cu = NULL;
        CHECK_OK(fmd_backend_open("cuda", &cu));
        if (cu) {
            printf("test_teacher: also on %s\n", fmd_backend_device(cu));
            test_mixture_and_callback(cu);
            test_network(cu);
        }
        fmd_backend_destroy(cu);
    }
    tu_tmp_remove();
    return tu_finish("test_teacher");
}
