#include "mlp.h"

#include <stdio.h>

#include "../core/common.h"

static Linear add_linear(ParamStore *s, const char *prefix, int index, int in, int out) {
    char key[TENSOR_NAME_LEN];
    int64_t wshape[2] = {out, in}, bshape[1] = {out};
    Linear l = {0, 0, in, out};
    snprintf(key, sizeof key, "%d.weight", index);
    l.weight = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 2, wshape);
    snprintf(key, sizeof key, "%d.bias", index);
    l.bias = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 1, bshape);
    return l;
}

static int has_bn_after(const Mlp *m, int i) { return m->has_bn && (i < m->n_layers - 1 || m->bn_last); }

void mlp_build(Mlp *m, int n_layers, int in, int hidden, int out, int bn, int bn_last, int gelu, ParamStore *s,
               const char *prefix) {
    if (n_layers < 2 || n_layers > MLP_MAX_LAYERS || (bn_last && !bn))
        die("internal: mlp_build(%d layers, bn %d, bn_last %d, gelu %d)", n_layers, bn, bn_last, gelu);
    m->n_layers = n_layers;
    m->gelu = gelu;
    m->has_bn = bn;
    m->bn_last = bn_last;
    int index = 0; /* the nn.Sequential position: Linear, [BN], ReLU, ... */
    for (int i = 0; i < n_layers; i++) {
        const int last = i == n_layers - 1, fin = i ? hidden : in, fout = last ? out : hidden;
        m->fc[i] = add_linear(s, prefix, index++, fin, fout);
        if (has_bn_after(m, i)) {
            char name[16];
            snprintf(name, sizeof name, "%d", index++);
            m->bn[i] = batchnorm_add(s, prefix, name, fout);
        }
        if (!last) index++; /* ReLU */
    }
}

size_t mlp_plan(MlpActs *a, const Mlp *m, int B, Arena *arena, const Backend *be) {
    a->B = B;
    a->sync = NULL;
    a->hook = (GradHook){NULL, NULL};
    size_t work = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const int c = m->fc[i].out;
        a->h[i] = arena_floats(arena, (size_t)B * c);
        a->r[i] = has_bn_after(m, i) || i < m->n_layers - 1 ? arena_floats(arena, (size_t)B * c) : a->h[i];
        a->g[i] = m->gelu && has_bn_after(m, i) && i < m->n_layers - 1 ? arena_floats(arena, (size_t)B * c) : NULL;
        if (has_bn_after(m, i)) {
            a->mean[i] = arena_floats(arena, c);
            a->invstd[i] = arena_floats(arena, c);
            size_t w = be->batchnorm_work_doubles(B, c);
            if (w > work) work = w;
        }
    }
    a->out = a->r[m->n_layers - 1];
    int widest = m->fc[0].in;
    for (int i = 0; i < m->n_layers; i++) widest = m->fc[i].out > widest ? m->fc[i].out : widest;
    a->dbuf = arena_floats(arena, (size_t)B * widest);
    return work * sizeof(double);
}

void mlp_forward(const Backend *be, const Mlp *m, const float *params, float *buffers, MlpActs *a,
                 const float *in, int train, void *scratch) {
    const int B = a->B;
    const float *x = in;
    for (int i = 0; i < m->n_layers; i++) {
        const Linear *l = &m->fc[i];
        const int relu = i < m->n_layers - 1, C = l->out;
        be->linear_forward(a->h[i], x, params + l->weight, params + l->bias, B, l->in, C);
        if (has_bn_after(m, i)) {
            const BatchNorm *bn = &m->bn[i];
            /* a ReLU fuses into the batch norm; a GELU follows it from a->g[i] */
            float *bn_out = a->g[i] ? a->g[i] : a->r[i];
            const int fused_relu = relu && !m->gelu;
            if (train)
                be->batchnorm_forward_train(bn_out, a->mean[i], a->invstd[i], buffers + bn->mean,
                                            buffers + bn->var, a->h[i], params + bn->gamma,
                                            params + bn->beta, NULL, fused_relu, B, C, BN_MOMENTUM, BN_EPS,
                                            a->sync, (double *)scratch);
            else
                be->batchnorm_forward_eval(bn_out, a->h[i], params + bn->gamma, params + bn->beta,
                                           buffers + bn->mean, buffers + bn->var, NULL, fused_relu, B, C,
                                           BN_EPS, (double *)scratch);
            if (a->g[i]) be->gelu_forward(a->r[i], a->g[i], (size_t)B * C);
        } else if (relu && m->gelu) {
            be->gelu_forward(a->r[i], a->h[i], (size_t)B * C);
        } else if (relu) {
            be->relu_forward(a->r[i], a->h[i], (size_t)B * C);
        }
        x = a->r[i];
    }
}

/* The layers in reverse. The gradient between layers alternates between two buffers (dr and
 * dbuf): a linear layer's input gradient cannot be written over its output gradient, while the
 * batch norm and the ReLU mask (fused) run in place. */
void mlp_backward(const Backend *be, const Mlp *m, const float *params, float *grads,
                  const MlpActs *a, const float *in, const float *dout, float *dr, float *din,
                  void *scratch) {
    const int B = a->B;
    float *buf[2] = {dr, a->dbuf};
    int k = 0;
    const float *dy = dout;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const Linear *l = &m->fc[i];
        const int relu = i < m->n_layers - 1;
        if (has_bn_after(m, i)) {
            const BatchNorm *bn = &m->bn[i];
            if (a->g[i]) { /* the GELU's backward, then the batch norm's in place */
                be->gelu_backward(buf[k], dy, a->g[i], (size_t)B * l->out);
                dy = buf[k];
            }
            be->batchnorm_backward(buf[k], grads + bn->gamma, grads + bn->beta, dy, relu && !m->gelu ? a->r[i] : NULL,
                                   a->h[i], a->mean[i], a->invstd[i], params + bn->gamma, B, l->out, a->sync,
                                   (double *)scratch);
            dy = buf[k];
        } else if (relu) {
            if (m->gelu) be->gelu_backward(buf[k], dy, a->h[i], (size_t)B * l->out);
            else be->relu_backward(buf[k], dy, a->r[i], (size_t)B * l->out);
            dy = buf[k];
        }
        float *dx = i ? buf[k ^ 1] : din; /* the input gradient: the layer below's output gradient */
        be->linear_backward(dx, grads + l->weight, grads + l->bias, dy, i ? a->r[i - 1] : in, params + l->weight,
                            B, l->in, l->out);
        dy = dx;
        k ^= 1;
    }
    if (a->hook.ready) a->hook.ready(a->hook.ctx, m->fc[0].weight); /* fc[0] is the head's first */
}
