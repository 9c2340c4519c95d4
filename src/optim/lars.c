#include <math.h>

#include "optim.h"

static double sumsq(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* |g + wd*p|^2 without materializing u. */
static double sumsq_decayed(const float *g, const float *p, size_t n, float wd) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        float u = g[i] + wd * p[i];
        s += (double)u * u;
    }
    return s;
}

static void lars_tensor(float *p, const float *g, float *v, size_t n, int adapt, int decay,
                        const LarsConfig *c) {
    float wd = decay ? c->weight_decay : 0.0f, scale = 1.0f;
    if (adapt) {
        double pn = sqrt(sumsq(p, n)), un = sqrt(sumsq_decayed(g, p, n, wd));
        if (pn > 0 && un > 0) scale = (float)(c->eta * pn / un);
    }
    for (size_t i = 0; i < n; i++) {
        float u = (g[i] + wd * p[i]) * scale;
        v[i] = c->momentum * v[i] + u;
        p[i] -= c->lr * v[i];
    }
}

/* LARS adapts (and decays) the tensors of more than one dimension; SGD decays them all. */
static int adapted(const LarsConfig *c, const TensorSpec *s) { return !c->sgd && s->ndim > 1; }
static int decayed(const LarsConfig *c, const TensorSpec *s) { return c->sgd || s->ndim > 1; }

void lars_update_cpu(float *params, const float *grads, float *momentum, const TensorSpec *specs,
                     int n_specs, const LarsConfig *cfg) {
    /* One tensor per task: each tensor's norms are summed by one thread in a fixed order. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < n_specs; t++) {
        const TensorSpec *s = &specs[t];
        if (s->role != ROLE_PARAM) continue;
        LarsConfig c = *cfg;
        c.lr = optim_tensor_lr(cfg, s->offset);
        lars_tensor(params + s->offset, grads + s->offset, momentum + s->offset, s->numel,
                    adapted(cfg, s), decayed(cfg, s), &c);
    }
}

void lars_update_ref(float *params, const float *grads, float *momentum, const TensorSpec *specs,
                     int n_specs, const LarsConfig *cfg) {
    for (int t = 0; t < n_specs; t++) {
        const TensorSpec *s = &specs[t];
        if (s->role != ROLE_PARAM) continue;
        float *p = params + s->offset, *v = momentum + s->offset;
        const float *g = grads + s->offset;
        double trust = 1.0;
        double wd = decayed(cfg, s) ? cfg->weight_decay : 0.0;
        if (adapted(cfg, s)) {
            double pn = 0, un = 0;
            for (size_t i = 0; i < s->numel; i++) {
                double u = g[i] + wd * p[i];
                pn += (double)p[i] * p[i];
                un += u * u;
            }
            if (pn > 0 && un > 0) trust = cfg->eta * sqrt(pn) / sqrt(un);
        }
        for (size_t i = 0; i < s->numel; i++) {
            double u = (g[i] + wd * p[i]) * trust;
            v[i] = (float)(cfg->momentum * (double)v[i] + u);
            p[i] = (float)(p[i] - (double)optim_tensor_lr(cfg, s->offset) * v[i]);
        }
    }
}

void adamw_update_cpu(float *params, const float *grads, float *m, float *v, const TensorSpec *specs, int n_specs,
                      const LarsConfig *cfg) {
    const double bc1 = 1.0 - pow(cfg->beta1, (double)cfg->step), bc2 = 1.0 - pow(cfg->beta2, (double)cfg->step);
    const float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps, bc2_sqrt = (float)sqrt(bc2);
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < n_specs; t++) {
        const TensorSpec *s = &specs[t];
        if (s->role != ROLE_PARAM) continue;
        const float lr = optim_tensor_lr(cfg, s->offset), step_size = (float)(lr / bc1);
        const float keep = 1.0f - lr * (s->ndim > 1 ? cfg->weight_decay : 0.0f);
        float *p = params + s->offset, *mt = m + s->offset, *vt = v + s->offset;
        const float *g = grads + s->offset;
        for (size_t i = 0; i < s->numel; i++) {
            p[i] *= keep;
            mt[i] += (1.0f - b1) * (g[i] - mt[i]); /* PyTorch's lerp */
            vt[i] = b2 * vt[i] + (1.0f - b2) * g[i] * g[i];
            p[i] -= step_size * mt[i] / (sqrtf(vt[i]) / bc2_sqrt + eps);
        }
    }
}

void adamw_update_ref(float *params, const float *grads, float *m, float *v, const TensorSpec *specs, int n_specs,
                      const LarsConfig *cfg) {
    const double bc1 = 1.0 - pow(cfg->beta1, (double)cfg->step), bc2 = 1.0 - pow(cfg->beta2, (double)cfg->step);
    for (int t = 0; t < n_specs; t++) {
        const TensorSpec *s = &specs[t];
        if (s->role != ROLE_PARAM) continue;
        const double lr = optim_tensor_lr(cfg, s->offset), wd = s->ndim > 1 ? cfg->weight_decay : 0.0;
        for (size_t i = s->offset; i < s->offset + s->numel; i++) {
            const double g = grads[i];
            const double p = params[i] * (1.0 - lr * wd);
            const double mi = (double)cfg->beta1 * m[i] + (1.0 - cfg->beta1) * g;
            const double vi = (double)cfg->beta2 * v[i] + (1.0 - cfg->beta2) * g * g;
            m[i] = (float)mi;
            v[i] = (float)vi;
            params[i] = (float)(p - lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + cfg->eps));
        }
    }
}

void ema_update_cpu(float *target, const float *online, size_t n, float tau) {
    const float keep = tau, take = 1.0f - tau;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) target[i] = keep * target[i] + take * online[i];
}

void ema_update_ref(float *target, const float *online, size_t n, float tau) {
    for (size_t i = 0; i < n; i++)
        target[i] = (float)(tau * (double)target[i] + (1.0 - (double)tau) * online[i]);
}
