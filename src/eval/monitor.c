#include "monitor.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"

/* Dot product with eight independent partial sums (vectorizes without -ffast-math, and gives
 * the same result whatever the flags). */
static double dot(const double *restrict a, const double *restrict b, int m) {
    double acc[8] = {0};
    int k = 0;
    for (; k + 8 <= m; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
    double s = 0;
    for (; k < m; k++) s += a[k] * b[k];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Descending, NaN last (a consistent order even for NaN input). */
static int cmp_desc(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    if (isnan(a)) return isnan(b) ? 0 : 1;
    if (isnan(b)) return -1;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Householder reduction of the full symmetric a to tridiagonal form: diagonal d[n], off-diagonal
 * e[i] between i and i+1 (e[n-1] = 0). Step k reflects row k's part right of the diagonal onto
 * its first entry and applies the reflector H = I - tau v v^T to the trailing block from both
 * sides as a rank-2 update, A22 -= v w^T + w v^T with w = p - (tau/2)(p.v) v, p = tau A22 v
 * (LAPACK's dsytd2), on whole rows so every loop runs over contiguous memory. */
static void tridiagonalize(double *a, int n, double *d, double *e, double *p) {
    for (int k = 0; k + 2 < n; k++) {
        const int m = n - k - 1;
        double *x = a + (size_t)k * n + k + 1;
        double *a22 = a + (size_t)(k + 1) * n + k + 1;
        const double alpha = x[0];
        const double sigma = dot(x + 1, x + 1, m - 1);
        d[k] = a[(size_t)k * n + k];
        if (sigma == 0) { /* already reduced: H = I */
            e[k] = alpha;
            continue;
        }
        const double norm = sqrt(alpha * alpha + sigma);
        const double beta = alpha >= 0 ? -norm : norm;
        const double tau = (beta - alpha) / beta;
        const double scale = 1.0 / (alpha - beta);
        e[k] = beta;
        x[0] = 1.0;
        for (int i = 1; i < m; i++) x[i] *= scale;
        const double *v = x;
        for (int i = 0; i < m; i++) p[i] = tau * dot(a22 + (size_t)i * n, v, m);
        const double K = 0.5 * tau * dot(p, v, m);
        for (int i = 0; i < m; i++) p[i] -= K * v[i];
        for (int i = 0; i < m; i++) {
            double *row = a22 + (size_t)i * n;
            const double vi = v[i], wi = p[i];
            for (int j = 0; j < m; j++) row[j] -= vi * p[j] + wi * v[j];
        }
    }
    if (n >= 2) {
        d[n - 2] = a[(size_t)(n - 2) * n + n - 2];
        e[n - 2] = a[(size_t)(n - 2) * n + n - 1];
    }
    d[n - 1] = a[(size_t)(n - 1) * n + n - 1];
    e[n - 1] = 0;
}

/* Eigenvalues of the symmetric tridiagonal (d, e) by the implicit QL method (Numerical Recipes'
 * tqli without eigenvectors). Returns 0, or -1 when an eigenvalue took more than 60 iterations. */
static int tridiagonal_ql(double *d, double *e, int n) {
    int rc = 0;
    for (int l = 0; l < n; l++) {
        int iter = 0;
        for (;;) {
            int m;
            for (m = l; m < n - 1; m++) {
                const double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= DBL_EPSILON * dd) break;
            }
            if (m == l) break;
            if (iter++ == 60) {
                rc = -1;
                break;
            }
            double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            double r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + copysign(r, g));
            double s = 1, c = 1, p = 0;
            int underflow = 0;
            for (int i = m - 1; i >= l; i--) {
                const double f = s * e[i], b = c * e[i];
                r = hypot(f, g);
                e[i + 1] = r;
                if (r == 0) { /* recover from underflow: deflate and restart */
                    d[i + 1] -= p;
                    e[m] = 0;
                    underflow = 1;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if (underflow) continue;
            d[l] -= p;
            e[l] = g;
            e[m] = 0;
        }
    }
    return rc;
}

int sym_eigenvalues(double *a, int n, double *w, double *work) {
    if (n < 1) return 0;
    double *e = work, *p = work + n;
    tridiagonalize(a, n, w, e, p);
    const int rc = tridiagonal_ql(w, e, n);
    qsort(w, (size_t)n, sizeof *w, cmp_desc);
    return rc;
}

size_t collapse_work_doubles(int B, int D) {
    if (B < 1 || D < 1) return 0;
    const size_t n = (size_t)MIN(B, D), m = (size_t)MAX(B, D);
    return n * m + n * n + 3 * n + 2 * (size_t)D + (size_t)B;
}

/* exp(-sum p_i log p_i) with p_i = s_i / sum s, s_i = sqrt(lambda_i), over lambda_i > tol. */
static double effective_rank(const double *lambda, int n, double tol) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (lambda[i] > tol) sum += sqrt(lambda[i]);
    if (!(sum > 0)) return 0;
    double h = 0;
    for (int i = 0; i < n; i++) {
        if (!(lambda[i] > tol)) continue;
        const double p = sqrt(lambda[i]) / sum;
        if (p > 0) h -= p * log(p);
    }
    return exp(h);
}

void collapse_stats(const float *z, int B, int D, CollapseStats *out, double *work) {
    out->std_sqrt_d = 0;
    out->eff_rank = 0;
    if (B < 1 || D < 1) return;
    const size_t total = (size_t)B * D;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(z[i])) {
            out->std_sqrt_d = out->eff_rank = NAN;
            return;
        }
    double *own = NULL;
    if (!work) work = own = xmalloc(collapse_work_doubles(B, D) * sizeof(double), "collapse monitor");
    const int n = MIN(B, D), m = MAX(B, D);
    double *vec = work;                  /* n vectors of length m: the centered Z or its transpose */
    double *gram = vec + (size_t)n * m;  /* n x n */
    double *eig_work = gram + (size_t)n * n;
    double *lambda = eig_work + 2 * (size_t)n;
    double *mean = lambda + n, *ss = mean + D, *inv = ss + D;

    /* std_sqrt_d: rows normalized, unbiased per-dimension std (two passes). */
    for (int b = 0; b < B; b++) {
        const float *row = z + (size_t)b * D;
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)row[j] * row[j];
        inv[b] = s > 0 ? 1.0 / sqrt(s) : 0.0;
    }
    if (B >= 2) {
        for (int j = 0; j < D; j++) mean[j] = ss[j] = 0;
        for (int b = 0; b < B; b++) {
            const float *row = z + (size_t)b * D;
            for (int j = 0; j < D; j++) mean[j] += row[j] * inv[b];
        }
        for (int j = 0; j < D; j++) mean[j] /= B;
        for (int b = 0; b < B; b++) {
            const float *row = z + (size_t)b * D;
            for (int j = 0; j < D; j++) {
                const double dv = row[j] * inv[b] - mean[j];
                ss[j] += dv * dv;
            }
        }
        double sd = 0;
        for (int j = 0; j < D; j++) sd += sqrt(ss[j] / (B - 1));
        out->std_sqrt_d = sd / D * sqrt((double)D);
    }

    /* eff_rank: the raw rows centered, then the spectrum of the smaller Gram matrix. */
    for (int j = 0; j < D; j++) mean[j] = 0;
    for (int b = 0; b < B; b++) {
        const float *row = z + (size_t)b * D;
        for (int j = 0; j < D; j++) mean[j] += row[j];
    }
    for (int j = 0; j < D; j++) mean[j] /= B;
    if (B < D) { /* vectors are the B rows */
        for (int b = 0; b < B; b++)
            for (int j = 0; j < D; j++) vec[(size_t)b * m + j] = z[(size_t)b * D + j] - mean[j];
    } else { /* vectors are the D columns */
        for (int b = 0; b < B; b++)
            for (int j = 0; j < D; j++) vec[(size_t)j * m + b] = z[(size_t)b * D + j] - mean[j];
    }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++)
            gram[(size_t)i * n + j] = gram[(size_t)j * n + i] =
                dot(vec + (size_t)i * m, vec + (size_t)j * m, m);
    sym_eigenvalues(gram, n, lambda, eig_work);
    const double tol = (double)(B + D) * DBL_EPSILON * lambda[0];
    out->eff_rank = lambda[0] > 0 ? effective_rank(lambda, n, tol) : 0.0;
    xfree(own);
}

int collapse_agreement(double mean_cos, double std_sqrt_d) {
    return mean_cos > COLLAPSE_AGREE_COS && std_sqrt_d < COLLAPSE_AGREE_STD;
}

CollapseSign collapse_sign(const CollapseStats *s, double mean_cos) {
    if (!(s->std_sqrt_d >= COLLAPSE_STD_MIN)) return COLLAPSE_STD;
    if (!(s->eff_rank >= COLLAPSE_RANK_MIN)) return COLLAPSE_RANK;
    return collapse_agreement(mean_cos, s->std_sqrt_d) ? COLLAPSE_AGREEMENT : COLLAPSE_NONE;
}

const char *collapse_sign_name(CollapseSign sign) {
    static const char *const NAMES[] = {"", "std", "rank", "agreement"};
    return NAMES[sign];
}

int collapse_warning(const CollapseStats *s) { return collapse_sign(s, NAN) != COLLAPSE_NONE; }
