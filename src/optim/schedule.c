#include <math.h>

#include "optim.h"

double lr_at_step(long k, long total, long warmup, double base_lr) {
    if (k < warmup) return base_lr * (double)(k + 1) / warmup;
    if (total <= warmup) return base_lr;
    double t = (double)(k - warmup) / (double)(total - warmup);
    if (t > 1) t = 1;
    return base_lr * 0.5 * (1.0 + cos(M_PI * t));
}

double tau_at_step(long k, long total, double tau_base) {
    double t = total > 0 ? (double)k / (double)total : 1.0;
    if (t > 1) t = 1;
    return 1.0 - (1.0 - tau_base) * (cos(M_PI * t) + 1.0) / 2.0;
}
