#include "mlp.h"

#include <stdio.h>

static Linear add_linear(ParamStore *s, const char *prefix, const char *name, int in, int out) {
    char key[TENSOR_NAME_LEN];
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    Linear l = {0, 0, in, out};
    snprintf(key, sizeof key, "%s.weight", name);
    l.weight = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 2, wshape);
    snprintf(key, sizeof key, "%s.bias", name);
    l.bias = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 1, bshape);
    return l;
}

void mlp_build(Mlp *m, int in, int hidden, int out, int bn, ParamStore *s, const char *prefix) {
    int64_t shape[1] = {hidden};
    m->fc1 = add_linear(s, prefix, "0", in, hidden);
    m->has_bn = bn;
    if (!bn) {
        m->fc2 = add_linear(s, prefix, "2", hidden, out);
        return;
    }
    m->bn.c = hidden;
    m->bn.gamma = store_add(s, prefix, "1.weight", ROLE_PARAM, LAYOUT_PLAIN, 1, shape);
    m->bn.beta = store_add(s, prefix, "1.bias", ROLE_PARAM, LAYOUT_PLAIN, 1, shape);
    m->bn.mean = store_add(s, prefix, "1.running_mean", ROLE_BUFFER, LAYOUT_PLAIN, 1, shape);
    m->bn.var = store_add(s, prefix, "1.running_var", ROLE_BUFFER, LAYOUT_PLAIN, 1, shape);
    m->fc2 = add_linear(s, prefix, "3", hidden, out);
}

size_t mlp_plan(MlpActs *a, const Mlp *m, int B, Arena *arena, const Backend *be) {
    a->B = B;
    a->sync = NULL;
    a->hook = (GradHook){NULL, NULL};
    a->h = arena_floats(arena, (size_t)B * m->fc1.out);
    a->r = arena_floats(arena, (size_t)B * m->fc1.out);
    a->mean = arena_floats(arena, m->fc1.out);
    a->invstd = arena_floats(arena, m->fc1.out);
    a->out = arena_floats(arena, (size_t)B * m->fc2.out);
    return be->batchnorm_work_doubles(B, m->fc1.out) * sizeof(double);
}

void mlp_forward(const Backend *be, const Mlp *m, const float *params, float *buffers, MlpActs *a,
                 const float *in, int train, void *scratch) {
    const int B = a->B, H = m->fc1.out;
    be->linear_forward(a->h, in, params + m->fc1.weight, params + m->fc1.bias, B, m->fc1.in, H);
    if (!m->has_bn)
        be->relu_forward(a->r, a->h, (size_t)B * H);
    else if (train)
        be->batchnorm_forward_train(a->r, a->mean, a->invstd, buffers + m->bn.mean,
                                    buffers + m->bn.var, a->h, params + m->bn.gamma,
                                    params + m->bn.beta, NULL, 1, B, H, BN_MOMENTUM, BN_EPS,
                                    a->sync, (double *)scratch);
    else
        be->batchnorm_forward_eval(a->r, a->h, params + m->bn.gamma, params + m->bn.beta,
                                   buffers + m->bn.mean, buffers + m->bn.var, NULL, 1, B, H,
                                   BN_EPS, (double *)scratch);
    be->linear_forward(a->out, a->r, params + m->fc2.weight, params + m->fc2.bias, B, H,
                       m->fc2.out);
}

void mlp_backward(const Backend *be, const Mlp *m, const float *params, float *grads,
                  const MlpActs *a, const float *in, const float *dout, float *dr, float *din,
                  void *scratch) {
    const int B = a->B, H = m->fc1.out;
    be->linear_backward(dr, grads + m->fc2.weight, grads + m->fc2.bias, dout, a->r,
                        params + m->fc2.weight, B, H, m->fc2.out);
    if (!m->has_bn)
        be->relu_backward(dr, dr, a->r, (size_t)B * H);
    else
        be->batchnorm_backward(dr, grads + m->bn.gamma, grads + m->bn.beta, dr, a->r, a->h, a->mean,
                               a->invstd, params + m->bn.gamma, B, H, a->sync, (double *)scratch);
    be->linear_backward(din, grads + m->fc1.weight, grads + m->fc1.bias, dr, in,
                        params + m->fc1.weight, B, m->fc1.in, H);
    if (a->hook.ready) a->hook.ready(a->hook.ctx, m->fc1.weight); /* fc1 is the head's first */
}
