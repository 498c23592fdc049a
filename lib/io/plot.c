/* plot.c - a tiny raster toolkit for the pictures of the `fmd` tool: 2-D
 * density panels side by side with titles, line plots (loss curves) with a
 * legend, and grids of sample images.  Everything is drawn into an RGB
 * canvas in host memory and written with fmd_write_png; text uses the
 * built-in 7x11 bitmap font of io/font.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/font.h"
#include "util/util.h"

typedef struct {
    int w, h;
    uint8_t *px;   /* (h, w, 3) */
} canvas;

static fmd_status cv_new(canvas *c, int w, int h, uint8_t r, uint8_t g, uint8_t b, const char *fn)
{
    c->w = w;
    c->h = h;
    c->px = fmd_malloc((size_t)w * (size_t)h * 3);
    if (!c->px) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory for a %dx%d picture", fn, w, h);
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
        c->px[3 * i] = r;
        c->px[3 * i + 1] = g;
        c->px[3 * i + 2] = b;
    }
    return FMD_OK;
}

static void cv_put(canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3, rgb, 3);
}

static void cv_rect(canvas *c, int x0, int y0, int w, int h, const uint8_t rgb[3])
{
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) cv_put(c, x, y, rgb);
}

static void cv_frame(canvas *c, int x0, int y0, int w, int h, const uint8_t rgb[3])
{
    cv_rect(c, x0, y0, w, 1, rgb);
    cv_rect(c, x0, y0 + h - 1, w, 1, rgb);
    cv_rect(c, x0, y0, 1, h, rgb);
    cv_rect(c, x0 + w - 1, y0, 1, h, rgb);
}

/* Bresenham line, 2 pixels thick vertically for visibility. */
static void cv_line(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3])
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        cv_put(c, x0, y0, rgb);
        cv_put(c, x0, y0 + 1, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static int text_width(const char *s) { return (int)strlen(s) * FMD_FONT_W; }

/* Draw ASCII text with its top-left corner at (x, y); other bytes as '?'. */
static void cv_text(canvas *c, int x, int y, const char *s, const uint8_t rgb[3])
{
    for (; *s; s++, x += FMD_FONT_W) {
        int ch = (unsigned char)*s;
        if (ch < 32 || ch > 126) ch = '?';
        const uint8_t *g = FMD_FONT[ch - 32];
        for (int r = 0; r < FMD_FONT_H; r++)
            for (int b = 0; b < FMD_FONT_W; b++)
                if (g[r] >> (FMD_FONT_W - 1 - b) & 1) cv_put(c, x + b, y + r, rgb);
    }
}

/* Viridis-like colour map at u in [0, 1]. */
static void cmap(double u, uint8_t rgb[3])
{
    static const double k[5][3] = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    if (!(u > 0)) u = 0;
    if (u > 1) u = 1;
    double p = u * 4;
    int i = (int)p;
    if (i > 3) i = 3;
    double f = p - i;
    for (int j = 0; j < 3; j++) rgb[j] = (uint8_t)lround(k[i][j] + f * (k[i + 1][j] - k[i][j]));
}

fmd_status fmd_plot_density_panels(const char *path, int panels, const float *const *points,
                                   const int64_t *counts, const char *const *titles,
                                   const double *bounds, int panel_px)
{
    static const char *fn = "fmd_plot_density_panels";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(panels >= 1 && panels <= 64, "%s: panels must be in [1, 64] (got %d)", fn, panels);
    FMD_CHECK_ARG(points && counts, "%s: points or counts is NULL", fn);
    FMD_CHECK_ARG(panel_px >= 32 && panel_px <= 2048, "%s: panel_px must be in [32, 2048] (got %d)",
                  fn, panel_px);
    for (int p = 0; p < panels; p++) {
        FMD_CHECK_ARG(counts[p] >= 0, "%s: counts[%d] < 0", fn, p);
        FMD_CHECK_ARG(points[p] || counts[p] == 0, "%s: points[%d] is NULL", fn, p);
    }
    double xmin, xmax, ymin, ymax;
    if (bounds) {
        xmin = bounds[0];
        xmax = bounds[1];
        ymin = bounds[2];
        ymax = bounds[3];
        FMD_CHECK_ARG(isfinite(xmin) && isfinite(xmax) && isfinite(ymin) && isfinite(ymax) &&
                          xmax > xmin && ymax > ymin,
                      "%s: bounds must be finite with xmin < xmax, ymin < ymax", fn);
    } else {
        xmin = ymin = INFINITY;
        xmax = ymax = -INFINITY;
        for (int p = 0; p < panels; p++)
            for (int64_t i = 0; i < counts[p]; i++) {
                double x = points[p][2 * i], y = points[p][2 * i + 1];
                if (!isfinite(x) || !isfinite(y)) continue;
                xmin = fmin(xmin, x);
                xmax = fmax(xmax, x);
                ymin = fmin(ymin, y);
                ymax = fmax(ymax, y);
            }
        if (!(xmax >= xmin)) xmin = ymin = -1, xmax = ymax = 1;
        double cx = 0.5 * (xmin + xmax), cy = 0.5 * (ymin + ymax);
        double half = 0.5 * fmax(xmax - xmin, ymax - ymin) * 1.08 + 1e-6;
        xmin = cx - half;
        xmax = cx + half;
        ymin = cy - half;
        ymax = cy + half;
    }
    const int margin = 8, title_h = FMD_FONT_H + 8;
    const int W = margin + panels * (panel_px + margin), H = title_h + panel_px + margin;
    canvas c;
    fmd_status st = cv_new(&c, W, H, 255, 255, 255, fn);
    if (st) return st;
    const int bins = panel_px / 2 > 8 ? panel_px / 2 : 8;
    int64_t *hist = fmd_calloc((size_t)bins * (size_t)bins, sizeof(int64_t));
    if (!hist) {
        fmd_free(c.px);
        return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
    }
    static const uint8_t black[3] = {0, 0, 0}, grey[3] = {120, 120, 120};
    for (int p = 0; p < panels; p++) {
        memset(hist, 0, (size_t)bins * (size_t)bins * sizeof(int64_t));
        int64_t mx = 0;
        for (int64_t i = 0; i < counts[p]; i++) {
            double x = points[p][2 * i], y = points[p][2 * i + 1];
            if (!isfinite(x) || !isfinite(y)) continue;
            double u = (x - xmin) / (xmax - xmin), v = (ymax - y) / (ymax - ymin);
            if (u < 0 || u >= 1 || v < 0 || v >= 1) continue;
            int64_t *h = &hist[(int)(v * bins) * bins + (int)(u * bins)];
            if (++*h > mx) mx = *h;
        }
        const int x0 = margin + p * (panel_px + margin), y0 = title_h;
        const double inv = 1.0 / (double)(mx > 0 ? mx : 1);
        for (int y = 0; y < panel_px; y++)
            for (int x = 0; x < panel_px; x++) {
                int bx = (int)((int64_t)x * bins / panel_px), by = (int)((int64_t)y * bins / panel_px);
                uint8_t rgb[3];
                cmap(sqrt((double)hist[by * bins + bx] * inv), rgb);
                cv_put(&c, x0 + x, y0 + y, rgb);
            }
        cv_frame(&c, x0 - 1, y0 - 1, panel_px + 2, panel_px + 2, grey);
        if (titles && titles[p]) {
            char t[256];
            snprintf(t, sizeof t, "%s", titles[p]);
            int maxch = panel_px / FMD_FONT_W;
            if ((int)strlen(t) > maxch) t[maxch > 0 ? maxch : 0] = 0;
            cv_text(&c, x0 + (panel_px - text_width(t)) / 2, 4, t, black);
        }
    }
    fmd_free(hist);
    st = fmd_write_png(path, c.px, W, H, 3);
    fmd_free(c.px);
    return st;
}

static void fmt_num(char *buf, size_t n, double v, int log_y)
{
    snprintf(buf, n, "%.3g", log_y ? pow(10.0, v) : v);
}

fmd_status fmd_plot_curves(const char *path, const double *x, const double *const *ys,
                           const char *const *names, int nseries, int64_t n, const char *title,
                           int log_y, int width, int height)
{
    static const char *fn = "fmd_plot_curves";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(ys, "%s: ys is NULL", fn);
    FMD_CHECK_ARG(nseries >= 1 && nseries <= 16, "%s: nseries must be in [1, 16] (got %d)", fn, nseries);
    FMD_CHECK_ARG(n >= 0, "%s: n < 0", fn);
    FMD_CHECK_ARG(width >= 160 && width <= 4096 && height >= 120 && height <= 4096,
                  "%s: size %dx%d outside [160, 4096] x [120, 4096]", fn, width, height);
    for (int s = 0; s < nseries; s++) FMD_CHECK_ARG(ys[s] || n == 0, "%s: ys[%d] is NULL", fn, s);
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double xv = x ? x[i] : (double)i;
        if (!isfinite(xv)) continue;
        for (int s = 0; s < nseries; s++) {
            double yv = ys[s][i];
            if (log_y) yv = yv > 0 ? log10(yv) : NAN;
            if (!isfinite(yv)) continue;
            xlo = fmin(xlo, xv);
            xhi = fmax(xhi, xv);
            ylo = fmin(ylo, yv);
            yhi = fmax(yhi, yv);
        }
    }
    if (!(xhi >= xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    if (xhi - xlo < 1e-12) xlo -= 0.5, xhi += 0.5;
    if (yhi - ylo < 1e-12) ylo -= 0.5, yhi += 0.5;
    {
        double pad = 0.04 * (yhi - ylo);
        ylo -= pad;
        yhi += pad;
    }
    canvas c;
    fmd_status st = cv_new(&c, width, height, 255, 255, 255, fn);
    if (st) return st;
    static const uint8_t black[3] = {0, 0, 0}, grey[3] = {150, 150, 150}, light[3] = {230, 230, 230};
    static const uint8_t pal[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                       {214, 39, 40},  {148, 103, 189}, {140, 86, 75},
                                       {227, 119, 194}, {127, 127, 127}, {188, 189, 34},
                                       {23, 190, 207}};
    const int L = 9 * FMD_FONT_W + 6, R = 12, T = 2 * FMD_FONT_H + 16, B = FMD_FONT_H + 12;
    const int pw = width - L - R, ph = height - T - B;
    /* grid lines at quarters */
    for (int q = 1; q < 4; q++) {
        cv_rect(&c, L, T + ph * q / 4, pw, 1, light);
        cv_rect(&c, L + pw * q / 4, T, 1, ph, light);
    }
    cv_frame(&c, L - 1, T - 1, pw + 2, ph + 2, grey);
    char buf[64];
    for (int q = 0; q <= 2; q++) {
        double v = yhi - (yhi - ylo) * q / 2.0;
        fmt_num(buf, sizeof buf, v, log_y);
        int ty = T + ph * q / 2 - FMD_FONT_H / 2;
        if (ty < T) ty = T;
        if (ty > T + ph - FMD_FONT_H) ty = T + ph - FMD_FONT_H;
        cv_text(&c, L - 4 - text_width(buf), ty, buf, black);
    }
    snprintf(buf, sizeof buf, "%.6g", xlo);
    cv_text(&c, L, T + ph + 4, buf, black);
    snprintf(buf, sizeof buf, "%.6g", xhi);
    cv_text(&c, L + pw - text_width(buf), T + ph + 4, buf, black);
    if (title) {
        char t[256];
        snprintf(t, sizeof t, "%s%s", title, log_y ? " (log scale)" : "");
        cv_text(&c, L + (pw - text_width(t)) / 2, 4, t, black);
    }
    for (int s = 0; s < nseries; s++) {
        const uint8_t *col = pal[s % 10];
        int have = 0, px = 0, py = 0;
        for (int64_t i = 0; i < n; i++) {
            double xv = x ? x[i] : (double)i, yv = ys[s][i];
            if (log_y) yv = yv > 0 ? log10(yv) : NAN;
            if (!isfinite(xv) || !isfinite(yv)) {
                have = 0;
                continue;
            }
            int X = L + (int)lround((xv - xlo) / (xhi - xlo) * (pw - 1));
            int Y = T + (int)lround((yhi - yv) / (yhi - ylo) * (ph - 2));
            if (have) cv_line(&c, px, py, X, Y, col);
            else cv_put(&c, X, Y, col);
            px = X;
            py = Y;
            have = 1;
        }
        if (names && names[s]) {
            /* legend: one row under the title, entries left to right */
            int lx = L;
            for (int q = 0; q < s; q++)
                if (names[q]) lx += text_width(names[q]) + 40;
            const int ly = FMD_FONT_H + 8;
            cv_rect(&c, lx, ly + FMD_FONT_H / 2 - 1, 16, 3, col);
            cv_text(&c, lx + 22, ly, names[s], black);
        }
    }
    st = fmd_write_png(path, c.px, width, height, 3);
    fmd_free(c.px);
    return st;
}

fmd_status fmd_plot_image_grid(const char *path, const float *x, int64_t n, int channels, int height,
                               int width, int cols, float lo, float hi)
{
    static const char *fn = "fmd_plot_image_grid";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(x, "%s: x is NULL", fn);
    FMD_CHECK_ARG(n >= 1 && n <= 65536, "%s: n must be in [1, 65536] (got %lld)", fn, (long long)n);
    FMD_CHECK_ARG(channels == 1 || channels == 3, "%s: channels must be 1 or 3 (got %d)", fn, channels);
    FMD_CHECK_ARG(height >= 1 && height <= 4096 && width >= 1 && width <= 4096,
                  "%s: image size %dx%d outside [1, 4096]", fn, height, width);
    FMD_CHECK_ARG(cols >= 0, "%s: cols < 0", fn);
    FMD_CHECK_ARG(isfinite(lo) && isfinite(hi) && hi > lo, "%s: need finite lo < hi", fn);
    if (cols == 0) {
        cols = (int)ceil(sqrt((double)n));
        if (cols < 1) cols = 1;
    }
    if (cols > n) cols = (int)n;
    const int rows = (int)((n + cols - 1) / cols), gap = 2;
    const int64_t W = (int64_t)cols * (width + gap) + gap, H = (int64_t)rows * (height + gap) + gap;
    FMD_CHECK_ARG(W <= 65536 && H <= 65536, "%s: the grid (%lldx%lld) is too large", fn, (long long)W,
                  (long long)H);
    uint8_t *px = fmd_calloc((size_t)(W * H), (size_t)channels);
    if (!px) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
    const int64_t plane = (int64_t)height * width;
    for (int64_t k = 0; k < n; k++) {
        const int gx = gap + (int)(k % cols) * (width + gap), gy = gap + (int)(k / cols) * (height + gap);
        for (int ch = 0; ch < channels; ch++)
            for (int y = 0; y < height; y++)
                for (int xx = 0; xx < width; xx++) {
                    float v = x[(k * channels + ch) * plane + (int64_t)y * width + xx];
                    float u = (v - lo) / (hi - lo);
                    if (!(u > 0)) u = 0;
                    if (u > 1) u = 1;
                    px[(((int64_t)(gy + y)) * W + gx + xx) * channels + ch] = (uint8_t)lrintf(u * 255.0f);
                }
    }
    fmd_status st = fmd_write_png(path, px, (int)W, (int)H, channels);
    fmd_free(px);
    return st;
}
