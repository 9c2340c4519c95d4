/* byol export --format onnx (src/io/onnx_export.c): the file is read back with protobuf-c's
 * unpacker (the same onnx.proto) and its graph run by a small interpreter below, written from
 * the ONNX operator specifications and sharing no code with the encoder, on the op set the
 * export uses. Its features must match resnet_forward's (evaluation mode) for both stems,
 * BasicBlock and Bottleneck, batches of several images and of one; every initializer must be
 * the model's tensor in OIHW; and through the CLI, the graph on CIFAR-10 test images must give
 * byol embed's features. Bad flags and unwritable outputs leave no file. */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "cli_run.h"
#include "data/image.h"
#include "io/npy.h"
#include "io/onnx_export.h"
#include "io/safetensors.h"
#include "model/byol.h"
#include "onnx.pb-c.h"

/* ---- reading the file back ---- */

static Onnx__ModelProto *load_model(const char *path) {
    size_t n;
    uint8_t *buf = slurp(path, &n);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
    xfree(buf);
    return m;
}

static const char *meta_value(const Onnx__ModelProto *m, const char *key) {
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (strcmp(m->metadata_props[i]->key, key) == 0) return m->metadata_props[i]->value;
    return NULL;
}

/* an initializer's floats, from ONNX's little-endian raw_data (or float_data) */
static float *tensor_floats(const Onnx__TensorProto *t, size_t *numel) {
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) n *= (size_t)t->dims[i];
    *numel = n;
    float *x = xmalloc(n * sizeof(float) + 4, "initializer");
    if (t->has_raw_data && t->raw_data.len == 4 * n) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = t->raw_data.data + 4 * i;
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&x[i], &u, 4);
        }
    } else if (t->n_float_data == n) {
        memcpy(x, t->float_data, n * sizeof(float));
    } else {
        xfree(x);
        return NULL;
    }
    return x;
}

/* the dims of a graph input/output: -1 for the symbolic one, whose name goes to *param */
static int value_dims(const Onnx__ValueInfoProto *v, int64_t *dims, const char **param) {
    if (!v->type || v->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !v->type->tensor_type->shape) return -1;
    const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
    if (!t->has_elem_type || t->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) return -1;
    *param = NULL;
    for (size_t i = 0; i < t->shape->n_dim && i < 4; i++) {
        const Onnx__TensorShapeProto__Dimension *d = t->shape->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) dims[i] = -1, *param = d->dim_param;
        else dims[i] = d->dim_value;
    }
    return (int)t->shape->n_dim;
}

/* ---- the interpreter: Conv, BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, Flatten ---- */

typedef struct {
    const char *name;
    float *x;
    int nd;
    int64_t d[4];
} Val;

typedef struct {
    Val v[2048];
    int n;
    char why[512];
} Env;

static Val *env_get(Env *env, const char *name) {
    for (int i = env->n - 1; i >= 0; i--)
        if (strcmp(env->v[i].name, name) == 0) return &env->v[i];
    return NULL;
}

static size_t val_numel(const Val *v) {
    size_t n = 1;
    for (int i = 0; i < v->nd; i++) n *= (size_t)v->d[i];
    return n;
}

static Val *env_put(Env *env, const char *name, int nd, const int64_t *d) {
    if (env->n == (int)ARRAY_LEN(env->v)) return NULL;
    Val *v = &env->v[env->n++];
    v->name = name;
    v->nd = nd;
    for (int i = 0; i < nd; i++) v->d[i] = d[i];
    v->x = xcalloc(val_numel(v) + 1, sizeof(float), "value");
    return v;
}

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
    return NULL;
}

/* ints attribute into v[k] (default def where absent); -1 when present with another count */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *v, size_t k, int64_t def) {
    const Onnx__AttributeProto *a = attr(n, name);
    for (size_t i = 0; i < k; i++) v[i] = def;
    if (!a) return 0;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS || a->n_ints != k) return -1;
    for (size_t i = 0; i < k; i++) v[i] = a->ints[i];
    return 0;
}

/* attributes this interpreter does not implement must be absent or at their defaults */
static int unsupported(const Onnx__NodeProto *n, Env *env) {
    static const char *known[] = {"kernel_shape", "strides", "pads", "epsilon", "axis", "dilations", "group"};
    for (size_t i = 0; i < n->n_attribute; i++) {
        int ok = 0;
        for (size_t k = 0; k < ARRAY_LEN(known); k++) ok |= strcmp(n->attribute[i]->name, known[k]) == 0;
        if (!ok) return snprintf(env->why, sizeof env->why, "node %s: attribute %s", n->name, n->attribute[i]->name), 1;
    }
    int64_t dil[2];
    const Onnx__AttributeProto *g = attr(n, "group");
    if (attr_ints(n, "dilations", dil, 2, 1) || dil[0] != 1 || dil[1] != 1 || (g && g->i != 1))
        return snprintf(env->why, sizeof env->why, "node %s: dilation or groups", n->name), 1;
    return 0;
}

static int run_node(Env *env, const Onnx__NodeProto *n) {
    Val *in[5] = {NULL};
    if (n->n_input > 5 || n->n_output != 1) return snprintf(env->why, sizeof env->why, "node %s: arity", n->name), -1;
    for (size_t i = 0; i < n->n_input; i++)
        if (!(in[i] = env_get(env, n->input[i])))
            return snprintf(env->why, sizeof env->why, "node %s: input %s not defined before it", n->name, n->input[i]), -1;
    if (env_get(env, n->output[0]))
        return snprintf(env->why, sizeof env->why, "node %s: output %s defined twice", n->name, n->output[0]), -1;
    if (unsupported(n, env)) return -1;
    const char *op = n->op_type, *out = n->output[0];
    const Val *x = in[0];
    if (strcmp(op, "Conv") == 0 || strcmp(op, "MaxPool") == 0) {
        const int conv = op[0] == 'C';
        if (x->nd != 4 || (conv && (n->n_input != 2 || in[1]->nd != 4 || in[1]->d[1] != x->d[1])))
            return snprintf(env->why, sizeof env->why, "node %s: shapes", n->name), -1;
        int64_t ks[2], st[2], pd[4];
        if (attr_ints(n, "kernel_shape", ks, 2, conv ? 0 : -1) || attr_ints(n, "strides", st, 2, 1) ||
            attr_ints(n, "pads", pd, 4, 0) || (conv && (ks[0] != in[1]->d[2] || ks[1] != in[1]->d[3])) || ks[0] < 1)
            return snprintf(env->why, sizeof env->why, "node %s: kernel/strides/pads", n->name), -1;
        const int64_t N = x->d[0], C = x->d[1], H = x->d[2], W = x->d[3], O = conv ? in[1]->d[0] : C;
        const int64_t Ho = (H + pd[0] + pd[2] - ks[0]) / st[0] + 1, Wo = (W + pd[1] + pd[3] - ks[1]) / st[1] + 1;
        const int64_t od[4] = {N, O, Ho, Wo};
        Val *y = env_put(env, out, 4, od);
        const float *w = conv ? in[1]->x : NULL;
        for (int64_t b = 0; b < N; b++)
            for (int64_t o = 0; o < O; o++)
                for (int64_t oy = 0; oy < Ho; oy++)
                    for (int64_t ox = 0; ox < Wo; ox++) {
                        double acc = conv ? 0 : -INFINITY;
                        for (int64_t c = conv ? 0 : o; c < (conv ? C : o + 1); c++)
                            for (int64_t ky = 0; ky < ks[0]; ky++)
                                for (int64_t kx = 0; kx < ks[1]; kx++) {
                                    const int64_t iy = oy * st[0] - pd[0] + ky, ix = ox * st[1] - pd[1] + kx;
                                    if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue; /* zeros; -inf for max */
                                    const double v = x->x[((b * C + c) * H + iy) * W + ix];
                                    if (conv) acc += v * w[((o * C + c) * ks[0] + ky) * ks[1] + kx];
                                    else acc = v > acc ? v : acc;
                                }
                        y->x[((b * O + o) * Ho + oy) * Wo + ox] = (float)acc;
                    }
    } else if (strcmp(op, "BatchNormalization") == 0) {
        const Onnx__AttributeProto *ea = attr(n, "epsilon");
        const double eps = ea ? ea->f : 1e-5;
        if (n->n_input != 5 || x->nd != 4) return snprintf(env->why, sizeof env->why, "node %s: inputs", n->name), -1;
        const int64_t C = x->d[1], HW = x->d[2] * x->d[3];
        for (int k = 1; k < 5; k++)
            if (in[k]->nd != 1 || in[k]->d[0] != C) return snprintf(env->why, sizeof env->why, "node %s: shapes", n->name), -1;
        Val *y = env_put(env, out, 4, x->d);
        for (int64_t b = 0; b < x->d[0]; b++)
            for (int64_t c = 0; c < C; c++) {
                const double s = in[1]->x[c] / sqrt((double)in[4]->x[c] + eps);
                for (int64_t p = 0; p < HW; p++) {
                    const size_t at = (size_t)((b * C + c) * HW + p);
                    y->x[at] = (float)((x->x[at] - (double)in[3]->x[c]) * s + in[2]->x[c]);
                }
            }
    } else if (strcmp(op, "Relu") == 0) {
        Val *y = env_put(env, out, x->nd, x->d);
        for (size_t i = 0; i < val_numel(x); i++) y->x[i] = x->x[i] > 0 ? x->x[i] : 0;
    } else if (strcmp(op, "Add") == 0) {
        if (n->n_input != 2 || x->nd != in[1]->nd || memcmp(x->d, in[1]->d, (size_t)x->nd * sizeof x->d[0]) != 0)
            return snprintf(env->why, sizeof env->why, "node %s: shapes differ (no broadcasting here)", n->name), -1;
        Val *y = env_put(env, out, x->nd, x->d);
        for (size_t i = 0; i < val_numel(x); i++) y->x[i] = x->x[i] + in[1]->x[i];
    } else if (strcmp(op, "GlobalAveragePool") == 0) {
        const int64_t od[4] = {x->d[0], x->d[1], 1, 1}, HW = x->d[2] * x->d[3];
        Val *y = env_put(env, out, 4, od);
        for (int64_t i = 0; i < x->d[0] * x->d[1]; i++) {
            double s = 0;
            for (int64_t p = 0; p < HW; p++) s += x->x[i * HW + p];
            y->x[i] = (float)(s / (double)HW);
        }
    } else if (strcmp(op, "Flatten") == 0) {
        const Onnx__AttributeProto *a = attr(n, "axis");
        if (a && a->i != 1) return snprintf(env->why, sizeof env->why, "node %s: axis %lld", n->name, (long long)a->i), -1;
        const int64_t od[2] = {x->d[0], (int64_t)(val_numel(x) / (size_t)x->d[0])};
        Val *y = env_put(env, out, 2, od);
        memcpy(y->x, x->x, val_numel(x) * sizeof(float));
    } else {
        return snprintf(env->why, sizeof env->why, "node %s: operator %s", n->name, op), -1;
    }
    return 0;
}

/* Runs the graph on x (NCHW, batch B) and returns a malloc'ed copy of its one output, or NULL
 * with env->why set. */
static float *run_graph(const Onnx__ModelProto *m, const float *x, int B, Env *env, int64_t *out_dims) {
    const Onnx__GraphProto *g = m->graph;
    memset(env, 0, sizeof *env);
    float *result = NULL;
    int64_t d[4];
    const char *param;
    if (g->n_input != 1 || value_dims(g->input[0], d, &param) != 4) {
        snprintf(env->why, sizeof env->why, "one 4-d float input expected");
        return NULL;
    }
    d[0] = B;
    Val *in = env_put(env, g->input[0]->name, 4, d);
    memcpy(in->x, x, val_numel(in) * sizeof(float));
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        size_t n;
        float *data = tensor_floats(t, &n);
        if (!data || t->n_dims > 4) {
            snprintf(env->why, sizeof env->why, "initializer %s unreadable", t->name);
            xfree(data);
            goto done;
        }
        Val *v = env_put(env, t->name, (int)t->n_dims, t->dims);
        memcpy(v->x, data, n * sizeof(float));
        xfree(data);
    }
    for (size_t i = 0; i < g->n_node; i++)
        if (run_node(env, g->node[i])) goto done;
    const Val *y = g->n_output == 1 ? env_get(env, g->output[0]->name) : NULL;
    if (!y) {
        snprintf(env->why, sizeof env->why, "the graph's output is never computed");
        goto done;
    }
    result = xmalloc(val_numel(y) * sizeof(float), "output");
    memcpy(result, y->x, val_numel(y) * sizeof(float));
    for (int i = 0; i < y->nd; i++) out_dims[i] = y->d[i];
done:
    for (int i = 0; i < env->n; i++) xfree(env->v[i].x);
    return result;
}

/* ---- the model side ---- */

static void small_model(Byol *m, Arch arch, Stem stem, int width, int in_ch, uint64_t seed) {
    ModelConfig c;
    model_config_default(&c);
    c.enc.arch = arch, c.enc.stem = stem, c.enc.width = width, c.enc.in_channels = in_ch;
    c.proj_hidden = 16, c.proj_dim = 8, c.pred_hidden = 16;
    byol_init(m, &c);
    byol_init_weights(m, seed);
    /* every batch norm off its initial 1/0 values, so that the test sees which statistic goes where */
    TestRng r = {seed * 7 + 1};
    const ParamStore *s = &m->online;
    for (int i = 0; i < s->n_specs; i++) {
        const TensorSpec *t = &s->specs[i];
        if (strncmp(t->name, "online.encoder.", 15) != 0 || t->ndim != 1) continue;
        float *x = store_data(s, t);
        const int var = strstr(t->name, "running_var") != NULL, gamma = strstr(t->name, ".weight") != NULL;
        for (size_t k = 0; k < t->numel; k++) {
            const float u = (float)rng_uniform(&r);
            x[k] = var || gamma ? 0.5f + u : 0.4f * u - 0.2f;
        }
    }
}

/* resnet_forward, evaluation mode, on the reference kernels; x NCHW. */
static float *reference_features(Byol *m, const float *x, int B, int S) {
    const Backend *be = &backend_ref;
    const ResNet *net = &m->encoder;
    const int C = net->cfg.in_channels;
    ResNetActs acts;
    Arena a = {NULL, 0, 0};
    resnet_plan(&acts, net, B, S, S, 0, &a, be);
    const size_t act = a.used, total = act + acts.max_scratch + 64;
    char *mem = xmalloc(total, "activations");
    Arena real = {mem, 0, total};
    resnet_plan(&acts, net, B, S, S, 0, &real, be);
    void *scratch = arena_take(&real, acts.max_scratch);
    float *nhwc = xmalloc((size_t)B * C * S * S * sizeof(float), "input");
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < S * S; p++) nhwc[((size_t)b * S * S + p) * C + c] = x[((size_t)b * C + c) * S * S + p];
    resnet_forward(be, net, m->online.params, m->online.buffers, &acts, nhwc, 0, scratch);
    float *f = xmalloc((size_t)B * net->out_dim * sizeof(float), "features");
    memcpy(f, acts.features, (size_t)B * net->out_dim * sizeof(float));
    xfree(nhwc), xfree(mem);
    return f;
}

static int conv_count(const ResNet *net) {
    int n = 1;
    for (int i = 0; i < net->n_blocks; i++) n += net->blocks[i].n_units + net->blocks[i].has_down;
    return n;
}

/* Every initializer is an encoder tensor under its torchvision name, in OIHW (written out here
 * from our OHWI storage, not through tensor_to_torch), each used by exactly one node input, and
 * all of the encoder's tensors are there. */
static void check_initializers(const Onnx__ModelProto *m, const Byol *model, const char *what) {
    const Onnx__GraphProto *g = m->graph;
    const ParamStore *s = &model->online;
    int n_enc = 0;
    for (int i = 0; i < s->n_specs; i++) n_enc += strncmp(s->specs[i].name, "online.encoder.", 15) == 0;
    CHECK((int)g->n_initializer == n_enc, "%s: %zu initializers for %d encoder tensors", what, g->n_initializer, n_enc);
    int bad = 0;
    for (size_t i = 0; i < g->n_initializer && !bad; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        char key[TENSOR_NAME_LEN + 32];
        snprintf(key, sizeof key, "online.encoder.%s", t->name);
        const int k = store_find(s, key);
        if (k < 0) {
            CHECK(0, "%s: initializer %s is no encoder tensor", what, t->name);
            bad = 1;
            break;
        }
        const TensorSpec *sp = &s->specs[k];
        int same_shape = (int)t->n_dims == sp->ndim && t->has_data_type && t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        for (int d = 0; d < sp->ndim && same_shape; d++) same_shape = t->dims[d] == sp->shape[d];
        CHECK(same_shape, "%s: %s's dims or type", what, t->name);
        size_t n;
        float *x = tensor_floats(t, &n);
        CHECK(x && n == sp->numel, "%s: %s's data", what, t->name);
        if (!x || !same_shape || n != sp->numel) {
            xfree(x);
            bad = 1;
            break;
        }
        const float *st = store_data(s, sp);
        if (sp->ndim == 4) { /* ours: [O, kh, kw, I]; ONNX's: [O, I, kh, kw] */
            const int64_t O = sp->shape[0], I = sp->shape[1], K = sp->shape[2];
            for (int64_t o = 0; o < O && !bad; o++)
                for (int64_t c = 0; c < I && !bad; c++)
                    for (int64_t h = 0; h < K && !bad; h++)
                        for (int64_t w = 0; w < K && !bad; w++)
                            if (x[((o * I + c) * K + h) * K + w] != st[((o * K + h) * K + w) * I + c]) bad = 1;
        } else {
            bad = memcmp(x, st, n * sizeof(float)) != 0;
        }
        CHECK(!bad, "%s: initializer %s differs from the model's tensor (OIHW)", what, t->name);
        int uses = 0;
        for (size_t j = 0; j < g->n_node; j++)
            for (size_t q = 0; q < g->node[j]->n_input; q++) uses += strcmp(g->node[j]->input[q], t->name) == 0;
        CHECK(uses == 1, "%s: initializer %s used %d times", what, t->name, uses);
        xfree(x);
    }
}

static void check_structure(const Onnx__ModelProto *m, const ResNet *net, int S, const char *what) {
    CHECK(m->has_ir_version && m->ir_version == ONNX_IR_VERSION, "%s: ir_version", what);
    CHECK(m->n_opset_import == 1 && (!m->opset_import[0]->domain || !*m->opset_import[0]->domain) &&
              m->opset_import[0]->version == ONNX_OPSET,
          "%s: one opset, the default domain's %d", what, ONNX_OPSET);
    CHECK(m->producer_name && strcmp(m->producer_name, "byol.c") == 0, "%s: producer_name", what);
    const Onnx__GraphProto *g = m->graph;
    int64_t d[4];
    const char *param = NULL;
    CHECK(g->n_input == 1 && strcmp(g->input[0]->name, "input") == 0 && value_dims(g->input[0], d, &param) == 4 &&
              d[0] == -1 && param && strcmp(param, "N") == 0 && d[1] == net->cfg.in_channels && d[2] == S && d[3] == S,
          "%s: input float [N, C, S, S]", what);
    CHECK(g->n_output == 1 && strcmp(g->output[0]->name, "features") == 0 && value_dims(g->output[0], d, &param) == 2 &&
              d[0] == -1 && param && strcmp(param, "N") == 0 && d[1] == net->out_dim,
          "%s: output float [N, d]", what);
    /* the node sequence resnet_forward runs: per conv a Conv and a BatchNormalization, a Relu
     * after the stem and after every unit, an Add per block, MaxPool for the ImageNet stem */
    static const char *ops[] = {"Conv", "BatchNormalization", "Relu", "Add", "MaxPool", "GlobalAveragePool", "Flatten"};
    int count[7] = {0}, relus = 1, other = 0;
    for (int i = 0; i < net->n_blocks; i++) relus += net->blocks[i].n_units;
    for (size_t i = 0; i < g->n_node; i++) {
        int k = 0;
        while (k < 7 && strcmp(g->node[i]->op_type, ops[k]) != 0) k++;
        if (k == 7) other++;
        else count[k]++;
    }
    const int convs = conv_count(net), imagenet = net->cfg.stem == STEM_IMAGENET;
    CHECK(other == 0 && count[0] == convs && count[1] == convs && count[2] == relus && count[3] == net->n_blocks &&
              count[4] == imagenet && count[5] == 1 && count[6] == 1,
          "%s: ops Conv %d BN %d Relu %d Add %d MaxPool %d GAP %d Flatten %d other %d (want %d %d %d %d %d 1 1 0)", what,
          count[0], count[1], count[2], count[3], count[4], count[5], count[6], other, convs, convs, relus, net->n_blocks,
          imagenet);
    CHECK(g->n_node >= 4 && strcmp(g->node[0]->op_type, "Conv") == 0 && strcmp(g->node[0]->input[0], "input") == 0 &&
              strcmp(g->node[g->n_node - 1]->op_type, "Flatten") == 0 &&
              strcmp(g->node[g->n_node - 1]->output[0], "features") == 0 &&
              strcmp(g->node[imagenet ? 3 : 2]->op_type, imagenet ? "MaxPool" : "Relu") == 0,
          "%s: starts at the stem conv on the input, ends with Flatten into features", what);
    /* batch norm in inference form: epsilon is training's, one output, not folded */
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        if (strcmp(n->op_type, "BatchNormalization") != 0) continue;
        const Onnx__AttributeProto *eps = attr(n, "epsilon");
        CHECK(eps && eps->f == BN_EPS && n->n_output == 1 && n->n_input == 5 &&
                  strcmp(g->node[i - 1]->op_type, "Conv") == 0 && strcmp(n->input[0], g->node[i - 1]->output[0]) == 0,
              "%s: %s", what, n->name);
    }
}

typedef struct {
    Arch arch;
    Stem stem;
    int width, in_ch, S;
} Case;

/* Exported, read back and run: the interpreter's features against resnet_forward's, for a
 * batch of 3 and of 1 from the same file (the batch dimension is symbolic). */
static void test_graph_matches_forward(void) {
    const Case cases[] = {{ARCH_RESNET18, STEM_CIFAR, 4, 3, 12},   {ARCH_RESNET18, STEM_IMAGENET, 4, 1, 36},
                          {ARCH_RESNET34, STEM_CIFAR, 2, 3, 10},   {ARCH_RESNET50, STEM_IMAGENET, 4, 3, 36},
                          {ARCH_RESNET50, STEM_CIFAR, 2, 3, 12}};
    for (size_t ci = 0; ci < ARRAY_LEN(cases); ci++) {
        const Case *k = &cases[ci];
        char what[96];
        snprintf(what, sizeof what, "%s %s width %d, %d channel(s), %dpx", arch_name(k->arch), stem_name(k->stem),
                 k->width, k->in_ch, k->S);
        Byol m;
        small_model(&m, k->arch, k->stem, k->width, k->in_ch, 11 + ci);
        StMeta meta[] = {{"arch", (char *)arch_name(k->arch)}, {"stem", (char *)stem_name(k->stem)}, {"mean", "0.5 0.25 0.125"}};
        const char *path = tmp_path("model.onnx");
        Err e;
        CHECK(onnx_export_encoder(&m.encoder, &m.online, "online.encoder.", k->S, meta, 3, path, &e) == 0, "%s: %s", what,
              e.msg);
        Onnx__ModelProto *om = load_model(path);
        CHECK(om != NULL, "%s: protobuf-c cannot unpack the file", what);
        if (!om) {
            byol_free(&m);
            continue;
        }
        check_structure(om, &m.encoder, k->S, what);
        check_initializers(om, &m, what);
        CHECK(om->n_metadata_props == 3 && meta_value(om, "arch") && strcmp(meta_value(om, "arch"), arch_name(k->arch)) == 0 &&
                  meta_value(om, "mean") && strcmp(meta_value(om, "mean"), "0.5 0.25 0.125") == 0,
              "%s: metadata_props", what);

        const int B = 3, d = m.encoder.out_dim;
        const size_t per = (size_t)k->in_ch * k->S * k->S;
        float *x = xmalloc(B * per * sizeof(float), "x");
        TestRng r = {100 + ci};
        fill_normal(&r, x, B * per, 1);
        float *ref = reference_features(&m, x, B, k->S);
        Env *env = xmalloc(sizeof *env, "env");
        int64_t od[4] = {0};
        float *got = run_graph(om, x, B, env, od);
        CHECK(got != NULL, "%s: the interpreter stopped: %s", what, env->why);
        if (got) {
            CHECK(od[0] == B && od[1] == d, "%s: output [%lld, %lld]", what, (long long)od[0], (long long)od[1]);
            CHECK_CLOSE(got, ref, (size_t)B * d, 1e-5, what);
            double mx = 0, big = 0;
            for (size_t i = 0; i < (size_t)B * d; i++) mx = fmax(mx, fabs((double)got[i] - ref[i])), big = fmax(big, fabs(ref[i]));
            printf("     %s: batch %d, max |difference| %.2e (largest feature %.2f)\n", what, B, mx, big);
        }
        xfree(got);
        got = run_graph(om, x + per, 1, env, od); /* one image: the second of the batch */
        CHECK(got && od[0] == 1 && od[1] == d, "%s: batch of 1: %s", what, env->why);
        if (got) CHECK_CLOSE(got, ref + d, (size_t)d, 1e-5, what);
        xfree(got), xfree(env), xfree(ref), xfree(x);
        onnx__model_proto__free_unpacked(om, NULL);
        byol_free(&m);
    }
}

/* A folder that does not exist: one line naming the file, nothing written. */
static void test_library_write_failure(void) {
    Byol m;
    small_model(&m, ARCH_RESNET18, STEM_CIFAR, 2, 3, 1);
    Err e;
    const char *path = tmp_path("missing/model.onnx");
    CHECK(onnx_export_encoder(&m.encoder, &m.online, "online.encoder.", 8, NULL, 0, path, &e) != 0, "export into a missing folder");
    CHECK(strstr(e.msg, path) && !strchr(e.msg, '\n'), "one line naming the file: %s", e.msg);
    struct stat sb;
    CHECK(stat(tmp_path("missing"), &sb) != 0, "nothing created");
    byol_free(&m);
}

/* ---- through the CLI: a tiny training run (tests/test_cli.c's pattern) ---- */



static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* leftover temporaries (NAME.tmp.PID) in TEST_TMP */
static int temporaries(void) {
    DIR *d = opendir(TEST_TMP);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) n += strstr(de->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* The ONNX file of a trained checkpoint: the same tensors, byte for byte, as the safetensors
 * export (same names), the same metadata; --format or an .onnx --out picks the format. */
static void test_cli_export_formats(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "export --ckpt %s --out %s", RUN_DIR, tmp_path("enc.onnx"));
    int st = run_out(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0 && strstr(out, "ONNX (opset 13)") && strstr(out, "input [N, 3, 32, 32], output features [N, 32]"),
          "an .onnx --out writes ONNX: exit %d: %s%s", st, out, err);
    free(out), free(err);
    snprintf(a, sizeof a, "export --ckpt %s --out %s", RUN_DIR, tmp_path("enc.safetensors"));
    CHECK(run_out(a) == 0, "safetensors export");
    snprintf(a, sizeof a, "export --ckpt %s --format onnx --out %s", RUN_DIR, tmp_path("enc.bin"));
    CHECK(run_out(a) == 0, "--format onnx with another suffix");
    snprintf(a, sizeof a, "export --ckpt %s --format safetensors --out %s", RUN_DIR, tmp_path("st.onnx"));
    CHECK(run_out(a) == 0, "--format safetensors with an .onnx suffix");
    Safetensors sf, sf2;
    Err e = {""};
    const int st_ok = st_open(&sf2, tmp_path("st.onnx"), &e) == 0;
    CHECK(st_ok, "--format safetensors wins over the suffix: %s", e.msg);
    if (st_ok) st_close(&sf2);
    size_t n1, n2;
    uint8_t *b1 = slurp(tmp_path("enc.onnx"), &n1), *b2 = slurp(tmp_path("enc.bin"), &n2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0, "--format onnx writes the same file");
    xfree(b1), xfree(b2);

    Onnx__ModelProto *m = load_model(tmp_path("enc.onnx"));
    if (st_open(&sf, tmp_path("enc.safetensors"), &e) != 0 || !m) {
        CHECK(0, "cannot read the exports back: %s", m ? e.msg : "ONNX unpack failed");
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        return;
    }
    const char *keys[] = {"arch", "width", "stem", "in_channels", "image_size", "mean", "std"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const char *o = meta_value(m, keys[i]), *s = st_meta(&sf, keys[i]);
        CHECK(o && s && strcmp(o, s) == 0, "metadata %s: '%s' vs '%s'", keys[i], o ? o : "(none)", s ? s : "(none)");
    }
    CHECK(m->n_metadata_props == ARRAY_LEN(keys), "%zu metadata_props", m->n_metadata_props);
    int f32 = 0, same = 0;
    for (int i = 0; i < sf.n_entries; i++) f32 += strcmp(sf.entries[i].dtype, "F32") == 0;
    for (size_t i = 0; i < m->graph->n_initializer; i++) {
        const Onnx__TensorProto *t = m->graph->initializer[i];
        const StEntry *s = st_find(&sf, t->name);
        size_t n;
        float *x = tensor_floats(t, &n);
        if (s && x && st_numel(s) == n && s->ndim == (int)t->n_dims) {
            float *y = xmalloc(n * sizeof(float), "tensor");
            st_read_f32(&sf, s, y);
            int dims = 1;
            for (int d = 0; d < s->ndim; d++) dims &= s->shape[d] == t->dims[d];
            same += dims && memcmp(x, y, n * sizeof(float)) == 0;
            xfree(y);
        }
        xfree(x);
    }
    CHECK(same == f32 && (int)m->graph->n_initializer == f32, "%d of %zu initializers equal the safetensors export's %d tensors",
          same, m->graph->n_initializer, f32);
    st_close(&sf);
    onnx__model_proto__free_unpacked(m, NULL);
}

/* The graph on CIFAR-10 test images, preprocessed as the metadata says (native size: pixel /
 * 255, then (x - mean) / std), gives byol embed's features: 8 images as one batch, then one. */
static void test_cli_onnx_matches_embed(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "export --ckpt %s --format onnx --out %s", RUN_DIR, tmp_path("e.onnx"));
    CHECK(run_out(a) == 0, "export");
    snprintf(a, sizeof a, "embed --ckpt %s --split test --out %s --names %s --threads 1", RUN_DIR, tmp_path("f.npy"),
             tmp_path("names.txt"));
    CHECK(run_out(a) == 0, "embed");
    Onnx__ModelProto *m = load_model(tmp_path("e.onnx"));
    NpyArray f;
    Err e = {""};
    if (!m || npy_read_f32(tmp_path("f.npy"), &f, &e) != 0) {
        CHECK(0, "cannot read the ONNX file or the features");
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        return;
    }
    float mean[3], sd[3];
    const char *ms = meta_value(m, "mean"), *ss = meta_value(m, "std");
    CHECK(ms && ss && sscanf(ms, "%f %f %f", &mean[0], &mean[1], &mean[2]) == 3 &&
              sscanf(ss, "%f %f %f", &sd[0], &sd[1], &sd[2]) == 3,
          "mean and std in the metadata");
    const int B = 8, S = 32, d = (int)f.shape[1];
    char *names = slurp_text("names.txt");
    float *x = xmalloc((size_t)B * 3 * S * S * sizeof(float), "x");
    Image img = {0};
    char *line = names;
    int ok = f.ndim == 2 && f.shape[0] >= B;
    /* rows spread over the split (every 12th), each named by the names file */
    for (int b = 0, row = 0; b < B && ok; row++) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            ok = 0;
            break;
        }
        *nl = 0;
        if (row % 12 == 0) {
            char path[1400];
            snprintf(path, sizeof path, "%s/%s", CIFAR, line);
            ok = image_decode_file(&img, path, 3, 0, &e) == 0 && img.w == S && img.h == S;
            for (int c = 0; c < 3 && ok; c++)
                for (int p = 0; p < S * S; p++)
                    x[((size_t)b * 3 + c) * S * S + p] = (img.px[(size_t)p * 3 + c] / 255.0f - mean[c]) / sd[c];
            if (ok) memcpy(f.data + (size_t)b * d, f.data + (size_t)row * d, (size_t)d * sizeof(float));
            b++;
        }
        line = nl + 1;
    }
    CHECK(ok, "the test images named by byol embed (%s)", e.msg);
    Env *env = xmalloc(sizeof *env, "env");
    int64_t od[4] = {0};
    float *got = ok ? run_graph(m, x, B, env, od) : NULL;
    CHECK(!ok || (got && od[0] == B && od[1] == d), "the interpreter: %s", env->why);
    if (got) {
        CHECK_CLOSE(got, f.data, (size_t)B * d, 1e-4, "ONNX graph vs byol embed, batch of 8");
        double mx = 0, ref = 0;
        for (size_t i = 0; i < (size_t)B * d; i++) mx = fmax(mx, fabs((double)got[i] - f.data[i])), ref = fmax(ref, fabs(f.data[i]));
        printf("     CIFAR-10 test images, batch %d: max |ONNX - embed| %.2e (largest feature %.3f)\n", B, mx, ref);
        xfree(got);
        got = run_graph(m, x + (size_t)5 * 3 * S * S, 1, env, od);
        CHECK(got && od[0] == 1, "batch of 1: %s", env->why);
        if (got) CHECK_CLOSE(got, f.data + (size_t)5 * d, (size_t)d, 1e-4, "ONNX graph vs byol embed, batch of 1");
    }
    xfree(got), xfree(env), xfree(x), free(names);
    image_free(&img);
    npy_free(&f);
    onnx__model_proto__free_unpacked(m, NULL);
}

/* Refusals: an unknown --format before anything is read; an --out that cannot be written
 * (missing folder, a folder in the way) or a process killed mid-write: one line, exit non-zero,
 * no file and no temporary left. */
static void test_cli_refusals(void) {
    tiny_run();
    char a[4096];
    const char *out = tmp_path("refused.onnx");
    snprintf(a, sizeof a, "export --ckpt %s --format pdf --out %s", RUN_DIR, out);
    int st = run_out(a);
    char *err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--format") && strstr(err, "'pdf'") && strstr(err, "safetensors, onnx") &&
              strchr(err, '\n') == err + strlen(err) - 1,
          "--format pdf: exit %d: %s", st, err);
    CHECK(!exists(out), "no file after --format pdf");
    free(err);

    const char *missing = tmp_path("no/such/dir/enc.onnx");
    snprintf(a, sizeof a, "export --ckpt %s --out %s", RUN_DIR, missing);
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, missing) && strchr(err, '\n') == err + strlen(err) - 1, "missing folder: exit %d: %s", st, err);
    CHECK(!exists(tmp_path("no")), "nothing created for a missing folder");
    free(err);

    const char *dir = tmp_path("adir");
    mkdir(dir, 0700);
    snprintf(a, sizeof a, "export --ckpt %s --format onnx --out %s", RUN_DIR, dir);
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, dir) && strchr(err, '\n') == err + strlen(err) - 1, "a folder as --out: exit %d: %s", st, err);
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "the folder is still there");
    CHECK(temporaries() == 0, "no temporary left behind");
    free(err);

    char cmd[8192];
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "BYOL_FAULT_KILL_AFTER_BYTES=5000 %s export --ckpt %s --out %s > /dev/null 2>&1", byol,
             RUN_DIR, out);
    st = sh_status(cmd);
    CHECK(st == 128 + 9, "killed mid-write (status %d)", st);
    CHECK(!exists(out), "a write killed half-way leaves no file at --out");
}

int main(void) {
    test_tmpdir("test_onnx");
    RUN(test_graph_matches_forward);
    RUN(test_library_write_failure);
    RUN(test_cli_export_formats);
    RUN(test_cli_onnx_matches_embed);
    RUN(test_cli_refusals);
    return test_finish();
}
