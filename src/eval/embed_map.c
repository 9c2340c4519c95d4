/* PCA, t-SNE and the 10-NN agreement of byol map: see embed_map.h. */
#include "embed_map.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

/* Below this many points a parallel region costs more than it saves: each t-SNE iteration is
 * a few short loops, and on a loaded machine every fork-join can wait a scheduler slice. The
 * results are the same either way (per-point work, sums in point order). */
enum { PARALLEL_MIN = 256 };

static void *must(void *p, const char *what) {
    if (!p) die("out of memory (%s)", what);
    return p;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Four partial sums: the compiler can keep them in one vector register, and the order is fixed
 * whatever the thread count. */
static double dot(const double *a, const double *b, int n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static double sqdist(const double *a, const double *b, int n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const double d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1], d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
    }
    for (; i < n; i++) s0 += (a[i] - b[i]) * (a[i] - b[i]);
    return (s0 + s1) + (s2 + s3);
}

/* ---------------------------------------------------------------- PCA */

/* Cyclic Jacobi on the symmetric m x m matrix a (destroyed): eigenvalues into w by decreasing
 * value, eigenvectors as the columns of v. The Ritz problems are small (m <= ~110), where Jacobi
 * is simple and accurate to the last bits. */
static void jacobi_eig(double *a, int m, double *w, double *v) {
    for (int i = 0; i < m * m; i++) v[i] = 0;
    for (int i = 0; i < m; i++) v[i * m + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < m; p++) {
            diag += a[p * m + p] * a[p * m + p];
            for (int q = p + 1; q < m; q++) off += a[p * m + q] * a[p * m + q];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) {
                const double apq = a[p * m + q];
                if (fabs(apq) < 1e-300) continue;
                const double theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                const double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int r = 0; r < m; r++) { /* columns p, q */
                    const double x = a[r * m + p], y = a[r * m + q];
                    a[r * m + p] = c * x - s * y, a[r * m + q] = s * x + c * y;
                }
                for (int r = 0; r < m; r++) { /* rows p, q */
                    const double x = a[p * m + r], y = a[q * m + r];
                    a[p * m + r] = c * x - s * y, a[q * m + r] = s * x + c * y;
                }
                for (int r = 0; r < m; r++) {
                    const double x = v[r * m + p], y = v[r * m + q];
                    v[r * m + p] = c * x - s * y, v[r * m + q] = s * x + c * y;
                }
            }
    }
    for (int i = 0; i < m; i++) w[i] = a[i * m + i];
    for (int i = 0; i < m; i++) { /* selection sort, descending, columns of v along */
        int best = i;
        for (int j = i + 1; j < m; j++)
            if (w[j] > w[best]) best = j;
        if (best == i) continue;
        double t = w[i];
        w[i] = w[best], w[best] = t;
        for (int r = 0; r < m; r++) t = v[r * m + i], v[r * m + i] = v[r * m + best], v[r * m + best] = t;
    }
}

/* A fixed pseudo-random unit-scale vector: the start block and the replacement for a direction
 * the iteration lost (C of lower rank than the block). */
static void start_vector(double *v, int d, uint64_t which) {
    Rng r = rng_keyed(0x70ca5eedULL, which, 0, 0);
    for (int i = 0; i < d; i++) v[i] = rng_u01(&r) - 0.5;
}

/* Orthonormalizes the b columns (each d long, contiguous) in place: Gram-Schmidt twice, which
 * keeps them orthogonal to working precision; a column that vanishes is replaced. */
static void orthonormalize(double *V, int d, int b) {
    for (int c = 0; c < b; c++) {
        double *v = V + (size_t)c * d;
        for (int attempt = 0;; attempt++) {
            const double before = sqrt(dot(v, v, d));
            for (int pass = 0; pass < 2; pass++)
                for (int q = 0; q < c; q++) {
                    const double *u = V + (size_t)q * d;
                    const double h = dot(u, v, d);
                    for (int i = 0; i < d; i++) v[i] -= h * u[i];
                }
            const double nrm = sqrt(dot(v, v, d));
            if (nrm > 1e-10 * before && nrm > 0) {
                for (int i = 0; i < d; i++) v[i] /= nrm;
                break;
            }
            if (attempt >= 8) die("PCA: cannot complete an orthonormal basis (%d of %d dims)", c, d);
            start_vector(v, d, 1000003ULL * (uint64_t)(attempt + 1) + (uint64_t)c);
        }
    }
}

/* The rows are read from float (xf) or double (xd) input: t-SNE runs PCA on its doubles. */
static int pca_core(const float *xf, const double *xd, int n, int d, int k, Pca *p, Err *e) {
    memset(p, 0, sizeof *p);
    if (n < 2) return err_set(e, "PCA needs at least 2 points (got %d)", n);
    if (d < 1 || k < 1 || k > d) return err_set(e, "PCA: %d components of %d dims", k, d);
    if (xf && !all_finite(xf, (size_t)n * d)) return err_set(e, "PCA: the features hold a NaN or infinite value");
    p->d = d, p->k = k;
    p->mean = must(calloc((size_t)d, sizeof(double)), "PCA mean");
    p->components = must(calloc((size_t)k * d, sizeof(double)), "PCA components");
    p->variance = must(calloc((size_t)k, sizeof(double)), "PCA variances");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) p->mean[j] += xf ? xf[(size_t)i * d + j] : xd[(size_t)i * d + j];
    for (int j = 0; j < d; j++) p->mean[j] /= n;
    /* centred and transposed, so each covariance entry is one contiguous dot product */
    double *xt = must(malloc(sizeof(double) * (size_t)n * d), "PCA centred data");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            xt[(size_t)j * n + i] = (xf ? xf[(size_t)i * d + j] : xd[(size_t)i * d + j]) - p->mean[j];
    double *C = must(malloc(sizeof(double) * (size_t)d * d), "PCA covariance");
#pragma omp parallel for schedule(dynamic, 4)
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) C[(size_t)a * d + b] = C[(size_t)b * d + a] =
                                        dot(xt + (size_t)a * n, xt + (size_t)b * n, n) / (n - 1);
    free(xt);
    for (int j = 0; j < d; j++) p->total_variance += C[(size_t)j * d + j];

    /* Extra block columns make the wanted pairs converge at rate lambda_{b+1} / lambda_k
     * instead of lambda_{k+1} / lambda_k, which is near 1 for slowly decaying spectra. */
    const int b = MIN(d, MAX(2 * k, k + 10));
    double *V = must(malloc(sizeof(double) * (size_t)b * d), "PCA block");
    double *W = must(malloc(sizeof(double) * (size_t)b * d), "PCA block");
    double *Vr = must(malloc(sizeof(double) * (size_t)b * d), "PCA block");
    double *Wr = must(malloc(sizeof(double) * (size_t)b * d), "PCA block");
    double *H = must(malloc(sizeof(double) * (size_t)b * b), "PCA Ritz matrix");
    double *S = must(malloc(sizeof(double) * (size_t)b * b), "PCA Ritz vectors");
    double *theta = must(malloc(sizeof(double) * (size_t)b), "PCA Ritz values");
    for (int c = 0; c < b; c++) start_vector(V + (size_t)c * d, d, (uint64_t)c);
    orthonormalize(V, d, b);
    const int max_iter = 5000;
    for (int it = 1; it <= max_iter; it++) {
#pragma omp parallel for schedule(static) if ((size_t)b * d * d >= ((size_t)1 << 18))
        for (int t = 0; t < b * d; t++) {
            const int c = t / d, r = t % d;
            W[t] = dot(C + (size_t)r * d, V + (size_t)c * d, d);
        }
        for (int i = 0; i < b; i++)
            for (int j = i; j < b; j++) {
                const double h = 0.5 * (dot(V + (size_t)i * d, W + (size_t)j * d, d) + dot(V + (size_t)j * d, W + (size_t)i * d, d));
                H[i * b + j] = H[j * b + i] = h;
            }
        jacobi_eig(H, b, theta, S);
        for (int c = 0; c < b; c++)
            for (int r = 0; r < d; r++) {
                double sv = 0, sw = 0;
                for (int q = 0; q < b; q++) {
                    sv += V[(size_t)q * d + r] * S[q * b + c];
                    sw += W[(size_t)q * d + r] * S[q * b + c];
                }
                Vr[(size_t)c * d + r] = sv, Wr[(size_t)c * d + r] = sw;
            }
        double res = 0;
        for (int c = 0; c < k; c++) {
            double s = 0;
            for (int r = 0; r < d; r++) {
                const double x = Wr[(size_t)c * d + r] - theta[c] * Vr[(size_t)c * d + r];
                s += x * x;
            }
            res = fmax(res, sqrt(s));
        }
        p->iterations = it;
        if (res <= 1e-10 * fabs(theta[0]) || theta[0] == 0) {
            p->converged = 1;
            break;
        }
        if (it == max_iter) break;
        memcpy(V, Wr, sizeof(double) * (size_t)b * d);
        orthonormalize(V, d, b);
    }
    for (int c = 0; c < k; c++) {
        double *u = p->components + (size_t)c * d;
        memcpy(u, Vr + (size_t)c * d, sizeof(double) * (size_t)d);
        const double nrm = sqrt(dot(u, u, d));
        int big = 0;
        for (int r = 0; r < d; r++) {
            u[r] /= nrm;
            if (fabs(u[r]) > fabs(u[big])) big = r;
        }
        if (u[big] < 0)
            for (int r = 0; r < d; r++) u[r] = -u[r];
        p->variance[c] = fmax(theta[c], 0);
    }
    free(C), free(V), free(W), free(Vr), free(Wr), free(H), free(S), free(theta);
    return 0;
}

int pca_fit(const float *x, int n, int d, int k, Pca *p, Err *e) { return pca_core(x, NULL, n, d, k, p, e); }

static void pca_scores(const Pca *p, const float *xf, const double *xd, int n, double *scores) {
    const int d = p->d, k = p->k;
#pragma omp parallel
    {
        double *row = must(malloc(sizeof(double) * (size_t)d), "PCA row");
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) row[j] = (xf ? xf[(size_t)i * d + j] : xd[(size_t)i * d + j]) - p->mean[j];
            for (int c = 0; c < k; c++) scores[(size_t)i * k + c] = dot(row, p->components + (size_t)c * d, d);
        }
        free(row);
    }
}

void pca_transform(const Pca *p, const float *x, int n, double *scores) { pca_scores(p, x, NULL, n, scores); }

void pca_free(Pca *p) {
    free(p->mean), free(p->components), free(p->variance);
    memset(p, 0, sizeof *p);
}

int pca_2d(const float *x, int n, int d, float *y, Pca *fit, Err *e) {
    Pca p;
    if (pca_fit(x, n, d, MIN(2, d), &p, e)) return -1;
    double *s = must(malloc(sizeof(double) * (size_t)n * p.k), "PCA scores");
    pca_transform(&p, x, n, s);
    for (int i = 0; i < n; i++) {
        y[2 * i] = (float)s[(size_t)i * p.k];
        y[2 * i + 1] = p.k > 1 ? (float)s[(size_t)i * p.k + 1] : 0.0f;
    }
    free(s);
    if (fit)
        *fit = p;
    else
        pca_free(&p);
    return 0;
}

/* ---------------------------------------------------------------- t-SNE: affinities */

void tsne_defaults(TsneOptions *o) {
    *o = (TsneOptions){.perplexity = 30, .iters = 1000, .exaggeration_iters = 250, .exaggeration = 12,
                       .learning_rate = 0, .theta = 0.5, .exact = -1, .pca_dims = TSNE_PCA_DIMS};
}

int tsne_min_points(double perplexity) {
    const double m = ceil(3 * perplexity) + 1;
    return m < INT_MAX ? (int)m : INT_MAX; /* a perplexity of 1e9 is refused, not undefined */
}

double tsne_row_p(const double *d2, int m, double perplexity, double *p) {
    /* Distances are shifted by their minimum: the same P (it is normalized), but exp() can no
     * longer underflow to an all-zero row when features are far apart. */
    double dmin = INFINITY;
    for (int j = 0; j < m; j++) dmin = fmin(dmin, d2[j]);
    const double want = log(perplexity);
    double beta = 1, lo = -INFINITY, hi = INFINITY;
    for (int step = 0; step < 100; step++) {
        double sum = 0, sdp = 0;
        for (int j = 0; j < m; j++) sum += p[j] = exp(-(d2[j] - dmin) * beta);
        for (int j = 0; j < m; j++) {
            p[j] /= sum;
            sdp += (d2[j] - dmin) * p[j];
        }
        const double diff = log(sum) + beta * sdp - want;
        if (fabs(diff) <= 1e-5) break;
        if (diff > 0) {
            lo = beta;
            beta = isinf(hi) ? beta * 2 : (beta + hi) / 2;
        } else {
            hi = beta;
            beta = isinf(lo) ? beta / 2 : (beta + lo) / 2;
        }
    }
    return beta;
}

void tsne_p_exact(const double *x, int n, int d, double perplexity, double *P) {
#pragma omp parallel
    {
        double *d2 = must(malloc(sizeof(double) * (size_t)n), "t-SNE distances");
        double *c = must(malloc(sizeof(double) * (size_t)n), "t-SNE row");
#pragma omp for schedule(dynamic, 8)
        for (int i = 0; i < n; i++) {
            int m = 0;
            for (int j = 0; j < n; j++)
                if (j != i) d2[m++] = sqdist(x + (size_t)i * d, x + (size_t)j * d, d);
            tsne_row_p(d2, m, perplexity, c);
            m = 0;
            for (int j = 0; j < n; j++) P[(size_t)i * n + j] = j == i ? 0 : c[m++];
        }
        free(d2), free(c);
    }
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const double s = P[(size_t)i * n + j] + P[(size_t)j * n + i];
            P[(size_t)i * n + j] = P[(size_t)j * n + i] = s;
            sum += 2 * s;
        }
    sum = fmax(sum, DBL_EPSILON);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (j != i) P[(size_t)i * n + j] = fmax(P[(size_t)i * n + j] / sum, DBL_EPSILON); /* as sklearn */
}

typedef struct {
    int64_t key; /* row * n + col */
    double v;
} Entry;

static int entry_cmp(const void *a, const void *b) {
    const int64_t x = ((const Entry *)a)->key, y = ((const Entry *)b)->key;
    return (x > y) - (x < y);
}

/* CSR from entries sorted by key, duplicates summed (at most two per key, and a + b == b + a,
 * so qsort's unstable order cannot change a bit). */
static void csr_from_sorted(Entry *en, size_t m, int n, TsneSparse *S) {
    S->n = n;
    S->rowptr = must(calloc((size_t)n + 1, sizeof(int64_t)), "t-SNE P rows");
    S->col = must(malloc(sizeof(int32_t) * (m ? m : 1)), "t-SNE P columns");
    S->val = must(malloc(sizeof(double) * (m ? m : 1)), "t-SNE P values");
    size_t u = 0;
    for (size_t t = 0; t < m; t++) {
        if (u && en[t].key == en[u - 1].key) {
            en[u - 1].v += en[t].v;
            continue;
        }
        en[u++] = en[t];
    }
    for (size_t t = 0; t < u; t++) {
        const int r = (int)(en[t].key / n);
        S->col[t] = (int32_t)(en[t].key % n);
        S->val[t] = en[t].v;
        S->rowptr[r + 1]++;
    }
    for (int r = 0; r < n; r++) S->rowptr[r + 1] += S->rowptr[r];
}

void tsne_p_knn(const double *x, int n, int d, double perplexity, TsneSparse *P) {
    const int k = MIN(n - 1, (int)(3 * perplexity + 1));
    int32_t *nb = must(malloc(sizeof(int32_t) * (size_t)n * k), "t-SNE neighbours");
    double *pc = must(malloc(sizeof(double) * (size_t)n * k), "t-SNE conditional P");
#pragma omp parallel
    {
        double *hd = must(malloc(sizeof(double) * (size_t)k), "t-SNE heap");
        int32_t *hi = must(malloc(sizeof(int32_t) * (size_t)k), "t-SNE heap");
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) {
            /* a max-heap of the k nearest by (distance, index): ties go to the lower index */
            int size = 0;
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                const double dj = sqdist(x + (size_t)i * d, x + (size_t)j * d, d);
                if (size == k && !(dj < hd[0])) continue; /* j > every index in the heap on a tie */
                int pos;
                if (size < k) {
                    pos = size++;
                    while (pos > 0) {
                        const int par = (pos - 1) / 2;
                        if (hd[par] > dj || (hd[par] == dj && hi[par] > j)) break;
                        hd[pos] = hd[par], hi[pos] = hi[par], pos = par;
                    }
                } else {
                    pos = 0;
                    for (;;) {
                        int ch = 2 * pos + 1;
                        if (ch >= k) break;
                        if (ch + 1 < k && (hd[ch + 1] > hd[ch] || (hd[ch + 1] == hd[ch] && hi[ch + 1] > hi[ch]))) ch++;
                        if (hd[ch] < dj || (hd[ch] == dj && hi[ch] < j)) break;
                        hd[pos] = hd[ch], hi[pos] = hi[ch], pos = ch;
                    }
                }
                hd[pos] = dj, hi[pos] = j;
            }
            /* heap sort, ascending: pop the largest to the end */
            for (int end = k - 1; end > 0; end--) {
                double td = hd[0];
                int32_t ti = hi[0];
                hd[0] = hd[end], hi[0] = hi[end];
                hd[end] = td, hi[end] = ti;
                int pos = 0;
                for (;;) {
                    int ch = 2 * pos + 1, big = pos;
                    if (ch < end && (hd[ch] > hd[big] || (hd[ch] == hd[big] && hi[ch] > hi[big]))) big = ch;
                    if (ch + 1 < end && (hd[ch + 1] > hd[big] || (hd[ch + 1] == hd[big] && hi[ch + 1] > hi[big])))
                        big = ch + 1;
                    if (big == pos) break;
                    td = hd[pos], ti = hi[pos];
                    hd[pos] = hd[big], hi[pos] = hi[big];
                    hd[big] = td, hi[big] = ti;
                    pos = big;
                }
            }
            memcpy(nb + (size_t)i * k, hi, sizeof(int32_t) * (size_t)k);
            tsne_row_p(hd, k, perplexity, pc + (size_t)i * k);
        }
        free(hd), free(hi);
    }
    const size_t m = 2 * (size_t)n * k;
    Entry *en = must(malloc(sizeof(Entry) * m), "t-SNE P entries");
    for (int i = 0; i < n; i++)
        for (int t = 0; t < k; t++) {
            const int j = nb[(size_t)i * k + t];
            const double v = pc[(size_t)i * k + t];
            en[2 * ((size_t)i * k + t)] = (Entry){(int64_t)i * n + j, v};
            en[2 * ((size_t)i * k + t) + 1] = (Entry){(int64_t)j * n + i, v};
        }
    free(nb), free(pc);
    qsort(en, m, sizeof(Entry), entry_cmp);
    csr_from_sorted(en, m, n, P);
    free(en);
    const int64_t nnz = P->rowptr[n];
    double sum = 0;
    for (int64_t t = 0; t < nnz; t++) sum += P->val[t];
    sum = fmax(sum, DBL_EPSILON);
    for (int64_t t = 0; t < nnz; t++) P->val[t] /= sum;
}

void tsne_sparse_from_dense(const double *P, int n, TsneSparse *S) {
    size_t m = 0;
    for (size_t t = 0; t < (size_t)n * n; t++) m += P[t] != 0;
    Entry *en = must(malloc(sizeof(Entry) * (m ? m : 1)), "t-SNE P entries");
    m = 0;
    for (size_t t = 0; t < (size_t)n * n; t++)
        if (P[t] != 0) en[m++] = (Entry){(int64_t)t, P[t]};
    csr_from_sorted(en, m, n, S);
    free(en);
}

void tsne_sparse_free(TsneSparse *S) {
    free(S->rowptr), free(S->col), free(S->val);
    memset(S, 0, sizeof *S);
}

/* ---------------------------------------------------------------- t-SNE: gradients */

double tsne_kl_exact(const double *P, const double *y, int n) {
    double Z = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (j != i) {
                const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
                Z += 1 / (1 + dx * dx + dy * dy);
            }
    double kl = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double p = P[(size_t)i * n + j];
            if (j == i || p <= 0) continue;
            const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
            kl += p * log(p / (1 / (1 + dx * dx + dy * dy) / Z));
        }
    return kl;
}

void tsne_grad_naive(const double *P, const double *y, int n, double *grad) {
    double *num = must(malloc(sizeof(double) * (size_t)n * n), "t-SNE Q");
    double Z = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
            num[(size_t)i * n + j] = i == j ? 0 : 1 / (1 + dx * dx + dy * dy);
            Z += num[(size_t)i * n + j];
        }
    for (int i = 0; i < n; i++) {
        double gx = 0, gy = 0;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            const double w = num[(size_t)i * n + j], q = w / Z, f = (P[(size_t)i * n + j] - q) * w;
            gx += f * (y[2 * i] - y[2 * j]);
            gy += f * (y[2 * i + 1] - y[2 * j + 1]);
        }
        grad[2 * i] = 4 * gx, grad[2 * i + 1] = 4 * gy;
    }
    free(num);
}

/* The exact and Barnes-Hut gradients differ only in how they fill rows (per point: attraction x
 * and y, repulsion x and y, its share of Z); Z needs every row, so the gradient and the KL are
 * finished here. The KL's pairs are P's nonzeros: dense P (Pd) or sparse (Ps), the other NULL.
 * rows' first column is reused for the KL's per-point sums. */
static double tsne_grad_finish(double *rows, int n, double exaggeration, double *grad, int want_kl, const double *Pd,
                               const TsneSparse *Ps, const double *y) {
    double Z = 0;
    for (int i = 0; i < n; i++) Z += rows[(size_t)i * 5 + 4];
    for (int i = 0; i < n; i++) {
        const double *r = rows + (size_t)i * 5;
        grad[2 * i] = 4 * (exaggeration * r[0] - r[2] / Z);
        grad[2 * i + 1] = 4 * (exaggeration * r[1] - r[3] / Z);
    }
    if (!want_kl) return 0;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int i = 0; i < n; i++) {
        double s = 0;
        if (Pd) {
            for (int j = 0; j < n; j++) {
                const double p = exaggeration * Pd[(size_t)i * n + j];
                if (j == i || p <= 0) continue;
                const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
                s += p * log(p * Z * (1 + dx * dx + dy * dy));
            }
        } else {
            for (int64_t e = Ps->rowptr[i]; e < Ps->rowptr[i + 1]; e++) {
                const int j = Ps->col[e];
                const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
                const double p = exaggeration * Ps->val[e];
                if (p > 0) s += p * log(p * Z * (1 + dx * dx + dy * dy));
            }
        }
        rows[(size_t)i * 5] = s;
    }
    double kl = 0;
    for (int i = 0; i < n; i++) kl += rows[(size_t)i * 5];
    return kl;
}

/* One pass per row: sum_j (a p_ij - w_ij / Z) w_ij (y_i - y_j) splits into the attraction
 * sum_j a p_ij w_ij (y_i - y_j) and the repulsion sum_j w_ij^2 (y_i - y_j) / Z, and Z = sum of all
 * w_ij is only needed at the end, so no second pass over the pairs. */
double tsne_grad_exact(const double *P, const double *y, int n, double exaggeration, double *grad, int want_kl) {
    double *yx = must(malloc(sizeof(double) * (size_t)n), "t-SNE map"), *yy = must(malloc(sizeof(double) * (size_t)n), "t-SNE map");
    double *rows = must(malloc(sizeof(double) * (size_t)n * 5), "t-SNE gradient rows");
    for (int i = 0; i < n; i++) yx[i] = y[2 * i], yy[i] = y[2 * i + 1];
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int i = 0; i < n; i++) {
        const double xi = yx[i], yi = yy[i], *Pi = P + (size_t)i * n;
        double ax = 0, ay = 0, bx = 0, by = 0, z = 0;
        for (int j = 0; j < n; j++) {
            const double dx = xi - yx[j], dy = yi - yy[j];
            const double w = j == i ? 0 : 1 / (1 + dx * dx + dy * dy), pw = Pi[j] * w, w2 = w * w;
            ax += pw * dx, ay += pw * dy, bx += w2 * dx, by += w2 * dy, z += w;
        }
        double *r = rows + (size_t)i * 5;
        r[0] = ax, r[1] = ay, r[2] = bx, r[3] = by, r[4] = z;
    }
    const double kl = tsne_grad_finish(rows, n, exaggeration, grad, want_kl, P, NULL, y);
    free(yx), free(yy), free(rows);
    return kl;
}

/* The quadtree of Barnes-Hut. Cells are squares; a leaf holds a list of points that are all at
 * the same place (or, past MAX_DEPTH, merely too close to split apart in double precision), so
 * a walk treats their members one by one and self-interaction is skipped exactly. */
enum { MAX_DEPTH = 48 };

typedef struct {
    double cx, cy, hw; /* centre, half width */
    double sx, sy;     /* sums of the members' positions */
    double mx, my, w2; /* centre of mass, squared width: what each walk reads */
    int count;
    int child; /* first of 4 consecutive children; -1: leaf */
    int first; /* leaf: head of its point list (-1: empty) */
} Cell;

typedef struct {
    Cell *c;
    int n, cap;
    int *next; /* point list links */
} Tree;

static int tree_new_cells(Tree *t, double cx, double cy, double hw) {
    if (t->n + 4 > t->cap) {
        t->cap = MAX(16, 2 * t->cap);
        t->c = must(realloc(t->c, sizeof(Cell) * (size_t)t->cap), "t-SNE quadtree");
    }
    const int first = t->n;
    for (int q = 0; q < 4; q++)
        t->c[first + q] = (Cell){.cx = cx + ((q & 1) ? hw / 2 : -hw / 2), .cy = cy + ((q & 2) ? hw / 2 : -hw / 2),
                                 .hw = hw / 2, .child = -1, .first = -1};
    t->n += 4;
    return first;
}

static int quadrant(const Cell *c, double x, double y) { return (x >= c->cx) | ((y >= c->cy) << 1); }

static void tree_build(Tree *t, const double *y, int n) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        x0 = fmin(x0, y[2 * i]), x1 = fmax(x1, y[2 * i]);
        y0 = fmin(y0, y[2 * i + 1]), y1 = fmax(y1, y[2 * i + 1]);
    }
    t->n = 0;
    if (t->cap < 1) {
        t->cap = 16;
        t->c = must(realloc(t->c, sizeof(Cell) * (size_t)t->cap), "t-SNE quadtree");
    }
    t->c[0] = (Cell){.cx = (x0 + x1) / 2, .cy = (y0 + y1) / 2, .hw = fmax(fmax(x1 - x0, y1 - y0) / 2, 1e-300),
                     .child = -1, .first = -1};
    t->n = 1;
    for (int i = 0; i < n; i++) {
        const double px = y[2 * i], py = y[2 * i + 1];
        int node = 0;
        for (int depth = 0;; depth++) {
            if (t->c[node].child < 0) {
                const int j = t->c[node].first;
                if (j < 0 || depth >= MAX_DEPTH || (y[2 * j] == px && y[2 * j + 1] == py)) {
                    t->next[i] = j;
                    t->c[node].first = i;
                    break;
                }
                const int ch = tree_new_cells(t, t->c[node].cx, t->c[node].cy, t->c[node].hw);
                t->c[ch + quadrant(&t->c[node], y[2 * j], y[2 * j + 1])].first = j;
                t->c[node].first = -1;
                t->c[node].child = ch;
            }
            node = t->c[node].child + quadrant(&t->c[node], px, py);
        }
    }
    /* children always come after their parent: a backward sweep is a post-order */
    for (int c = t->n - 1; c >= 0; c--) {
        Cell *cell = &t->c[c];
        cell->sx = cell->sy = 0, cell->count = 0;
        if (cell->child < 0) {
            for (int j = cell->first; j >= 0; j = t->next[j]) cell->sx += y[2 * j], cell->sy += y[2 * j + 1], cell->count++;
        } else {
            for (int q = 0; q < 4; q++) {
                const Cell *k = &t->c[cell->child + q];
                cell->sx += k->sx, cell->sy += k->sy, cell->count += k->count;
            }
        }
        if (cell->count) cell->mx = cell->sx / cell->count, cell->my = cell->sy / cell->count;
        cell->w2 = 4 * cell->hw * cell->hw;
    }
}

double tsne_grad_bh(const TsneSparse *P, const double *y, int n, double theta, double exaggeration, double *grad,
                    int want_kl) {
    Tree t = {NULL, 0, 0, must(malloc(sizeof(int) * (size_t)n), "t-SNE quadtree")};
    tree_build(&t, y, n);
    double *rows = must(malloc(sizeof(double) * (size_t)n * 5), "t-SNE gradient rows");
    const double th2 = theta * theta;
    /* attraction and repulsion of a point in one region: Z, the sum over all points, is only
     * needed to combine them afterwards */
#pragma omp parallel for schedule(dynamic, 32) if (n >= PARALLEL_MIN)
    for (int i = 0; i < n; i++) {
        const double xi = y[2 * i], yi = y[2 * i + 1];
        double fx = 0, fy = 0, z = 0;
        int stack[4 * MAX_DEPTH + 8], sp = 0;
        stack[sp++] = 0;
        while (sp) {
            const Cell *c = &t.c[stack[--sp]];
            if (c->count == 0) continue;
            if (c->child < 0) {
                for (int j = c->first; j >= 0; j = t.next[j]) {
                    if (j == i) continue;
                    const double dx = xi - y[2 * j], dy = yi - y[2 * j + 1], w = 1 / (1 + dx * dx + dy * dy);
                    z += w, fx += w * w * dx, fy += w * w * dy;
                }
                continue;
            }
            const double dx = xi - c->mx, dy = yi - c->my, d2 = dx * dx + dy * dy;
            if (c->w2 < th2 * d2) {
                const double w = 1 / (1 + d2), m = c->count * w * w;
                z += c->count * w, fx += m * dx, fy += m * dy;
                continue;
            }
            for (int q = 3; q >= 0; q--) stack[sp++] = c->child + q;
        }
        double ax = 0, ay = 0;
        for (int64_t e = P->rowptr[i]; e < P->rowptr[i + 1]; e++) {
            const int j = P->col[e];
            const double dx = xi - y[2 * j], dy = yi - y[2 * j + 1], pw = P->val[e] / (1 + dx * dx + dy * dy);
            ax += pw * dx, ay += pw * dy;
        }
        double *r = rows + (size_t)i * 5;
        r[0] = ax, r[1] = ay, r[2] = fx, r[3] = fy, r[4] = z;
    }
    const double kl = tsne_grad_finish(rows, n, exaggeration, grad, want_kl, NULL, P, y);
    free(rows), free(t.c), free(t.next);
    return kl;
}

/* ---------------------------------------------------------------- t-SNE: the optimisation */

int tsne_2d(const float *x, int n, int d, const TsneOptions *o, float *yout, TsneInfo *info, Err *e) {
    TsneInfo inf_local;
    TsneInfo *inf = info ? info : &inf_local;
    memset(inf, 0, sizeof *inf);
    if (!(o->perplexity > 0) || !isfinite(o->perplexity))
        return err_set(e, "t-SNE: perplexity %g: must be a positive number (5 to 50 is usual)", o->perplexity);
    if (n < 2 || n < tsne_min_points(o->perplexity))
        return err_set(e, "t-SNE: %d points are too few for perplexity %g (at least 3 x perplexity + 1 = %d); lower the "
                          "perplexity to at most %.4g",
                       n, o->perplexity, tsne_min_points(o->perplexity), n >= 2 ? floor((n - 1) / 3.0 * 1e4) / 1e4 : 0.0);
    if (d < 1 || o->iters < 1 || o->exaggeration <= 0 || !(o->theta >= 0))
        return err_set(e, "t-SNE: bad settings (%d dims, %d iterations, exaggeration %g, theta %g)", d, o->iters,
                       o->exaggeration, o->theta);
    if (!all_finite(x, (size_t)n * d)) return err_set(e, "t-SNE: the features hold a NaN or infinite value");
    double t0 = now_seconds();
    int dx = d;
    double *X;
    if (o->pca_dims > 0 && d > o->pca_dims) {
        Pca p;
        if (pca_fit(x, n, d, o->pca_dims, &p, e)) return -1;
        dx = o->pca_dims;
        X = must(malloc(sizeof(double) * (size_t)n * dx), "t-SNE input");
        pca_transform(&p, x, n, X);
        pca_free(&p);
    } else {
        X = must(malloc(sizeof(double) * (size_t)n * dx), "t-SNE input");
        for (size_t t = 0; t < (size_t)n * d; t++) X[t] = x[t];
    }
    inf->input_dims = dx;
    inf->exact = o->exact < 0 ? n <= TSNE_EXACT_MAX : o->exact != 0;
    double *Pd = NULL;
    TsneSparse Ps = {0};
    if (inf->exact) {
        Pd = must(malloc(sizeof(double) * (size_t)n * n), "t-SNE P (exact: N x N; pass a smaller --points)");
        tsne_p_exact(X, n, dx, o->perplexity, Pd);
    } else {
        tsne_p_knn(X, n, dx, o->perplexity, &Ps);
        inf->neighbors = MIN(n - 1, (int)(3 * o->perplexity + 1));
    }

    double *y = must(malloc(sizeof(double) * (size_t)n * 2), "t-SNE map");
    if (o->init_random) {
        for (int i = 0; i < n; i++) {
            Rng r = rng_keyed(o->seed, 0x75e1, (uint64_t)i, 0);
            for (int c = 0; c < 2; c++) { /* Box-Muller */
                const double u = rng_u01(&r), v = rng_u01(&r);
                y[2 * i + c] = 1e-4 * sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
            }
        }
    } else {
        Pca p;
        if (pca_core(NULL, X, n, dx, MIN(2, dx), &p, e)) die("t-SNE: %s", e->msg);
        double *s = must(malloc(sizeof(double) * (size_t)n * p.k), "t-SNE initialisation");
        pca_scores(&p, NULL, X, n, s);
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += s[(size_t)i * p.k];
        m /= n;
        for (int i = 0; i < n; i++) v += (s[(size_t)i * p.k] - m) * (s[(size_t)i * p.k] - m);
        const double sd = sqrt(v / n), scale = sd > 0 ? 1e-4 / sd : 1;
        for (int i = 0; i < n; i++) {
            y[2 * i] = s[(size_t)i * p.k] * scale;
            y[2 * i + 1] = p.k > 1 ? s[(size_t)i * p.k + 1] * scale : 0;
        }
        free(s);
        pca_free(&p);
    }
    free(X);
    inf->seconds_affinities = now_seconds() - t0;
    t0 = now_seconds();

    const double lr = o->learning_rate > 0 ? o->learning_rate : fmax(n / o->exaggeration / 4, 50);
    inf->learning_rate = lr;
    double *g = must(malloc(sizeof(double) * (size_t)n * 2), "t-SNE gradient");
    double *upd = must(malloc(sizeof(double) * (size_t)n * 2), "t-SNE update");
    double *gain = must(malloc(sizeof(double) * (size_t)n * 2), "t-SNE gains");
    const int explore = MIN(o->exaggeration_iters, o->iters);
    double best = INFINITY, kl = NAN;
    int best_it = 0, it = 0;
    for (it = 0; it < o->iters; it++) {
        const int phase1 = it < explore;
        if (it == 0 || it == explore) { /* sklearn runs the two phases as two fresh descents */
            for (int t = 0; t < 2 * n; t++) upd[t] = 0, gain[t] = 1;
            best = INFINITY, best_it = it;
        }
        const double mom = phase1 ? 0.5 : 0.8, ex = phase1 ? o->exaggeration : 1;
        const int check = (it + 1) % 50 == 0 || it == o->iters - 1;
        const double err = inf->exact ? tsne_grad_exact(Pd, y, n, ex, g, check)
                                      : tsne_grad_bh(&Ps, y, n, o->theta, ex, g, check);
        double gn = 0;
        for (int t = 0; t < 2 * n; t++) gn += g[t] * g[t];
        for (int t = 0; t < 2 * n; t++) {
            gain[t] = upd[t] * g[t] < 0 ? gain[t] + 0.2 : gain[t] * 0.8;
            if (gain[t] < 0.01) gain[t] = 0.01;
            upd[t] = mom * upd[t] - lr * gain[t] * g[t];
            y[t] += upd[t];
        }
        if (!check) continue;
        kl = err;
        if (o->progress) o->progress(it + 1, err, o->progress_ctx);
        int stop = sqrt(gn) <= 1e-7;
        if (err < best)
            best = err, best_it = it;
        else if (!phase1 && it - best_it > 300)
            stop = 1;
        if (stop && phase1) {
            it = explore - 1; /* the exploration ends early; the main phase still runs */
            continue;
        }
        if (stop) {
            it++;
            break;
        }
    }
    inf->iterations = MIN(it, o->iters);
    inf->kl = kl;
    inf->seconds_optimize = now_seconds() - t0;
    for (int t = 0; t < 2 * n; t++) yout[t] = (float)y[t];
    free(g), free(upd), free(gain), free(y), free(Pd);
    tsne_sparse_free(&Ps);
    return 0;
}

/* ---------------------------------------------------------------- quality */

double map_knn_agreement(const float *x, int n, int d, const int32_t *labels, int k) {
    int labelled = 0, maxl = -1;
    for (int i = 0; i < n; i++)
        if (labels && labels[i] >= 0) labelled++, maxl = MAX(maxl, labels[i]);
    if (!labelled || n < 2) return -1;
    k = MIN(k, n - 1);
    int agree = 0;
#pragma omp parallel reduction(+ : agree)
    {
        double *bd = must(malloc(sizeof(double) * (size_t)k), "kNN agreement");
        int *bi = must(malloc(sizeof(int) * (size_t)k), "kNN agreement");
        int *votes = must(calloc((size_t)maxl + 1, sizeof(int)), "kNN agreement");
#pragma omp for schedule(dynamic, 32)
        for (int i = 0; i < n; i++) {
            if (labels[i] < 0) continue;
            int size = 0; /* the k nearest, kept sorted by (distance, index): insertion */
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                double s = 0;
                for (int c = 0; c < d; c++) {
                    const double t = (double)x[(size_t)i * d + c] - x[(size_t)j * d + c];
                    s += t * t;
                }
                if (size == k && !(s < bd[k - 1])) continue;
                int pos = size < k ? size++ : k - 1;
                while (pos > 0 && bd[pos - 1] > s) bd[pos] = bd[pos - 1], bi[pos] = bi[pos - 1], pos--;
                bd[pos] = s, bi[pos] = j;
            }
            for (int t = 0; t < size; t++)
                if (labels[bi[t]] >= 0) votes[labels[bi[t]]]++;
            int best = -1;
            for (int t = 0; t < size; t++) { /* nearest first: of tied labels the nearest's wins */
                const int l = labels[bi[t]];
                if (l >= 0 && (best < 0 || votes[l] > votes[best])) best = l;
            }
            for (int t = 0; t < size; t++)
                if (labels[bi[t]] >= 0) votes[labels[bi[t]]] = 0;
            agree += best == labels[i];
        }
        free(bd), free(bi), free(votes);
    }
    return (double)agree / labelled;
}
