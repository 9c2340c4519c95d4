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
 * order, so the result does not depend on the thread count. The parameters live in double. */
#ifndef BYOL_PROBE_H
#define BYOL_PROBE_H

#include <stdint.h>

#include "../core/common.h"

enum { PROBE_CHUNK = 512, PROBE_MEMORY = 10 };

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
    int converged;     /* grad_norm <= tol */
} ProbeReport;

/* Fits the probe on (train, train_labels) and returns its top-1 accuracy in [0, 1] on (test,
 * test_labels); -1 with e filled on bad input (empty sets, d < 1, n_classes < 2, a label outside
 * [0, n_classes), a non-finite feature, l2 < 0, max_iter < 0, tol < 0). cfg NULL: defaults;
 * rep may be NULL. Not converging is not an error: rep->converged says. */
double probe_top1(const float *train, const int32_t *train_labels, int n_train, const float *test,
                  const int32_t *test_labels, int n_test, int d, int n_classes,
                  const ProbeConfig *cfg, ProbeReport *rep, Err *e);

/* The objective on features x [n, d] as given (no standardization), for tests and callers that
 * fit themselves. theta = [W (n_classes x d, row-major) | b (n_classes)], grad the same layout.
 * Returns the loss. _cpu: the chunked sgemm path the fit uses; _ref: plain loops in double. */
double probe_loss_grad_cpu(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad);
double probe_loss_grad_ref(const float *x, const int32_t *y, int n, int d, int n_classes,
                           double l2, const double *theta, double *grad);

#endif
