/* Linear probe: multinomial logistic regression on frozen features, fitted to convergence with
 * L-BFGS.
 *
 * Features are standardized with the training set's per-dimension mean and standard deviation
 * (population std, divisor n; a dimension with std 0 is divided by 1), then
 *     logits = X W^T + b,   W [n_classes, d], b [n_classes],
 *     loss   = mean cross-entropy + 0.5 * l2 * ||W||^2   (biases are not penalized).
 * The fit starts from W = 0, b = 0 and runs L-BFGS (memory 10, two-loop recursion, initial
 * scaling s'y / y'y) with a strong-Wolfe line search (c1 = 1e-4, c2 = 0.9; bracketing and zoom
 * with cubic interpolation, as torch.optim.LBFGS's "strong_wolfe"), which also accepts a step
 * meeting Hager-Zhang's approximate Wolfe conditions (loss within 1e-6 relative of the start,
 * 0.9 phi'(0) <= phi'(t) <= -0.8 phi'(0)): near the optimum the loss's decrease falls below the
 * rounding of its float logits while the gradient stays accurate. A pair (s, y) enters the
 * memory only when s'y > 0, so the inverse-Hessian estimate stays positive definite.
 *
 * Convergence: the largest absolute entry of the gradient (of the loss above, W and b together)
 * is at most tol. The fit stops unconverged after max_iter iterations, or when the line search
 * finds no decrease even along the steepest descent (the loss's rounding floor).
 *
 * Logits and gradients are GEMMs (sgemm, float) over fixed chunks of PROBE_CHUNK rows; the loss,
 * the softmax and the per-chunk partial sums are double, and the partials are added in chunk
 * order, so the result does not depend on the thread count. The parameters live in double.
 *
 * Memory: the chunks run in waves of as many as PROBE_WAVE_BYTES of per-chunk buffers hold, and
 * rows are standardized chunk by chunk (no standardized copy of the features), so the probe's
 * own memory is probe_work_bytes(): about 0.7 GB for ImageNet-1k with ResNet-50 features
 * (1.28M x 2048, 1000 classes), mostly the L-BFGS memory, besides the caller's features. */
#ifndef BYOL_PROBE_H
#define BYOL_PROBE_H

#include <stdint.h>

#include "../core/common.h"

enum { PROBE_CHUNK = 512, PROBE_MEMORY = 10 };
/* Per-wave buffers (partial gradients, logits, standardized rows) at most this large, unless a
 * single chunk needs more. */
#define PROBE_WAVE_BYTES ((size_t)256 << 20)

typedef struct {
    double l2;    /* weight penalty 0.5 * l2 * ||W||^2 (default 1e-4) */
    int max_iter; /* L-BFGS iterations (default 3000) */
    double tol;   /* converged when max |gradient| <= tol (default 1e-5) */
} ProbeConfig;

void probe_config_default(ProbeConfig *c);

typedef struct {
    int iterations;    /* L-BFGS iterations run */
    int evaluations;   /* loss/gradient evaluations (line search included) */
    double final_loss; /* mean cross-entropy + penalty, on the standardized training set */
    double grad_norm;  /* max |gradient| at the end (the convergence measure) */
    double train_top1; /* accuracy of the fitted probe on the training set */
    double test_top5;  /* the test label among the five largest logits (ties: lower class first) */
    int converged;     /* grad_norm <= tol */
} ProbeReport;

/* Fits the probe on (train, train_labels) and returns its top-1 accuracy in [0, 1] on (test,
 * test_labels); -1 with e filled on bad input (empty sets, d < 1, n_classes < 2, a label outside
 * [0, n_classes), a non-finite feature, l2 < 0, max_iter < 0, tol < 0). cfg NULL: defaults;
 * rep may be NULL. Not converging is not an error: rep->converged says. */
double probe_top1(const float *train, const int32_t *train_labels, int n_train, const float *test,
                  const int32_t *test_labels, int n_test, int d, int n_classes,
                  const ProbeConfig *cfg, ProbeReport *rep, Err *e);

/* The same fit, returned as a linear layer on the raw features: weight [n_classes, d] and bias
 * [n_classes] such that weight x + bias are the fitted probe's logits (the standardization folded
 * in). A fine-tuned head starts from it (linear probing, then fine-tuning: Kumar et al. 2022).
 * 0, or -1 with e filled on bad input (as probe_top1). */
int probe_fit(const float *train, const int32_t *train_labels, int n_train, int d, int n_classes,
              const ProbeConfig *cfg, ProbeReport *rep, float *weight, float *bias, Err *e);

/* The objective on features x [n, d] as given (no standardization), for tests and callers that
 * fit themselves. theta = [W (n_classes x d, row-major) | b (n_classes)], grad the same layout.
 * Returns the loss. _cpu: the chunked sgemm path the fit uses; _ref: plain loops in double. */
double probe_loss_grad_cpu(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad);
double probe_loss_grad_ref(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad);

/* Bytes the probe allocates for n training rows of d features and n_classes classes (all but
 * the caller's features; scoring adds PROBE_CHUNK x (n_classes + d) floats per thread). */
size_t probe_work_bytes(int64_t n, int d, int n_classes);
/* For tests: the per-wave budget instead of PROBE_WAVE_BYTES (0 restores it); 1 makes every
 * wave a single chunk. Not thread-safe: set it before fitting. */
void probe_set_wave_bytes(size_t bytes);

/* The L-BFGS memory: a ring of PROBE_MEMORY pairs (s, y) of np doubles each (S, Y: [PROBE_MEMORY,
 * np]), rho = 1 / s'y, hist live pairs, the newest in slot newest (-1: none yet). */
typedef struct {
    double *S, *Y;
    double rho[PROBE_MEMORY];
    size_t np;
    int hist, newest;
} ProbeHistory;

/* Adds the pair s = xn - x, y = gn - g when s'y > 1e-10 |s| |y| (and > 0), keeping the inverse
 * Hessian estimate positive definite; returns 1 when kept, 0 (the memory untouched) otherwise. */
int probe_history_push(ProbeHistory *h, const double *x, const double *xn, const double *g, const double *gn);

#endif
