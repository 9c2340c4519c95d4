/* DINO's pieces (Caron et al. 2021): the GELU of its head, the l2 normalization of the
 * bottleneck and of the weight-normalized last layer, and the loss: a teacher softmax that is
 * centered and sharpened, the student's cross-entropy against it, and the center's EMA.
 *
 * The optimized versions run rows in parallel and exponentials in float; the references
 * compute everything in double, one element at a time. Sums over a row run in double in both,
 * in column order. */
#include <math.h>

#include "../core/common.h"
#include "nn.h"

static const double INV_SQRT2 = 0.70710678118654752440, INV_SQRT_2PI = 0.39894228040143267794;

void gelu_forward_cpu(float *out, const float *in, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * (float)INV_SQRT2));
}

void gelu_backward_cpu(float *din, const float *dout, const float *in, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = in[i];
        const float cdf = 0.5f * (1.0f + erff(x * (float)INV_SQRT2));
        const float pdf = (float)INV_SQRT_2PI * expf(-0.5f * x * x);
        din[i] = dout[i] * (cdf + x * pdf);
    }
}

static double row_norm(const float *x, int cols) {
    double s = 0;
    for (int j = 0; j < cols; j++) s += (double)x[j] * x[j];
    return sqrt(s);
}

void l2norm_rows_forward_cpu(float *out, float *norms, const float *in, int rows, int cols, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * cols;
        const double n = fmax(row_norm(x, cols), eps);
        norms[r] = (float)n;
        for (int j = 0; j < cols; j++) out[(size_t)r * cols + j] = (float)(x[j] / n);
    }
}

void l2norm_rows_backward_cpu(float *din, const float *dout, const float *out, const float *norms, int rows,
                              int cols, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *dy = dout + (size_t)r * cols, *y = out + (size_t)r * cols;
        float *dx = din + (size_t)r * cols;
        const double n = norms[r];
        if (n <= eps) { /* the clamp held: y = x / eps */
            for (int j = 0; j < cols; j++) dx[j] = (float)(dy[j] / eps);
            continue;
        }
        double dot = 0;
        for (int j = 0; j < cols; j++) dot += (double)dy[j] * y[j];
        for (int j = 0; j < cols; j++) dx[j] = (float)((dy[j] - y[j] * dot) / n);
    }
}

void dino_teacher_softmax_cpu(float *q, const float *t, const float *center, int rows, int K, float temp) {
    const float inv = 1.0f / temp;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *x = t + (size_t)r * K;
        float *y = q + (size_t)r * K;
        float mx = -INFINITY;
        for (int k = 0; k < K; k++) {
            y[k] = (x[k] - center[k]) * inv;
            mx = y[k] > mx ? y[k] : mx;
        }
        double sum = 0;
        for (int k = 0; k < K; k++) sum += y[k] = expf(y[k] - mx);
        const float scale = (float)(1.0 / sum);
        for (int k = 0; k < K; k++) y[k] *= scale;
    }
}

float dino_student_loss_cpu(float *ds, const float *s, const float *q, int rows, int K, float temp, float dloss,
                            double *entropy) {
    const float inv = 1.0f / temp;
    const double g = (double)dloss * inv / rows;
    double ce = 0, ent = 0;
#pragma omp parallel for schedule(static) reduction(+ : ce, ent)
    for (int r = 0; r < rows; r++) {
        const float *x = s + (size_t)r * K, *p = q + (size_t)r * K;
        float *d = ds + (size_t)r * K;
        float mx = -INFINITY;
        for (int k = 0; k < K; k++) mx = x[k] * inv > mx ? x[k] * inv : mx;
        double sum = 0;
        for (int k = 0; k < K; k++) sum += d[k] = expf(x[k] * inv - mx); /* d: exp, for now */
        const double lse = mx + log(sum);
        double row_ce = 0, row_ent = 0;
        for (int k = 0; k < K; k++) {
            row_ce -= p[k] * ((double)x[k] * inv - lse);
            if (p[k] > 0) row_ent -= p[k] * log((double)p[k]);
            d[k] = (float)(g * (d[k] / sum - p[k]));
        }
        ce += row_ce;
        ent += row_ent;
    }
    *entropy = ent / rows;
    return (float)(ce / rows);
}

/* The column sums in double and the row count, summed over ranks, then the EMA. */
static void center_update(float *center, const float *t, int rows, int K, float momentum, const Reducer *sync) {
    double *sums = xcalloc((size_t)K + 1, sizeof(double), "DINO's center");
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) sums[k] += t[(size_t)r * K + k];
    sums[K] = rows;
    if (sync) sync->sum(sync, sums, K + 1);
    for (int k = 0; k < K; k++)
        center[k] = (float)(momentum * (double)center[k] + (1.0 - momentum) * (sums[k] / sums[K]));
    xfree(sums);
}

void dino_center_update_cpu(float *center, const float *t, int rows, int K, float momentum, const Reducer *sync) {
    center_update(center, t, rows, K, momentum, sync);
}

/* ---- naive reference: in double, as the formulas read ---- */

void gelu_forward_ref(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)(0.5 * in[i] * (1.0 + erf(in[i] * INV_SQRT2)));
}

void gelu_backward_ref(float *din, const float *dout, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const double x = in[i];
        din[i] = (float)(dout[i] * (0.5 * (1.0 + erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)));
    }
}

void l2norm_rows_forward_ref(float *out, float *norms, const float *in, int rows, int cols, float eps) {
    for (int r = 0; r < rows; r++) {
        const double n = fmax(row_norm(in + (size_t)r * cols, cols), eps);
        norms[r] = (float)n;
        for (int j = 0; j < cols; j++) out[(size_t)r * cols + j] = (float)(in[(size_t)r * cols + j] / n);
    }
}

void l2norm_rows_backward_ref(float *din, const float *dout, const float *out, const float *norms, int rows,
                              int cols, float eps) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * cols;
        double dot = 0;
        for (int j = 0; j < cols; j++) dot += (double)dout[o + j] * out[o + j];
        for (int j = 0; j < cols; j++)
            din[o + j] = norms[r] > eps ? (float)((dout[o + j] - out[o + j] * dot) / norms[r])
                                        : (float)(dout[o + j] / (double)eps);
    }
}

void dino_teacher_softmax_ref(float *q, const float *t, const float *center, int rows, int K, float temp) {
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * K;
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < K; k++) mx = fmax(mx, ((double)t[o + k] - center[k]) / temp);
        for (int k = 0; k < K; k++) sum += exp(((double)t[o + k] - center[k]) / temp - mx);
        for (int k = 0; k < K; k++) q[o + k] = (float)(exp(((double)t[o + k] - center[k]) / temp - mx) / sum);
    }
}

float dino_student_loss_ref(float *ds, const float *s, const float *q, int rows, int K, float temp, float dloss,
                            double *entropy) {
    double ce = 0, ent = 0;
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * K;
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < K; k++) mx = fmax(mx, s[o + k] / (double)temp);
        for (int k = 0; k < K; k++) sum += exp(s[o + k] / (double)temp - mx);
        const double lse = mx + log(sum);
        for (int k = 0; k < K; k++) {
            const double logp = s[o + k] / (double)temp - lse;
            ce -= q[o + k] * logp;
            if (q[o + k] > 0) ent -= q[o + k] * log((double)q[o + k]);
            ds[o + k] = (float)((double)dloss / rows / temp * (exp(logp) - q[o + k]));
        }
    }
    *entropy = ent / rows;
    return (float)(ce / rows);
}

void dino_center_update_ref(float *center, const float *t, int rows, int K, float momentum, const Reducer *sync) {
    center_update(center, t, rows, K, momentum, sync);
}
