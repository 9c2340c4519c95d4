#include "resnet.h"

#include <stdio.h>
#include <string.h>

#include "../core/common.h"

static const char *ARCH_NAMES[] = {"resnet18", "resnet34", "resnet50"};
static const char *STEM_NAMES[] = {"cifar", "imagenet"};

const char *arch_name(Arch a) { return ARCH_NAMES[a]; }
const char *stem_name(Stem s) { return STEM_NAMES[s]; }

int arch_parse(const char *s, Arch *out) {
    for (int i = 0; i < (int)ARRAY_LEN(ARCH_NAMES); i++)
        if (strcmp(s, ARCH_NAMES[i]) == 0) return *out = (Arch)i, 0;
    return -1;
}

int stem_parse(const char *s, Stem *out) {
    for (int i = 0; i < (int)ARRAY_LEN(STEM_NAMES); i++)
        if (strcmp(s, STEM_NAMES[i]) == 0) return *out = (Stem)i, 0;
    return -1;
}

/* ---- building: tensor registration with torchvision's names ---- */

static Conv add_conv(ParamStore *s, const char *prefix, const char *name, int cin, int cout,
                     int k, int stride, int pad) {
    char key[TENSOR_NAME_LEN];
    snprintf(key, sizeof key, "%s.weight", name);
    int64_t shape[4] = {cout, cin, k, k};
    Conv c = {0, cin, cout, k, stride, pad};
    c.weight = store_add(s, prefix, key, ROLE_PARAM, k == 1 ? LAYOUT_PLAIN : LAYOUT_OHWI, 4, shape);
    return c;
}

BatchNorm batchnorm_add(ParamStore *s, const char *prefix, const char *name, int c) {
    char key[TENSOR_NAME_LEN];
    int64_t shape[1] = {c};
    BatchNorm bn = {0, 0, 0, 0, c};
    snprintf(key, sizeof key, "%s.weight", name);
    bn.gamma = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 1, shape);
    snprintf(key, sizeof key, "%s.bias", name);
    bn.beta = store_add(s, prefix, key, ROLE_PARAM, LAYOUT_PLAIN, 1, shape);
    snprintf(key, sizeof key, "%s.running_mean", name);
    bn.mean = store_add(s, prefix, key, ROLE_BUFFER, LAYOUT_PLAIN, 1, shape);
    snprintf(key, sizeof key, "%s.running_var", name);
    bn.var = store_add(s, prefix, key, ROLE_BUFFER, LAYOUT_PLAIN, 1, shape);
    return bn;
}

static ConvBN add_unit(ParamStore *s, const char *prefix, const char *block, int idx, int cin,
                       int cout, int k, int stride) {
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "%sconv%d", block, idx);
    snprintf(bn, sizeof bn, "%sbn%d", block, idx);
    ConvBN u;
    u.conv = add_conv(s, prefix, conv, cin, cout, k, stride, k / 2);
    u.bn = batchnorm_add(s, prefix, bn, cout);
    return u;
}

void resnet_build(ResNet *net, const EncoderConfig *cfg, ParamStore *s, const char *prefix) {
    static const int DEPTHS[3][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}};
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    const int bottleneck = cfg->arch == ARCH_RESNET50, expansion = bottleneck ? 4 : 1;
    const int w = cfg->width;
    if (cfg->stem == STEM_CIFAR)
        net->stem.conv = add_conv(s, prefix, "conv1", cfg->in_channels, w, 3, 1, 1);
    else
        net->stem.conv = add_conv(s, prefix, "conv1", cfg->in_channels, w, 7, 2, 3);
    net->stem.bn = batchnorm_add(s, prefix, "bn1", w);

    int cin = w;
    for (int stage = 0; stage < 4; stage++) {
        int planes = w << stage, cout = planes * expansion;
        for (int i = 0; i < DEPTHS[cfg->arch][stage]; i++) {
            Block *b = &net->blocks[net->n_blocks++];
            int stride = (i == 0 && stage > 0) ? 2 : 1;
            char name[48];
            snprintf(name, sizeof name, "layer%d.%d.", stage + 1, i);
            if (bottleneck) {
                b->n_units = 3;
                b->unit[0] = add_unit(s, prefix, name, 1, cin, planes, 1, 1);
                b->unit[1] = add_unit(s, prefix, name, 2, planes, planes, 3, stride);
                b->unit[2] = add_unit(s, prefix, name, 3, planes, cout, 1, 1);
            } else {
                b->n_units = 2;
                b->unit[0] = add_unit(s, prefix, name, 1, cin, planes, 3, stride);
                b->unit[1] = add_unit(s, prefix, name, 2, planes, planes, 3, 1);
            }
            if (stride != 1 || cin != cout) {
                char conv[64], bn[64];
                b->has_down = 1;
                snprintf(conv, sizeof conv, "%sdownsample.0", name);
                snprintf(bn, sizeof bn, "%sdownsample.1", name);
                b->down.conv = add_conv(s, prefix, conv, cin, cout, 1, stride, 0);
                b->down.bn = batchnorm_add(s, prefix, bn, cout);
            }
            cin = cout;
        }
    }
    net->out_dim = cin;
    net->param_floats = s->n_params;
    net->buffer_floats = s->n_buffers;
}

/* ---- activation plan ---- */

static void plan_unit(UnitActs *u, const ConvBN *cb, int B, int H, int W, Arena *arena,
                      ResNetActs *a, const Backend *be, unsigned passes) {
    ConvShape s = conv_shape(B, H, W, cb->conv.cin, cb->conv.cout, cb->conv.k, cb->conv.stride,
                             cb->conv.pad);
    size_t n = (size_t)B * s.Ho * s.Wo * s.Cout;
    u->H = s.Ho;
    u->W = s.Wo;
    u->pre = arena_floats(arena, n);
    u->post = arena_floats(arena, n);
    u->mean = arena_floats(arena, s.Cout);
    u->invstd = arena_floats(arena, s.Cout);
    a->max_act = MAX(a->max_act, n);
    a->max_act = MAX(a->max_act, (size_t)B * H * W * s.Cin);
    size_t M = (size_t)B * s.Ho * s.Wo;
    a->max_scratch = MAX(a->max_scratch, be->conv2d_plan(&s, passes) * sizeof(float));
    a->max_scratch = MAX(a->max_scratch, be->batchnorm_work_doubles((int)M, s.Cout) * sizeof(double));
}

void resnet_plan(ResNetActs *a, const ResNet *net, int B, int H, int W, int train, Arena *arena,
                 const Backend *be) {
    /* the kernels each convolution will run: forward only for evaluation; no input gradient for
     * the stem, whose input is the image */
    const unsigned all = train ? CONV_PASSES_ALL : CONV_PASSES_FORWARD;
    const unsigned stem = train ? CONV_PASSES_FORWARD | CONV_PASSES_WEIGHT : CONV_PASSES_FORWARD;
    memset(a, 0, sizeof *a);
    a->B = B;
    a->H = H;
    a->W = W;
    plan_unit(&a->stem, &net->stem, B, H, W, arena, a, be, stem);
    int h = a->stem.H, w = a->stem.W;
    if (net->cfg.stem == STEM_IMAGENET) {
        PoolShape p = pool_shape(B, h, w, net->stem.conv.cout, 3, 2, 1);
        size_t n = (size_t)B * p.Ho * p.Wo * p.C;
        a->pooled = arena_floats(arena, n);
        a->argmax = arena_take(arena, n * sizeof(int32_t));
        a->pool_H = h = p.Ho;
        a->pool_W = w = p.Wo;
    }
    for (int i = 0; i < net->n_blocks; i++) {
        const Block *b = &net->blocks[i];
        int uh = h, uw = w;
        for (int u = 0; u < b->n_units; u++) {
            plan_unit(&a->units[i][u], &b->unit[u], B, uh, uw, arena, a, be, all);
            uh = a->units[i][u].H;
            uw = a->units[i][u].W;
        }
        if (b->has_down) plan_unit(&a->units[i][BLOCK_MAX_UNITS], &b->down, B, h, w, arena, a, be, all);
        h = uh;
        w = uw;
    }
    a->features = arena_floats(arena, (size_t)B * net->out_dim);
}

/* ---- forward ---- */

/* conv -> batch norm (+ residual) (-> ReLU): the post-ops run inside the batch norm's pass. */
static void unit_forward(const Backend *be, const ConvBN *cb, const float *params, float *buffers,
                         UnitActs *u, const float *in, int B, int H, int W, int train,
                         const float *residual, int relu, const Reducer *sync, void *scratch) {
    ConvShape s = conv_shape(B, H, W, cb->conv.cin, cb->conv.cout, cb->conv.k, cb->conv.stride,
                             cb->conv.pad);
    const int M = B * s.Ho * s.Wo, C = s.Cout;
    be->conv2d_forward(u->pre, in, params + cb->conv.weight, &s, (float *)scratch);
    const float *gamma = params + cb->bn.gamma, *beta = params + cb->bn.beta;
    if (train)
        be->batchnorm_forward_train(u->post, u->mean, u->invstd, buffers + cb->bn.mean,
                                    buffers + cb->bn.var, u->pre, gamma, beta, residual, relu, M,
                                    C, BN_MOMENTUM, BN_EPS, sync, (double *)scratch);
    else
        be->batchnorm_forward_eval(u->post, u->pre, gamma, beta, buffers + cb->bn.mean,
                                   buffers + cb->bn.var, residual, relu, M, C, BN_EPS,
                                   (double *)scratch);
}

void resnet_forward(const Backend *be, const ResNet *net, const float *params, float *buffers,
                    ResNetActs *a, const float *x, int train, void *scratch) {
    const int B = a->B;
    unit_forward(be, &net->stem, params, buffers, &a->stem, x, B, a->H, a->W, train, NULL, 1,
                 a->sync, scratch);
    const float *cur = a->stem.post;
    int h = a->stem.H, w = a->stem.W;
    if (net->cfg.stem == STEM_IMAGENET) {
        PoolShape p = pool_shape(B, h, w, net->stem.conv.cout, 3, 2, 1);
        be->maxpool2d_forward(a->pooled, a->argmax, cur, &p);
        cur = a->pooled;
        h = p.Ho;
        w = p.Wo;
    }
    for (int i = 0; i < net->n_blocks; i++) {
        const Block *b = &net->blocks[i];
        UnitActs *ua = a->units[i];
        /* the shortcut first, so the last unit's batch norm can add it and apply the ReLU */
        const float *identity = cur;
        if (b->has_down) {
            unit_forward(be, &b->down, params, buffers, &ua[BLOCK_MAX_UNITS], cur, B, h, w, train,
                         NULL, 0, a->sync, scratch);
            identity = ua[BLOCK_MAX_UNITS].post;
        }
        const float *in = cur;
        int uh = h, uw = w;
        for (int u = 0; u < b->n_units; u++) {
            int last = u == b->n_units - 1;
            unit_forward(be, &b->unit[u], params, buffers, &ua[u], in, B, uh, uw, train,
                         last ? identity : NULL, 1, a->sync, scratch);
            in = ua[u].post;
            uh = ua[u].H;
            uw = ua[u].W;
        }
        cur = in;
        h = uh;
        w = uw;
    }
    be->avgpool_forward(a->features, cur, B, h * w, net->out_dim);
}

/* ---- backward ---- */

/* BN backward from `dy` into `dpre` (may be the same buffer), through the unit's own ReLU
 * first when `relu` (the ReLU whose output is u->post), then conv backward from `dpre` into
 * `din` (NULL: not needed). */
static void unit_backward(const Backend *be, const ConvBN *cb, const float *params, float *grads,
                          const UnitActs *u, const float *in, const float *dy, int relu,
                          float *dpre, float *din, int B, int H, int W, const ResNetActs *a,
                          void *scratch) {
    ConvShape s = conv_shape(B, H, W, cb->conv.cin, cb->conv.cout, cb->conv.k, cb->conv.stride,
                             cb->conv.pad);
    be->batchnorm_backward(dpre, grads + cb->bn.gamma, grads + cb->bn.beta, dy,
                           relu ? u->post : NULL, u->pre, u->mean, u->invstd,
                           params + cb->bn.gamma, B * s.Ho * s.Wo, s.Cout, a->sync,
                           (double *)scratch);
    be->conv2d_backward_weight(grads + cb->conv.weight, dpre, in, &s, (float *)scratch);
    /* the unit's tensors (conv weight first, then its BN) are final, and so is everything
     * registered after them, which backward has already passed */
    if (a->hook.ready) a->hook.ready(a->hook.ctx, cb->conv.weight);
    if (din) be->conv2d_backward_data(din, dpre, params + cb->conv.weight, &s, (float *)scratch);
}

/* g[0] holds d(block output) on entry; on return g[0] holds d(block input) and g[1], g[2] are
 * free. With a downsample, its input gradient lands in g[2] first, after which g[0] is free for
 * the main path; without one, g[0] is the shortcut's gradient and g[1]/g[2] carry the main path. */
static void block_backward(const Backend *be, const Block *b, const float *params, float *grads,
                           const UnitActs *ua, const float *in, int B, int H, int W, float *g[3],
                           const ResNetActs *a, void *scratch) {
    const int last = b->n_units - 1;
    size_t n_out = (size_t)B * ua[last].H * ua[last].W * b->unit[last].conv.cout;
    be->relu_backward(g[0], g[0], ua[last].post, n_out); /* through the block's final ReLU */

    float *shortcut, *work0, *work1;
    if (b->has_down) {
        unit_backward(be, &b->down, params, grads, &ua[BLOCK_MAX_UNITS], in, g[0], 0, g[1], g[2],
                      B, H, W, a, scratch);
        shortcut = g[2];
        work0 = g[0];
        work1 = g[1];
    } else {
        shortcut = g[0];
        work0 = g[1];
        work1 = g[2];
    }
    const float *dy = g[0];
    for (int u = last; u >= 0; u--) {
        const float *uin = u > 0 ? ua[u - 1].post : in;
        int uh = u > 0 ? ua[u - 1].H : H, uw = u > 0 ? ua[u - 1].W : W;
        /* the last unit's ReLU came after the residual add: g[0] is already through it */
        unit_backward(be, &b->unit[u], params, grads, &ua[u], uin, dy, u != last, work0, work1, B,
                      uh, uw, a, scratch);
        float *t = work0; /* work1 now holds d(unit input) */
        work0 = work1;
        work1 = t;
        dy = work0;
    }
    be->add_forward(work0, work0, shortcut, (size_t)B * H * W * b->unit[0].conv.cin);
    float *all[3] = {g[0], g[1], g[2]};
    int k = 1;
    g[0] = work0;
    for (int i = 0; i < 3; i++)
        if (all[i] != work0) g[k++] = all[i];
}

void resnet_backward(const Backend *be, const ResNet *net, const float *params, float *grads,
                     const ResNetActs *a, const float *x, const float *dfeatures, float *g[3],
                     void *scratch) {
    const int B = a->B;
    float *buf[3] = {g[0], g[1], g[2]};
    /* Spatial size and input of each block, recomputed the way forward walked them. */
    int h = a->stem.H, w = a->stem.W;
    const float *stage_in = a->stem.post;
    if (net->cfg.stem == STEM_IMAGENET) {
        h = a->pool_H;
        w = a->pool_W;
        stage_in = a->pooled;
    }
    int bh[RESNET_MAX_BLOCKS], bw[RESNET_MAX_BLOCKS];
    const float *bin[RESNET_MAX_BLOCKS];
    for (int i = 0; i < net->n_blocks; i++) {
        const Block *b = &net->blocks[i];
        bh[i] = h;
        bw[i] = w;
        bin[i] = stage_in;
        stage_in = a->units[i][b->n_units - 1].post;
        h = a->units[i][b->n_units - 1].H;
        w = a->units[i][b->n_units - 1].W;
    }
    be->avgpool_backward(buf[0], dfeatures, B, h * w, net->out_dim);
    for (int i = net->n_blocks - 1; i >= 0; i--)
        block_backward(be, &net->blocks[i], params, grads, a->units[i], bin[i], B, bh[i], bw[i],
                       buf, a, scratch);
    float *d = buf[0];
    if (net->cfg.stem == STEM_IMAGENET) {
        PoolShape p = pool_shape(B, a->stem.H, a->stem.W, net->stem.conv.cout, 3, 2, 1);
        be->maxpool2d_backward(buf[1], d, a->argmax, &p);
        d = buf[1];
    }
    unit_backward(be, &net->stem, params, grads, &a->stem, x, d, 1, d, NULL, B, a->H, a->W, a,
                  scratch);
}
