/* BYOL's regression loss, 2 - 2*cos(p, z), averaged over the batch.
 *
 * cos = p.z / (max(|p|, eps) * max(|z|, eps)), the same as comparing F.normalize(p) with
 * F.normalize(z); away from zero vectors it equals F.cosine_similarity. Sums run in double. */
#include <math.h>

#include "nn.h"

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
