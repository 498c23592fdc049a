/* test_api_oom.c - allocation-failure sweep over the public calls that own
 * a backend, all on ONE backend opened before the sweep (as a program
 * does): for N = 0, 1, 2, ... every host allocation from the N-th on fails;
 * each scenario must return FMD_OK or FMD_ERR_OOM (never another status, a
 * crash or a leak), and once N passes the allocations the scenario needs it
 * succeeds - which it cannot if an earlier failure left the backend with a
 * sticky error.  Scenarios: student create / save / load, distiller create /
 * step / save / resume, the evaluator, and the safetensors teacher load
 * (each scenario makes its own teacher: the object under test is the backend).
 * A last check: an allocation failure on the backend itself (cpu alloc)
 * is reported by the call that hit it and the next call works.
 * TU_TRACE=1 in the environment prints which call failed at each point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "backend.h"
#include "io/safetensors.h"
#include "nn/model.h"
#include "testutil.h"

static fmd_backend *be;

/* huge_alloc_not_sticky asks for more than exists: under ASan that must
 * return NULL like any allocator, not abort (its default; scripts/test.sh
 * --sanitize also sets it in ASAN_OPTIONS, which replaces this). */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#define tmp_path tu_tmp_path

#define TRY(x) do { fmd_status s_ = (x); if (s_) { st = s_; if (getenv("TU_TRACE")) fprintf(stderr, "%s failed: %s\n", #x, fmd_last_error()); goto out; } } while (0)

static fmd_status small_student_opts(fmd_options **o)
{
    fmd_status st = fmd_options_create(o);
    if (!st) st = fmd_options_set_i64(*o, "width", 8);
    if (!st) st = fmd_options_set_i64(*o, "depth", 1);
    if (!st) st = fmd_options_set_i64(*o, "temb_dim", 8);
    return st;
}

static fmd_status sc_student(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *ring = NULL;
    fmd_options *o = NULL;
    fmd_student *s = NULL, *l = NULL;
    TRY(fmd_teacher_create_preset("ring8", &ring));
    TRY(small_student_opts(&o));
    TRY(fmd_student_create(ring, be, o, &s));
    TRY(fmd_student_save(s, tmp_path("s.fmd")));
    TRY(fmd_student_load(tmp_path("s.fmd"), be, &l));
    float z[8] = {0.1f, 0.2f, -1, 1, 2, 0, 0.5f, -0.5f}, d[4] = {1, 1, 0.5f, 0.25f}, x[8];
    TRY(fmd_student_forward(l, z, d, NULL, 4, x));
out:
    fmd_student_destroy(l);
    fmd_student_destroy(s);
    fmd_options_destroy(o);
    fmd_teacher_destroy(ring);
    return st;
}

static fmd_status sc_distiller(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *ring = NULL;
    fmd_options *o = NULL, *dopt = NULL;
    fmd_student *s = NULL, *s2 = NULL;
    fmd_distiller *d = NULL, *d2 = NULL;
    TRY(fmd_teacher_create_preset("ring8", &ring));
    TRY(small_student_opts(&o));
    TRY(fmd_student_create(ring, be, o, &s));
    TRY(fmd_options_create(&dopt));
    TRY(fmd_options_set_i64(dopt, "batch", 8));
    TRY(fmd_distiller_create(ring, s, be, dopt, &d));
    TRY(fmd_distiller_step(d));
    TRY(fmd_distiller_step(d));
    TRY(fmd_distiller_save(d, tmp_path("d.fmd")));
    TRY(fmd_student_create(ring, be, o, &s2));
    TRY(fmd_distiller_create(ring, s2, be, dopt, &d2));
    TRY(fmd_distiller_resume(d2, tmp_path("d.fmd")));
    TRY(fmd_distiller_step(d2));
out:
    fmd_distiller_destroy(d2);
    fmd_distiller_destroy(d);
    fmd_student_destroy(s2);
    fmd_student_destroy(s);
    fmd_options_destroy(dopt);
    fmd_options_destroy(o);
    fmd_teacher_destroy(ring);
    return st;
}

static fmd_status sc_evaluator(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *ring = NULL;
    fmd_options *o = NULL, *eo = NULL;
    fmd_student *s = NULL;
    fmd_evaluator *ev = NULL;
    fmd_eval_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    TRY(fmd_teacher_create_preset("ring8", &ring));
    TRY(small_student_opts(&o));
    TRY(fmd_student_create(ring, be, o, &s));
    TRY(fmd_options_create(&eo));
    TRY(fmd_options_set_i64(eo, "n", 64));
    TRY(fmd_evaluator_create(ring, eo, &ev));
    TRY(fmd_evaluator_student(ev, s, &r));
out:
    fmd_evaluator_destroy(ev);
    fmd_student_destroy(s);
    fmd_options_destroy(eo);
    fmd_options_destroy(o);
    fmd_teacher_destroy(ring);
    return st;
}

static fmd_status sc_safetensors(void)
{
    fmd_status st = FMD_OK;
    fmd_options *so = NULL;
    fmd_teacher *T = NULL;
    TRY(fmd_options_create(&so));
    TRY(fmd_options_set_i64(so, "dim", 2));
    TRY(fmd_options_set_i64(so, "width", 8));
    TRY(fmd_options_set_i64(so, "depth", 1));
    TRY(fmd_options_set_i64(so, "temb_dim", 8));
    TRY(fmd_teacher_load_safetensors(be, tmp_path("t.safetensors"), "mlp", so, &T));
    float x[4] = {0.1f, 0.2f, -1, 1}, t[2] = {0.3f, 0.9f}, v[4];
    TRY(fmd_teacher_velocity(T, v, x, t, NULL, 2));
out:
    fmd_teacher_destroy(T);
    fmd_options_destroy(so);
    return st;
}

/* every allocation from the N-th on fails (tu_oom_sweep in testutil) */
static void sweep(const char *name, fmd_status (*fn)(void))
{
    tu_alloc.sticky = 1;
    tu_oom_sweep(name, fn);
}

/* A device allocation too large to succeed is reported by the call that made
 * it; the backend is not poisoned for the next call. */
static void huge_alloc_not_sticky(void)
{
    fmd_teacher *ring = NULL;
    CHECK_OK(fmd_teacher_create_preset("ring8", &ring));
    fmd_options *o = NULL;
    fmd_student *s = NULL;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "width", 65536));
    CHECK_OK(fmd_options_set_i64(o, "depth", 64));
    CHECK_OK(fmd_options_set_i64(o, "temb_dim", 8));
    CHECK_STATUS(fmd_student_create(ring, be, o, &s), FMD_ERR_OOM);
    fmd_student_destroy(s);
    s = NULL;
    fmd_options_destroy(o);
    void *p = be->ops->alloc(be, (size_t)1 << 62);
    CHECK(p == NULL);
    CHECK_OK(small_student_opts(&o));
    CHECK_OK(fmd_student_create(ring, be, o, &s));
    fmd_student_destroy(s);
    fmd_options_destroy(o);
    fmd_teacher_destroy(ring);
}

int main(void)
{
    if (tu_tmp_dir("test_api_oom")) return tu_skip("test_api_oom", "no temporary directory");
    CHECK_OK(fmd_backend_open("cpu", &be));
    if (!be) return tu_finish("test_api_oom");
    nn_config c;
    memset(&c, 0, sizeof c);
    c.arch = NN_ARCH_MLP;
    c.dim = 2;
    c.width = 8;
    c.depth = 1;
    c.temb_dim = 8;
    nn_model *m = NULL;
    CHECK_OK(nn_model_create(be, &c, 7, &m));
    if (m) CHECK_OK(st_save_model(m, tmp_path("t.safetensors")));
    nn_model_destroy(m);
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
    sweep("student", sc_student);
    sweep("distiller", sc_distiller);
    sweep("evaluator", sc_evaluator);
    sweep("safetensors", sc_safetensors);
    CHECK_OK(fmd_set_allocator(NULL, NULL, NULL, NULL));
    huge_alloc_not_sticky();
    fmd_backend_destroy(be);
    tu_tmp_remove();
    return tu_finish("test_api_oom");
}
