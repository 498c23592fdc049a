/* test_comm.c - fmd_comm in one process (the MPI runs are tests/mpi/,
 * registered by tests/mpi.cmake when mpirun is found):
 *   - "none" and "auto" outside an MPI launcher are rank 0 of 1, NULL reads
 *     the same;
 *   - bad arguments: unknown kind, unknown option, NULL out;
 *   - a missing transport plugin: FMD_ERR_BACKEND_UNAVAILABLE listing every
 *     path tried;
 *   - a distiller over a one-rank communicator is bit-identical to one
 *     without, and fmd_distiller_set_comm after a step is refused. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "api/student_internal.h"
#include "nn/model.h"
#include "testutil.h"

static void test_none_and_auto(void)
{
    fmd_comm *c = NULL;
    CHECK_OK(fmd_comm_open("none", NULL, &c));
    CHECK(c && fmd_comm_rank(c) == 0 && fmd_comm_size(c) == 1);
    CHECK(strcmp(fmd_comm_describe(c), "none: one process") == 0);
    CHECK_OK(fmd_comm_barrier(c));
    fmd_comm_close(c);
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                                       "MV2_COMM_WORLD_SIZE"};
    for (int i = 0; i < 5; i++) unsetenv(vars[i]);
    c = NULL;
    CHECK_OK(fmd_comm_open("auto", NULL, &c));
    CHECK(c && fmd_comm_size(c) == 1 && strncmp(fmd_comm_describe(c), "none", 4) == 0);
    fmd_comm_close(c);
    c = NULL;
    CHECK_OK(fmd_comm_open(NULL, NULL, &c));
    CHECK(c && fmd_comm_size(c) == 1);
    fmd_comm_close(c);
    CHECK(fmd_comm_rank(NULL) == 0 && fmd_comm_size(NULL) == 1);
    CHECK(strcmp(fmd_comm_describe(NULL), "") == 0);
    CHECK_STATUS(fmd_comm_barrier(NULL), FMD_ERR_INVALID_ARG);
    fmd_comm_close(NULL);
}

static void test_bad_arguments(void)
{
    fmd_comm *c = (fmd_comm *)&c;
    CHECK_STATUS(fmd_comm_open("none", NULL, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_comm_open("tcp", NULL, &c), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "'tcp'") != NULL);
    CHECK(c == NULL);
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "hosts=a,b"));
    CHECK_STATUS(fmd_comm_open("none", o, &c), FMD_ERR_INVALID_ARG);
    CHECK_MSG(strstr(fmd_last_error(), "hosts") != NULL, "message: %s", fmd_last_error());
    fmd_options_destroy(o);
}

static void test_missing_plugin(void)
{
    fmd_comm *c = NULL;
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "plugin=/nonexistent/libfmd-mpi.so"));
    CHECK_STATUS(fmd_comm_open("mpi", o, &c), FMD_ERR_BACKEND_UNAVAILABLE);
    CHECK_MSG(strstr(fmd_last_error(), "/nonexistent/libfmd-mpi.so") != NULL, "message: %s",
              fmd_last_error());
    CHECK(c == NULL);
    fmd_options_destroy(o);
    /* no option: FMD_COMM_PATH, the folder of the library (here the test
     * binary's, which has no plugin), then the loader's search */
    void *installed = dlopen("libfmd-mpi.so", RTLD_LAZY | RTLD_LOCAL);
    if (installed) {   /* on the loader's path (installed): that search would succeed */
        dlclose(installed);
        printf("test_comm: libfmd-mpi.so is on the loader's path; the search without an option "
               "is not checked\n");
        return;
    }
    setenv("FMD_COMM_PATH", "/nonexistent-dir", 1);
    CHECK_STATUS(fmd_comm_open("mpi", NULL, &c), FMD_ERR_BACKEND_UNAVAILABLE);
    const char *m = fmd_last_error();
    CHECK_MSG(strstr(m, "/nonexistent-dir") && strstr(m, "tried") && strstr(m, "; libfmd-mpi.so"),
              "message does not list the paths tried: %s", m);
    unsetenv("FMD_COMM_PATH");
}

static fmd_distiller *distiller(fmd_teacher *T, fmd_backend *be, fmd_student **s)
{
    fmd_options *so, *o;
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_parse(so, "width=16"));
    CHECK_OK(fmd_student_create(T, be, so, s));
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "batch=16"));
    CHECK_OK(fmd_distiller_create(T, *s, be, o, &d));
    fmd_options_destroy(so);
    fmd_options_destroy(o);
    return d;
}

static void test_one_rank_distiller(void)
{
    fmd_backend *be;
    if (tu_open_backend("test_comm", "cpu", &be)) return;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_comm *c = NULL;
    CHECK_OK(fmd_comm_open("none", NULL, &c));
    fmd_student *s1, *s2;
    fmd_distiller *d1 = distiller(T, be, &s1), *d2 = distiller(T, be, &s2);
    CHECK_STATUS(fmd_distiller_set_comm(NULL, c), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_distiller_set_comm(d2, c));
    CHECK_OK(fmd_distiller_run(d1, 5, NULL, NULL));
    CHECK_OK(fmd_distiller_run(d2, 5, NULL, NULL));
    nn_model *a = student_net(s1), *b = student_net(s2);
    CHECK(memcmp(nn_model_params(a), nn_model_params(b),
                 (size_t)nn_model_num_params(a) * sizeof(float)) == 0);
    CHECK_STATUS(fmd_distiller_set_comm(d2, NULL), FMD_ERR_INVALID_ARG);
    CHECK_MSG(strstr(fmd_last_error(), "before the first step") != NULL, "message: %s",
              fmd_last_error());
    fmd_distiller_destroy(d1);
    fmd_distiller_destroy(d2);
    fmd_student_destroy(s1);
    fmd_student_destroy(s2);
    fmd_comm_close(c);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
}

int main(void)
{
    test_none_and_auto();
    test_bad_arguments();
    test_missing_plugin();
    test_one_rank_distiller();
    return tu_finish("test_comm");
}
