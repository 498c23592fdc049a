/* test_safetensors.c - the safetensors reader and writer (lib/io):
 * a model round trip, F16/BF16 conversion against known values, loading by
 * name with missing / mismatched / unused tensors named in the error, the
 * skip-unused option naming what it skipped, and malformed files (bad
 * lengths, offsets, JSON) refused with FMD_ERR_FORMAT, including every
 * truncation and single-byte corruptions of a valid file. */
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "backend.h"
#include "nn/model.h"
#include "io/safetensors.h"
#include "util/util.h"

static fmd_backend *be;

/* Build a file image: header JSON text + data bytes. */
static unsigned char *image(const char *json, const void *data, size_t ndata, size_t *size)
{
    size_t hl = strlen(json);
    *size = 8 + hl + ndata;
    unsigned char *b = malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    if (ndata) memcpy(b + 8 + hl, data, ndata);
    return b;
}

static fmd_status open_json(const char *json, const void *data, size_t nd, st_file **f)
{
    size_t n;
    unsigned char *b = image(json, data, nd, &n);
    fmd_status st = st_open_mem(b, n, f);
    free(b);
    return st;
}

static void conversions(void)
{
    /* F16: 1.0 = 0x3C00, -2.5 = 0xC100, 2^-24 = 0x0001 (subnormal), inf = 0x7C00,
     * 65504 = 0x7BFF; BF16: 1.0 = 0x3F80, -0.5 = 0xBF00, 3.140625 = 0x4049 */
    unsigned char d[16] = {0x00, 0x3C, 0x00, 0xC1, 0x01, 0x00, 0x00, 0x7C, 0xFF, 0x7B,
                           0x80, 0x3F, 0x00, 0xBF, 0x49, 0x40};
    st_file *f = NULL;
    CHECK_OK(open_json("{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[10,16]}}",
                       d, 16, &f));
    if (!f) return;
    float h[5], b[3];
    CHECK_OK(st_read_f32(f, st_find(f, "h"), h, 5));
    CHECK(h[0] == 1.0f && h[1] == -2.5f && h[2] == ldexpf(1.0f, -24) && isinf(h[3]) && h[3] > 0 &&
          h[4] == 65504.0f);
    CHECK_OK(st_read_f32(f, st_find(f, "b"), b, 3));
    CHECK(b[0] == 1.0f && b[1] == -0.5f && b[2] == 3.140625f);
    CHECK_STATUS(st_read_f32(f, st_find(f, "b"), b, 2), FMD_ERR_INVALID_ARG);
    st_close(f);
    /* unsupported dtype is named at read time */
    unsigned char z[8] = {0};
    CHECK_OK(open_json("{\"__metadata__\":{\"format\":\"pt\"},\"i\":{\"dtype\":\"I64\",\"shape\":[1],"
                       "\"data_offsets\":[0,8]}}", z, 8, &f));
    if (f) {
        float x;
        CHECK_STATUS(st_read_f32(f, st_find(f, "i"), &x, 1), FMD_ERR_UNSUPPORTED);
        CHECK(strstr(fmd_last_error(), "'i'") && strstr(fmd_last_error(), "I64"));
        CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"));
        st_close(f);
    }
}

static void malformed(void)
{
    static const char *bad[] = {
        "",                                                                  /* too short */
        "[]",                                                                /* not an object */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x",  /* trailing */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}",    /* wrong byte count */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",    /* beyond data */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",    /* begin > end */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",     /* duplicate */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", /* unknown field */
        "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}",    /* unknown dtype */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}",   /* leading zero */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",   /* negative */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",  /* not integer */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",                           /* missing field */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}",   /* trailing comma */
        "{\"a\\q\":{}}",                                                     /* bad escape */
        "{\"__metadata__\":{\"k\":1}}",                                      /* non-string meta */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
    };
    float one = 1.0f;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_file *f = NULL;
        fmd_status st = open_json(bad[i], &one, 4, &f);
        CHECK_MSG(st == FMD_ERR_FORMAT, "case %zu accepted (%s)", i, fmd_status_name(st));
        st_close(f);
    }
    /* header length larger than the file */
    unsigned char b[16] = {0xFF, 0xFF, 0, 0, 0, 0, 0, 0, '{', '}'};
    st_file *f = NULL;
    CHECK_STATUS(st_open_mem(b, 10, &f), FMD_ERR_FORMAT);
    CHECK(strstr(fmd_last_error(), "header length") != NULL);
    CHECK_STATUS(st_open("/nonexistent/x.safetensors", &f), FMD_ERR_IO);
    /* a valid empty file, and unicode escapes in names */
    CHECK_OK(open_json("{}", NULL, 0, &f));
    st_close(f);
    CHECK_OK(open_json("{\"\\u00e9\\ud83d\\ude00\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                       &one, 4, &f));
    if (f) {
        CHECK(st_find(f, "\xc3\xa9\xf0\x9f\x98\x80") != NULL);
        CHECK(st_at(f, 0)->numel == 1 && st_at(f, 0)->ndim == 0);
        st_close(f);
    }
}


/* Fail the N-th host allocation of open + load (skipping unused tensors) for
 * every N: FMD_ERR_OOM and nothing leaked. */
static void oom_sweep(const char *path, nn_model *m)
{
    int ok = 0, n;
    for (n = 0; n < 5000 && !ok; n++) {
        tu_alloc.fail_at = n;
        tu_alloc.calls = tu_alloc.live = 0;
        CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
        st_file *f = NULL;
        char *skipped = NULL;
        fmd_status st = st_open(path, &f);
        if (!st) st = st_load_model(f, m, ST_LOAD_SKIP_UNUSED, &skipped);
        CHECK_MSG(st == FMD_OK || st == FMD_ERR_OOM, "allocation %d: %s", n, fmd_status_name(st));
        if (!st && tu_alloc.calls <= n) ok = 1;
        fmd_free(skipped);
        st_close(f);
        CHECK_OK(fmd_set_allocator(NULL, NULL, NULL, NULL));
        CHECK_MSG(tu_alloc.live == 0, "%ld blocks leaked when allocation %d failed", tu_alloc.live, n);
    }
    CHECK(ok);
    printf("safetensors open+load: OOM sweep over %d allocation points\n", n);
}

static nn_config tiny_dit(void)
{
    nn_config c = {0};
    c.arch = NN_ARCH_DIT;
    c.num_classes = 3;
    c.input_size = 4;
    c.patch_size = 2;
    c.in_channels = 2;
    c.hidden_size = 8;
    c.dit_depth = 2;
    c.num_heads = 2;
    c.learn_sigma = 1;
    c.temb_dim = 8;
    return c;
}

static void model_roundtrip(const char *dir)
{
    char path[512], path2[512];
    snprintf(path, sizeof path, "%s/nn_st_roundtrip.safetensors", dir);
    snprintf(path2, sizeof path2, "%s/nn_st_extra.safetensors", dir);
    nn_config c = tiny_dit();
    nn_model *a = NULL, *b = NULL;
    CHECK_OK(nn_model_create(be, &c, 1, &a));
    CHECK_OK(nn_model_create(be, &c, 2, &b));
    if (!a || !b) return;
    CHECK_OK(nn_model_randomize(a, 9, 0.5f));
    CHECK_OK(st_save_model(a, path));
    st_file *f = NULL;
    CHECK_OK(st_open(path, &f));
    if (!f) return;
    CHECK(st_count(f) == nn_model_num_views(a) + 1);        /* + pos_embed */
    CHECK(st_find(f, "blocks.1.adaLN_modulation.1.weight") != NULL);
    CHECK(st_find(f, "pos_embed") != NULL);
    CHECK_OK(st_load_model(f, b, 0, NULL));
    int64_t P = nn_model_num_params(a);
    float *pa = malloc(sizeof(float) * P), *pb = malloc(sizeof(float) * P);
    be->ops->download(be, pa, nn_model_params(a), sizeof(float) * P);
    be->ops->download(be, pb, nn_model_params(b), sizeof(float) * P);
    CHECK(memcmp(pa, pb, sizeof(float) * P) == 0);
    st_close(f);

    /* a student lacks nothing it can be given... but needs d_embedder: missing */
    nn_config sc = c;
    sc.student = 1;
    nn_model *s = NULL;
    CHECK_OK(nn_model_create(be, &sc, 3, &s));
    CHECK_OK(st_open(path, &f));
    if (f && s) {
        CHECK_STATUS(st_load_model(f, s, 0, NULL), FMD_ERR_FORMAT);
        CHECK(strstr(fmd_last_error(), "d_embedder.mlp.0.weight") != NULL);
    }
    st_close(f);
    nn_model_destroy(s);

    /* a model of another shape: mismatch named */
    nn_config c2 = c;
    c2.hidden_size = 12;
    c2.num_heads = 3;
    nn_model *w = NULL;
    CHECK_OK(nn_model_create(be, &c2, 3, &w));
    CHECK_OK(st_open(path, &f));
    if (f && w) {
        CHECK_STATUS(st_load_model(f, w, 0, NULL), FMD_ERR_FORMAT);
        CHECK(strstr(fmd_last_error(), "x_embedder.proj.weight") && strstr(fmd_last_error(), "[8, 2, 2, 2]"));
    }
    st_close(f);
    nn_model_destroy(w);

    /* extra tensors (REPA's projectors.*): refused unless skipping, then named */
    {
        int nv = nn_model_num_views(a);
        st_entry *e = calloc((size_t)nv + 2, sizeof *e);
        for (int i = 0; i < nv; i++) {
            const nn_param *v = nn_model_view(a, i);
            e[i].name = v->name; e[i].ndim = v->ndim; e[i].shape = v->shape; e[i].data = pa + v->offset;
        }
        int64_t s1[2] = {2, 3};
        float extra[6] = {1, 2, 3, 4, 5, 6};
        e[nv].name = "projectors.0.0.weight"; e[nv].ndim = 2; e[nv].shape = s1; e[nv].data = extra;
        e[nv + 1].name = "projectors.0.0.bias"; e[nv + 1].ndim = 1; e[nv + 1].shape = s1; e[nv + 1].data = extra;
        const char *meta[2] = {"format", "pt"};
        CHECK_OK(st_write(path2, e, nv + 2, meta, 1));
        free(e);
        CHECK_OK(st_open(path2, &f));
        if (f) {
            CHECK_STATUS(st_load_model(f, b, 0, NULL), FMD_ERR_FORMAT);
            CHECK(strstr(fmd_last_error(), "projectors.0.0") != NULL);
            char *skipped = NULL;
            CHECK_OK(nn_model_randomize(b, 4, 1.0f));
            CHECK_OK(st_load_model(f, b, ST_LOAD_SKIP_UNUSED, &skipped));
            CHECK(skipped && strstr(skipped, "projectors.0.0.weight") && strstr(skipped, "projectors.0.0.bias"));
            fmd_free(skipped);
            be->ops->download(be, pb, nn_model_params(b), sizeof(float) * P);
            CHECK(memcmp(pa, pb, sizeof(float) * P) == 0);   /* pos_embed absent: kept */
            st_close(f);
            oom_sweep(path2, b);
        }
    }

    /* every truncation and a sweep of byte corruptions: no crash, errors only */
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *img = malloc((size_t)n);
    CHECK(fread(img, 1, (size_t)n, fp) == (size_t)n);
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | img[i];
    int refused = 0, tried = 0;
    for (long k = 0; k < n; k += (k < (long)hl + 16 ? 1 : 97)) {
        tried++;
        if (st_open_mem(img, (size_t)k, &f) != FMD_OK) refused++;
        else st_close(f);
    }
    CHECK_MSG(refused == tried, "%d of %d truncations accepted", tried - refused, tried);
    for (long k = 0; k < 8 + (long)hl; k++) {
        unsigned char keep = img[k];
        img[k] = (unsigned char)(keep ^ (k % 7 == 0 ? 0x80 : 0x15));
        fmd_status st = st_open_mem(img, (size_t)n, &f);
        if (st == FMD_OK) {
            /* still well-formed (e.g. a changed digit inside bounds): loading
             * either succeeds or fails cleanly */
            fmd_status ls = st_load_model(f, b, ST_LOAD_SKIP_UNUSED, NULL);
            (void)ls;
            st_close(f);
        } else {
            CHECK(st == FMD_ERR_FORMAT || st == FMD_ERR_OOM);
        }
        img[k] = keep;
    }
    free(img);
    free(pa); free(pb);
    remove(path);
    remove(path2);
    nn_model_destroy(a);
    nn_model_destroy(b);
}

int main(void)
{
    if (fmd_backend_open("cpu", &be) != FMD_OK) {
        fprintf(stderr, "cpu backend: %s\n", fmd_last_error());
        return 1;
    }
    const char *dir = getenv("FMD_BUILD_DIR");
    if (!dir) dir = ".";
    conversions();
    malformed();
    model_roundtrip(dir);
    fmd_backend_destroy(be);
    return tu_finish("test_safetensors");
}
