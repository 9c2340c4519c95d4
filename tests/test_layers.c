/* Every layer, forward and backward: against PyTorch fixtures (tests/fixtures/layers.safetensors,
 * made by tests/reference/make_fixtures.py), optimized (_cpu) against naive (_ref) kernels, and
 * by finite differences. */
#include "backend/backend.h"
#include "backend/gemm.h"
#include "harness.h"

static Safetensors FX;
static const Backend *BACKENDS[2] = {&backend_cpu, &backend_ref};

/* Fixture tolerance: the references are float64 results rounded to float32, so a correct
 * float32 kernel lands within a few float32 ulps, accumulated over the reduction length. */
#define TOL_FIXTURE 2e-6

static float *nhwc_of(const float *nchw, const int64_t *s) {
    float *out = xmalloc(sizeof(float) * s[0] * s[1] * s[2] * s[3], "test");
    nchw_to_nhwc_ref(out, nchw, (int)s[0], (int)s[1], (int)s[2], (int)s[3]);
    return out;
}

static float *ohwi_of(const float *oihw, const int64_t *s) {
    float *out = xmalloc(sizeof(float) * s[0] * s[1] * s[2] * s[3], "test");
    for (int64_t o = 0; o < s[0]; o++)
        for (int64_t i = 0; i < s[1]; i++)
            for (int64_t h = 0; h < s[2]; h++)
                for (int64_t w = 0; w < s[3]; w++)
                    out[((o * s[2] + h) * s[3] + w) * s[1] + i] = oihw[((o * s[1] + i) * s[2] + h) * s[3] + w];
    return out;
}

static int meta_int(const char *key) {
    const char *v = st_meta(&FX, key);
    if (!v) {
        printf("FATAL fixture metadata %s missing\n", key);
        exit(2);
    }
    return atoi(v);
}

/* ---------------------------------------------------------------- finite differences */

/* L(x) = sum(weights * layer(x)) evaluated by the callback; `pattern` is a hash of the
 * layer's discrete choices (ReLU signs, max-pool winners): where a perturbation changes it, the
 * function has a kink there and that element is skipped. */
typedef double (*LossFn)(void *ctx, uint64_t *pattern);

static double dot(const float *a, const float *w, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * w[i];
    return s;
}

static uint64_t hash_mask(const float *y, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (y[i] > 0)) * 1099511628211ULL;
    return h;
}

static uint64_t hash_ints(const int32_t *a, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)a[i]) * 1099511628211ULL;
    return h;
}

/* Checks `grad` (analytic dL/dx) on up to 48 elements of x, perturbing each by +-h. */
static void fd_check(const char *what, float *x, size_t n, const float *grad, void *ctx, LossFn f,
                     float h, double tol) {
    uint64_t p0, pp, pm;
    f(ctx, &p0);
    double fd[48], an[48];
    int checked = 0, tried = 0;
    size_t stride = n / 48 + 1;
    for (size_t i = 0; i < n && checked < 48; i += stride) {
        float keep = x[i];
        tried++;
        x[i] = keep + h;
        double lp = f(ctx, &pp);
        x[i] = keep - h;
        double lm = f(ctx, &pm);
        x[i] = keep;
        if (pp != p0 || pm != p0) continue; /* a kink inside [x-h, x+h] */
        fd[checked] = (lp - lm) / (2.0 * h);
        an[checked] = grad[i];
        checked++;
    }
    double num = 0, den = 0;
    for (int i = 0; i < checked; i++) {
        num += (fd[i] - an[i]) * (fd[i] - an[i]);
        den += an[i] * an[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    CHECK(checked * 2 >= tried, "%s: only %d of %d elements away from kinks", what, checked, tried);
    CHECK(err <= tol, "%s: finite differences vs backward: relative error %.3e > %.1e", what, err, tol);
}

/* ---------------------------------------------------------------- GEMM */

static void test_gemm_matches_reference(void) {
    TestRng r = {42};
    const int M = 37, N = 29, K = 53;
    float A[64 * 64], B[64 * 64], C[64 * 64], Cr[64 * 64];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            fill_normal(&r, A, M * K, 1);
            fill_normal(&r, B, K * N, 1);
            fill_normal(&r, C, M * N, 1);
            memcpy(Cr, C, sizeof C);
            int lda = ta ? M : K, ldb = tb ? K : N;
            sgemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, C, N);
            sgemm_ref(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, Cr, N);
            CHECK_CLOSE(C, Cr, M * N, 1e-6, ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"));
        }
}

/* ---------------------------------------------------------------- convolution */

static const char *CONV_CASES[] = {"conv3x3_s1", "conv3x3_s2", "conv1x1_s1", "conv1x1_s2", "conv7x7_s2"};

static void test_conv2d_matches_pytorch(void) {
    for (size_t c = 0; c < ARRAY_LEN(CONV_CASES); c++) {
        char key[64];
        int64_t xs[4], ws[4], ys[4];
        const char *name = CONV_CASES[c];
#define FX_GET(field, shape) (snprintf(key, sizeof key, "%s." field, name), fx_get(&FX, key, shape, NULL))
        float *x = FX_GET("x", xs), *w = FX_GET("w", ws), *y = FX_GET("y", ys), *dy = FX_GET("dy", NULL),
              *dx = FX_GET("dx", NULL), *dw = FX_GET("dw", NULL);
        snprintf(key, sizeof key, "%s.stride", name);
        int stride = meta_int(key);
        snprintf(key, sizeof key, "%s.pad", name);
        int pad = meta_int(key);
        ConvShape s = conv_shape((int)xs[0], (int)xs[2], (int)xs[3], (int)xs[1], (int)ws[0], (int)ws[2], stride, pad);
        CHECK(s.Ho == ys[2] && s.Wo == ys[3], "%s: output shape", name);
        float *xn = nhwc_of(x, xs), *wn = ohwi_of(w, ws), *yn = nhwc_of(y, ys), *dyn = nhwc_of(dy, ys),
              *dxn = nhwc_of(dx, xs), *dwn = ohwi_of(dw, ws);
        size_t ny = (size_t)ys[0] * ys[1] * ys[2] * ys[3], nx = (size_t)xs[0] * xs[1] * xs[2] * xs[3],
               nw = (size_t)ws[0] * ws[1] * ws[2] * ws[3];
        for (int b = 0; b < 2; b++) {
            const Backend *be = BACKENDS[b];
            float *out = xcalloc(ny, 4, "t"), *gin = xcalloc(nx, 4, "t"), *gw = xcalloc(nw, 4, "t");
            float *scratch = xcalloc(be->conv2d_plan(&s, CONV_PASSES_ALL) + 1, 4, "t");
            char what[96];
            be->conv2d_forward(out, xn, wn, &s, scratch);
            snprintf(what, sizeof what, "%s %s forward", name, be->name);
            CHECK_CLOSE(out, yn, ny, TOL_FIXTURE, what);
            for (int i = 0; i < (int)nw; i++) gw[i] = 1.0f; /* backward must accumulate onto this */
            be->conv2d_backward_weight(gw, dyn, xn, &s, scratch);
            be->conv2d_backward_data(gin, dyn, wn, &s, scratch);
            for (int i = 0; i < (int)nw; i++) gw[i] -= 1.0f;
            snprintf(what, sizeof what, "%s %s d input", name, be->name);
            CHECK_CLOSE(gin, dxn, nx, TOL_FIXTURE, what);
            snprintf(what, sizeof what, "%s %s d weight (accumulated)", name, be->name);
            CHECK_CLOSE(gw, dwn, nw, 1e-5, what);
            xfree(out), xfree(gin), xfree(gw), xfree(scratch);
        }
        float *all[] = {x, w, y, dy, dx, dw, xn, wn, yn, dyn, dxn, dwn};
        for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
#undef FX_GET
    }
}

/* Tiles: a batch that needs several im2col tiles (and a remainder) against the naive loops. */
static void test_conv2d_tiled_matches_naive(void) {
    TestRng r = {7};
    /* stride 2: a shape the CPU kernels run by im2col (3x3 stride 1 goes to Winograd) */
    ConvShape s = conv_shape(7, 96, 96, 32, 16, 3, 2, 1);
    CHECK(!winograd_applies(&s), "expected the im2col path");
    CHECK(backend_cpu.conv2d_plan(&s, CONV_PASSES_ALL) < (size_t)7 * 48 * 48 * 9 * 32, "expected tiling");
    size_t nx = (size_t)7 * 96 * 96 * 32, ny = (size_t)7 * 48 * 48 * 16, nw = 16 * 9 * 32;
    float *x = xmalloc(nx * 4, "t"), *w = xmalloc(nw * 4, "t"), *dy = xmalloc(ny * 4, "t");
    fill_normal(&r, x, nx, 1), fill_normal(&r, w, nw, 0.1f), fill_normal(&r, dy, ny, 1);
    float *y[2], *dx[2], *dw[2];
    for (int b = 0; b < 2; b++) {
        float *scratch = xcalloc(BACKENDS[b]->conv2d_plan(&s, CONV_PASSES_ALL) + 1, 4, "t");
        y[b] = xmalloc(ny * 4, "t"), dx[b] = xmalloc(nx * 4, "t"), dw[b] = xcalloc(nw, 4, "t");
        BACKENDS[b]->conv2d_forward(y[b], x, w, &s, scratch);
        BACKENDS[b]->conv2d_backward_weight(dw[b], dy, x, &s, scratch);
        BACKENDS[b]->conv2d_backward_data(dx[b], dy, w, &s, scratch);
        xfree(scratch);
    }
    CHECK_CLOSE(y[0], y[1], ny, 1e-5, "forward");
    CHECK_CLOSE(dx[0], dx[1], nx, 1e-5, "d input");
    CHECK_CLOSE(dw[0], dw[1], nw, 1e-5, "d weight");
    for (int b = 0; b < 2; b++) xfree(y[b]), xfree(dx[b]), xfree(dw[b]);
    xfree(x), xfree(w), xfree(dy);
}

/* Winograd F(2x2, 3x3) and im2col+GEMM, each against the naive loops: odd sizes (partial
 * tiles), 1x1 images, channel counts off the vector width, and both weight orientations. */
static void test_winograd_and_im2col_match_naive(void) {
    TestRng r = {13};
    const ConvShape shapes[] = {conv_shape(3, 5, 7, 19, 21, 3, 1, 1), conv_shape(2, 1, 1, 16, 8, 3, 1, 1),
                                conv_shape(2, 9, 4, 1, 33, 3, 1, 1), conv_shape(4, 6, 6, 32, 16, 3, 1, 1),
                                conv_shape(2, 7, 3, 24, 12, 3, 1, 1)};
    for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
        const ConvShape s = shapes[k];
        CHECK(winograd_applies(&s), "shape %zu: Winograd applies", k);
        size_t nx = (size_t)s.B * s.H * s.W * s.Cin, ny = (size_t)s.B * s.Ho * s.Wo * s.Cout,
               nw = (size_t)s.Cout * 9 * s.Cin;
        float *x = xmalloc(nx * 4, "t"), *w = xmalloc(nw * 4, "t"), *dy = xmalloc(ny * 4, "t");
        fill_normal(&r, x, nx, 1), fill_normal(&r, w, nw, 0.2f), fill_normal(&r, dy, ny, 1);
        float *scratch = xcalloc(MAX(winograd_scratch_floats(&s), conv2d_im2col_scratch_floats(&s)) + 1, 4, "t");
        float *y[3], *dx[3], *dw[3];
        for (int v = 0; v < 3; v++) {
            y[v] = xmalloc(ny * 4, "t"), dx[v] = xmalloc(nx * 4, "t"), dw[v] = xcalloc(nw, 4, "t");
            for (size_t i = 0; i < nw; i++) dw[v][i] = 0.5f; /* must accumulate onto this */
        }
        conv2d_forward_ref(y[0], x, w, &s, scratch);
        conv2d_backward_data_ref(dx[0], dy, w, &s, scratch);
        conv2d_backward_weight_ref(dw[0], dy, x, &s, scratch);
        winograd_forward(y[1], x, w, &s, scratch);
        winograd_backward_data(dx[1], dy, w, &s, scratch);
        winograd_backward_weight(dw[1], dy, x, &s, scratch);
        conv2d_forward_im2col(y[2], x, w, &s, scratch);
        conv2d_backward_data_im2col(dx[2], dy, w, &s, scratch);
        conv2d_backward_weight_im2col(dw[2], dy, x, &s, scratch);
        for (int v = 1; v < 3; v++) {
            char what[96];
            const char *name = v == 1 ? "winograd" : "im2col";
            snprintf(what, sizeof what, "shape %zu %s forward", k, name);
            CHECK_CLOSE(y[v], y[0], ny, 1e-5, what);
            snprintf(what, sizeof what, "shape %zu %s d input", k, name);
            CHECK_CLOSE(dx[v], dx[0], nx, 1e-5, what);
            snprintf(what, sizeof what, "shape %zu %s d weight", k, name);
            CHECK_CLOSE(dw[v], dw[0], nw, 1e-5, what);
        }
        for (int v = 0; v < 3; v++) xfree(y[v]), xfree(dx[v]), xfree(dw[v]);
        xfree(x), xfree(w), xfree(dy), xfree(scratch);
    }
}

/* Direct convolution against the naive loops, all three kernels: 3x3 stride 1 and 2 (odd and
 * even sizes: the input gradient's phases), 7x7 stride 2 (the ImageNet stem; with 16 input
 * channels for its input gradient), 1x1 stride 2 (a downsample: half the phases receive
 * nothing), widths that leave a 16-channel vector after the 32-channel pairs (48), pixel counts
 * that need every block size, few input channels, a batch smaller than the thread count and
 * one larger than the group count. */
static void direct_conv_matches_naive_here(void) {
    TestRng r = {29};
    const ConvShape shapes[] = {conv_shape(3, 9, 31, 16, 16, 3, 1, 1), conv_shape(2, 7, 5, 32, 48, 3, 1, 1),
                                conv_shape(1, 11, 13, 3, 16, 7, 2, 3), conv_shape(2, 10, 9, 16, 32, 3, 2, 1),
                                conv_shape(3, 6, 6, 16, 32, 1, 2, 0), conv_shape(37, 4, 4, 48, 16, 3, 1, 1),
                                conv_shape(2, 1, 1, 16, 16, 3, 1, 1), conv_shape(2, 9, 11, 32, 16, 3, 2, 1),
                                conv_shape(1, 13, 10, 16, 16, 7, 2, 3), conv_shape(2, 5, 7, 16, 16, 1, 2, 0),
                                /* 8 and 24 channels: vectors of 8 (AVX2) or 4 floats only */
                                conv_shape(3, 9, 13, 8, 8, 3, 1, 1), conv_shape(2, 10, 9, 8, 24, 3, 2, 1),
                                conv_shape(2, 7, 11, 24, 8, 3, 1, 1),
                                /* grey and colour stems: the pixel steps of 1 and 3 floats */
                                conv_shape(2, 9, 10, 1, 16, 3, 1, 1), conv_shape(2, 8, 11, 3, 16, 3, 1, 1)};
    printf("     direct kernels of %d-float vectors\n", direct_conv_lanes());
    for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
        const ConvShape s = shapes[k];
        if (s.Cout % direct_conv_lanes()) continue; /* not for this ISA's vectors */
        size_t nx = (size_t)s.B * s.H * s.W * s.Cin, ny = (size_t)s.B * s.Ho * s.Wo * s.Cout,
               nw = (size_t)s.Cout * s.K * s.K * s.Cin;
        float *x = xmalloc(nx * 4, "t"), *w = xmalloc(nw * 4, "t"), *dy = xmalloc(ny * 4, "t");
        fill_normal(&r, x, nx, 1), fill_normal(&r, w, nw, 0.2f), fill_normal(&r, dy, ny, 1);
        size_t sc = 1;
        for (int p = 0; p < 3; p++)
            if (direct_conv_applies(&s, p)) sc = MAX(sc, direct_conv_scratch_floats(&s, p));
        float *scratch = xcalloc(sc, 4, "t");
        float *y[2], *dx[2], *dw[2];
        for (int v = 0; v < 2; v++) {
            y[v] = xmalloc(ny * 4, "t"), dx[v] = xmalloc(nx * 4, "t"), dw[v] = xcalloc(nw, 4, "t");
            for (size_t i = 0; i < nw; i++) dw[v][i] = 0.5f; /* must accumulate onto this */
        }
        conv2d_forward_ref(y[0], x, w, &s, NULL);
        conv2d_backward_data_ref(dx[0], dy, w, &s, NULL);
        conv2d_backward_weight_ref(dw[0], dy, x, &s, NULL);
        char what[96];
        CHECK(direct_conv_applies(&s, CONV_PASS_FORWARD) && direct_conv_applies(&s, CONV_PASS_WEIGHT),
              "shape %zu: direct applies", k);
        direct_conv_forward(y[1], x, w, &s, scratch);
        snprintf(what, sizeof what, "shape %zu direct forward", k);
        CHECK_CLOSE(y[1], y[0], ny, 1e-5, what);
        direct_conv_backward_weight(dw[1], dy, x, &s, scratch);
        snprintf(what, sizeof what, "shape %zu direct d weight", k);
        CHECK_CLOSE(dw[1], dw[0], nw, 1e-5, what);
        if (direct_conv_applies(&s, CONV_PASS_DATA)) {
            direct_conv_backward_data(dx[1], dy, w, &s, scratch);
            snprintf(what, sizeof what, "shape %zu direct d input", k);
            CHECK_CLOSE(dx[1], dx[0], nx, 1e-5, what);
        } else {
            CHECK(s.Cin % 16 != 0, "shape %zu: input gradient should apply", k);
        }
        for (int v = 0; v < 2; v++) xfree(y[v]), xfree(dx[v]), xfree(dw[v]);
        xfree(x), xfree(w), xfree(dy), xfree(scratch);
    }
}

/* Every ISA's kernels this CPU can run, against the naive reference. */
static void test_direct_conv_matches_naive(void) {
    const char *isas[] = {"avx512", "avx2", "sse", "portable"}, *dflt = direct_conv_isa();
    int ran = 0;
    for (size_t i = 0; i < ARRAY_LEN(isas); i++) {
        if (direct_conv_use_isa(isas[i]) != 0) continue;
        printf("     %s:\n", isas[i]);
        direct_conv_matches_naive_here();
        ran++;
    }
    printf("     built: %s; default here: %s\n", direct_conv_isas(), dflt);
    CHECK(ran >= 1 && direct_conv_use_isa(dflt) == 0, "%d ISAs ran", ran);
    CHECK(direct_conv_use_isa("mmx") == -1, "an ISA not built is refused");
#if defined(__x86_64__)
    CHECK(strstr(direct_conv_isas(), "sse") != NULL, "x86-64 builds the SSE2 kernels, which run anywhere: %s",
          direct_conv_isas());
#endif
}

/* A batch larger than one Winograd pass (the transformed tiles of 3 images of 64x64 with 160+160
 * channels exceed the pass budget): several passes, the weight gradient summed across them. */
static void test_winograd_multipass_matches_im2col(void) {
    TestRng r = {17};
    const ConvShape s = conv_shape(3, 64, 64, 160, 160, 3, 1, 1);
    size_t nx = (size_t)s.B * s.H * s.W * s.Cin, nw = (size_t)s.Cout * 9 * s.Cin;
    CHECK(winograd_scratch_floats(&s) < (size_t)16 * s.B * 32 * 32 * (s.Cin + s.Cout),
          "expected more than one pass");
    float *x = xmalloc(nx * 4, "t"), *w = xmalloc(nw * 4, "t"), *dy = xmalloc(nx * 4, "t");
    fill_normal(&r, x, nx, 1), fill_normal(&r, w, nw, 0.05f), fill_normal(&r, dy, nx, 1);
    float *scratch = xcalloc(MAX(winograd_scratch_floats(&s), conv2d_im2col_scratch_floats(&s)), 4, "t");
    float *y[2], *dx[2], *dw[2];
    for (int v = 0; v < 2; v++) y[v] = xmalloc(nx * 4, "t"), dx[v] = xmalloc(nx * 4, "t"), dw[v] = xcalloc(nw, 4, "t");
    winograd_forward(y[0], x, w, &s, scratch);
    winograd_backward_data(dx[0], dy, w, &s, scratch);
    winograd_backward_weight(dw[0], dy, x, &s, scratch);
    conv2d_forward_im2col(y[1], x, w, &s, scratch);
    conv2d_backward_data_im2col(dx[1], dy, w, &s, scratch);
    conv2d_backward_weight_im2col(dw[1], dy, x, &s, scratch);
    CHECK_CLOSE(y[0], y[1], nx, 1e-5, "forward");
    CHECK_CLOSE(dx[0], dx[1], nx, 1e-5, "d input");
    CHECK_CLOSE(dw[0], dw[1], nw, 1e-5, "d weight");
    for (int v = 0; v < 2; v++) xfree(y[v]), xfree(dx[v]), xfree(dw[v]);
    xfree(x), xfree(w), xfree(dy), xfree(scratch);
}

typedef struct {
    ConvShape s;
    float *x, *w, *y, *wy, *scratch;
} ConvCtx;

static double conv_loss(void *p, uint64_t *pattern) {
    ConvCtx *c = p;
    conv2d_forward_cpu(c->y, c->x, c->w, &c->s, c->scratch);
    *pattern = 0;
    return dot(c->y, c->wy, (size_t)c->s.B * c->s.Ho * c->s.Wo * c->s.Cout);
}

static void test_conv2d_finite_differences(void) {
    TestRng r = {11};
    /* stride 2 (im2col), 1x1 (plain GEMM), 7x7 stride 2 (im2col), 3x3 stride 1 (Winograd),
     * 16 channels (direct) */
    const ConvShape shapes[] = {conv_shape(2, 6, 5, 3, 4, 3, 2, 1), conv_shape(2, 4, 4, 3, 5, 1, 1, 0),
                                conv_shape(1, 9, 9, 2, 3, 7, 2, 3), conv_shape(2, 5, 6, 3, 4, 3, 1, 1),
                                conv_shape(1, 4, 5, 16, 16, 3, 1, 1)};
    for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
        ConvCtx c = {shapes[k], 0, 0, 0, 0, 0};
        if (c.s.Cin == 16)
            CHECK(direct_conv_preferred(&c.s, CONV_PASS_FORWARD) &&
                      direct_conv_preferred(&c.s, CONV_PASS_DATA) &&
                      direct_conv_preferred(&c.s, CONV_PASS_WEIGHT),
                  "16 channels: the direct kernels");
        size_t nx = (size_t)c.s.B * c.s.H * c.s.W * c.s.Cin, nw = (size_t)c.s.Cout * c.s.K * c.s.K * c.s.Cin,
               ny = (size_t)c.s.B * c.s.Ho * c.s.Wo * c.s.Cout;
        c.x = xmalloc(nx * 4, "t"), c.w = xmalloc(nw * 4, "t"), c.y = xmalloc(ny * 4, "t"), c.wy = xmalloc(ny * 4, "t");
        c.scratch = xcalloc(conv2d_scratch_floats(&c.s) + 1, 4, "t");
        fill_normal(&r, c.x, nx, 1), fill_normal(&r, c.w, nw, 0.5f), fill_normal(&r, c.wy, ny, 1);
        float *dx = xmalloc(nx * 4, "t"), *dw = xcalloc(nw, 4, "t");
        conv2d_backward_weight_cpu(dw, c.wy, c.x, &c.s, c.scratch);
        conv2d_backward_data_cpu(dx, c.wy, c.w, &c.s, c.scratch);
        fd_check("conv d input", c.x, nx, dx, &c, conv_loss, 1e-2f, 1e-3);
        fd_check("conv d weight", c.w, nw, dw, &c, conv_loss, 1e-2f, 1e-3);
        xfree(c.x), xfree(c.w), xfree(c.y), xfree(c.wy), xfree(c.scratch), xfree(dx), xfree(dw);
    }
}

/* ---------------------------------------------------------------- batch norm */

static void test_batchnorm_matches_pytorch(void) {
    const char *cases[] = {"bn2d_train", "bn2d_eval", "bn1d_train", "bn1d_eval"};
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        const char *name = cases[c];
        int train = strstr(name, "train") != NULL;
        char key[80];
        int64_t xs[4] = {0, 0, 1, 1};
        int nd;
#define FX_GET(field) (snprintf(key, sizeof key, "%s." field, name), fx_get(&FX, key, NULL, NULL))
        snprintf(key, sizeof key, "%s.x", name);
        float *x = fx_get(&FX, key, xs, &nd);
        float *gamma = FX_GET("gamma"), *beta = FX_GET("beta"), *rm0 = FX_GET("running_mean"),
              *rv0 = FX_GET("running_var"), *y = FX_GET("y"), *dy = FX_GET("dy"), *dx = FX_GET("dx"),
              *dgamma = FX_GET("dgamma"), *dbeta = FX_GET("dbeta"), *rm1 = FX_GET("new_running_mean"),
              *rv1 = FX_GET("new_running_var");
#undef FX_GET
        if (nd == 2) xs[2] = xs[3] = 1;
        const int C = (int)xs[1], M = (int)(xs[0] * xs[2] * xs[3]);
        float *xn = nhwc_of(x, xs), *yn = nhwc_of(y, xs), *dyn = nhwc_of(dy, xs), *dxn = nhwc_of(dx, xs);
        for (int b = 0; b < 2; b++) {
            const Backend *be = BACKENDS[b];
            float *out = xmalloc(M * C * 4, "t"), *din = xmalloc(M * C * 4, "t"), *rm = xmalloc(C * 4, "t"),
                  *rv = xmalloc(C * 4, "t"), *mean = xmalloc(C * 4, "t"), *invstd = xmalloc(C * 4, "t"),
                  *dg = xcalloc(C, 4, "t"), *db = xcalloc(C, 4, "t");
            double *work = xmalloc(be->batchnorm_work_doubles(M, C) * 8, "t");
            memcpy(rm, rm0, C * 4);
            memcpy(rv, rv0, C * 4);
            char what[96];
            if (train) {
                be->batchnorm_forward_train(out, mean, invstd, rm, rv, xn, gamma, beta, NULL, 0, M, C, 0.1f, 1e-5f, NULL, work);
            } else {
                be->batchnorm_forward_eval(out, xn, gamma, beta, rm, rv, NULL, 0, M, C, 1e-5f, work);
            }
            snprintf(what, sizeof what, "%s %s forward", name, be->name);
            CHECK_CLOSE(out, yn, (size_t)M * C, TOL_FIXTURE, what);
            snprintf(what, sizeof what, "%s %s running mean", name, be->name);
            CHECK_CLOSE(rm, rm1, C, TOL_FIXTURE, what);
            snprintf(what, sizeof what, "%s %s running var", name, be->name);
            CHECK_CLOSE(rv, rv1, C, TOL_FIXTURE, what);
            if (!train) {
                be->batchnorm_backward_eval(din, dg, db, dyn, xn, gamma, rm, rv, M, C, 1e-5f, work);
                snprintf(what, sizeof what, "%s %s d input", name, be->name);
                CHECK_CLOSE(din, dxn, (size_t)M * C, 1e-5, what);
                snprintf(what, sizeof what, "%s %s d gamma", name, be->name);
                CHECK_CLOSE(dg, dgamma, C, 1e-5, what);
                snprintf(what, sizeof what, "%s %s d beta", name, be->name);
                CHECK_CLOSE(db, dbeta, C, 1e-5, what);
            } else {
                be->batchnorm_backward(din, dg, db, dyn, NULL, xn, mean, invstd, gamma, M, C, NULL, work);
                snprintf(what, sizeof what, "%s %s d input", name, be->name);
                CHECK_CLOSE(din, dxn, (size_t)M * C, 1e-5, what);
                snprintf(what, sizeof what, "%s %s d gamma", name, be->name);
                CHECK_CLOSE(dg, dgamma, C, 1e-5, what);
                snprintf(what, sizeof what, "%s %s d beta", name, be->name);
                CHECK_CLOSE(db, dbeta, C, 1e-5, what);
                /* In place (din == dout), as the model uses it. */
                memcpy(din, dyn, (size_t)M * C * 4);
                be->batchnorm_backward(din, dg, db, din, NULL, xn, mean, invstd, gamma, M, C, NULL, work);
                snprintf(what, sizeof what, "%s %s d input in place", name, be->name);
                CHECK_CLOSE(din, dxn, (size_t)M * C, 1e-5, what);
            }
            xfree(out), xfree(din), xfree(rm), xfree(rv), xfree(mean), xfree(invstd), xfree(dg), xfree(db), xfree(work);
        }
        float *all[] = {x, gamma, beta, rm0, rv0, y, dy, dx, dgamma, dbeta, rm1, rv1, xn, yn, dyn, dxn};
        for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
    }
}

typedef struct {
    int M, C, train;
    float *x, *gamma, *beta, *y, *wy, *rm, *rv, *mean, *invstd;
    double *work;
} BnCtx;

static double bn_loss(void *p, uint64_t *pattern) {
    BnCtx *c = p;
    if (c->train)
        batchnorm_forward_train_cpu(c->y, c->mean, c->invstd, c->rm, c->rv, c->x, c->gamma, c->beta, NULL, 0, c->M, c->C, 0.1f, 1e-5f, NULL, c->work);
    else
        batchnorm_forward_eval_cpu(c->y, c->x, c->gamma, c->beta, c->rm, c->rv, NULL, 0, c->M, c->C, 1e-5f, c->work);
    *pattern = 0;
    return dot(c->y, c->wy, (size_t)c->M * c->C);
}

static void test_batchnorm_finite_differences(void) {
    TestRng r = {5};
    const int dims[][3] = {{6 * 4, 3, 1}, {8, 5, 1}, {6 * 4, 3, 0}};
    for (size_t k = 0; k < ARRAY_LEN(dims); k++) {
        BnCtx c = {dims[k][0], dims[k][1], dims[k][2], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        c.work = xmalloc(batchnorm_work_doubles(c.M, c.C) * 8, "t");
        size_t n = (size_t)c.M * c.C;
        c.x = xmalloc(n * 4, "t"), c.y = xmalloc(n * 4, "t"), c.wy = xmalloc(n * 4, "t");
        c.gamma = xmalloc(c.C * 4, "t"), c.beta = xmalloc(c.C * 4, "t"), c.rm = xcalloc(c.C, 4, "t");
        c.rv = xcalloc(c.C, 4, "t"), c.mean = xmalloc(c.C * 4, "t"), c.invstd = xmalloc(c.C * 4, "t");
        fill_normal(&r, c.x, n, 1), fill_normal(&r, c.wy, n, 1), fill_normal(&r, c.beta, c.C, 0.3f);
        for (int i = 0; i < c.C; i++) c.gamma[i] = 1 + 0.3f * rng_normal(&r);
        for (int i = 0; i < c.C; i++) c.rm[i] = 0.2f * rng_normal(&r), c.rv[i] = 0.5f + (float)rng_uniform(&r);
        float *dx = xmalloc(n * 4, "t"), *dg = xcalloc(c.C, 4, "t"), *db = xcalloc(c.C, 4, "t");
        uint64_t pat;
        bn_loss(&c, &pat);
        if (c.train)
            batchnorm_backward_cpu(dx, dg, db, c.wy, NULL, c.x, c.mean, c.invstd, c.gamma, c.M, c.C, NULL, c.work);
        else
            batchnorm_backward_eval_cpu(dx, dg, db, c.wy, c.x, c.gamma, c.rm, c.rv, c.M, c.C, 1e-5f, c.work);
        const char *mode = c.train ? "train" : "eval";
        char what[64];
        snprintf(what, sizeof what, "bn %s d input", mode);
        fd_check(what, c.x, n, dx, &c, bn_loss, 2e-3f, 2e-3);
        snprintf(what, sizeof what, "bn %s d gamma", mode);
        fd_check(what, c.gamma, c.C, dg, &c, bn_loss, 2e-3f, 2e-3);
        snprintf(what, sizeof what, "bn %s d beta", mode);
        fd_check(what, c.beta, c.C, db, &c, bn_loss, 2e-3f, 2e-3);
        float *all[] = {c.x, c.y, c.wy, c.gamma, c.beta, c.rm, c.rv, c.mean, c.invstd, dx, dg, db};
        for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
        xfree(c.work);
    }
}

/* Many rows: the CPU kernel reduces over several row chunks (M >= 64) and threads in one pass,
 * shifted by the first row; the naive reference reduces in two. Both must agree, including a
 * large channel mean (|mean| >> std, where an unshifted one-pass variance loses digits) and a
 * first row 1000 standard deviations from the mean (the shift itself far off). */
static void test_batchnorm_multichunk_matches_reference(void) {
    TestRng r = {17};
    const int dims[][2] = {{64, 5}, {8 * 16 * 16 + 3, 7}, {1000, 33}, {4099, 16}};
    for (size_t k = 0; k < ARRAY_LEN(dims); k++) {
        const int M = dims[k][0], C = dims[k][1];
        size_t n = (size_t)M * C;
        float *x = xmalloc(n * 4, "t"), *dy = xmalloc(n * 4, "t"), *g = xmalloc(C * 4, "t"),
              *b = xmalloc(C * 4, "t");
        fill_normal(&r, x, n, 1), fill_normal(&r, dy, n, 1), fill_normal(&r, b, C, 0.3f);
        for (size_t i = 0; i < n; i++) x[i] += (i % C == 0) ? 50.0f : 0.0f;
        if (M == 4099)
            for (int c = 0; c < C; c++) x[c] = (c % 2 ? -1000.0f : 1000.0f) + 3000.0f * (c == 0);
        for (int i = 0; i < C; i++) g[i] = 1 + 0.3f * rng_normal(&r);
        float *y[2], *dx[2], *dg[2], *db[2], *rm[2], *rv[2], *mean[2], *inv[2];
        for (int be = 0; be < 2; be++) {
            y[be] = xmalloc(n * 4, "t"), dx[be] = xmalloc(n * 4, "t");
            dg[be] = xcalloc(C, 4, "t"), db[be] = xcalloc(C, 4, "t"), rm[be] = xcalloc(C, 4, "t");
            rv[be] = xmalloc(C * 4, "t"), mean[be] = xmalloc(C * 4, "t"), inv[be] = xmalloc(C * 4, "t");
            for (int i = 0; i < C; i++) rv[be][i] = 1;
            double *work = xmalloc(BACKENDS[be]->batchnorm_work_doubles(M, C) * 8, "t");
            BACKENDS[be]->batchnorm_forward_train(y[be], mean[be], inv[be], rm[be], rv[be], x, g, b, NULL, 0, M, C, 0.1f, 1e-5f, NULL, work);
            BACKENDS[be]->batchnorm_backward(dx[be], dg[be], db[be], dy, NULL, x, mean[be], inv[be], g, M, C, NULL, work);
            xfree(work);
        }
        char what[80];
        snprintf(what, sizeof what, "bn M=%d C=%d forward", M, C);
        CHECK_CLOSE(y[0], y[1], n, 1e-5, what);
        snprintf(what, sizeof what, "bn M=%d C=%d running var", M, C);
        CHECK_CLOSE(rv[0], rv[1], C, 1e-6, what);
        snprintf(what, sizeof what, "bn M=%d C=%d running mean", M, C);
        CHECK_CLOSE(rm[0], rm[1], C, 1e-6, what);
        snprintf(what, sizeof what, "bn M=%d C=%d d input", M, C);
        CHECK_CLOSE(dx[0], dx[1], n, 1e-4, what);
        snprintf(what, sizeof what, "bn M=%d C=%d d gamma", M, C);
        CHECK_CLOSE(dg[0], dg[1], C, 1e-5, what);
        snprintf(what, sizeof what, "bn M=%d C=%d d beta", M, C);
        CHECK_CLOSE(db[0], db[1], C, 1e-5, what);
        for (int be = 0; be < 2; be++) {
            float *all[] = {y[be], dx[be], dg[be], db[be], rm[be], rv[be], mean[be], inv[be]};
            for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
        }
        xfree(x), xfree(dy), xfree(g), xfree(b);
    }
}

/* The fused post-ops: forward relu(bn(x) + residual) equals the separate passes bit for bit
 * (the same float operations in the same order), and a backward masked by the ReLU's output
 * equals relu_backward followed by the plain batch-norm backward; for both backends, with and
 * without the residual, 2-D and 1-D shapes. */
static void test_batchnorm_post_ops_match_separate_passes(void) {
    TestRng r = {23};
    const int dims[][2] = {{8 * 9 * 9, 16}, {37, 3}, {64, 4096 / 64}};
    for (size_t k = 0; k < ARRAY_LEN(dims); k++) {
        const int M = dims[k][0], C = dims[k][1];
        size_t n = (size_t)M * C;
        float *x = xmalloc(n * 4, "t"), *res = xmalloc(n * 4, "t"), *dy = xmalloc(n * 4, "t"),
              *g = xmalloc(C * 4, "t"), *b = xmalloc(C * 4, "t");
        fill_normal(&r, x, n, 1), fill_normal(&r, res, n, 1), fill_normal(&r, dy, n, 1);
        fill_normal(&r, b, C, 0.3f);
        for (int i = 0; i < C; i++) g[i] = 1 + 0.3f * rng_normal(&r);
        for (int be = 0; be < 2; be++)
            for (int with_res = 0; with_res < 2; with_res++) {
                const Backend *B = BACKENDS[be];
                const float *rp = with_res ? res : NULL;
                float *y1 = xmalloc(n * 4, "t"), *y2 = xmalloc(n * 4, "t"), *mean = xmalloc(C * 4, "t"),
                      *inv = xmalloc(C * 4, "t"), *rm = xcalloc(C, 4, "t"), *rv = xcalloc(C, 4, "t"),
                      *dx1 = xmalloc(n * 4, "t"), *dx2 = xmalloc(n * 4, "t"), *t = xmalloc(n * 4, "t"),
                      *dg1 = xcalloc(C, 4, "t"), *db1 = xcalloc(C, 4, "t"), *dg2 = xcalloc(C, 4, "t"),
                      *db2 = xcalloc(C, 4, "t");
                double *work = xmalloc(B->batchnorm_work_doubles(M, C) * 8, "t");
                B->batchnorm_forward_train(y1, mean, inv, rm, rv, x, g, b, rp, 1, M, C, 0.1f, 1e-5f, NULL, work);
                B->batchnorm_forward_train(y2, mean, inv, rm, rv, x, g, b, NULL, 0, M, C, 0.1f, 1e-5f, NULL, work);
                if (rp) B->add_forward(y2, y2, rp, n);
                B->relu_forward(y2, y2, n);
                char what[96];
                snprintf(what, sizeof what, "%s M=%d C=%d res=%d: fused forward == separate", B->name,
                         M, C, with_res);
                CHECK(memcmp(y1, y2, n * 4) == 0, "%s", what);
                B->batchnorm_forward_eval(y1, x, g, b, rm, rv, rp, 1, M, C, 1e-5f, work);
                B->batchnorm_forward_eval(y2, x, g, b, rm, rv, NULL, 0, M, C, 1e-5f, work);
                if (rp) B->add_forward(y2, y2, rp, n);
                B->relu_forward(y2, y2, n);
                snprintf(what, sizeof what, "%s M=%d C=%d res=%d: fused eval == separate", B->name, M,
                         C, with_res);
                CHECK(memcmp(y1, y2, n * 4) == 0, "%s", what);
                /* backward through the ReLU: its output y1 masks dy */
                B->batchnorm_backward(dx1, dg1, db1, dy, y1, x, mean, inv, g, M, C, NULL, work);
                B->relu_backward(t, dy, y1, n);
                B->batchnorm_backward(dx2, dg2, db2, t, NULL, x, mean, inv, g, M, C, NULL, work);
                snprintf(what, sizeof what, "%s M=%d C=%d: masked backward d input", B->name, M, C);
                CHECK_CLOSE(dx1, dx2, n, 1e-6, what);
                snprintf(what, sizeof what, "%s M=%d C=%d: masked backward d gamma", B->name, M, C);
                CHECK_CLOSE(dg1, dg2, C, 1e-6, what);
                snprintf(what, sizeof what, "%s M=%d C=%d: masked backward d beta", B->name, M, C);
                CHECK_CLOSE(db1, db2, C, 1e-6, what);
                /* in place, as the model runs it */
                memcpy(t, dy, n * 4);
                B->batchnorm_backward(t, dg1, db1, t, y1, x, mean, inv, g, M, C, NULL, work);
                snprintf(what, sizeof what, "%s M=%d C=%d: masked backward in place", B->name, M, C);
                CHECK_CLOSE(t, dx1, n, 1e-7, what);
                float *all[] = {y1, y2, mean, inv, rm, rv, dx1, dx2, t, dg1, db1, dg2, db2};
                for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
                xfree(work);
            }
        xfree(x), xfree(res), xfree(dy), xfree(g), xfree(b);
    }
}

/* Synchronized batch norm's plumbing, without MPI: a reducer that answers as if `world` ranks
 * held identical copies of this batch (it multiplies the sums by world). The global batch then
 * has the same mean, variance and normalized outputs, the input gradient is the same, dgamma
 * and dbeta are this rank's own sums (the gradient average over ranks comes later), and only
 * the running variance's unbiasing sees world * M rows. The multi-process test (test_dist)
 * checks the real thing. */
static int g_fake_calls;
static void fake_sum(const Reducer *r, double *v, int n) {
    g_fake_calls++;
    const int world = *(const int *)r->ctx;
    for (int i = 0; i < n; i++) v[i] *= world;
}

static void test_batchnorm_sync_reducer(void) {
    TestRng r = {31};
    const int M = 300, C = 24, world = 3;
    const Reducer red = {fake_sum, &world};
    size_t n = (size_t)M * C;
    float *x = xmalloc(n * 4, "t"), *dy = xmalloc(n * 4, "t"), *g = xmalloc(C * 4, "t"), *b = xmalloc(C * 4, "t");
    fill_normal(&r, x, n, 1), fill_normal(&r, dy, n, 1), fill_normal(&r, b, C, 0.3f);
    for (int i = 0; i < C; i++) g[i] = 1 + 0.3f * rng_normal(&r);
    for (int be = 0; be < 2; be++) {
        const Backend *B = BACKENDS[be];
        float *y[2], *dx[2], *dg[2], *db[2], *rm[2], *rv[2], *mean[2], *inv[2];
        double *work = xmalloc(B->batchnorm_work_doubles(M, C) * 8, "t");
        for (int v = 0; v < 2; v++) {
            y[v] = xmalloc(n * 4, "t"), dx[v] = xmalloc(n * 4, "t"), dg[v] = xcalloc(C, 4, "t");
            db[v] = xcalloc(C, 4, "t"), rm[v] = xcalloc(C, 4, "t"), rv[v] = xmalloc(C * 4, "t");
            mean[v] = xmalloc(C * 4, "t"), inv[v] = xmalloc(C * 4, "t");
            for (int i = 0; i < C; i++) rv[v][i] = 1;
            g_fake_calls = 0;
            const Reducer *sync = v ? &red : NULL;
            B->batchnorm_forward_train(y[v], mean[v], inv[v], rm[v], rv[v], x, g, b, NULL, 1, M, C, 0.1f, 1e-5f, sync, work);
            B->batchnorm_backward(dx[v], dg[v], db[v], dy, y[v], x, mean[v], inv[v], g, M, C, sync, work);
            if (v) CHECK(g_fake_calls > 0, "%s: the reducer was called", B->name);
        }
        char what[80];
        snprintf(what, sizeof what, "%s synced forward", B->name);
        CHECK_CLOSE(y[1], y[0], n, 1e-6, what);
        snprintf(what, sizeof what, "%s synced d input", B->name);
        CHECK_CLOSE(dx[1], dx[0], n, 1e-6, what);
        snprintf(what, sizeof what, "%s synced d gamma (this rank's sums)", B->name);
        CHECK_CLOSE(dg[1], dg[0], C, 1e-6, what);
        snprintf(what, sizeof what, "%s synced d beta (this rank's sums)", B->name);
        CHECK_CLOSE(db[1], db[0], C, 1e-6, what);
        snprintf(what, sizeof what, "%s synced running mean", B->name);
        CHECK_CLOSE(rm[1], rm[0], C, 1e-6, what);
        /* running var: 0.9 + 0.1 * var * R/(R-1) with R = world*M rows instead of M */
        double worst = 0;
        for (int i = 0; i < C; i++) {
            double var = (rv[0][i] - 0.9) / 0.1 * (M - 1.0) / M;
            double want = 0.9 + 0.1 * var * (world * M) / (world * M - 1.0);
            worst = fmax(worst, fabs(rv[1][i] - want) / want);
        }
        CHECK(worst < 1e-6, "%s synced running var: unbiased over world*M rows (worst %.2e)", B->name, worst);
        for (int v = 0; v < 2; v++) {
            float *all[] = {y[v], dx[v], dg[v], db[v], rm[v], rv[v], mean[v], inv[v]};
            for (size_t i = 0; i < ARRAY_LEN(all); i++) xfree(all[i]);
        }
        xfree(work);
    }
    xfree(x), xfree(dy), xfree(g), xfree(b);
}

/* ---------------------------------------------------------------- relu, add, pools */

static void test_relu_matches_pytorch(void) {
    int64_t s[4];
    float *x = fx_get(&FX, "relu.x", s, NULL), *y = fx_get(&FX, "relu.y", NULL, NULL),
          *dy = fx_get(&FX, "relu.dy", NULL, NULL), *dx = fx_get(&FX, "relu.dx", NULL, NULL);
    size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
    CHECK(x[0] == 0.0f, "fixture includes an exact zero (the kink)");
    for (int b = 0; b < 2; b++) {
        float *out = xmalloc(n * 4, "t"), *din = xmalloc(n * 4, "t");
        BACKENDS[b]->relu_forward(out, x, n);
        BACKENDS[b]->relu_backward(din, dy, out, n);
        CHECK(rel_err(out, y, n) == 0, "%s forward", BACKENDS[b]->name);
        CHECK(rel_err(din, dx, n) == 0, "%s backward (zero gradient at the kink)", BACKENDS[b]->name);
        float nan_in = NAN, nan_out;
        BACKENDS[b]->relu_forward(&nan_out, &nan_in, 1);
        CHECK(isnan(nan_out), "%s: NaN passes through ReLU (so a diverged step is noticed)", BACKENDS[b]->name);
        xfree(out), xfree(din);
    }
    xfree(x), xfree(y), xfree(dy), xfree(dx);
}

typedef struct {
    size_t n;
    float *x, *y, *wy;
} ReluCtx;

static double relu_loss(void *p, uint64_t *pattern) {
    ReluCtx *c = p;
    relu_forward_cpu(c->y, c->x, c->n);
    *pattern = hash_mask(c->y, c->n);
    return dot(c->y, c->wy, c->n);
}

static void test_relu_finite_differences(void) {
    TestRng r = {3};
    ReluCtx c = {200, 0, 0, 0};
    c.x = xmalloc(c.n * 4, "t"), c.y = xmalloc(c.n * 4, "t"), c.wy = xmalloc(c.n * 4, "t");
    fill_normal(&r, c.x, c.n, 1), fill_normal(&r, c.wy, c.n, 1);
    c.x[0] = 0.001f; /* within h of the kink: must be skipped, not compared */
    float *dx = xmalloc(c.n * 4, "t");
    relu_forward_cpu(c.y, c.x, c.n);
    relu_backward_cpu(dx, c.wy, c.y, c.n);
    fd_check("relu", c.x, c.n, dx, &c, relu_loss, 1e-2f, 1e-4);
    xfree(c.x), xfree(c.y), xfree(c.wy), xfree(dx);
}

static void test_residual_add_matches_pytorch(void) {
    int64_t s[4];
    float *a = fx_get(&FX, "add.a", s, NULL), *b = fx_get(&FX, "add.b", NULL, NULL), *y = fx_get(&FX, "add.y", NULL, NULL),
          *dy = fx_get(&FX, "add.dy", NULL, NULL), *da = fx_get(&FX, "add.da", NULL, NULL), *db = fx_get(&FX, "add.db", NULL, NULL);
    size_t n = (size_t)s[0] * s[1] * s[2] * s[3];
    for (int k = 0; k < 2; k++) {
        float *out = xmalloc(n * 4, "t");
        BACKENDS[k]->add_forward(out, a, b, n);
        CHECK_CLOSE(out, y, n, 1e-7, "forward");
        BACKENDS[k]->add_forward(out, a, b, n);
        BACKENDS[k]->add_forward(out, out, a, n); /* in place, as the block uses it */
        for (size_t i = 0; i < n; i++) out[i] -= a[i];
        CHECK_CLOSE(out, y, n, 1e-6, "in place");
        xfree(out);
    }
    /* Backward of a + b hands dy to both inputs unchanged: the block backward reads one gradient
     * buffer for both paths (src/model/resnet.c) instead of calling a kernel. PyTorch agrees: */
    CHECK_CLOSE(da, dy, n, 0, "d a == d y");
    CHECK_CLOSE(db, dy, n, 0, "d b == d y");
    /* and so do finite differences of sum(w * (a + b)) through our forward. */
    float *out = xmalloc(n * 4, "t");
    double worst = 0;
    for (size_t i = 0; i < n; i += 7) {
        float keep = a[i];
        a[i] = keep + 1e-2f;
        backend_cpu.add_forward(out, a, b, n);
        double up = dot(out, dy, n);
        a[i] = keep - 1e-2f;
        backend_cpu.add_forward(out, a, b, n);
        double down = dot(out, dy, n);
        a[i] = keep;
        double fd = (up - down) / (2e-2 * 1.0), err = fabs(fd - dy[i]) / (fabs(dy[i]) + 1e-2);
        if (err > worst) worst = err;
    }
    CHECK(worst < 1e-2, "finite differences of add: worst relative error %.3g", worst);
    xfree(out);
    xfree(a), xfree(b), xfree(y), xfree(dy), xfree(da), xfree(db);
}

static void test_maxpool_matches_pytorch(void) {
    int64_t xs[4], ys[4];
    float *x = fx_get(&FX, "maxpool.x", xs, NULL), *y = fx_get(&FX, "maxpool.y", ys, NULL),
          *dy = fx_get(&FX, "maxpool.dy", NULL, NULL), *dx = fx_get(&FX, "maxpool.dx", NULL, NULL);
    PoolShape s = pool_shape((int)xs[0], (int)xs[2], (int)xs[3], (int)xs[1], 3, 2, 1);
    CHECK(s.Ho == ys[2] && s.Wo == ys[3], "output shape");
    size_t nx = (size_t)xs[0] * xs[1] * xs[2] * xs[3], ny = (size_t)ys[0] * ys[1] * ys[2] * ys[3];
    float *xn = nhwc_of(x, xs), *yn = nhwc_of(y, ys), *dyn = nhwc_of(dy, ys), *dxn = nhwc_of(dx, xs);
    for (int b = 0; b < 2; b++) {
        float *out = xmalloc(ny * 4, "t"), *din = xmalloc(nx * 4, "t");
        int32_t *arg = xmalloc(ny * 4, "t");
        BACKENDS[b]->maxpool2d_forward(out, arg, xn, &s);
        BACKENDS[b]->maxpool2d_backward(din, dyn, arg, &s);
        CHECK(rel_err(out, yn, ny) == 0, "%s forward", BACKENDS[b]->name);
        CHECK_CLOSE(din, dxn, nx, 1e-6, "backward");
        xfree(out), xfree(din), xfree(arg);
    }
    /* Ties go to the first maximum in window order, as in PyTorch: an all-equal input. */
    PoolShape t = pool_shape(1, 4, 4, 1, 3, 2, 1);
    float ones[16], o[4], d1[4] = {1, 1, 1, 1}, g[16];
    int32_t arg[4];
    for (int i = 0; i < 16; i++) ones[i] = 1.0f;
    maxpool2d_forward_cpu(o, arg, ones, &t);
    CHECK(arg[0] == 0 && arg[1] == 1 && arg[2] == 4 && arg[3] == 5, "ties: first in window order (%d %d %d %d)",
          arg[0], arg[1], arg[2], arg[3]);
    maxpool2d_backward_cpu(g, d1, arg, &t);
    CHECK(g[0] == 1 && g[1] == 1 && g[4] == 1 && g[5] == 1 && g[2] == 0, "tie gradients routed to the winners");
    xfree(x), xfree(y), xfree(dy), xfree(dx), xfree(xn), xfree(yn), xfree(dyn), xfree(dxn);
}

typedef struct {
    PoolShape s;
    float *x, *y, *wy;
    int32_t *arg;
} PoolCtx;

static double pool_loss(void *p, uint64_t *pattern) {
    PoolCtx *c = p;
    size_t ny = (size_t)c->s.B * c->s.Ho * c->s.Wo * c->s.C;
    maxpool2d_forward_cpu(c->y, c->arg, c->x, &c->s);
    *pattern = hash_ints(c->arg, ny);
    return dot(c->y, c->wy, ny);
}

static void test_maxpool_finite_differences(void) {
    TestRng r = {9};
    PoolCtx c = {pool_shape(2, 7, 6, 3, 3, 2, 1), 0, 0, 0, 0};
    size_t nx = (size_t)2 * 7 * 6 * 3, ny = (size_t)2 * c.s.Ho * c.s.Wo * 3;
    c.x = xmalloc(nx * 4, "t"), c.y = xmalloc(ny * 4, "t"), c.wy = xmalloc(ny * 4, "t"), c.arg = xmalloc(ny * 4, "t");
    fill_normal(&r, c.x, nx, 1), fill_normal(&r, c.wy, ny, 1);
    float *dx = xmalloc(nx * 4, "t");
    uint64_t pat;
    pool_loss(&c, &pat);
    maxpool2d_backward_cpu(dx, c.wy, c.arg, &c.s);
    fd_check("maxpool", c.x, nx, dx, &c, pool_loss, 1e-3f, 1e-3);
    xfree(c.x), xfree(c.y), xfree(c.wy), xfree(c.arg), xfree(dx);
}

static void test_avgpool_matches_pytorch(void) {
    int64_t xs[4];
    float *x = fx_get(&FX, "avgpool.x", xs, NULL), *y = fx_get(&FX, "avgpool.y", NULL, NULL),
          *dy = fx_get(&FX, "avgpool.dy", NULL, NULL), *dx = fx_get(&FX, "avgpool.dx", NULL, NULL);
    const int B = (int)xs[0], C = (int)xs[1], HW = (int)(xs[2] * xs[3]);
    float *xn = nhwc_of(x, xs), *dxn = nhwc_of(dx, xs);
    for (int b = 0; b < 2; b++) {
        float *out = xmalloc(B * C * 4, "t"), *din = xmalloc((size_t)B * HW * C * 4, "t");
        BACKENDS[b]->avgpool_forward(out, xn, B, HW, C);
        BACKENDS[b]->avgpool_backward(din, dy, B, HW, C);
        CHECK_CLOSE(out, y, (size_t)B * C, TOL_FIXTURE, "forward");
        CHECK_CLOSE(din, dxn, (size_t)B * HW * C, TOL_FIXTURE, "backward");
        xfree(out), xfree(din);
    }
    xfree(x), xfree(y), xfree(dy), xfree(dx), xfree(xn), xfree(dxn);
}

typedef struct {
    int B, HW, C;
    float *x, *y, *wy;
} AvgCtx;

static double avg_loss(void *p, uint64_t *pattern) {
    AvgCtx *c = p;
    avgpool_forward_cpu(c->y, c->x, c->B, c->HW, c->C);
    *pattern = 0;
    return dot(c->y, c->wy, (size_t)c->B * c->C);
}

static void test_avgpool_finite_differences(void) {
    TestRng r = {13};
    AvgCtx c = {2, 12, 5, 0, 0, 0};
    size_t nx = 2 * 12 * 5, ny = 2 * 5;
    c.x = xmalloc(nx * 4, "t"), c.y = xmalloc(ny * 4, "t"), c.wy = xmalloc(ny * 4, "t");
    fill_normal(&r, c.x, nx, 1), fill_normal(&r, c.wy, ny, 1);
    float *dx = xmalloc(nx * 4, "t");
    avgpool_backward_cpu(dx, c.wy, c.B, c.HW, c.C);
    fd_check("avgpool", c.x, nx, dx, &c, avg_loss, 1e-2f, 1e-4);
    xfree(c.x), xfree(c.y), xfree(c.wy), xfree(dx);
}

/* ---------------------------------------------------------------- linear, loss */

static void test_linear_matches_pytorch(void) {
    int64_t xs[2], ws[2];
    float *x = fx_get(&FX, "linear.x", xs, NULL), *w = fx_get(&FX, "linear.w", ws, NULL), *b = fx_get(&FX, "linear.b", NULL, NULL),
          *y = fx_get(&FX, "linear.y", NULL, NULL), *dy = fx_get(&FX, "linear.dy", NULL, NULL),
          *dx = fx_get(&FX, "linear.dx", NULL, NULL), *dw = fx_get(&FX, "linear.dw", NULL, NULL), *db = fx_get(&FX, "linear.db", NULL, NULL);
    const int B = (int)xs[0], In = (int)xs[1], Out = (int)ws[0];
    for (int k = 0; k < 2; k++) {
        float *out = xmalloc(B * Out * 4, "t"), *din = xmalloc(B * In * 4, "t"), *gw = xcalloc(Out * In, 4, "t"),
              *gb = xcalloc(Out, 4, "t");
        BACKENDS[k]->linear_forward(out, x, w, b, B, In, Out);
        BACKENDS[k]->linear_backward(din, gw, gb, dy, x, w, B, In, Out);
        CHECK_CLOSE(out, y, (size_t)B * Out, TOL_FIXTURE, "forward");
        CHECK_CLOSE(din, dx, (size_t)B * In, TOL_FIXTURE, "d input");
        CHECK_CLOSE(gw, dw, (size_t)Out * In, TOL_FIXTURE, "d weight");
        CHECK_CLOSE(gb, db, Out, TOL_FIXTURE, "d bias");
        xfree(out), xfree(din), xfree(gw), xfree(gb);
    }
    xfree(x), xfree(w), xfree(b), xfree(y), xfree(dy), xfree(dx), xfree(dw), xfree(db);
}

typedef struct {
    int B, In, Out;
    float *x, *w, *b, *y, *wy;
} LinCtx;

static double lin_loss(void *p, uint64_t *pattern) {
    LinCtx *c = p;
    linear_forward_cpu(c->y, c->x, c->w, c->b, c->B, c->In, c->Out);
    *pattern = 0;
    return dot(c->y, c->wy, (size_t)c->B * c->Out);
}

static void test_linear_finite_differences(void) {
    TestRng r = {17};
    LinCtx c = {5, 7, 6, 0, 0, 0, 0, 0};
    c.x = xmalloc(35 * 4, "t"), c.w = xmalloc(42 * 4, "t"), c.b = xmalloc(6 * 4, "t"), c.y = xmalloc(30 * 4, "t"), c.wy = xmalloc(30 * 4, "t");
    fill_normal(&r, c.x, 35, 1), fill_normal(&r, c.w, 42, 0.5f), fill_normal(&r, c.b, 6, 0.5f), fill_normal(&r, c.wy, 30, 1);
    float *dx = xmalloc(35 * 4, "t"), *dw = xcalloc(42, 4, "t"), *db = xcalloc(6, 4, "t");
    linear_backward_cpu(dx, dw, db, c.wy, c.x, c.w, c.B, c.In, c.Out);
    fd_check("linear d input", c.x, 35, dx, &c, lin_loss, 1e-2f, 1e-3);
    fd_check("linear d weight", c.w, 42, dw, &c, lin_loss, 1e-2f, 1e-3);
    fd_check("linear d bias", c.b, 6, db, &c, lin_loss, 1e-2f, 1e-3);
    xfree(c.x), xfree(c.w), xfree(c.b), xfree(c.y), xfree(c.wy), xfree(dx), xfree(dw), xfree(db);
}

static void test_cosine_loss_matches_pytorch(void) {
    int64_t ps[2];
    float *p = fx_get(&FX, "cosine.p", ps, NULL), *z = fx_get(&FX, "cosine.z", NULL, NULL),
          *loss = fx_get(&FX, "cosine.loss", NULL, NULL), *dp = fx_get(&FX, "cosine.dp", NULL, NULL);
    const int B = (int)ps[0], D = (int)ps[1];
    for (int k = 0; k < 2; k++) {
        float l = BACKENDS[k]->cosine_loss_forward(p, z, B, D), *g = xmalloc(B * D * 4, "t");
        CHECK(fabs(l - loss[0]) <= 1e-6 * fabs(loss[0]), "%s loss %.9g vs %.9g", BACKENDS[k]->name, l, loss[0]);
        BACKENDS[k]->cosine_loss_backward(g, p, z, B, D, 1.0f);
        CHECK_CLOSE(g, dp, (size_t)B * D, TOL_FIXTURE, "gradient");
        BACKENDS[k]->cosine_loss_backward(g, p, z, B, D, 2.5f);
        for (int i = 0; i < B * D; i++) g[i] /= 2.5f;
        CHECK_CLOSE(g, dp, (size_t)B * D, TOL_FIXTURE, "gradient scales with dloss");
        xfree(g);
    }
    xfree(p), xfree(z), xfree(loss), xfree(dp);
}

typedef struct {
    int B, D;
    float *p, *z;
} CosCtx;

static double cos_loss(void *ctx, uint64_t *pattern) {
    CosCtx *c = ctx;
    *pattern = 0;
    return cosine_loss_forward_ref(c->p, c->z, c->B, c->D);
}

static void test_cosine_loss_finite_differences(void) {
    TestRng r = {19};
    CosCtx c = {4, 9, 0, 0};
    c.p = xmalloc(36 * 4, "t"), c.z = xmalloc(36 * 4, "t");
    fill_normal(&r, c.p, 36, 1), fill_normal(&r, c.z, 36, 1);
    float *dp = xmalloc(36 * 4, "t");
    cosine_loss_backward_cpu(dp, c.p, c.z, c.B, c.D, 1.0f);
    fd_check("cosine loss", c.p, 36, dp, &c, cos_loss, 1e-2f, 2e-3);
    xfree(c.p), xfree(c.z), xfree(dp);
}

/* ---------------------------------------------------------------- DINO's pieces */

static void test_dino_layers_match_pytorch(void) {
    int64_t gs[2], ns[2], ds_[2];
    float *gx = fx_get(&FX, "gelu.x", gs, NULL), *gy = fx_get(&FX, "gelu.y", NULL, NULL),
          *gdy = fx_get(&FX, "gelu.dy", NULL, NULL), *gdx = fx_get(&FX, "gelu.dx", NULL, NULL);
    float *nx = fx_get(&FX, "l2norm.x", ns, NULL), *ny = fx_get(&FX, "l2norm.y", NULL, NULL),
          *ndy = fx_get(&FX, "l2norm.dy", NULL, NULL), *ndx = fx_get(&FX, "l2norm.dx", NULL, NULL);
    float *t = fx_get(&FX, "dino.t", ds_, NULL), *c = fx_get(&FX, "dino.center", NULL, NULL),
          *sv = fx_get(&FX, "dino.s", NULL, NULL), *q = fx_get(&FX, "dino.q", NULL, NULL),
          *loss = fx_get(&FX, "dino.loss", NULL, NULL), *dsr = fx_get(&FX, "dino.ds", NULL, NULL),
          *ent = fx_get(&FX, "dino.entropy", NULL, NULL), *newc = fx_get(&FX, "dino.new_center", NULL, NULL);
    const size_t gn = (size_t)gs[0] * gs[1];
    const int rows = (int)ns[0], cols = (int)ns[1], R = (int)ds_[0], K = (int)ds_[1];
    const float tt = (float)atof(st_meta(&FX, "dino.teacher_temp")), ts = (float)atof(st_meta(&FX, "dino.student_temp"));
    const Backend *all[3] = {&backend_cpu, &backend_ref, &backend_gpu_emu};
    for (int k = 0; k < 3; k++) {
        const Backend *be = all[k];
        float *o = xmalloc(64 * 4, "t"), *norms = xmalloc(16 * 4, "t"), *d = xmalloc(64 * 4, "t");
        be->gelu_forward(o, gx, gn);
        CHECK_CLOSE(o, gy, gn, TOL_FIXTURE, "gelu");
        be->gelu_backward(o, gdy, gx, gn);
        CHECK_CLOSE(o, gdx, gn, TOL_FIXTURE, "gelu backward");
        be->l2norm_rows_forward(o, norms, nx, rows, cols, 1e-12f);
        CHECK_CLOSE(o, ny, (size_t)rows * cols, TOL_FIXTURE, "l2norm");
        be->l2norm_rows_backward(d, ndy, o, norms, rows, cols, 1e-12f);
        CHECK_CLOSE(d, ndx, (size_t)rows * cols, TOL_FIXTURE, "l2norm backward");
        be->dino_teacher_softmax(o, t, c, R, K, tt);
        CHECK_CLOSE(o, q, (size_t)R * K, TOL_FIXTURE, "teacher softmax");
        double h;
        float l = be->dino_student_loss(d, sv, q, R, K, ts, 1.0f, &h);
        CHECK(fabs(l - loss[0]) <= 1e-6 * fabs(loss[0]), "%s dino loss %.9g vs %.9g", be->name, l, loss[0]);
        CHECK(fabs(h - ent[0]) <= 1e-6 * fabs(ent[0]), "%s teacher entropy %.9g vs %.9g", be->name, h, ent[0]);
        CHECK_CLOSE(d, dsr, (size_t)R * K, TOL_FIXTURE, "dino loss gradient");
        memcpy(o, c, K * sizeof(float));
        be->dino_center_update(o, t, R, K, 0.9f, NULL);
        CHECK_CLOSE(o, newc, (size_t)K, TOL_FIXTURE, "center update");
        xfree(o), xfree(norms), xfree(d);
    }
    xfree(gx), xfree(gy), xfree(gdy), xfree(gdx), xfree(nx), xfree(ny), xfree(ndy), xfree(ndx);
    xfree(t), xfree(c), xfree(sv), xfree(q), xfree(loss), xfree(dsr), xfree(ent), xfree(newc);
}

/* Finite differences of sum(r * f(x)) for GELU and the row normalization (eps 1e-12, and 0:
 * weight normalization), and of the DINO loss in the student's outputs. */
typedef struct {
    int rows, cols, which; /* 0 gelu, 1 l2norm, 2 weight norm, 3 dino loss */
    float *x, *r, *q;
} DinoCtx;

static double dino_piece_loss(void *ctx, uint64_t *pattern) {
    DinoCtx *c = ctx;
    const size_t n = (size_t)c->rows * c->cols;
    *pattern = 0;
    float *y = xmalloc(n * 4, "t"), *norms = xmalloc(c->rows * 4, "t");
    double l = 0, h;
    if (c->which == 3) {
        l = dino_student_loss_ref(y, c->x, c->q, c->rows, c->cols, 0.1f, 1.0f, &h);
    } else {
        if (c->which == 0) gelu_forward_ref(y, c->x, n);
        else l2norm_rows_forward_ref(y, norms, c->x, c->rows, c->cols, c->which == 1 ? 1e-12f : 0.0f);
        for (size_t i = 0; i < n; i++) l += (double)c->r[i] * y[i];
    }
    xfree(y), xfree(norms);
    return l;
}

static void test_dino_layers_finite_differences(void) {
    const char *names[4] = {"gelu", "l2norm", "weight norm", "dino loss"};
    for (int which = 0; which < 4; which++) {
        TestRng rng = {31 + which};
        DinoCtx c = {5, 8, which, 0, 0, 0};
        const size_t n = 40;
        c.x = xmalloc(n * 4, "t"), c.r = xmalloc(n * 4, "t"), c.q = xmalloc(n * 4, "t");
        fill_normal(&rng, c.x, n, 1), fill_normal(&rng, c.r, n, 1), fill_normal(&rng, c.q, n, 1);
        for (int i = 0; i < c.rows; i++) { /* q: rows of a distribution */
            double s = 0;
            for (int j = 0; j < c.cols; j++) s += c.q[i * c.cols + j] = expf(c.q[i * c.cols + j]);
            for (int j = 0; j < c.cols; j++) c.q[i * c.cols + j] /= (float)s;
        }
        float *g = xmalloc(n * 4, "t"), *y = xmalloc(n * 4, "t"), *norms = xmalloc(c.rows * 4, "t");
        double h;
        if (which == 0) gelu_backward_cpu(g, c.r, c.x, n);
        if (which == 1 || which == 2) {
            const float eps = which == 1 ? 1e-12f : 0.0f;
            l2norm_rows_forward_cpu(y, norms, c.x, c.rows, c.cols, eps);
            l2norm_rows_backward_cpu(g, c.r, y, norms, c.rows, c.cols, eps);
        }
        if (which == 3) dino_student_loss_cpu(g, c.x, c.q, c.rows, c.cols, 0.1f, 1.0f, &h);
        fd_check(names[which], c.x, n, g, &c, dino_piece_loss, 1e-2f, 2e-3);
        xfree(c.x), xfree(c.r), xfree(c.q), xfree(g), xfree(y), xfree(norms);
    }
}

/* ---------------------------------------------------------------- VICReg's variance and covariance */

/* The fixture's z, loss and gradient (VICReg's code in PyTorch, float64): the CPU's, the
 * reference's and the GPU backend's kernels (the emulator). The kernel adds into dz: it starts at a known value, which must stay. */
static void test_var_cov_matches_pytorch(void) {
    int64_t zs[2];
    float *z = fx_get(&FX, "var_cov.z", zs, NULL), *loss = fx_get(&FX, "var_cov.loss", NULL, NULL),
          *dz_ref = fx_get(&FX, "var_cov.dz", NULL, NULL);
    const int B = (int)zs[0], D = (int)zs[1];
    const float wv = (float)atof(st_meta(&FX, "var_cov.w_var")), wc = (float)atof(st_meta(&FX, "var_cov.w_cov"));
    const Backend *all[3] = {&backend_cpu, &backend_ref, &backend_gpu_emu};
    float *dz = xmalloc((size_t)B * D * 4, "t"), *scratch = xmalloc(var_cov_scratch_floats(B, D) * 4, "t");
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < B * D; i++) dz[i] = 0.25f * (float)(i % 7);
        double l = all[k]->var_cov_loss(dz, z, B, D, wv, wc, 2.0f, scratch);
        for (int i = 0; i < B * D; i++) dz[i] = (dz[i] - 0.25f * (float)(i % 7)) / 2.0f;
        CHECK(fabs(l - loss[0]) <= 1e-6 * fabs(loss[0]), "%s var-cov loss %.9g vs PyTorch %.9g", all[k]->name, l,
              loss[0]);
        CHECK_CLOSE(dz, dz_ref, (size_t)B * D, TOL_FIXTURE, "var-cov gradient");
    }
    xfree(z), xfree(loss), xfree(dz_ref), xfree(dz), xfree(scratch);
}

typedef struct {
    int B, D;
    float *z;
} VarCovCtx;

/* the loss, and which columns' hinge is active (its kink: a column's std at 1) */
static double var_cov_value(void *ctx, uint64_t *pattern) {
    VarCovCtx *c = ctx;
    float *dz = xcalloc((size_t)c->B * c->D, 4, "t");
    double l = var_cov_loss_ref(dz, c->z, c->B, c->D, 1.3f, 0.2f, 1.0f, NULL);
    *pattern = 0;
    for (int j = 0; j < c->D && j < 64; j++) {
        double m = 0, v = 0;
        for (int b = 0; b < c->B; b++) m += c->z[b * c->D + j];
        m /= c->B;
        for (int b = 0; b < c->B; b++) v += (c->z[b * c->D + j] - m) * (c->z[b * c->D + j] - m);
        if (sqrt(v / (c->B - 1) + 1e-4) < 1) *pattern |= 1ull << j;
    }
    xfree(dz);
    return l;
}

/* Finite differences of the terms, and the optimized kernel against the naive one on a batch
 * of a run's shape, spreads on both sides of the hinge. */
static void test_var_cov_finite_differences_and_reference(void) {
    TestRng rng = {77};
    VarCovCtx c = {10, 6, NULL};
    c.z = xmalloc(60 * 4, "t");
    fill_normal(&rng, c.z, 60, 1);
    for (int i = 0; i < 60; i++) c.z[i] *= 0.4f + 0.3f * (float)(i % 6); /* spreads 0.4 to 1.9 */
    float *g = xcalloc(60, 4, "t"), *scratch = xmalloc(var_cov_scratch_floats(10, 6) * 4, "t");
    var_cov_loss_cpu(g, c.z, 10, 6, 1.3f, 0.2f, 1.0f, scratch);
    fd_check("var-cov", c.z, 60, g, &c, var_cov_value, 1e-2f, 2e-3);
    xfree(c.z), xfree(g), xfree(scratch);

    const int B = 64, D = 48;
    float *z = xmalloc((size_t)B * D * 4, "t"), *a = xmalloc((size_t)B * D * 4, "t"), *b = xmalloc((size_t)B * D * 4, "t");
    float *sc = xmalloc(var_cov_scratch_floats(B, D) * 4, "t");
    fill_normal(&rng, z, (size_t)B * D, 1);
    for (int i = 0; i < B * D; i++) z[i] = z[i] * (0.3f + 0.05f * (float)(i % D)) + 0.1f * (float)(i % 5);
    fill_normal(&rng, a, (size_t)B * D, 1);
    memcpy(b, a, (size_t)B * D * 4);
    const double la = var_cov_loss_cpu(a, z, B, D, 25.0f, 1.0f, 0.7f, sc), lb = var_cov_loss_ref(b, z, B, D, 25.0f, 1.0f, 0.7f, NULL);
    CHECK(fabs(la - lb) <= 1e-5 * fabs(lb), "var-cov cpu %.9g vs reference %.9g", la, lb);
    CHECK_CLOSE(a, b, (size_t)B * D, 1e-5, "var-cov gradient, cpu vs reference");
    xfree(z), xfree(a), xfree(b), xfree(sc);
}

int main(void) {
    char path[512];
    Err e;
    snprintf(path, sizeof path, "%s/layers.safetensors", fixture_dir());
    if (st_open(&FX, path, &e)) {
        printf("FATAL %s (run from the repository root, or set BYOL_FIXTURES)\n", e.msg);
        return 2;
    }
    RUN(test_gemm_matches_reference);
    RUN(test_dino_layers_match_pytorch);
    RUN(test_dino_layers_finite_differences);
    RUN(test_conv2d_matches_pytorch);
    RUN(test_conv2d_tiled_matches_naive);
    RUN(test_winograd_and_im2col_match_naive);
    RUN(test_winograd_multipass_matches_im2col);
    RUN(test_conv2d_finite_differences);
    RUN(test_direct_conv_matches_naive);
    RUN(test_batchnorm_matches_pytorch);
    RUN(test_batchnorm_finite_differences);
    RUN(test_batchnorm_multichunk_matches_reference);
    RUN(test_batchnorm_post_ops_match_separate_passes);
    RUN(test_batchnorm_sync_reducer);
    RUN(test_relu_matches_pytorch);
    RUN(test_relu_finite_differences);
    RUN(test_residual_add_matches_pytorch);
    RUN(test_maxpool_matches_pytorch);
    RUN(test_maxpool_finite_differences);
    RUN(test_avgpool_matches_pytorch);
    RUN(test_avgpool_finite_differences);
    RUN(test_linear_matches_pytorch);
    RUN(test_linear_finite_differences);
    RUN(test_cosine_loss_matches_pytorch);
    RUN(test_cosine_loss_finite_differences);
    RUN(test_var_cov_matches_pytorch);
    RUN(test_var_cov_finite_differences_and_reference);
    st_close(&FX);
    return test_finish();
}
