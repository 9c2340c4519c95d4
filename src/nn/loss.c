/* BYOL's regression loss, 2 - 2*cos(p, z), averaged over the batch.
 *
 * cos = p.z / (max(|p|, eps) * max(|z|, eps)), the same as comparing F.normalize(p) with
 * F.normalize(z); away from zero vectors it equals F.cosine_similarity. Sums run in double. */
#include <math.h>

#include "nn.h"

#include "../backend/gemm.h"
#include "../core/common.h"

static const double COS_EPS = 1e-12;

typedef struct {
    double pz, pp, zz;
} Dots;

static Dots row_dots(const float *p, const float *z, int D) {
    Dots d = {0, 0, 0};
    for (int i = 0; i < D; i++) {
        d.pz += (double)p[i] * z[i];
        d.pp += (double)p[i] * p[i];
        d.zz += (double)z[i] * z[i];
    }
    return d;
}

static double row_loss(Dots d) {
    double np = fmax(sqrt(d.pp), COS_EPS), nz = fmax(sqrt(d.zz), COS_EPS);
    return 2.0 - 2.0 * d.pz / (np * nz);
}

/* d(2 - 2cos)/dp = -2 * (z/(|p||z|) - cos * p/|p|^2), times `scale`. */
static void row_grad(float *dp, const float *p, const float *z, int D, Dots d, double scale) {
    double np = fmax(sqrt(d.pp), COS_EPS), nz = fmax(sqrt(d.zz), COS_EPS);
    double cos = d.pz / (np * nz);
    double a = -2.0 * scale / (np * nz), b = 2.0 * scale * cos / (np * np);
    for (int i = 0; i < D; i++) dp[i] = (float)(a * z[i] + b * p[i]);
}

float cosine_loss_forward_cpu(const float *p, const float *z, int B, int D) {
    double total = 0;
    for (int b = 0; b < B; b++) total += row_loss(row_dots(p + (size_t)b * D, z + (size_t)b * D, D));
    return (float)(total / B);
}

void cosine_loss_backward_cpu(float *dp, const float *p, const float *z, int B, int D,
                              float dloss) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *pb = p + (size_t)b * D, *zb = z + (size_t)b * D;
        row_grad(dp + (size_t)b * D, pb, zb, D, row_dots(pb, zb, D), (double)dloss / B);
    }
}

/* ---- naive reference: through explicit normalization, the way BYOL code usually reads ---- */

float cosine_loss_forward_ref(const float *p, const float *z, int B, int D) {
    double total = 0;
    for (int b = 0; b < B; b++) {
        double np = 0, nz = 0, dot = 0;
        for (int i = 0; i < D; i++) {
            np += (double)p[(size_t)b * D + i] * p[(size_t)b * D + i];
            nz += (double)z[(size_t)b * D + i] * z[(size_t)b * D + i];
        }
        np = fmax(sqrt(np), COS_EPS);
        nz = fmax(sqrt(nz), COS_EPS);
        for (int i = 0; i < D; i++) dot += (p[(size_t)b * D + i] / np) * (z[(size_t)b * D + i] / nz);
        total += 2.0 - 2.0 * dot;
    }
    return (float)(total / B);
}

void cosine_loss_backward_ref(float *dp, const float *p, const float *z, int B, int D,
                              float dloss) {
    for (int b = 0; b < B; b++) {
        const float *pb = p + (size_t)b * D, *zb = z + (size_t)b * D;
        double np = 0, nz = 0, dot = 0;
        for (int i = 0; i < D; i++) {
            np += (double)pb[i] * pb[i];
            nz += (double)zb[i] * zb[i];
        }
        np = fmax(sqrt(np), COS_EPS);
        nz = fmax(sqrt(nz), COS_EPS);
        for (int i = 0; i < D; i++) dot += (pb[i] / np) * (zb[i] / nz);
        /* d/dp of -2/B * (p/|p|).(z/|z|): project z/|z| off p's direction, divide by |p|. */
        for (int i = 0; i < D; i++) {
            double zhat = zb[i] / nz, phat = pb[i] / np;
            dp[(size_t)b * D + i] = (float)(-2.0 * dloss / B * (zhat - dot * phat) / np);
        }
    }
}

/* ---- VICReg's variance and covariance terms (Bardes et al. 2022), on a batch z [B, D] ----
 *
 * v = mean_j max(0, 1 - sqrt(Var_j + 1e-4)), Var unbiased;  c = sum_{i != j} C_ij^2 / D with
 * C = Zc^T Zc / (B - 1), Zc = z - its column means. Their gradients through Zc need no mean
 * correction (the columns of Zc sum to 0):
 *   dv/dz_bj = -[std_j < 1] Zc_bj / (D (B - 1) std_j),   dc/dz = 4 Zc C_off / (D (B - 1)). */

static const double VC_EPS = 1e-4;

double var_cov_loss_cpu(float *dz, const float *z, int B, int D, float w_var, float w_cov, float scale,
                        float *scratch) {
    float *zc = scratch, *cov = scratch + (size_t)B * D, *inv_std = cov + (size_t)D * D;
    double v = 0, c = 0;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < D; j++) {
        double mean = 0;
        for (int b = 0; b < B; b++) mean += z[(size_t)b * D + j];
        mean /= B;
        for (int b = 0; b < B; b++) zc[(size_t)b * D + j] = (float)(z[(size_t)b * D + j] - mean);
    }
    sgemm(1, 0, D, D, B, 1.0f / (float)(B - 1), zc, D, zc, D, 0.0f, cov, D);
    for (int j = 0; j < D; j++) {
        const double sd = sqrt((double)cov[(size_t)j * D + j] + VC_EPS);
        v += fmax(0.0, 1.0 - sd);
        inv_std[j] = sd < 1.0 ? (float)(1.0 / sd) : 0.0f; /* 0: the hinge is flat there */
        for (int i = 0; i < D; i++)
            if (i != j) c += (double)cov[(size_t)j * D + i] * cov[(size_t)j * D + i];
        cov[(size_t)j * D + j] = 0.0f; /* C_off from here */
    }
    v /= D;
    c /= D;
    if (w_cov > 0)
        sgemm(0, 0, B, D, D, (float)(scale * 4.0 * w_cov / ((double)D * (B - 1))), zc, D, cov, D, 1.0f, dz, D);
    if (w_var > 0) {
        const float a = (float)(-(double)scale * w_var / ((double)D * (B - 1)));
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < D; j++) dz[(size_t)b * D + j] += a * inv_std[j] * zc[(size_t)b * D + j];
    }
    return w_var * v + w_cov * c;
}

double var_cov_loss_ref(float *dz, const float *z, int B, int D, float w_var, float w_cov, float scale,
                        float *scratch) {
    (void)scratch;
    double v = 0, c = 0;
    double *mean = xcalloc((size_t)D, sizeof(double), "var-cov reference");
    double *cov = xcalloc((size_t)D * D, sizeof(double), "var-cov reference");
    for (int j = 0; j < D; j++) {
        for (int b = 0; b < B; b++) mean[j] += z[(size_t)b * D + j];
        mean[j] /= B;
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int b = 0; b < B; b++) s += (z[(size_t)b * D + i] - mean[i]) * (z[(size_t)b * D + j] - mean[j]);
            cov[(size_t)i * D + j] = s / (B - 1);
        }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++)
            if (i != j) c += cov[(size_t)i * D + j] * cov[(size_t)i * D + j] / D;
    for (int j = 0; j < D; j++) v += fmax(0.0, 1.0 - sqrt(cov[(size_t)j * D + j] + VC_EPS)) / D;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < D; j++) {
            const double zcj = z[(size_t)b * D + j] - mean[j], sd = sqrt(cov[(size_t)j * D + j] + VC_EPS);
            double g = sd < 1.0 ? -w_var * zcj / (D * (B - 1.0) * sd) : 0.0;
            for (int i = 0; i < D; i++)
                if (i != j) g += w_cov * 4.0 * (z[(size_t)b * D + i] - mean[i]) * cov[(size_t)i * D + j] / (D * (B - 1.0));
            dz[(size_t)b * D + j] += (float)(scale * g);
        }
    xfree(mean);
    xfree(cov);
    return w_var * v + w_cov * c;
}

size_t var_cov_scratch_floats(int B, int D) { return (size_t)B * D + (size_t)D * D + (size_t)D; }
