/* Two-dimensional maps of embeddings (byol map): PCA and t-SNE, and a figure of how well a map
 * keeps the classes apart (the 10-NN label agreement).
 *
 * PCA: the covariance (divisor n - 1) formed once in double precision, then subspace iteration
 * with Rayleigh-Ritz from a fixed start block (no LAPACK), run until every wanted Ritz pair's
 * residual |C v - theta v| is below 1e-10 of the largest eigenvalue. Each component's sign is
 * fixed by making its largest-|value| coordinate positive (the first such on ties), so the same
 * data always give the same picture.
 *
 * t-SNE as van der Maaten & Hinton 2008 and van der Maaten 2014 (Barnes-Hut), with
 * scikit-learn's choices (sklearn.manifold.TSNE, 1.2 and later): inputs of more than 50 dims
 * first reduced to 50 by PCA (the usual practice, not sklearn's own); squared Euclidean
 * distances; per-point Gaussian bandwidths by binary search on the entropy (tolerance 1e-5
 * nats, 100 steps) to log(perplexity); P = (P_j|i + P_i|j) / sum; Student-t (one degree of
 * freedom) Q; the gradient 4 sum_j (p_ij - q_ij)(y_i - y_j) / (1 + |y_i - y_j|^2); gradient
 * descent with momentum 0.5 for the first 250 iterations under early exaggeration 12, then 0.8,
 * gains (delta-bar-delta: +0.2 where the step changes sign, x0.8 elsewhere, at least 0.01), both
 * reset when the phase changes; learning rate "auto" = max(N / 12 / 4, 50); initialisation the
 * first two principal components scaled to a standard deviation of 1e-4 (of the first); every 50
 * iterations, a stop when the gradient norm is below 1e-7 or, after the exaggeration, when KL
 * has not improved for 300 iterations.
 *
 * Exact (O(N^2) per iteration, dense P) for N <= TSNE_EXACT_MAX; above, Barnes-Hut: P over each
 * point's floor(3 * perplexity + 1) nearest neighbours (exact search), the repulsion through a
 * quadtree whose cells are summarised when (cell width)^2 < theta^2 |y_i - centre of mass|^2
 * (sklearn's criterion, theta 0.5). Every per-point quantity (a P row, a gradient row, a
 * tree walk) is computed by one thread in a fixed order, and sums over points run in point
 * order afterwards, so maps do not depend on the thread count. */
#ifndef BYOL_EMBED_MAP_H
#define BYOL_EMBED_MAP_H

#include <stdint.h>

#include "../core/common.h"

/* ---- PCA ---- */

typedef struct {
    int d, k;
    double *mean;          /* [d] */
    double *components;    /* [k][d]: orthonormal rows, by decreasing variance */
    double *variance;      /* [k]: eigenvalues of the covariance (divisor n - 1) */
    double total_variance; /* its trace: variance[c] / total_variance is the share explained */
    int iterations, converged;
} Pca;

/* Fits the top k (1 <= k <= d) components of the n x d rows of x (n >= 2). -1 with e set on bad
 * input (sizes, a non-finite value). */
int pca_fit(const float *x, int n, int d, int k, Pca *p, Err *e);
/* Scores [n][k] of rows of x (same d) on the fitted components. */
void pca_transform(const Pca *p, const float *x, int n, double *scores);
void pca_free(Pca *p);
/* The top-2 scores of x as [n][2] floats; the fit too when fit is non-NULL (pca_free it). */
int pca_2d(const float *x, int n, int d, float *y, Pca *fit, Err *e);

/* ---- t-SNE ---- */

enum { TSNE_EXACT_MAX = 2000, TSNE_PCA_DIMS = 50 };

typedef struct {
    double perplexity;      /* 30 */
    int iters;              /* 1000, the exaggerated ones included */
    int exaggeration_iters; /* 250 */
    double exaggeration;    /* 12 */
    double learning_rate;   /* <= 0: "auto" */
    double theta;           /* Barnes-Hut opening angle, 0.5 (0: every leaf visited) */
    int exact;              /* 1: exact, 0: Barnes-Hut, -1: exact for N <= TSNE_EXACT_MAX (-1) */
    int pca_dims;           /* inputs wider than this are PCA-reduced first (50; 0: never) */
    int init_random;        /* 0: PCA initialisation; 1: N(0, 1e-4^2) drawn from seed */
    uint64_t seed;
    /* Called after every 50th iteration (and the last): iteration count, current KL (of the
     * exaggerated P during the exaggeration). NULL: none. */
    void (*progress)(int iter, double kl, void *ctx);
    void *progress_ctx;
} TsneOptions;

typedef struct {
    int exact;           /* which gradient ran */
    int neighbors;       /* Barnes-Hut: neighbours per point in P */
    int input_dims;      /* after the PCA reduction */
    int iterations;      /* run (fewer than asked when a stopping rule fired) */
    double learning_rate;
    double kl;           /* KL(P || Q) at the end */
    double seconds_affinities, seconds_optimize;
} TsneInfo;

void tsne_defaults(TsneOptions *o);
/* The fewest points a perplexity allows: each point needs 3 x perplexity neighbours. */
int tsne_min_points(double perplexity);
/* The map of the n x d rows of x into y [n][2]. -1 with e set on bad input (too few points for
 * the perplexity, a perplexity <= 0, a non-finite value). info may be NULL. */
int tsne_2d(const float *x, int n, int d, const TsneOptions *o, float *y, TsneInfo *info, Err *e);

/* The pieces, exposed for tests. x is [n][d] doubles, y [n][2] doubles, P dense [n][n]. */
/* Conditional P of one point over m squared distances into p[m] (sums to 1); returns beta. */
double tsne_row_p(const double *d2, int m, double perplexity, double *p);
void tsne_p_exact(const double *x, int n, int d, double perplexity, double *P);
typedef struct {
    int n;
    int64_t *rowptr; /* [n + 1] */
    int32_t *col;    /* column indices, ascending within a row */
    double *val;
} TsneSparse;
/* Symmetric P over the k = min(n - 1, floor(3 perplexity + 1)) nearest neighbours. */
void tsne_p_knn(const double *x, int n, int d, double perplexity, TsneSparse *P);
void tsne_sparse_from_dense(const double *P, int n, TsneSparse *S);
void tsne_sparse_free(TsneSparse *S);
/* KL(P || Q) of the map y. */
double tsne_kl_exact(const double *P, const double *y, int n);
/* The gradient of KL(exaggeration * P || Q) into grad [n][2]; returns that KL when want_kl. */
double tsne_grad_exact(const double *P, const double *y, int n, double exaggeration, double *grad, int want_kl);
double tsne_grad_bh(const TsneSparse *P, const double *y, int n, double theta, double exaggeration, double *grad,
                    int want_kl);
/* The reference: the paper's formula with Q held as a matrix, one thread. */
void tsne_grad_naive(const double *P, const double *y, int n, double *grad);

/* ---- quality ---- */

/* The share of labelled points (label >= 0) whose k nearest other points (Euclidean, in the d
 * dims of x; ties by index) have a majority label equal to their own; a tie between labels goes
 * to the one with the nearest member. Unlabelled neighbours do not vote. -1 when no point is
 * labelled. */
double map_knn_agreement(const float *x, int n, int d, const int32_t *labels, int k);

#endif
