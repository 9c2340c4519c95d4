/* Optimizer, target update and schedules. */
#ifndef BYOL_OPTIM_H
#define BYOL_OPTIM_H

#include <stddef.h>

#include "../core/tensor.h"

typedef struct {
    float lr, weight_decay, momentum, eta;
    /* Parameters from float offset mult_from on (BYOL: the predictor, last in the online store)
     * take lr * lr_mult (1: all alike). */
    size_t mult_from;
    float lr_mult;
    /* 1: plain SGD with momentum, as PyTorch's: no trust ratio, and the weight decay on every
     * tensor (SimSiam's and DINO's ResNet recipes). */
    int sgd;
    /* 1: lr_mult is the learning rate of the tensors from mult_from on itself, not a factor
     * (SimSiam's predictor, whose rate is not decayed). */
    int tail_absolute;
    /* AdamW (adamw_update): PyTorch's, betas (beta1, beta2), eps, at step `step` (1 for the
     * first), the weight decay decoupled and on tensors of more than one dimension only (the
     * DINO and MAE recipes' parameter groups: no decay on biases and norms). */
    int adamw;
    float beta1, beta2, eps;
    long step;
} LarsConfig;

/* The learning rate of the tensor at params offset `offset` (the predictor's rule above). */
static inline float optim_tensor_lr(const LarsConfig *c, size_t offset) {
    if (offset < c->mult_from) return c->lr;
    return c->tail_absolute ? c->lr_mult : c->lr * c->lr_mult;
}

/* LARS with momentum, one pass per tensor of `specs` (buffers are skipped):
 *   tensors with more than one dimension: u = g + wd*p, then u *= eta*|p|/|u| if both norms > 0
 *   biases and batch-norm weights:        u = g (no weight decay, no adaptation)
 *   v = m*v + u;  p = p - lr*v     (lr * lr_mult from mult_from on, or lr_mult: tail_absolute)
 * With cfg->sgd every tensor takes u = g + wd*p, unadapted: SGD with momentum.             */
void lars_update_cpu(float *params, const float *grads, float *momentum, const TensorSpec *specs,
                     int n_specs, const LarsConfig *cfg);
void lars_update_ref(float *params, const float *grads, float *momentum, const TensorSpec *specs,
                     int n_specs, const LarsConfig *cfg);

/* AdamW, one pass per trained tensor: p *= 1 - lr*wd; m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) (torch.optim.AdamW). */
void adamw_update_cpu(float *params, const float *grads, float *m, float *v, const TensorSpec *specs, int n_specs,
                      const LarsConfig *cfg);
void adamw_update_ref(float *params, const float *grads, float *m, float *v, const TensorSpec *specs, int n_specs,
                      const LarsConfig *cfg);

/* Target update, one pass over a contiguous parameter buffer: t = tau*t + (1-tau)*o. */
void ema_update_cpu(float *target, const float *online, size_t n, float tau);
void ema_update_ref(float *target, const float *online, size_t n, float tau);

/* Learning rate at step k of `total`: linear warm-up over `warmup` steps (reaching base_lr at
 * the warm-up's last step), then cosine decay to 0 at step `total`. */
double lr_at_step(long k, long total, long warmup, double base_lr);
/* BYOL's target decay: tau_k = 1 - (1 - tau_base) * (cos(pi*k/total) + 1) / 2. */
double tau_at_step(long k, long total, double tau_base);

#endif
