/* Fresh weights as torchvision and PyTorch make them, so a run starts where a PyTorch user's
 * would: convolutions Kaiming-normal (fan-out, ReLU gain), batch norm gamma 1 and beta 0 with
 * running mean 0 and variance 1, linear layers PyTorch's default (weights and biases uniform in
 * +-1/sqrt(fan_in)); DINO's head as DINO makes it (weights normal with std 0.02, biases 0). The target network starts as a copy of the online one, momentum at zero.
 *
 * Each tensor draws from its own keyed stream (seed, tensor index), so the weights depend on the
 * seed alone. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/rng.h"
#include "byol.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Standard normal by Box-Muller (both outputs used). */
static void fill_normal(float *x, size_t n, double std, Rng *r) {
    for (size_t i = 0; i < n; i += 2) {
        double u = rng_u01(r), v = rng_u01(r);
        double rad = sqrt(-2.0 * log(1.0 - u)), a = 6.283185307179586 * v;
        x[i] = (float)(std * rad * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(std * rad * sin(a));
    }
}

static void fill_uniform(float *x, size_t n, double bound, Rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_between(r, -bound, bound);
}

/* fan_in of the 2-D weight that shares t's prefix ("...0.bias" -> "...0.weight"), or 0. */
static int64_t linear_fan_in(const ParamStore *s, const TensorSpec *t) {
    char name[TENSOR_NAME_LEN];
    snprintf(name, sizeof name, "%.*s.weight", (int)(strlen(t->name) - strlen(".bias")), t->name);
    int i = store_find(s, name);
    return i >= 0 && s->specs[i].ndim == 2 ? s->specs[i].shape[1] : 0;
}

void byol_init_weights(Byol *m, uint64_t seed) {
    ParamStore *s = &m->online;
    for (int i = 0; i < s->n_specs; i++) {
        const TensorSpec *t = &s->specs[i];
        float *x = store_data(s, t);
        Rng r = rng_keyed(seed, (uint64_t)i, 0x1417, 0);
        if (t->ndim == 4) { /* conv: kaiming_normal_(mode="fan_out", nonlinearity="relu") */
            double fan_out = (double)t->shape[0] * t->shape[2] * t->shape[3];
            fill_normal(x, t->numel, sqrt(2.0 / fan_out), &r);
        } else if (t->ndim == 2 && strstr(t->name, "projector.mlp.")) { /* DINO's head: trunc_normal_(std=.02) */
            fill_normal(x, t->numel, 0.02, &r); /* truncated at +-2, 100 std away: never reached */
        } else if (t->ndim == 2) { /* nn.Linear (DINO's last_layer.weight_v too): kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) */
            fill_uniform(x, t->numel, 1.0 / sqrt((double)t->shape[1]), &r);
        } else if (ends_with(t->name, ".running_var") || ends_with(t->name, ".weight")) {
            for (size_t k = 0; k < t->numel; k++) x[k] = 1.0f; /* BN gamma and running variance */
        } else if (ends_with(t->name, ".bias") && linear_fan_in(s, t) > 0 && !strstr(t->name, "projector.mlp.")) {
            fill_uniform(x, t->numel, 1.0 / sqrt((double)linear_fan_in(s, t)), &r);
        } else {
            memset(x, 0, t->numel * sizeof(float)); /* BN beta and running mean */
        }
    }
    memset(s->momentum, 0, s->n_params * sizeof(float));
    memset(s->second, 0, s->n_params * sizeof(float));
    byol_target_from_online(m);
}

void byol_target_from_online(Byol *m) {
    memcpy(m->target.params, m->online.params, m->target.n_params * sizeof(float));
    memcpy(m->target.buffers, m->online.buffers, m->target.n_buffers * sizeof(float));
}
