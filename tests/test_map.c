/* byol map and its library: PCA against known directions and a Jacobi reference, t-SNE's
 * affinities and gradients (finite differences, Barnes-Hut against exact), maps of separated
 * clusters, determinism across seeds and thread counts, the figure (SVG and PNG), and the
 * command's outputs and one-line errors. */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "cli_run.h"
#include "core/threads.h"
#include "data/image.h"
#include "eval/embed_map.h"
#include "eval/map_plot.h"
#include "io/safetensors.h"

/* ---------------------------------------------------------------- references */

/* Classic cyclic Jacobi on a full symmetric matrix (destroyed): eigenvalues descending in w,
 * eigenvectors as columns of v. Written independently of the library's. */
static void ref_jacobi(double *a, int n, double *w, double *v) {
    for (int i = 0; i < n * n; i++) v[i] = i % (n + 1) == 0;
    for (int sweep = 0; sweep < 200; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-300) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (a[p * n + q] == 0) continue;
                const double phi = 0.5 * atan2(2 * a[p * n + q], a[q * n + q] - a[p * n + p]);
                const double c = cos(phi), s = sin(phi);
                for (int k = 0; k < n; k++) {
                    const double x = a[k * n + p], y = a[k * n + q];
                    a[k * n + p] = c * x - s * y, a[k * n + q] = s * x + c * y;
                }
                for (int k = 0; k < n; k++) {
                    const double x = a[p * n + k], y = a[q * n + k];
                    a[p * n + k] = c * x - s * y, a[q * n + k] = s * x + c * y;
                }
                for (int k = 0; k < n; k++) {
                    const double x = v[k * n + p], y = v[k * n + q];
                    v[k * n + p] = c * x - s * y, v[k * n + q] = s * x + c * y;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[i * n + i];
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (w[j] > w[i]) {
                double t = w[i];
                w[i] = w[j], w[j] = t;
                for (int k = 0; k < n; k++) t = v[k * n + i], v[k * n + i] = v[k * n + j], v[k * n + j] = t;
            }
}

/* The sample covariance (divisor n - 1) of float rows. */
static double *ref_cov(const float *x, int n, int d) {
    double *mean = calloc((size_t)d, sizeof(double)), *C = calloc((size_t)d * d, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[(size_t)i * d + j] / (double)n;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
                C[a * d + b] += (x[(size_t)i * d + a] - mean[a]) * (x[(size_t)i * d + b] - mean[b]) / (n - 1);
    free(mean);
    return C;
}

static double cosine(const double *a, const double *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < d; i++) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* Library PCA against the reference eigen-decomposition: values and |cos| of vectors. */
static void check_pca_against_jacobi(const float *x, int n, int d, int k, const char *what) {
    Pca p;
    Err e;
    CHECK(pca_fit(x, n, d, k, &p, &e) == 0, "%s: %s", what, e.msg);
    CHECK(p.converged, "%s: converged (%d iterations)", what, p.iterations);
    double *C = ref_cov(x, n, d), *w = malloc(sizeof(double) * d), *v = malloc(sizeof(double) * d * d),
           *col = malloc(sizeof(double) * d);
    double trace = 0;
    for (int j = 0; j < d; j++) trace += C[j * d + j];
    ref_jacobi(C, d, w, v);
    CHECK(fabs(p.total_variance - trace) <= 1e-9 * trace, "%s: total variance %.12g vs %.12g", what, p.total_variance, trace);
    for (int c = 0; c < k; c++) {
        for (int r = 0; r < d; r++) col[r] = v[r * d + c];
        CHECK(fabs(p.variance[c] - w[c]) <= 1e-8 * w[0], "%s: eigenvalue %d: %.12g vs %.12g", what, c, p.variance[c], w[c]);
        if (c + 1 < d && w[c] - w[c + 1] > 1e-6 * w[0]) /* a vector is defined only where its value is simple */
            CHECK(fabs(cosine(p.components + (size_t)c * d, col, d)) > 1 - 1e-9, "%s: component %d |cos| %.12f", what, c,
                  fabs(cosine(p.components + (size_t)c * d, col, d)));
        int big = 0;
        for (int r = 0; r < d; r++)
            if (fabs(p.components[(size_t)c * d + r]) > fabs(p.components[(size_t)c * d + big])) big = r;
        CHECK(p.components[(size_t)c * d + big] > 0, "%s: component %d: the largest-|value| coordinate is positive", what, c);
    }
    free(C), free(w), free(v), free(col);
    pca_free(&p);
}

/* ---------------------------------------------------------------- PCA */

static void test_pca_known_directions(void) {
    const int n = 3000, d = 20;
    TestRng r = {12345};
    double u[2][20];
    for (int c = 0; c < 2; c++) { /* two orthonormal directions, Gram-Schmidt on random vectors */
        for (int j = 0; j < d; j++) u[c][j] = rng_normal(&r);
        if (c) {
            double h = 0;
            for (int j = 0; j < d; j++) h += u[0][j] * u[1][j];
            for (int j = 0; j < d; j++) u[1][j] -= h * u[0][j];
        }
        double nn = 0;
        for (int j = 0; j < d; j++) nn += u[c][j] * u[c][j];
        for (int j = 0; j < d; j++) u[c][j] /= sqrt(nn);
    }
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n; i++) {
        const double a = 3 * rng_normal(&r), b = 2 * rng_normal(&r);
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(5.0 + j + a * u[0][j] + b * u[1][j] + 0.05 * rng_normal(&r));
    }
    Pca p;
    float *y = malloc(sizeof(float) * n * 2);
    Err e;
    CHECK(pca_2d(x, n, d, y, &p, &e) == 0, "%s", e.msg);
    for (int c = 0; c < 2; c++) {
        const double cs = fabs(cosine(p.components + c * d, u[c], d));
        CHECK(cs > 0.999, "component %d |cos| with the known direction %.6f", c, cs);
    }
    CHECK(fabs(p.variance[0] - 9) < 0.09 * 9 && fabs(p.variance[1] - 4) < 0.09 * 4, "variances %.4f %.4f (want about 9, 4)",
          p.variance[0], p.variance[1]);
    const double noise = 20 * 0.05 * 0.05;
    CHECK(fabs(p.total_variance - (p.variance[0] + p.variance[1] + noise)) < 0.01 * p.total_variance,
          "total %.4f vs 9 + 4 + noise", p.total_variance);
    /* the scores are the centred data on the components: mean 0, variance = the eigenvalue */
    for (int c = 0; c < 2; c++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += y[2 * i + c];
        m /= n;
        for (int i = 0; i < n; i++) v += (y[2 * i + c] - m) * (y[2 * i + c] - m);
        v /= n - 1;
        CHECK(fabs(m) < 1e-4 && fabs(v - p.variance[c]) < 1e-5 * p.variance[c], "scores %d: mean %g variance %.8f vs %.8f",
              c, m, v, p.variance[c]);
    }
    pca_free(&p);
    check_pca_against_jacobi(x, n, d, 2, "two directions");
    check_pca_against_jacobi(x, n, d, 5, "five components");
    free(x), free(y);
}

/* Spectra that test the iteration: a slowly decaying one (the block must carry it), fewer
 * points than dims (the covariance's rank is below the block), a constant feature. */
static void test_pca_hard_spectra(void) {
    TestRng r = {777};
    const int n = 400, d = 64;
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(rng_normal(&r) * (1.0 / (1 + 0.02 * j)));
    check_pca_against_jacobi(x, n, d, 10, "slow decay");
    check_pca_against_jacobi(x, 12, d, 2, "12 points in 64 dims");
    for (int i = 0; i < n; i++) x[i * d + 3] = 7;
    check_pca_against_jacobi(x, n, d, 3, "a constant feature");
    Pca p;
    Err e;
    CHECK(pca_fit(x, 1, d, 2, &p, &e) != 0 && strstr(e.msg, "at least 2 points"), "one point refused: %s", e.msg);
    x[5] = NAN;
    CHECK(pca_fit(x, n, d, 2, &p, &e) != 0 && strstr(e.msg, "NaN"), "NaN refused: %s", e.msg);
    free(x);
}

/* ---------------------------------------------------------------- t-SNE pieces */

static double *random_points(int n, int d, double scale, uint64_t seed) {
    TestRng r = {seed};
    double *x = malloc(sizeof(double) * n * d);
    for (int i = 0; i < n * d; i++) x[i] = scale * rng_normal(&r);
    return x;
}

static void test_tsne_perplexity_search(void) {
    TestRng r = {99};
    double d2[200], p[200];
    for (int j = 0; j < 200; j++) d2[j] = 50 + 1000 * rng_uniform(&r); /* far apart: exp(-d) would underflow */
    const double perps[] = {2, 10, 30, 60};
    for (size_t t = 0; t < ARRAY_LEN(perps); t++) {
        tsne_row_p(d2, 200, perps[t], p);
        double h = 0, s = 0;
        for (int j = 0; j < 200; j++) {
            s += p[j];
            if (p[j] > 0) h -= p[j] * log(p[j]);
        }
        CHECK(fabs(s - 1) < 1e-12 && fabs(exp(h) - perps[t]) < 1e-3 * perps[t], "perplexity %g: got %.6f (sum %.15f)",
              perps[t], exp(h), s);
    }
}

static void test_tsne_gradient_finite_differences(void) {
    const int n = 20, d = 10;
    double *x = random_points(n, d, 1, 5), *y = random_points(n, 2, 1, 6);
    double *P = malloc(sizeof(double) * n * n), *P12 = malloc(sizeof(double) * n * n);
    tsne_p_exact(x, n, d, 5, P);
    double s = 0, asym = 0;
    for (int i = 0; i < n * n; i++) s += P[i], P12[i] = 12 * P[i];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) asym = fmax(asym, fabs(P[i * n + j] - P[j * n + i]));
    CHECK(fabs(s - 1) < 1e-9 && asym == 0, "P sums to %.15f, asymmetry %g", s, asym);
    double g[40], gn[40], ge[40], fd[40];
    tsne_grad_naive(P, y, n, gn);
    const double h = 1e-5;
    for (int t = 0; t < 2 * n; t++) {
        const double keep = y[t];
        y[t] = keep + h;
        const double up = tsne_kl_exact(P, y, n);
        y[t] = keep - h;
        const double dn = tsne_kl_exact(P, y, n);
        y[t] = keep;
        fd[t] = (up - dn) / (2 * h);
    }
    double num = 0, den = 0;
    for (int t = 0; t < 2 * n; t++) num += (gn[t] - fd[t]) * (gn[t] - fd[t]), den += fd[t] * fd[t];
    CHECK(sqrt(num / den) < 1e-6, "naive gradient vs finite differences of KL: relative error %.3e", sqrt(num / den));
    const double kl = tsne_grad_exact(P, y, n, 1, ge, 1);
    CHECK(fabs(kl - tsne_kl_exact(P, y, n)) < 1e-12 * fabs(kl), "KL %.15g vs %.15g", kl, tsne_kl_exact(P, y, n));
    num = den = 0;
    for (int t = 0; t < 2 * n; t++) num += (ge[t] - gn[t]) * (ge[t] - gn[t]), den += gn[t] * gn[t];
    CHECK(sqrt(num / den) < 1e-12, "exact vs naive gradient: %.3e", sqrt(num / den));
    /* exaggeration multiplies P in the attraction only */
    tsne_grad_exact(P, y, n, 12, ge, 0);
    tsne_grad_naive(P12, y, n, g);
    num = den = 0;
    for (int t = 0; t < 2 * n; t++) num += (ge[t] - g[t]) * (ge[t] - g[t]), den += g[t] * g[t];
    CHECK(sqrt(num / den) < 1e-12, "exaggerated gradient vs naive on 12 P: %.3e", sqrt(num / den));
    free(x), free(y), free(P), free(P12);
}

static double rel(const double *a, const double *b, int m) {
    double num = 0, den = 0;
    for (int t = 0; t < m; t++) num += (a[t] - b[t]) * (a[t] - b[t]), den += b[t] * b[t];
    return sqrt(num / den);
}

static void test_tsne_barnes_hut(void) {
    const int n = 300, d = 8;
    double *x = random_points(n, d, 1, 7), *y = random_points(n, 2, 4, 8);
    for (int c = 0; c < 3; c++) y[2 * (10 + c)] = y[2 * 20], y[2 * (10 + c) + 1] = y[2 * 20 + 1]; /* duplicates */
    double *P = malloc(sizeof(double) * n * n), *ge = malloc(sizeof(double) * 2 * n), *gb = malloc(sizeof(double) * 2 * n);
    tsne_p_exact(x, n, d, 20, P);
    TsneSparse S;
    tsne_sparse_from_dense(P, n, &S);
    const double kle = tsne_grad_exact(P, y, n, 1, ge, 1);
    const double klb = tsne_grad_bh(&S, y, n, 0, 1, gb, 1);
    CHECK(rel(gb, ge, 2 * n) < 1e-11, "theta 0 vs exact: %.3e", rel(gb, ge, 2 * n));
    CHECK(fabs(klb - kle) < 1e-10 * fabs(kle), "KL %.15g vs %.15g", klb, kle);
    tsne_grad_bh(&S, y, n, 0, 12, gb, 0);
    tsne_grad_exact(P, y, n, 12, ge, 0);
    CHECK(rel(gb, ge, 2 * n) < 1e-11, "exaggerated, theta 0 vs exact: %.3e", rel(gb, ge, 2 * n));
    tsne_grad_bh(&S, y, n, 0.5, 1, gb, 0);
    tsne_grad_exact(P, y, n, 1, ge, 0);
    const double r5 = rel(gb, ge, 2 * n);
    CHECK(r5 < 0.05 && r5 > 0, "theta 0.5 vs exact: %.3e", r5);
    tsne_sparse_free(&S);
    /* the sparse P of the nearest neighbours: symmetric, sums to 1, at least k entries a row */
    tsne_p_knn(x, n, d, 10, &S);
    double s = 0;
    int short_row = 0, asym = 0;
    for (int i = 0; i < n; i++) {
        short_row |= S.rowptr[i + 1] - S.rowptr[i] < 31;
        for (int64_t t = S.rowptr[i]; t < S.rowptr[i + 1]; t++) {
            s += S.val[t];
            const int j = S.col[t];
            int found = 0;
            for (int64_t u = S.rowptr[j]; u < S.rowptr[j + 1]; u++) found |= S.col[u] == i && S.val[u] == S.val[t];
            asym |= !found;
        }
    }
    CHECK(fabs(s - 1) < 1e-12 && !short_row && !asym, "kNN P: sum %.15f, short row %d, asymmetric %d", s, short_row, asym);
    tsne_sparse_free(&S);
    free(x), free(y), free(P), free(ge), free(gb);
}

/* ---------------------------------------------------------------- t-SNE maps */

/* k Gaussian clusters of m points each in d dims: centres N(0, 6^2), points N(0, 1) around. */
static float *clusters(int k, int m, int d, int32_t *labels, uint64_t seed) {
    TestRng r = {seed};
    float *x = malloc(sizeof(float) * k * m * d);
    double *centre = malloc(sizeof(double) * k * d);
    for (int i = 0; i < k * d; i++) centre[i] = 6 * rng_normal(&r);
    for (int i = 0; i < k * m; i++) {
        const int c = i % k; /* interleaved, as an evenly spaced subset of a dataset would be */
        labels[i] = c;
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(centre[c * d + j] + rng_normal(&r));
    }
    free(centre);
    return x;
}

static void test_tsne_separates_clusters(void) {
    const int k = 4, m = 100, n = k * m, d = 50;
    int32_t lab[400];
    float *x = clusters(k, m, d, lab, 11), *y = malloc(sizeof(float) * n * 2);
    CHECK(map_knn_agreement(x, n, d, lab, 10) == 1, "the clusters are separated in 50 dims");
    const int before = threads_get();
    threads_set(1); /* quick on a busy machine; test_tsne_deterministic shows threads change nothing */
    for (int exact = 1; exact >= 0; exact--) {
        TsneOptions o;
        tsne_defaults(&o);
        o.exact = exact;
        TsneInfo info;
        Err e;
        CHECK(tsne_2d(x, n, d, &o, y, &info, &e) == 0, "%s", e.msg);
        const double a = map_knn_agreement(y, n, 2, lab, 10);
        CHECK(a > 0.95, "%s: 10-NN agreement in 2-D %.4f", exact ? "exact" : "Barnes-Hut", a);
        CHECK(info.exact == exact && info.iterations == 1000 && info.learning_rate == 50 && isfinite(info.kl) &&
                  info.kl > 0 && info.input_dims == 50,
              "info: exact %d, %d iterations, lr %g, KL %g, %d dims", info.exact, info.iterations, info.learning_rate,
              info.kl, info.input_dims);
        if (!exact) CHECK(info.neighbors == 91, "%d neighbours", info.neighbors);
    }
    /* PCA separates them as well, with a worse agreement than t-SNE allowed */
    Err e;
    CHECK(pca_2d(x, n, d, y, NULL, &e) == 0, "%s", e.msg);
    CHECK(map_knn_agreement(y, n, 2, lab, 10) > 0.5, "PCA agreement %.3f", map_knn_agreement(y, n, 2, lab, 10));
    threads_set(before);
    free(x), free(y);
}

/* Same inputs, same map: twice, and on 1 and 2 threads; through the PCA-to-50 path (64 dims)
 * and both gradients (300 points: above the size where the loops go parallel). A random start
 * differs between seeds. */
static void test_tsne_deterministic(void) {
    const int k = 3, m = 100, n = k * m, d = 64;
    int32_t lab[300];
    float *x = clusters(k, m, d, lab, 21);
    float *a = malloc(sizeof(float) * n * 2), *b = malloc(sizeof(float) * n * 2);
    const int before = threads_get();
    const int combos[3][2] = {{1, 0}, {0, 0}, {0, 1}}; /* exact, random start */
    for (int c = 0; c < 3; c++) {
        const int exact = combos[c][0], random = combos[c][1];
        TsneOptions o;
        tsne_defaults(&o);
        o.exact = exact, o.iters = 120, o.exaggeration_iters = 60, o.perplexity = 15, o.init_random = random, o.seed = 3;
        TsneInfo info;
        Err e;
        threads_set(2);
        CHECK(tsne_2d(x, n, d, &o, a, &info, &e) == 0, "%s", e.msg);
        CHECK(info.input_dims == 50, "64 dims reduced to %d", info.input_dims);
        CHECK(tsne_2d(x, n, d, &o, b, NULL, &e) == 0, "%s", e.msg);
        CHECK(memcmp(a, b, sizeof(float) * n * 2) == 0, "exact %d random %d: twice, different maps", exact, random);
        threads_set(1);
        CHECK(tsne_2d(x, n, d, &o, b, NULL, &e) == 0, "%s", e.msg);
        CHECK(memcmp(a, b, sizeof(float) * n * 2) == 0, "exact %d random %d: 1 vs 2 threads differ", exact, random);
        if (random) {
            o.seed = 4;
            CHECK(tsne_2d(x, n, d, &o, b, NULL, &e) == 0, "%s", e.msg);
            CHECK(memcmp(a, b, sizeof(float) * n * 2) != 0, "exact %d: seeds 3 and 4 gave the same map", exact);
        }
    }
    threads_set(before);
    /* too few points for the perplexity, a bad perplexity */
    TsneOptions o;
    tsne_defaults(&o);
    Err e;
    CHECK(tsne_2d(x, 90, d, &o, a, NULL, &e) != 0 && strstr(e.msg, "too few") && strstr(e.msg, "91"), "%s", e.msg);
    CHECK(tsne_2d(x, 91, d, &o, a, NULL, &e) == 0, "91 points at perplexity 30: %s", e.msg);
    o.perplexity = 0;
    CHECK(tsne_2d(x, n, d, &o, a, NULL, &e) != 0 && strstr(e.msg, "perplexity 0"), "%s", e.msg);
    free(x), free(a), free(b);
}

static void test_knn_agreement(void) {
    /* a line of points labelled in runs: 0 0 0 1 1 1 ...; with k = 2 only run ends can disagree */
    float x[24];
    int32_t lab[12];
    for (int i = 0; i < 12; i++) x[2 * i] = (float)i, x[2 * i + 1] = 0, lab[i] = i / 3;
    /* with k = 2 a point at a run's end has one neighbour of each label; the tie goes to the
     * nearer, and at equal distances to the lower index, the left one: points 3, 6 and 9 (the
     * first of their runs) disagree, 2, 5 and 8 agree */
    const double a = map_knn_agreement(x, 12, 2, lab, 2);
    CHECK(fabs(a - 9 / 12.0) < 1e-12, "agreement %.4f, want 9/12", a);
    int32_t none[12];
    for (int i = 0; i < 12; i++) none[i] = -1;
    CHECK(map_knn_agreement(x, 12, 2, none, 10) < 0, "no labels: no figure");
}

/* ---------------------------------------------------------------- the figure */

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Files in TEST_TMP whose name starts with prefix. */
static int count_files(const char *prefix) {
    DIR *dir = opendir(TEST_TMP);
    int c = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) c += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (dir) closedir(dir);
    return c;
}

static void svg_size(const char *svg, int *w, int *h) {
    const char *p = strstr(svg, "<svg ");
    *w = *h = -1;
    if (!p) return;
    const char *pw = strstr(p, " width=\""), *ph = strstr(p, " height=\"");
    if (pw) *w = (int)ceil(atof(pw + 8));
    if (ph) *h = (int)ceil(atof(ph + 9));
}

static void test_map_figure(void) {
    const int n = 300;
    float *xy = malloc(sizeof(float) * n * 2);
    int32_t lab[300];
    TestRng r = {31};
    for (int i = 0; i < n; i++) {
        lab[i] = i == 7 ? -1 : i % 3;
        xy[2 * i] = (float)(10 * (i % 3) + rng_normal(&r)), xy[2 * i + 1] = (float)(5 * (i % 3) + rng_normal(&r));
    }
    const char *names[3] = {"alpha", "b&c", "gamma<1>"};
    MapPlot m = {.xy = xy, .n = n, .labels = lab, .n_classes = 3, .class_names = names, .title = "t-SNE of a test",
                 .subtitle = "checkpoint x"};
    Err e;
    CHECK(map_plot_write(&m, tmp_path("fig.png"), tmp_path("fig.svg"), &e) == 0, "%s", e.msg);
    char *svg = slurp_text("fig.svg");
    CHECK(strstr(svg, ">alpha</text>") && strstr(svg, ">b&amp;c</text>") && strstr(svg, ">gamma&lt;1&gt;</text>") &&
              strstr(svg, ">no label</text>") && strstr(svg, "class=\"legend\""),
          "legend names the classes");
    int circles = 0;
    for (const char *p = svg; (p = strstr(p, "<circle ")) != NULL; p++) circles++;
    CHECK(circles == n + 4, "%d circles (want %d points + 4 legend marks)", circles, n + 4);
    char col[8];
    map_color(1, col);
    CHECK(strstr(svg, col) != NULL && strcmp(col, "#f28e2b") == 0, "Tableau's second colour %s", col);
    int w, h;
    svg_size(svg, &w, &h);
    Image img = {0};
    CHECK(image_decode_file(&img, tmp_path("fig.png"), 3, 0, &e) == 0, "%s", e.msg);
    CHECK(img.w == w && img.h == h && w > 700 && h > 700, "PNG %dx%d, SVG %dx%d", img.w, img.h, w, h);
    /* the orange class shows: some pixel close to #f28e2b over white at opacity 0.7 */
    int orange = 0;
    for (int i = 0; i < img.w * img.h; i++) {
        const uint8_t *p = img.px + 3 * i;
        orange |= abs(p[0] - 245) < 12 && abs(p[1] - 176) < 12 && abs(p[2] - 106) < 16;
    }
    CHECK(orange, "orange points in the PNG");
    free(svg);
    /* no labels: one colour, no legend */
    m.labels = NULL;
    CHECK(map_plot_write(&m, tmp_path("unlab.png"), tmp_path("unlab.svg"), &e) == 0, "%s", e.msg);
    svg = slurp_text("unlab.svg");
    CHECK(!strstr(svg, "class=\"legend\"") && !strstr(svg, "alpha") && !strstr(svg, "#f28e2b"), "unlabelled map: no legend");
    free(svg);
    /* many classes: distinct colours past Tableau's ten */
    char seen[40][8];
    int dup = 0;
    for (int c = 0; c < 40; c++) {
        map_color(c, seen[c]);
        for (int k = 0; k < c; k++) dup |= strcmp(seen[c], seen[k]) == 0;
    }
    CHECK(!dup, "40 distinct colours");
    /* a missing folder: refused before and at writing, nothing left */
    CHECK(map_output_check(tmp_path("no/such/map.png"), &e) != 0 && strstr(e.msg, "does not exist"), "%s", e.msg);
    CHECK(map_output_check(TEST_TMP, &e) != 0 && strstr(e.msg, "is a folder"), "%s", e.msg);
    CHECK(map_output_check(tmp_path("ok.png"), &e) == 0, "%s", e.msg);
    m.labels = lab;
    CHECK(map_plot_write(&m, tmp_path("gone.png"), tmp_path("no/gone.svg"), &e) != 0, "unwritable SVG");
    CHECK(count_files("gone") == 0, "a failed write left files behind");
    image_free(&img);
    free(xy);
}

/* ---------------------------------------------------------------- byol map */




static const char *last_line(char *out) {
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n') out[--n] = 0;
    const char *nl = strrchr(out, '\n');
    return nl ? nl + 1 : out;
}

static void test_cli_map(void) {
    tiny_run();
    char a[4096];
    const char *cases[][2] = {{"pca", ""}, {"tsne", "--points 60 --perplexity 10"}};
    for (int c = 0; c < 2; c++) {
        snprintf(a, sizeof a, "map --ckpt %s --method %s %s --out %s/%s.png --threads 1", RUN_DIR, cases[c][0],
                 cases[c][1], TEST_TMP, cases[c][0]);
        const int st = run_out(a);
        char *out = slurp_text("out"), *err = slurp_text("err");
        CHECK(st == 0, "%s: exit %d: %s", cases[c][0], st, err);
        const char *json = last_line(out);
        char png[700], svg[700], want[200];
        snprintf(png, sizeof png, "%s/%s.png", TEST_TMP, cases[c][0]);
        snprintf(svg, sizeof svg, "%s/%s.svg", TEST_TMP, cases[c][0]);
        snprintf(want, sizeof want, "\"method\": \"%s\"", cases[c][0]);
        CHECK(json[0] == '{' && strstr(json, want) && strstr(json, png) && strstr(json, svg), "JSON: %s", json);
        const double agree = json_number(json, "knn_agreement_2d");
        CHECK(json_number(json, "points") == (c ? 60 : 100) && json_number(json, "dims") == 32 && agree >= 0 &&
                  agree <= 1 && json_number(json, "seconds") >= 0,
              "JSON: %s", json);
        CHECK(exists(png) && exists(svg), "%s: both files", cases[c][0]);
        Image img = {0};
        Err e;
        CHECK(image_decode_file(&img, png, 3, 0, &e) == 0 && img.w > 700, "%s", e.msg);
        image_free(&img);
        char *s = slurp_text(c ? "tsne.svg" : "pca.svg");
        CHECK(strstr(s, ">airplane</text>") && strstr(s, ">truck</text>"), "the legend names CIFAR-10's classes");
        if (!c) CHECK(strstr(s, "PC1 (") && strstr(s, "of the variance)"), "PCA axes name the variance");
        free(s), free(out), free(err);
    }
    /* --svg elsewhere, an --out without .png */
    snprintf(a, sizeof a, "map --ckpt %s --method pca --points 30 --out %s/plain --svg %s/other.svg --threads 1", RUN_DIR,
             TEST_TMP, TEST_TMP);
    int st = run_out(a);
    char *err = slurp_text("err");
    CHECK(st == 0 && exists(tmp_path("plain")) && exists(tmp_path("other.svg")) && !exists(tmp_path("plain.svg")),
          "--svg: exit %d: %s", st, err);
    free(err);
    /* a flat folder: no test split (the train split, said so), no labels (one colour, no legend) */
    snprintf(a, sizeof a,
             "mkdir -p %s/flat && for f in %s/test/cat/*.jpg %s/test/ship/*.jpg; do "
             "cp $f %s/flat/$(basename $(dirname $f))_$(basename $f) || exit 1; done",
             TEST_TMP, CIFAR, CIFAR, TEST_TMP);
    CHECK(sh_status(a) == 0, "flat folder made");
    snprintf(a, sizeof a, "map --ckpt %s --data %s/flat --method pca --out %s/flat.png --threads 1", RUN_DIR, TEST_TMP,
             TEST_TMP);
    st = run_out(a);
    char *out = slurp_text("out");
    err = slurp_text("err");
    const char *json = last_line(out);
    CHECK(st == 0 && strstr(out, "has no test split: mapping the train split") && strstr(json, "\"split\": \"train\"") &&
              strstr(json, "\"knn_agreement_2d\": null"),
          "flat folder: exit %d: %s%s", st, out, err);
    char *svg = slurp_text("flat.svg");
    CHECK(svg[0] && !strstr(svg, "class=\"legend\""), "no legend without labels");
    free(out), free(err), free(svg);
}

/* Every user error: non-zero exit, one line on stderr naming the value, no output file. */
static void expect_map_failure(const char *extra, const char *needle) {
    char a[4096];
    snprintf(a, sizeof a, "map --ckpt %s --out %s/bad.png --threads 1 %s", RUN_DIR, TEST_TMP, extra);
    const int st = run_out(a);
    char *err = slurp_text("err");
    int lines = 0;
    for (char *p = err; *p; p++) lines += *p == '\n';
    CHECK(st != 0, "exit 0 for: %s", extra);
    CHECK(lines == 1, "%d lines on stderr (want 1) for %s: %s", lines, extra, err);
    CHECK(strstr(err, needle) != NULL, "stderr lacks '%s': %s", needle, err);
    CHECK(count_files("bad") == 0, "an output file was left behind by: %s", extra);
    free(err);
}

static void test_cli_map_errors(void) {
    tiny_run();
    char a[2048];
    expect_map_failure("--points 1", "--points 1");
    expect_map_failure("--method foo", "--method foo");
    expect_map_failure("--perplexity 0", "--perplexity 0");
    expect_map_failure("--perplexity -3", "--perplexity -3");
    expect_map_failure("--method tsne --points 20", "--perplexity");
    expect_map_failure("--method tsne --points 20", "at most 6.333");
    expect_map_failure("--init sideways", "--init sideways");
    expect_map_failure("--svg /no/such/folder/x.svg", "/no/such/folder");
    snprintf(a, sizeof a, "--svg %s/bad.png", TEST_TMP);
    expect_map_failure(a, "different names");
    expect_map_failure("--iters 0", "--iters");
    expect_map_failure("--frobnicate 1", "frobnicate");
    /* the test split has 100 images: fine for --points 5000 with PCA, too few for perplexity 40 */
    expect_map_failure("--method tsne --perplexity 40", "lower --perplexity");
    /* a classifier checkpoint */
    const int64_t shape[1] = {1};
    const float v = 1;
    StTensorOut t = {"w", 1, shape, &v, 0};
    StMeta meta = {"byol.kind", "classifier"};
    Err e;
    CHECK(st_write(tmp_path("clf.safetensors"), &t, 1, &meta, 1, &e) == 0, "%s", e.msg);
    snprintf(a, sizeof a, "map --ckpt %s --out %s/bad.png", tmp_path("clf.safetensors"), TEST_TMP);
    int st = run_out(a);
    char *err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "classifier checkpoint") && strchr(err, '\n') == err + strlen(err) - 1 &&
              count_files("bad") == 0,
          "classifier: exit %d: %s", st, err);
    free(err);
    /* one-channel images under a three-channel encoder */
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) == 0) {
        snprintf(a, sizeof a, "--data /usr/share/datasets/fashion-mnist --method pca");
        expect_map_failure(a, "1-channel");
    } else {
        printf("  (skipped the channel check: no /usr/share/datasets/fashion-mnist)\n");
    }
}

int main(void) {
    test_tmpdir("test_map");
    RUN(test_pca_known_directions);
    RUN(test_pca_hard_spectra);
    RUN(test_tsne_perplexity_search);
    RUN(test_tsne_gradient_finite_differences);
    RUN(test_tsne_barnes_hut);
    RUN(test_knn_agreement);
    RUN(test_tsne_separates_clusters);
    RUN(test_tsne_deterministic);
    RUN(test_map_figure);
    RUN(test_cli_map);
    RUN(test_cli_map_errors);
    return test_finish();
}
