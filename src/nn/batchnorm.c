/* Batch normalization over [M rows, C channels], matching torch.nn.BatchNorm{1,2}d.
 *
 * CPU version: statistics are reduced in double over a fixed number of row chunks (a function of
 * M only, so results never depend on the thread count); each chunk walks its rows with the
 * channel loop innermost, which in NHWC is contiguous memory. */
#include <math.h>
#include <string.h>

#include "nn.h"

static int row_chunks(int M) {
    int n = M / 32;
    if (n > 16) n = 16;
    return n < 1 ? 1 : n;
}

/* Layout of `work`: [nchunk*C partials][nchunk*C partials][6*C per-channel values], the last
 * part holding at most 5*C + 1 doubles (forward: mean, var, 2C sums + the row count, C float
 * scales; backward: three C coefficients, 2C sums + the row count). */
size_t batchnorm_work_doubles(int M, int C) { return ((size_t)2 * row_chunks(M) + 6) * C; }

static void chunk_bounds(int M, int nchunk, int k, int *r0, int *r1) {
    *r0 = (int)((long)M * k / nchunk);
    *r1 = (int)((long)M * (k + 1) / nchunk);
}

/* Per-channel mean and biased variance in one pass, returning the rows they cover (M, or the
 * global batch's rows): each chunk sums d = x - K and d^2 in double, K the running mean. The
 * cancellation in E[d^2] - E[d]^2 costs about
 * 2*log10(|mean - K| / std) of double's 16 digits: nothing once the running mean has followed
 * the batches, and 4 digits for a channel whose mean is 100 standard deviations from a fresh
 * running mean of 0, far below float32 resolution either way; one pass is half the memory
 * traffic of the two-pass version. The shift is the same on every rank of a data-parallel run
 * (the running statistics are), so the sums of all ranks add up (`sync`, NULL: this batch
 * alone; the row count travels with the sums, totals[2C]). */
static double channel_stats(double *mean, double *var, const float *in, const float *shift, int M,
                            int C, double *part, double *totals, const Reducer *sync) {
    const int nchunk = row_chunks(M);
    double *part2 = part + (size_t)nchunk * C;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nchunk; k++) {
        int r0, r1;
        chunk_bounds(M, nchunk, k, &r0, &r1);
        double *s1 = part + (size_t)k * C, *s2 = part2 + (size_t)k * C;
        for (int c = 0; c < C; c++) s1[c] = s2[c] = 0;
        for (int r = r0; r < r1; r++) {
            const float *x = in + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                double d = (double)x[c] - shift[c];
                s1[c] += d;
                s2[c] += d * d;
            }
        }
    }
    for (int c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int k = 0; k < nchunk; k++) {
            a += part[(size_t)k * C + c];
            b += part2[(size_t)k * C + c];
        }
        totals[c] = a;
        totals[C + c] = b;
    }
    totals[2 * C] = M;
    if (sync) sync->sum(sync, totals, 2 * C + 1);
    const double rows = totals[2 * C];
    for (int c = 0; c < C; c++) {
        double dm = totals[c] / rows, v = totals[C + c] / rows - dm * dm;
        mean[c] = shift[c] + dm;
        var[c] = v > 0 ? v : 0;
    }
    return rows;
}

static void update_running(float *running_mean, float *running_var, const double *mean,
                           const double *var, double rows, int C, float momentum) {
    const double unbias = rows > 1 ? rows / (rows - 1) : 1.0;
    for (int c = 0; c < C; c++) {
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean[c]);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var[c] * unbias);
    }
}

/* y = (x - center) * scale + shift per channel, then + residual, then ReLU: one pass over
 * memory for what were three. Subtracting the centre first keeps the result accurate when
 * |mean| is large against the spread. The float operations are those of the separate passes in
 * the same order, so fusing changed no bit. */
static inline void affine_row(float *restrict y, const float *restrict x, const float *res,
                              const float *center, const float *scale, const float *shift, int C,
                              int relu) {
    for (int c = 0; c < C; c++) {
        float v = (x[c] - center[c]) * scale[c] + shift[c];
        if (res) v += res[c];
        if (relu) v = v < 0.0f ? 0.0f : v; /* NaN passes, as in PyTorch */
        y[c] = v;
    }
}

static void affine_rows(float *out, const float *in, const float *residual, int relu,
                        const float *center, const float *scale, const float *shift, int M,
                        int C) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *x = in + (size_t)r * C, *res = residual ? residual + (size_t)r * C : NULL;
        float *y = out + (size_t)r * C;
        /* constant arguments per call, so each variant compiles to its own vector loop */
        if (res && relu)
            affine_row(y, x, res, center, scale, shift, C, 1);
        else if (res)
            affine_row(y, x, res, center, scale, shift, C, 0);
        else if (relu)
            affine_row(y, x, NULL, center, scale, shift, C, 1);
        else
            affine_row(y, x, NULL, center, scale, shift, C, 0);
    }
}

void batchnorm_forward_train_cpu(float *out, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, const float *residual,
                                 int relu, int M, int C, float momentum, float eps,
                                 const Reducer *sync, double *work) {
    const size_t nc = (size_t)row_chunks(M) * C;
    double *mean = work + 2 * nc, *var = mean + C, *totals = var + C;
    float *scale = (float *)(totals + 2 * C + 1);
    const double rows = channel_stats(mean, var, in, running_mean, M, C, work, totals, sync);
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt(var[c] + eps);
        save_mean[c] = (float)mean[c];
        save_invstd[c] = (float)invstd;
        scale[c] = (float)(gamma[c] * invstd);
    }
    update_running(running_mean, running_var, mean, var, rows, C, momentum);
    affine_rows(out, in, residual, relu, save_mean, scale, beta, M, C);
}

void batchnorm_forward_eval_cpu(float *out, const float *in, const float *gamma,
                                const float *beta, const float *running_mean,
                                const float *running_var, const float *residual, int relu, int M,
                                int C, float eps, double *work) {
    float *scale = (float *)work;
    for (int c = 0; c < C; c++) scale[c] = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
    affine_rows(out, in, residual, relu, running_mean, scale, beta, M, C);
}

/* With relu_out, dy is first masked by the ReLU that followed the batch norm (zero where its
 * output was not positive); each loop is written twice so both variants vectorize. */
void batchnorm_backward_cpu(float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *relu_out, const float *in, const float *save_mean,
                            const float *save_invstd, const float *gamma, int M, int C,
                            const Reducer *sync, double *work) {
    const int nchunk = row_chunks(M);
    double *part_dy = work, *part_dyx = work + (size_t)nchunk * C;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nchunk; k++) {
        int r0, r1;
        chunk_bounds(M, nchunk, k, &r0, &r1);
        double *a = part_dy + (size_t)k * C, *b = part_dyx + (size_t)k * C;
        for (int c = 0; c < C; c++) a[c] = b[c] = 0;
        for (int r = r0; r < r1; r++) {
            const float *dy = dout + (size_t)r * C, *x = in + (size_t)r * C;
            if (relu_out) {
                const float *m = relu_out + (size_t)r * C;
                for (int c = 0; c < C; c++) {
                    float d = dy[c], g = m[c] > 0.0f ? d : 0.0f;
                    a[c] += g;
                    b[c] += (double)g * (x[c] - save_mean[c]);
                }
            } else {
                for (int c = 0; c < C; c++) {
                    a[c] += dy[c];
                    b[c] += (double)dy[c] * (x[c] - save_mean[c]);
                }
            }
        }
    }
    /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)) = dy*k1 + (x-mean)*k2 + k3.
     * The three terms can nearly cancel (when dy lies close to span{1, xhat}, as it does when a
     * later BN undoes this one's shift and scale), so they are combined in double. */
    double *k1 = part_dyx + (size_t)nchunk * C, *k2 = k1 + C, *k3 = k2 + C, *totals = k3 + C;
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int k = 0; k < nchunk; k++) {
            sdy += part_dy[(size_t)k * C + c];
            sdyx += part_dyx[(size_t)k * C + c];
        }
        totals[c] = sdy;
        totals[C + c] = sdyx;
    }
    /* dgamma and dbeta take this rank's sums (the gradient all-reduce averages them over the
     * ranks, as every other parameter gradient); the input gradient needs the sums over the
     * global batch and its row count. Each rank's dy is the gradient of its own mean loss, P
     * times the global loss's, and dx is linear in dy, so the P cancels in that average too. */
    for (int c = 0; c < C; c++) {
        dgamma[c] += (float)(totals[C + c] * save_invstd[c]);
        dbeta[c] += (float)totals[c];
    }
    totals[2 * C] = M;
    if (sync) sync->sum(sync, totals, 2 * C + 1);
    const double rows = totals[2 * C];
    for (int c = 0; c < C; c++) {
        const double sdy = totals[c], sdyx = totals[C + c];
        double invstd = save_invstd[c];
        double sum_dy_xhat = sdyx * invstd;
        double g = gamma[c] * invstd;
        k1[c] = g;
        k2[c] = -g * invstd * sum_dy_xhat / rows;
        k3[c] = -g * sdy / rows;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *dy = dout + (size_t)r * C, *x = in + (size_t)r * C;
        float *dx = din + (size_t)r * C;
        if (relu_out) {
            const float *m = relu_out + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                float d = dy[c], g = m[c] > 0.0f ? d : 0.0f;
                dx[c] = (float)(g * k1[c] + ((double)x[c] - save_mean[c]) * k2[c] + k3[c]);
            }
        } else {
            for (int c = 0; c < C; c++)
                dx[c] = (float)(dy[c] * k1[c] + ((double)x[c] - save_mean[c]) * k2[c] + k3[c]);
        }
    }
}

void batchnorm_backward_eval_cpu(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *gamma, const float *running_mean,
                                 const float *running_var, int M, int C, float eps, double *work) {
    const int nchunk = row_chunks(M);
    double *part_dy = work, *part_dyx = work + (size_t)nchunk * C;
    float *scale = (float *)(part_dyx + (size_t)nchunk * C);
    for (int c = 0; c < C; c++) scale[c] = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nchunk; k++) {
        int r0, r1;
        chunk_bounds(M, nchunk, k, &r0, &r1);
        double *a = part_dy + (size_t)k * C, *b = part_dyx + (size_t)k * C;
        for (int c = 0; c < C; c++) a[c] = b[c] = 0;
        for (int r = r0; r < r1; r++) {
            const float *dy = dout + (size_t)r * C, *x = in + (size_t)r * C;
            float *dx = din + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                a[c] += dy[c];
                b[c] += (double)dy[c] * (x[c] - running_mean[c]);
                dx[c] = dy[c] * scale[c];
            }
        }
    }
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int k = 0; k < nchunk; k++) {
            sdy += part_dy[(size_t)k * C + c];
            sdyx += part_dyx[(size_t)k * C + c];
        }
        dgamma[c] += (float)(sdyx / sqrt((double)running_var[c] + eps));
        dbeta[c] += (float)sdy;
    }
}

/* ---- naive reference: the textbook formulas, one channel at a time, in double ---- */

/* The post-ops in float, in the order of the layers they replace: + residual, then ReLU. */
static float post_ops_ref(float v, const float *residual, size_t i, int relu) {
    if (residual) v += residual[i];
    return relu && v < 0.0f ? 0.0f : v;
}

void batchnorm_forward_train_ref(float *out, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, const float *residual,
                                 int relu, int M, int C, float momentum, float eps,
                                 const Reducer *sync, double *work) {
    (void)work;
    double rows = M;
    if (sync) sync->sum(sync, &rows, 1);
    for (int c = 0; c < C; c++) {
        double mean = 0, var = 0;
        for (int r = 0; r < M; r++) mean += in[(size_t)r * C + c];
        if (sync) sync->sum(sync, &mean, 1);
        mean /= rows;
        for (int r = 0; r < M; r++) {
            double d = in[(size_t)r * C + c] - mean;
            var += d * d;
        }
        if (sync) sync->sum(sync, &var, 1);
        var /= rows;
        double invstd = 1.0 / sqrt(var + eps);
        for (int r = 0; r < M; r++) {
            size_t i = (size_t)r * C + c;
            out[i] = post_ops_ref((float)((in[i] - mean) * invstd * gamma[c] + beta[c]), residual,
                                  i, relu);
        }
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        running_mean[c] = (float)((1 - momentum) * (double)running_mean[c] + momentum * mean);
        running_var[c] = (float)((1 - momentum) * (double)running_var[c] +
                                 momentum * var * (rows > 1 ? rows / (rows - 1) : 1.0));
    }
}

void batchnorm_forward_eval_ref(float *out, const float *in, const float *gamma,
                                const float *beta, const float *running_mean,
                                const float *running_var, const float *residual, int relu, int M,
                                int C, float eps, double *work) {
    (void)work;
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + eps);
        for (int r = 0; r < M; r++) {
            size_t i = (size_t)r * C + c;
            out[i] = post_ops_ref((float)((in[i] - running_mean[c]) * invstd * gamma[c] + beta[c]),
                                  residual, i, relu);
        }
    }
}

void batchnorm_backward_ref(float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *relu_out, const float *in, const float *save_mean,
                            const float *save_invstd, const float *gamma, int M, int C,
                            const Reducer *sync, double *work) {
    (void)work;
    double rows = M;
    if (sync) sync->sum(sync, &rows, 1);
#define DY_REF(i) (relu_out && !(relu_out[i] > 0.0f) ? 0.0 : (double)dout[i])
    for (int c = 0; c < C; c++) {
        double sdy = 0, sdyxhat = 0, invstd = save_invstd[c], mean = save_mean[c];
        for (int r = 0; r < M; r++) {
            double dy = DY_REF((size_t)r * C + c);
            sdy += dy;
            sdyxhat += dy * (in[(size_t)r * C + c] - mean) * invstd;
        }
        dgamma[c] += (float)sdyxhat; /* this rank's sums: see batchnorm_backward_cpu */
        dbeta[c] += (float)sdy;
        if (sync) {
            double t[2] = {sdy, sdyxhat};
            sync->sum(sync, t, 2);
            sdy = t[0], sdyxhat = t[1];
        }
        for (int r = 0; r < M; r++) {
            double xhat = (in[(size_t)r * C + c] - mean) * invstd;
            double dy = DY_REF((size_t)r * C + c);
            din[(size_t)r * C + c] = (float)(gamma[c] * invstd * (dy - sdy / rows - xhat * sdyxhat / rows));
        }
    }
#undef DY_REF
}

void batchnorm_backward_eval_ref(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *gamma, const float *running_mean,
                                 const float *running_var, int M, int C, float eps, double *work) {
    (void)work;
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)running_var[c] + eps), sdy = 0, sdyxhat = 0;
        for (int r = 0; r < M; r++) {
            double dy = dout[(size_t)r * C + c];
            sdy += dy;
            sdyxhat += dy * (in[(size_t)r * C + c] - running_mean[c]) * invstd;
            din[(size_t)r * C + c] = (float)(dy * gamma[c] * invstd);
        }
        dgamma[c] += (float)sdyxhat;
        dbeta[c] += (float)sdy;
    }
}
