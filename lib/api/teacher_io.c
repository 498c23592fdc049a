/* teacher_io.c - loading and saving teachers: .fmd files (mixture or
 * network, with their guidance), safetensors checkpoints of SiT/DiT or MLP
 * networks, and fmd_teacher_save. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "api/option_tables.h"
#include "api/teacher_impl.h"
#include "io/fmdfile.h"
#include "io/model_io.h"
#include "io/safetensors.h"
#include "util/util.h"

static fmd_status parse_convention(const char *fn, const char *s, int *sit)
{
    if (strcmp(s, "libfmd") == 0 || strcmp(s, "repa") == 0) *sit = 0;
    else if (strcmp(s, "sit") == 0) *sit = 1;
    else return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: time_convention '%.32s' (expected libfmd or "
                           "sit)", fn, s);
    return FMD_OK;
}

static fmd_status read_guidance_meta(fmdf_reader *r, fmd_teacher *T)
{
    double s = 1, lo = 0, hi = 1;
    fmd_status st = FMD_OK;
    if (fmdf_meta_get(r, "guidance_scale")) {
        st = fmdf_meta_f64(r, "guidance_scale", &s);
        if (!st) st = fmdf_meta_f64(r, "guidance_t_lo", &lo);
        if (!st) st = fmdf_meta_f64(r, "guidance_t_hi", &hi);
        if (st) return st;
        if (fmd_teacher_set_guidance(T, s, lo, hi) != FMD_OK)
            return fmd_seterr(FMD_ERR_FORMAT, "teacher file: bad guidance %g [%g, %g]", s, lo, hi);
    }
    return FMD_OK;
}

static fmd_status load_mixture(fmdf_reader *r, fmd_teacher **out)
{
    int64_t d, k, nc;
    fmd_status st = fmdf_meta_i64(r, "dim", &d);
    if (!st) st = fmdf_meta_i64(r, "num_components", &k);
    if (!st) st = fmdf_meta_i64(r, "num_classes", &nc);
    if (st) return st;
    if (d < 1 || d > (1 << 24) || k < 1 || k > (1 << 20) || nc < 0 || nc > (1 << 20) ||
        d * k > ((int64_t)1 << 28))
        return fmd_seterr(FMD_ERR_FORMAT, "mixture file: dim %lld / components %lld / classes %lld "
                          "out of range", (long long)d, (long long)k, (long long)nc);
    double *w = fmd_calloc((size_t)k, sizeof(double)), *s = fmd_calloc((size_t)k, sizeof(double));
    double *mu = fmd_calloc((size_t)(k * d), sizeof(double));
    int32_t *cls = nc ? fmd_calloc((size_t)k, sizeof(int32_t)) : NULL;
    if (!w || !s || !mu || (nc && !cls)) {
        st = fmd_seterr(FMD_ERR_OOM, "mixture file: out of memory");
        goto out;
    }
    int64_t shk[1] = {k}, shm[2] = {k, d};
    if ((st = fmdf_read_tensor(r, "mixture.weights", FMDF_F64, 1, shk, w, (size_t)k * 8))) goto out;
    if ((st = fmdf_read_tensor(r, "mixture.stds", FMDF_F64, 1, shk, s, (size_t)k * 8))) goto out;
    if ((st = fmdf_read_tensor(r, "mixture.means", FMDF_F64, 2, shm, mu, (size_t)(k * d) * 8)))
        goto out;
    if (nc && (st = fmdf_read_tensor(r, "mixture.classes", FMDF_I32, 1, shk, cls, (size_t)k * 4)))
        goto out;
    gmm *g;
    st = gmm_create((int)d, (int)k, w, mu, s, cls, (int)nc, &g);
    if (!st) st = wrap_mixture(g, out);
out:
    /* a tensor of the wrong shape or an invalid mixture is a corrupt file */
    if (st == FMD_ERR_INVALID_ARG) st = fmd_err_prefix(FMD_ERR_FORMAT, "mixture file");
    fmd_free(w);
    fmd_free(s);
    fmd_free(mu);
    fmd_free(cls);
    return st;
}

/* fmd_teacher_load's options. */
typedef struct load_opts {
    int time_convention;   /* 0 libfmd, 1 sit */
} load_opts;

#define OPT_CFG load_opts
static const opt_spec k_load_spec[] = {
    OPT_CHOICE("time_convention", time_convention, "libfmd|sit", 0, 0, NULL,
               "override the file's time convention: libfmd (t = 1 noise) or sit (t = 0 noise, v of the other sign)"),
};
#undef OPT_CFG
const opt_table opt_table_teacher_load = OPT_TABLE("teacher_load", "fmd_teacher_load", k_load_spec, NULL);

fmd_status fmd_teacher_load(fmd_backend *backend, const char *path, const fmd_options *opts,
                            fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_load";
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    load_opts lo;
    unsigned char given[1] = {0};
    opt_defaults(&opt_table_teacher_load, &lo);
    fmd_status st0 = opt_apply(&opt_table_teacher_load, opts, &lo, given);
    if (st0) return st0;
    const int sit_override = given[0] ? lo.time_convention : -1;
    fmdf_reader *r;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    const char *tk = fmdf_meta_get(r, "teacher_kind");
    fmd_teacher *T = NULL;
    if (tk && strcmp(tk, "mixture") == 0) {
        st = load_mixture(r, &T);
    } else if (!tk || strcmp(tk, "network") == 0) {
        int sit = 0;
        const char *conv = fmdf_meta_get(r, "time_convention");
        if (conv && (st = parse_convention(fn, conv, &sit)))
            st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': bad time_convention '%.32s'", fn, path, conv);
        if (sit_override >= 0) sit = sit_override;
        if (!st && !backend)
            st = fmd_seterr(FMD_ERR_INVALID_ARG, "%s: '%s' holds a network: backend must not be "
                            "NULL", fn, path);
        nn_model *net = NULL;
        if (!st) st = model_io_load_from(backend, r, "", &net);
        if (!st) st = teacher_wrap_network(backend, net, sit, &T);
    } else {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': unknown teacher_kind '%.32s'", fn, path, tk);
    }
    if (!st) st = read_guidance_meta(r, T);
    fmdf_close(r);
    if (st) {
        fmd_teacher_destroy(T);
        return st;
    }
    *out = T;
    return FMD_OK;
}

/* fmd_teacher_load_safetensors's options (defaults depend on arch: the
 * table says which). */
typedef struct st_opts {
    int dim, width, depth, temb_dim, num_classes, input_size, patch_size, in_channels,
        hidden_size, num_heads, learn_sigma, skip_unused;
    float time_scale, mlp_ratio;
    int time_convention;
} st_opts;

#define OPT_CFG st_opts
static const opt_spec k_st_spec[] = {
    OPT_INT_CTX("dim", dim, 1, 1 << 24, "from the file", 0, NULL, "mlp: numbers per sample"),
    OPT_INT_CTX("width", width, 1, 65536, "from the file", 0, NULL, "mlp: hidden width"),
    OPT_INT_CTX("depth", depth, 1, 4096, "from the file", 0, NULL, "mlp hidden layers or dit blocks (not for presets)"),
    OPT_INT("temb_dim", temb_dim, 2, 65536, 256, OPT_EVEN, NULL, "sinusoidal time-embedding size"),
    OPT_INT_CTX("num_classes", num_classes, 0, 1 << 24, "1000 for presets, else 0", 0, NULL, "classes of the label embedding (0: unconditional)"),
    OPT_INT("input_size", input_size, 1, 4096, 32, 0, NULL, "dit: image (latent) side"),
    OPT_INT_CTX("patch_size", patch_size, 1, 64, "2", 0, NULL, "dit: patch side (not for presets)"),
    OPT_INT("in_channels", in_channels, 1, 4096, 4, 0, NULL, "dit: image channels"),
    OPT_INT_CTX("hidden_size", hidden_size, 1, 65536, "from the file", 0, NULL, "dit: transformer width (not for presets)"),
    OPT_INT_CTX("num_heads", num_heads, 1, 1024, "from the file", 0, NULL, "dit: attention heads (not for presets)"),
    OPT_NUM("mlp_ratio", mlp_ratio, 0, 64, 4, OPT_LO_OPEN, NULL, "dit: MLP width / hidden size"),
    OPT_INT_CTX("learn_sigma", learn_sigma, 0, 1, "1 for presets, else 0", 0, NULL, "dit: the output also holds a variance (ignored)"),
    OPT_NUM_CTX("time_scale", time_scale, 0, 1e6, "1000 for DiT- presets, 30 for mlp, else 1", OPT_LO_OPEN, NULL, "t is multiplied by this before the sinusoid"),
    OPT_CHOICE("time_convention", time_convention, "libfmd|sit", 0, 0, NULL, "sit for SiT- presets, else libfmd: sit is t = 0 noise, converted on the fly"),
    OPT_INT("skip_unused", skip_unused, 0, 1, 0, 0, NULL, "1: ignore tensors the architecture does not use (logged)"),
};
#undef OPT_CFG
enum { NST = (int)(sizeof k_st_spec / sizeof k_st_spec[0]) };
const opt_table opt_table_safetensors = OPT_TABLE("safetensors", "fmd_teacher_load_safetensors", k_st_spec, NULL);

fmd_status fmd_teacher_load_safetensors(fmd_backend *backend, const char *path, const char *arch,
                                        const fmd_options *opts, fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_load_safetensors";
    FMD_CHECK_ARG(backend, "%s: backend is NULL", fn);
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    FMD_CHECK_ARG(arch, "%s: arch is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int preset = 0, sit = 0, is_mlp = 0;
    if (strcmp(arch, "mlp") == 0) {
        cfg.arch = NN_ARCH_MLP;
        is_mlp = 1;
    } else if (strcmp(arch, "dit") == 0) {
        cfg.arch = NN_ARCH_DIT;
        cfg.input_size = 32;
        cfg.in_channels = 4;
        cfg.time_scale = 1.0f;
    } else {
        fmd_status st = nn_config_preset(&cfg, arch);
        if (st) {
            char pre[200];
            snprintf(pre, sizeof pre, "%s: arch '%.40s' is not mlp, dit or a SiT/DiT preset", fn, arch);
            return fmd_err_prefix(st, pre);
        }
        preset = 1;
        cfg.num_classes = 1000;
        cfg.input_size = 32;
        cfg.in_channels = 4;
        cfg.learn_sigma = 1;
        /* SiT (and REPA) embed t in [0, 1]; DiT embeds integer steps 0..999 */
        cfg.time_scale = strncmp(arch, "DiT-", 4) == 0 ? 1000.0f : 1.0f;
        sit = strncmp(arch, "SiT-", 4) == 0;
    }
    st_opts so;
    unsigned char given[NST] = {0};
    opt_defaults(&opt_table_safetensors, &so);
    fmd_status st0 = opt_apply(&opt_table_safetensors, opts, &so, given);
    if (st0) return st0;
    /* every key acts on some architecture: refuse it where it does not */
    static const char *const not_mlp[] = {"input_size", "patch_size", "in_channels", "hidden_size",
                                          "num_heads", "mlp_ratio", "learn_sigma"};
    static const char *const not_dit[] = {"dim", "width"};
    static const char *const not_preset[] = {"dim", "width", "patch_size", "hidden_size", "depth",
                                             "num_heads"};
    const char *const *no = is_mlp ? not_mlp : preset ? not_preset : not_dit;
    const int nno = is_mlp ? 7 : preset ? 6 : 2;
    for (int j = 0; j < nno; j++)
        if (given[opt_find(&opt_table_safetensors, no[j])])
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' does not apply to arch '%s'", fn,
                              no[j], arch);
#define TAKE(key, field) if (given[opt_find(&opt_table_safetensors, key)]) cfg.field = so.field
    TAKE("dim", dim); TAKE("width", width); TAKE("temb_dim", temb_dim);
    TAKE("num_classes", num_classes); TAKE("input_size", input_size);
    TAKE("patch_size", patch_size); TAKE("in_channels", in_channels);
    TAKE("hidden_size", hidden_size); TAKE("num_heads", num_heads);
    TAKE("learn_sigma", learn_sigma); TAKE("time_scale", time_scale); TAKE("mlp_ratio", mlp_ratio);
#undef TAKE
    if (given[opt_find(&opt_table_safetensors, "depth")]) {
        if (is_mlp) cfg.depth = so.depth;
        else cfg.dit_depth = so.depth;
    }
    if (given[opt_find(&opt_table_safetensors, "time_convention")]) sit = so.time_convention;
    const int skip_unused = so.skip_unused;
    /* the file's header is read and validated before the model (whose size
     * arch decides: 675 M parameters for SiT-XL/2) is built */
    st_file *f = NULL;
    fmd_status st = st_open(path, &f);
    if (st) return st;
    if (st_count(f) == 0) {
        st_close(f);
        return fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' holds no tensors", fn, path);
    }
    nn_model *net = NULL;
    st = nn_model_create(backend, &cfg, 0, &net);
    if (st) {
        st_close(f);
        return fmd_err_prefix(st, fn);
    }
    char *skipped = NULL;
    st = st_load_model(f, net, skip_unused ? ST_LOAD_SKIP_UNUSED : 0, &skipped);
    if (skipped) {
        fmd_log(FMD_LOG_INFO, "%s: '%s': skipped tensors not used by %s: %.400s", fn, path, arch,
                skipped);
        fmd_free(skipped);
    }
    st_close(f);
    if (st) {
        nn_model_destroy(net);
        return st;
    }
    return teacher_wrap_network(backend, net, sit, out);
}

fmd_status fmd_teacher_save(fmd_teacher *T, const char *path)
{
    static const char *fn = "fmd_teacher_save";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    if (T->kind == TK_CALLBACK)
        return fmd_seterr(FMD_ERR_UNSUPPORTED, "%s: a callback teacher cannot be saved", fn);
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", FMD_VERSION_STRING);
    if (!st) st = fmdf_writer_add_meta(w, "kind", "teacher");
    if (!st) st = fmdf_writer_add_meta(w, "teacher_kind", T->kind == TK_MIXTURE ? "mixture" : "network");
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_scale", T->guid.scale);
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_t_lo", T->guid.t_lo);
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_t_hi", T->guid.t_hi);
    if (T->kind == TK_MIXTURE) {
        const gmm *g = T->g;
        int64_t shk[1] = {g->k}, shm[2] = {g->k, g->d};
        if (!st) st = fmdf_writer_add_meta_i64(w, "dim", g->d);
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_components", g->k);
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_classes", g->num_classes);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.weights", FMDF_F64, 1, shk, g->w);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.stds", FMDF_F64, 1, shk, g->s);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.means", FMDF_F64, 2, shm, g->mu);
        if (!st && g->num_classes)
            st = fmdf_writer_add_tensor(w, "mixture.classes", FMDF_I32, 1, shk, g->cls);
    } else {
        if (!st) st = fmdf_writer_add_meta(w, "time_convention", T->sit ? "sit" : "libfmd");
        if (!st) st = model_io_write_config(w, "", nn_model_config(T->net));
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(T->net));
        if (!st) st = model_io_write_tensors(w, "", T->nbe, T->net, NULL);
    }
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}
