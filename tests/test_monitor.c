/* Collapse monitor (std x sqrt(D), effective rank, the symmetric eigenvalue solver) and the SVG
 * plot of metrics.jsonl. */
#include "eval/monitor.h"
#include "model/byol.h"
#include "eval/plot.h"
#include "harness.h"

/* An orthogonal n x n matrix: a product of three Householder reflectors from random vectors. */
static void random_orthogonal(TestRng *r, double *q, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) q[i * n + j] = i == j;
    double *v = xmalloc(n * sizeof(double), "v");
    for (int h = 0; h < 3; h++) {
        double vv = 0;
        for (int i = 0; i < n; i++) {
            v[i] = rng_normal(r);
            vv += v[i] * v[i];
        }
        for (int i = 0; i < n; i++) { /* row_i of Q (I - 2 v v^T / v.v) */
            double d = 0;
            for (int k = 0; k < n; k++) d += q[i * n + k] * v[k];
            for (int k = 0; k < n; k++) q[i * n + k] -= 2 * d / vv * v[k];
        }
    }
    xfree(v);
}

/* A plain cyclic Jacobi method (two-sided, all rotations, full sweeps): the independent
 * reference for sym_eigenvalues on small matrices. Eigenvalues descending. */
static void jacobi_reference(double *a, int n, double *w) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, all = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) *(i == j ? &all : &off) += a[i * n + j] * a[i * n + j];
        if (off <= 1e-30 * (all + off)) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                const double apq = a[p * n + q];
                if (apq == 0) continue;
                const double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                const double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    const double x = a[k * n + p], y = a[k * n + q];
                    a[k * n + p] = c * x - s * y, a[k * n + q] = s * x + c * y;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    const double x = a[p * n + k], y = a[q * n + k];
                    a[p * n + k] = c * x - s * y, a[q * n + k] = s * x + c * y;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[i * n + i];
    for (int i = 1; i < n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && w[j] > w[j - 1]; j--) {
            const double t = w[j];
            w[j] = w[j - 1], w[j - 1] = t;
        }
}

/* Q diag(lambda) Q^T with known eigenvalues (negative, repeated and zero ones included). */
static void test_eigenvalues_known(void) {
    TestRng r = {7};
    const int n = 40;
    double *q = xmalloc(n * n * sizeof(double), "q"), *a = xmalloc(n * n * sizeof(double), "a");
    double lambda[40], w[40], work[80];
    for (int i = 0; i < n; i++) lambda[i] = i < 5 ? 3.0 : i == 20 ? 0.0 : 10.0 - 0.5 * i; /* 3 x5, down to -9.5 */
    random_orthogonal(&r, q, n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += q[i * n + k] * lambda[k] * q[j * n + k];
            a[i * n + j] = s;
        }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) a[i * n + j] = a[j * n + i]; /* exactly symmetric */
    double *a2 = xmalloc(n * n * sizeof(double), "a2");
    memcpy(a2, a, n * n * sizeof(double));
    CHECK(sym_eigenvalues(a, n, w, work) == 0);
    double want[40];
    memcpy(want, lambda, sizeof want);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && want[j] > want[j - 1]; j--) {
            const double t = want[j];
            want[j] = want[j - 1], want[j - 1] = t;
        }
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(w[i] - want[i]));
    CHECK(worst < 1e-9, "max |error| %.3e", worst);
    double wj[40], worst_j = 0;
    jacobi_reference(a2, n, wj);
    for (int i = 0; i < n; i++) worst_j = fmax(worst_j, fabs(w[i] - wj[i]));
    CHECK(worst_j < 1e-9, "vs cyclic Jacobi: max |difference| %.3e", worst_j);

    /* small and already-diagonal cases */
    double one[1] = {-2.5}, w1[1], wk[4];
    CHECK(sym_eigenvalues(one, 1, w1, wk) == 0 && w1[0] == -2.5);
    double two[4] = {2, 1, 1, 2}, w2[2];
    CHECK(sym_eigenvalues(two, 2, w2, wk) == 0 && fabs(w2[0] - 3) < 1e-14 && fabs(w2[1] - 1) < 1e-14, "%g %g", w2[0], w2[1]);
    double diag[9] = {1, 0, 0, 0, 5, 0, 0, 0, -1}, w3[3], wk3[6];
    CHECK(sym_eigenvalues(diag, 3, w3, wk3) == 0 && w3[0] == 5 && w3[1] == 1 && w3[2] == -1);
    xfree(q), xfree(a), xfree(a2);
}

/* Random symmetric matrices of several sizes against the cyclic Jacobi reference. */
static void test_eigenvalues_vs_jacobi(void) {
    TestRng r = {11};
    const int sizes[] = {3, 8, 17, 64};
    for (size_t t = 0; t < ARRAY_LEN(sizes); t++) {
        const int n = sizes[t];
        double *a = xmalloc(n * n * sizeof(double), "a"), *a2 = xmalloc(n * n * sizeof(double), "a2");
        double *w = xmalloc(n * sizeof(double), "w"), *wj = xmalloc(n * sizeof(double), "wj");
        double *work = xmalloc(2 * n * sizeof(double), "work");
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng_normal(&r);
        memcpy(a2, a, n * n * sizeof(double));
        CHECK(sym_eigenvalues(a, n, w, work) == 0);
        jacobi_reference(a2, n, wj);
        double worst = 0;
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(w[i] - wj[i]));
        CHECK(worst < 1e-11, "n %d: max |difference| %.3e", n, worst);
        xfree(a), xfree(a2), xfree(w), xfree(wj), xfree(work);
    }
}

static CollapseStats stats(const float *z, int B, int D) {
    CollapseStats s;
    double *work = xmalloc(collapse_work_doubles(B, D) * sizeof(double), "work");
    collapse_stats(z, B, D, &s, work);
    xfree(work);
    return s;
}

static void test_collapse_identical_rows(void) {
    const int B = 32, D = 16;
    float z[32 * 16];
    TestRng r = {3};
    float row[16];
    fill_normal(&r, row, D, 1.7f);
    for (int b = 0; b < B; b++) memcpy(z + b * D, row, sizeof row);
    CollapseStats s = stats(z, B, D);
    CHECK(fabs(s.std_sqrt_d) < 1e-9, "std_sqrt_d %g", s.std_sqrt_d);
    CHECK(s.eff_rank == 0, "all-zero centered matrix: eff_rank %g (defined as 0)", s.eff_rank);
    CHECK(collapse_warning(&s));
    /* work = NULL allocates internally; B = 1 is a zero centered matrix too */
    CollapseStats s1;
    collapse_stats(z, 1, D, &s1, NULL);
    CHECK(s1.std_sqrt_d == 0 && s1.eff_rank == 0, "B=1: %g %g", s1.std_sqrt_d, s1.eff_rank);
    /* rank one: rows c_b * u with varying c_b */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < D; j++) z[b * D + j] = (float)(b - 10) * row[j];
    s = stats(z, B, D);
    CHECK(fabs(s.eff_rank - 1) < 1e-6, "rank one: eff_rank %.9g", s.eff_rank);
    CHECK(collapse_warning(&s));
    /* a NaN in Z: NaN figures, which warn */
    z[5] = NAN;
    s = stats(z, B, D);
    CHECK(isnan(s.std_sqrt_d) && isnan(s.eff_rank) && collapse_warning(&s));
}

static void test_collapse_gaussian(void) {
    const int B = 512, D = 64;
    float *z = xmalloc((size_t)B * D * sizeof(float), "z");
    TestRng r = {5};
    fill_normal(&r, z, (size_t)B * D, 2.0f);
    CollapseStats s = stats(z, B, D);
    printf("  gaussian B=%d D=%d: std_sqrt_d %.4f eff_rank %.2f\n", B, D, s.std_sqrt_d, s.eff_rank);
    CHECK(s.std_sqrt_d >= 0.9 && s.std_sqrt_d <= 1.1, "std_sqrt_d %g", s.std_sqrt_d);
    CHECK(s.eff_rank > 0.8 * D && s.eff_rank <= D, "eff_rank %g", s.eff_rank);
    CHECK(!collapse_warning(&s));
    /* B < D: the Gram path; at most B - 1 nonzero singular values after centering */
    const int B2 = 20, D2 = 100;
    fill_normal(&r, z, (size_t)B2 * D2, 1.0f);
    s = stats(z, B2, D2);
    printf("  gaussian B=%d D=%d: std_sqrt_d %.4f eff_rank %.2f\n", B2, D2, s.std_sqrt_d, s.eff_rank);
    CHECK(s.eff_rank > 0.8 * (B2 - 1) && s.eff_rank <= B2 - 1 + 1e-9, "eff_rank %g", s.eff_rank);
    CHECK(s.std_sqrt_d > 0.8 && s.std_sqrt_d < 1.2, "std_sqrt_d %g", s.std_sqrt_d);
    xfree(z);
}

/* Rows +-a*q_k for three orthonormal directions q_k of R^D (a random rotation): the centered
 * matrix has three equal singular values, so eff_rank is exactly 3; the same with B < D. */
static void test_collapse_subspace(void) {
    TestRng r = {9};
    const int Ds[2] = {64, 200}, Bs[2] = {120, 12};
    for (int t = 0; t < 2; t++) {
        const int D = Ds[t], B = Bs[t];
        double *q = xmalloc((size_t)D * D * sizeof(double), "q");
        random_orthogonal(&r, q, D);
        float *z = xmalloc((size_t)B * D * sizeof(float), "z");
        for (int b = 0; b < B; b++) {
            const int k = b % 3;
            const double sign = (b / 3) % 2 ? -1.0 : 1.0;
            for (int j = 0; j < D; j++) z[(size_t)b * D + j] = (float)(sign * 2.5 * q[k * D + j]);
        }
        CollapseStats s = stats(z, B, D);
        CHECK(fabs(s.eff_rank - 3) < 1e-6, "B=%d D=%d: eff_rank %.12g", B, D, s.eff_rank);
        CHECK(!collapse_warning(&s), "three directions: no warning (std x sqrt(D) %.3f)", s.std_sqrt_d);
        xfree(q), xfree(z);
    }
}

static void test_collapse_warning_thresholds(void) {
    CollapseStats ok = {1.0, 100}, low_std = {0.09, 100}, byol_like = {0.76, 3.7}, one_direction = {1.0, 1.4};
    CHECK(!collapse_warning(&ok));
    CHECK(collapse_warning(&low_std), "std x sqrt(D) 0.09 < 0.1");
    CHECK(!collapse_warning(&byol_like), "a healthy BYOL run's figures (3.7 directions) do not warn");
    CHECK(collapse_warning(&one_direction), "effective rank 1.4 < 1.5");
    CHECK(collapse_warning(&(CollapseStats){NAN, NAN}), "NaN warns");
    /* the trivial solution by agreement: the lab's measured figures on either side */
    CHECK(collapse_agreement(0.989, 0.174), "BYOL without a predictor after 150 steps");
    CHECK(collapse_agreement(0.968, 0.258), "SimSiam without stop-gradient after 130 steps");
    CHECK(!collapse_agreement(0.847, 0.654), "BYOL after 130 steps");
    CHECK(!collapse_agreement(0.99, 0.8), "a long healthy run: predictions close, spread kept");
    CHECK(!collapse_agreement(0.5, 0.12), "shrinking while still predicting poorly");
    CHECK(!collapse_agreement(NAN, 0.1), "DINO (no cosine) is not judged by agreement");
    /* and the cosine a loss stands for */
    CHECK(fabs(method_loss_mean_cos(METHOD_BYOL, 0.04) - 0.99) < 1e-12, "BYOL: 1 - loss / 4");
    CHECK(method_loss_mean_cos(METHOD_SIMSIAM, -0.97) == 0.97, "SimSiam: -loss");
    CHECK(isnan(method_loss_mean_cos(METHOD_DINO, 8.0)), "DINO: none");
}

static void test_collapse_speed(void) {
    const int B = 256, D = 256;
    float *z = xmalloc((size_t)B * D * sizeof(float), "z");
    TestRng r = {13};
    fill_normal(&r, z, (size_t)B * D, 1.0f);
    double *work = xmalloc(collapse_work_doubles(B, D) * sizeof(double), "work");
    CollapseStats s;
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now_seconds();
        collapse_stats(z, B, D, &s, work);
        best = fmin(best, now_seconds() - t0);
    }
    printf("  collapse_stats B=%d D=%d: %.1f ms (best of 3), eff_rank %.1f\n", B, D, best * 1e3, s.eff_rank);
    CHECK(best < 0.5, "%.1f ms (target: well under 50 ms)", best * 1e3);
    xfree(z), xfree(work);
}

/* ---- plot ---- */

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static char *read_text(const char *path) {
    size_t n;
    uint8_t *p = slurp(path, &n);
    char *s = xmalloc(n + 1, "text");
    memcpy(s, p, n);
    s[n] = 0;
    free(p);
    return s;
}

/* The attribute `name` of the first element at or after p that has it, as a number (NAN if none). */
static double attr_num(const char *p, const char *name) {
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *a = strstr(p, key);
    return a ? atof(a + strlen(key)) : NAN;
}

/* The y coordinate an axis of the panel starting at `panel` gives `value`, from its first and
 * last tick labels (drawn 4 px below their tick): the left axis's end at x = 73 and are
 * right-aligned, the right axis's start at x = 887. */
static double axis_y(const char *panel, const char *end, int right, double value) {
    const char *tick = right ? "<text x=\"887.0\" y=\"" : "<text x=\"73.0\" y=\"";
    double v0 = NAN, y0 = NAN, v1 = NAN, y1 = NAN;
    for (const char *p = strstr(panel, tick); p && p < end; p = strstr(p + 1, tick)) {
        const double y = atof(p + strlen(tick)) - 4;
        const char *gt = strchr(p, '>');
        if (!gt) break;
        const double v = atof(gt + 1);
        if (isnan(v0)) v0 = v, y0 = y;
        v1 = v, y1 = y;
    }
    if (isnan(v0) || v1 == v0) return NAN;
    return y0 + (value - v0) * (y1 - y0) / (v1 - v0);
}

/* The collapse panel's two thresholds: each a dashed line in its curve's colour, at the y its
 * own axis maps its value to (std·√D 0.1 on the left, effective rank 1.5 on the right), inside
 * the frame, and labelled. */
static void check_thresholds(const char *svg, const char *what) {
    const char *panel = svg;
    for (int k = 0; k < 3 && panel; k++) panel = strstr(k ? panel + 1 : panel, "<g class=\"panel\">");
    CHECK(panel != NULL, "%s: three panels", what);
    if (!panel) return;
    const char *end = strstr(panel, "</g>");
    const double frame_top = attr_num(strstr(panel, "<rect"), "y"), frame_h = attr_num(strstr(panel, "<rect"), "height");
    const struct {
        const char *series;
        int right;
        double value;
        const char *label;
    } want[2] = {{"proj_std", 0, 0.1, "std·√D = 0.1 (collapse)"}, {"eff_rank", 1, 1.5, "effective rank = 1.5 (collapse)"}};
    CHECK(count(panel, "<line class=\"threshold\"") == 2 && count(svg, "<line class=\"threshold\"") == 2,
          "%s: two threshold lines, in the collapse panel", what);
    for (int i = 0; i < 2; i++) {
        char key[128];
        snprintf(key, sizeof key, "<line class=\"threshold\" data-series=\"%s\"", want[i].series);
        const char *line = strstr(panel, key);
        CHECK(line && line < end, "%s: a threshold line for %s", what, want[i].series);
        if (!line || line > end) continue;
        const double y1 = attr_num(line, "y1"), y2 = attr_num(line, "y2");
        const double expect = axis_y(panel, end, want[i].right, want[i].value);
        CHECK(fabs(y1 - expect) <= 0.15 && y1 == y2, "%s: %s threshold at y %.1f, its %s axis puts %g at %.2f", what,
              want[i].series, y1, want[i].right ? "right" : "left", want[i].value, expect);
        CHECK(y1 >= frame_top && y1 <= frame_top + frame_h, "%s: %s threshold at y %.1f inside the frame %.1f..%.1f", what,
              want[i].series, y1, frame_top, frame_top + frame_h);
        /* the colour of its curve, dashed */
        snprintf(key, sizeof key, "<polyline class=\"%s\" fill=\"none\" stroke=\"", want[i].series);
        const char *curve = strstr(panel, key), *stroke = strstr(line, " stroke=\"");
        CHECK(curve && stroke && strncmp(curve + strlen(key), stroke + 9, 7) == 0,
              "%s: the %s threshold has its curve's colour", what, want[i].series);
        const char *close = strchr(line, '>');
        const char *dash = strstr(line, "stroke-dasharray");
        CHECK(dash && close && dash < close, "%s: the %s threshold is dashed", what, want[i].series);
        snprintf(key, sizeof key, "<text class=\"threshold-label\" data-series=\"%s\"", want[i].series);
        const char *label = strstr(panel, key);
        CHECK(label && label < end && strstr(label, want[i].label) && strstr(label, want[i].label) < end,
              "%s: the %s threshold is labelled '%s'", what, want[i].series, want[i].label);
        if (label)
            CHECK(strstr(label, want[i].right ? "text-anchor=\"end\"" : "text-anchor=\"start\"") < strchr(label, '>'),
                  "%s: the %s label sits at its axis's side", what, want[i].series);
    }
}

static void test_plot_metrics(void) {
    const char *jsonl = tmp_path("metrics.jsonl"), *svg = tmp_path("plot.svg");
    FILE *f = fopen(jsonl, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 1; i <= 50; i++) {
        const int step = 10 * i;
        if (i == 20) fprintf(f, "{\"step\": 200, \"loss\": 3.1,\n"); /* malformed */
        fprintf(f, "{\"step\": %d, \"epoch\": %g, \"loss\": %g, \"lr\": %g, \"tau\": 0.99, \"images_per_s\": 130.2, "
                   "\"proj_std\": %g, \"eff_rank\": %g, \"extra\": \"ignored\"}\n",
                step, step / 80.0, 4.0 - 2.0 * i / 50, 0.5 * i / 50, 0.2 + 0.01 * i, 5.0 + i);
        if (i % 17 == 0) fprintf(f, "{\"step\": %d, \"epoch\": %g, \"knn_top1\": %g}\n", step, step / 80.0, 0.3 + 0.01 * i);
    }
    fprintf(f, "\n");
    fclose(f);
    Err e = {{0}};
    CHECK(plot_metrics_svg(jsonl, svg, &e) == 0, "%s", e.msg);
    struct stat st;
    CHECK(stat(svg, &st) == 0, "no SVG written");
    if (stat(svg, &st) != 0) return;
    char *s = read_text(svg);
    CHECK(strncmp(s, "<?xml", 5) == 0 || strncmp(s, "<svg", 4) == 0, "starts with %.20s", s);
    CHECK(count(s, "<svg") == 1 && count(s, "</svg>") == 1);
    CHECK(count(s, "<g ") == count(s, "</g>") && count(s, "<text") == count(s, "</text>"));
    CHECK(count(s, "<polyline class=\"loss\"") == 1);
    CHECK(count(s, "<polyline class=\"knn_top1\"") == 1);
    CHECK(count(s, "<polyline class=\"proj_std\"") == 1);
    CHECK(count(s, "<polyline class=\"eff_rank\"") == 1 && count(s, "<polyline class=\"lr\"") == 1);
    CHECK(count(s, "<polyline") == 5);
    CHECK(count(s, "<circle") >= 2, "kNN points drawn");
    CHECK(strstr(s, "BYOL training") != NULL, "title");
    CHECK(strstr(s, "kNN top-1") && strstr(s, "effective rank (right)") && strstr(s, "std·√D (left)"), "labels and legend");
    check_thresholds(s, "healthy run");
    CHECK(!strstr(s, "no data"));
    CHECK(strstr(s, "1 line skipped") != NULL, "skip count noted");
    CHECK(strstr(s, ">500</text>") != NULL, "x tick at step 500");
    CHECK(!strstr(s, "nan") && !strstr(s, "inf"), "no non-finite numbers");
    xfree(s);
}

/* A collapsed run: both curves below their thresholds, and both lines still on their axes. */
static void test_plot_collapsed_run(void) {
    const char *jsonl = tmp_path("collapsed.jsonl"), *svg = tmp_path("collapsed.svg");
    FILE *f = fopen(jsonl, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 1; i <= 20; i++)
        fprintf(f, "{\"step\": %d, \"loss\": %g, \"proj_std\": %g, \"eff_rank\": %g}\n", i, 1.0 / i, 0.5 / i,
                1.0 + 0.2 / i);
    fclose(f);
    Err e = {{0}};
    CHECK(plot_metrics_svg(jsonl, svg, &e) == 0, "%s", e.msg);
    char *s = read_text(svg);
    check_thresholds(s, "collapsed run");
    xfree(s);
}

static void test_plot_missing_and_empty(void) {
    const char *missing = tmp_path("nope.jsonl"), *svg = tmp_path("missing.svg");
    Err e = {{0}};
    CHECK(plot_metrics_svg(missing, svg, &e) == -1);
    CHECK(strstr(e.msg, missing) != NULL, "error names the file: %s", e.msg);
    CHECK(access(svg, F_OK) != 0, "no SVG left behind");

    const char *empty = tmp_path("empty.jsonl"), *svg2 = tmp_path("empty.svg");
    write_bytes(empty, "", 0);
    CHECK(plot_metrics_svg(empty, svg2, &e) == 0, "%s", e.msg);
    char *s = read_text(svg2);
    CHECK(count(s, "no data") == 3, "three empty panels (%d)", count(s, "no data"));
    CHECK(count(s, "<svg") == 1 && count(s, "</svg>") == 1 && count(s, "<polyline") == 0);
    xfree(s);

    /* only evaluation lines and junk: (b) drawn, (a) and (c) say no data */
    const char *evals = tmp_path("evals.jsonl");
    const char text[] = "{\"step\": 400, \"epoch\": 5, \"knn_top1\": 0.612}\nnot json\n[1,2]\n{\"loss\": 1}\n"
                        "{\"step\": 800, \"knn_top1\": 0.7, \"loss\": null}\n";
    write_bytes(evals, text, sizeof text - 1);
    CHECK(plot_metrics_svg(evals, svg2, &e) == 0, "%s", e.msg);
    s = read_text(svg2);
    CHECK(strstr(s, "3 lines skipped") != NULL, "three skipped lines noted");
    CHECK(count(s, "no data") == 2 && count(s, "<polyline class=\"knn_top1\"") == 1, "%d", count(s, "no data"));
    xfree(s);

    /* an unwritable destination: error, nothing written */
    CHECK(plot_metrics_svg(evals, tmp_path("no/such/dir/x.svg"), &e) == -1 && strstr(e.msg, "x.svg"), "%s", e.msg);
}

int main(void) {
    test_tmpdir("monitor");
    RUN(test_eigenvalues_known);
    RUN(test_eigenvalues_vs_jacobi);
    RUN(test_collapse_identical_rows);
    RUN(test_collapse_gaussian);
    RUN(test_collapse_subspace);
    RUN(test_collapse_warning_thresholds);
    RUN(test_collapse_speed);
    RUN(test_plot_metrics);
    RUN(test_plot_collapsed_run);
    RUN(test_plot_missing_and_empty);
    return test_finish();
}
