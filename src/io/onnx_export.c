#include "onnx_export.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "onnx.pb-c.h"
#include "state.h"

/* The messages of one graph and everything they point to: protobuf-c packs from plain structs,
 * so the builder owns every allocation and frees them all once the file is written. */
typedef struct {
    const ParamStore *store;
    const char *prefix;
    size_t plen;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    void **owned;
    size_t n_owned, cap_owned;
} Builder;

#define PUSH(arr, n, cap, x)                                                 \
    do {                                                                     \
        if ((n) == (cap)) {                                                  \
            (cap) = (cap) ? 2 * (cap) : 64;                                  \
            void *grown_ = realloc((arr), (cap) * sizeof *(arr));            \
            if (!grown_) die("out of memory building the ONNX graph");       \
            (arr) = grown_;                                                  \
        }                                                                    \
        (arr)[(n)++] = (x);                                                  \
    } while (0)

static void *take(Builder *b, size_t bytes) {
    void *p = xcalloc(1, bytes ? bytes : 1, "the ONNX graph");
    PUSH(b->owned, b->n_owned, b->cap_owned, p);
    return p;
}

static char *str(Builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *str(Builder *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = take(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The ResNet holds offsets only; the names (torchvision's) and shapes are the store's. A miss
 * means net and store disagree, a programming error. */
static const TensorSpec *spec_at(const Builder *b, TensorRole role, size_t offset) {
    for (int i = 0; i < b->store->n_specs; i++) {
        const TensorSpec *t = &b->store->specs[i];
        if (t->role == role && t->offset == offset && strncmp(t->name, b->prefix, b->plen) == 0) return t;
    }
    die("ONNX export: no %s tensor at offset %zu under '%s'", role == ROLE_PARAM ? "parameter" : "buffer", offset,
        b->prefix);
}

/* One tensor as an initializer in PyTorch's layout (OIHW for convolutions) and returns its name.
 * raw_data, as PyTorch's exporter writes it (and what ONNX's external-data tools move out of
 * the file); ONNX defines it as little-endian whatever the host, hence the explicit bytes. */
static const char *initializer(Builder *b, TensorRole role, size_t offset) {
    const TensorSpec *t = spec_at(b, role, offset);
    Onnx__TensorProto *tp = take(b, sizeof *tp);
    onnx__tensor_proto__init(tp);
    tp->name = str(b, "%s", t->name + b->plen);
    tp->n_dims = (size_t)t->ndim;
    tp->dims = take(b, (size_t)t->ndim * sizeof *tp->dims);
    for (int d = 0; d < t->ndim; d++) tp->dims[d] = t->shape[d];
    tp->has_data_type = 1;
    tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    float *torch = xmalloc(t->numel * sizeof(float), "an ONNX initializer");
    tensor_to_torch(t, torch, store_data(b->store, t));
    uint8_t *raw = take(b, t->numel * 4);
    for (size_t i = 0; i < t->numel; i++) {
        uint32_t u;
        memcpy(&u, &torch[i], 4);
        for (int k = 0; k < 4; k++) raw[4 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    xfree(torch);
    tp->has_raw_data = 1;
    tp->raw_data.len = t->numel * 4;
    tp->raw_data.data = raw;
    PUSH(b->inits, b->n_inits, b->cap_inits, tp);
    return tp->name;
}

enum { NODE_MAX_ATTRS = 4 };

/* A node named `name` whose one output value carries the same name (unless `out` says), so that
 * a value in the graph reads as the module that made it. */
static Onnx__NodeProto *node(Builder *b, const char *op, const char *name, const char *out, int n_in,
                             const char *const *in) {
    Onnx__NodeProto *n = take(b, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = str(b, "%s", name);
    n->n_input = (size_t)n_in;
    n->input = take(b, (size_t)n_in * sizeof *n->input);
    for (int i = 0; i < n_in; i++) n->input[i] = (char *)in[i];
    n->n_output = 1;
    n->output = take(b, sizeof *n->output);
    n->output[0] = out ? str(b, "%s", out) : n->name;
    n->attribute = take(b, NODE_MAX_ATTRS * sizeof *n->attribute);
    PUSH(b->nodes, b->n_nodes, b->cap_nodes, n);
    return n;
}

static Onnx__AttributeProto *attr(Builder *b, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
    if (n->n_attribute == NODE_MAX_ATTRS) die("ONNX export: too many attributes on node %s", n->name);
    Onnx__AttributeProto *a = take(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_pair(Builder *b, Onnx__NodeProto *n, const char *name, int v, int times) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)times;
    a->ints = take(b, (size_t)times * sizeof *a->ints);
    for (int i = 0; i < times; i++) a->ints[i] = v;
}

/* name up to its last '.', e.g. the module of "layer1.0.conv1.weight" */
static char *module_of(Builder *b, const char *tensor) {
    const char *dot = strrchr(tensor, '.');
    return str(b, "%.*s", (int)(dot ? dot - tensor : (ptrdiff_t)strlen(tensor)), tensor);
}

/* conv -> batch norm (running statistics); returns the batch norm's output value. */
static const char *conv_bn(Builder *b, const ConvBN *u, const char *x) {
    const char *w = initializer(b, ROLE_PARAM, u->conv.weight);
    const char *conv_in[2] = {x, w};
    Onnx__NodeProto *c = node(b, "Conv", module_of(b, w), NULL, 2, conv_in);
    attr_pair(b, c, "kernel_shape", u->conv.k, 2);
    attr_pair(b, c, "strides", u->conv.stride, 2);
    attr_pair(b, c, "pads", u->conv.pad, 4);
    const char *gamma = initializer(b, ROLE_PARAM, u->bn.gamma);
    const char *beta = initializer(b, ROLE_PARAM, u->bn.beta);
    const char *mean = initializer(b, ROLE_BUFFER, u->bn.mean);
    const char *var = initializer(b, ROLE_BUFFER, u->bn.var);
    const char *bn_in[5] = {c->output[0], gamma, beta, mean, var};
    Onnx__NodeProto *n = node(b, "BatchNormalization", module_of(b, gamma), NULL, 5, bn_in);
    Onnx__AttributeProto *eps = attr(b, n, "epsilon", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    eps->has_f = 1;
    eps->f = BN_EPS; /* written out, though it is ONNX's default too: it must be training's */
    return n->output[0];
}

static const char *unary(Builder *b, const char *op, const char *name, const char *x) {
    return node(b, op, name, NULL, 1, &x)->output[0];
}

/* float32 tensor [N, dims...] with the batch dimension symbolic */
static Onnx__ValueInfoProto *tensor_value(Builder *b, const char *name, int nd, const int64_t *dims) {
    Onnx__ValueInfoProto *v = take(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    Onnx__TypeProto *tp = take(b, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = take(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *sh = take(b, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)nd + 1;
    sh->dim = take(b, sh->n_dim * sizeof *sh->dim);
    for (size_t i = 0; i < sh->n_dim; i++) {
        Onnx__TensorShapeProto__Dimension *d = take(b, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = "N";
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i - 1];
        }
        sh->dim[i] = d;
    }
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

/* The graph, walked as resnet_forward runs it: stem (+ max-pool), then each block's main path
 * with its shortcut (the downsample's conv + batch norm, without ReLU) added after the last
 * unit's batch norm and before its ReLU. */
static void build_graph(Builder *b, const ResNet *net) {
    const char *x = "input";
    x = conv_bn(b, &net->stem, x);
    x = unary(b, "Relu", "relu", x);
    if (net->cfg.stem == STEM_IMAGENET) {
        Onnx__NodeProto *p = node(b, "MaxPool", "maxpool", NULL, 1, &x);
        attr_pair(b, p, "kernel_shape", 3, 2);
        attr_pair(b, p, "strides", 2, 2);
        attr_pair(b, p, "pads", 1, 4);
        x = p->output[0];
    }
    for (int i = 0; i < net->n_blocks; i++) {
        const Block *blk = &net->blocks[i];
        /* the block's name, "layer1.0", from its first convolution's weight */
        const char *block = module_of(b, module_of(b, spec_at(b, ROLE_PARAM, blk->unit[0].conv.weight)->name + b->plen));
        const char *identity = x;
        if (blk->has_down) identity = conv_bn(b, &blk->down, x);
        const char *y = x;
        for (int u = 0; u < blk->n_units; u++) {
            y = conv_bn(b, &blk->unit[u], y);
            if (u < blk->n_units - 1) {
                y = unary(b, "Relu", str(b, "%s.relu%d", block, u + 1), y);
            } else {
                const char *add_in[2] = {y, identity};
                y = node(b, "Add", str(b, "%s.add", block), NULL, 2, add_in)->output[0];
                y = node(b, "Relu", str(b, "%s.relu%d", block, u + 1), block, 1, &y)->output[0];
            }
        }
        x = y;
    }
    x = unary(b, "GlobalAveragePool", "avgpool", x);
    Onnx__NodeProto *f = node(b, "Flatten", "flatten", "features", 1, &x);
    Onnx__AttributeProto *axis = attr(b, f, "axis", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    axis->has_i = 1;
    axis->i = 1;
}

/* protobuf-c packs into this, field by field, straight to the temporary file: no second copy
 * of the weights in memory. */
typedef struct {
    ProtobufCBuffer base;
    AtomicFile *af;
    Err *e;
    int failed;
} FileSink;

static void sink_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data) {
    FileSink *s = (FileSink *)buf;
    if (!s->failed && atomic_write(s->af, data, len, s->e)) s->failed = 1;
}

int onnx_export_encoder(const ResNet *net, const ParamStore *store, const char *prefix, int image_size,
                        const StMeta *meta, int n_meta, const char *path, Err *e) {
    if (image_size < 1) return err_set(e, "%s: image size %d for the ONNX input", path, image_size);
    Builder b;
    memset(&b, 0, sizeof b);
    b.store = store;
    b.prefix = prefix;
    b.plen = strlen(prefix);
    build_graph(&b, net);

    const int64_t in_dims[3] = {net->cfg.in_channels, image_size, image_size}, out_dims[1] = {net->out_dim};
    Onnx__ValueInfoProto *in = tensor_value(&b, "input", 3, in_dims);
    Onnx__ValueInfoProto *out = tensor_value(&b, "features", 1, out_dims);
    Onnx__GraphProto g;
    onnx__graph_proto__init(&g);
    g.name = str(&b, "byol_%s_encoder", arch_name(net->cfg.arch));
    g.n_node = b.n_nodes;
    g.node = b.nodes;
    g.n_initializer = b.n_inits;
    g.initializer = b.inits;
    g.n_input = 1;
    g.input = &in;
    g.n_output = 1;
    g.output = &out;

    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = ONNX_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};

    Onnx__StringStringEntryProto *props = take(&b, (size_t)n_meta * sizeof *props);
    Onnx__StringStringEntryProto **pprops = take(&b, (size_t)n_meta * sizeof *pprops);
    for (int i = 0; i < n_meta; i++) {
        onnx__string_string_entry_proto__init(&props[i]);
        props[i].key = meta[i].key;
        props[i].value = meta[i].value;
        pprops[i] = &props[i];
    }

    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    m.has_ir_version = 1;
    m.ir_version = ONNX_IR_VERSION;
    m.n_opset_import = 1;
    m.opset_import = opsets;
    m.producer_name = "byol.c";
    m.doc_string = "BYOL encoder exported by byol.c. input: float32 NCHW, x = (pixel / 255 - mean) / std with "
                   "mean and std per channel from metadata_props; features: the globally average-pooled "
                   "encoder output (byol embed's features).";
    m.graph = &g;
    m.n_metadata_props = (size_t)n_meta;
    m.metadata_props = pprops;

    int rc = 0;
    /* protobuf's 2 GiB message limit: ONNX readers refuse anything larger (external data
     * would be the way, not worth it for an encoder) */
    const size_t size = onnx__model_proto__get_packed_size(&m);
    if (size > INT32_MAX) {
        rc = err_set(e, "%s: the model needs %.2f GiB, over protobuf's 2 GiB limit for one ONNX file", path,
                     size / 1073741824.0);
    } else {
        AtomicFile af;
        rc = atomic_open(&af, path, e);
        if (rc == 0) {
            FileSink sink = {{sink_append}, &af, e, 0};
            const size_t wrote = onnx__model_proto__pack_to_buffer(&m, &sink.base);
            if (sink.failed) rc = -1; /* atomic_write removed the temporary and said why */
            else if (wrote != size) {
                atomic_abort(&af);
                rc = err_set(e, "%s: packed %zu bytes of the %zu expected", path, wrote, size);
            } else rc = atomic_commit(&af, e);
        }
    }
    for (size_t i = 0; i < b.n_owned; i++) xfree(b.owned[i]);
    free(b.owned), free(b.nodes), free(b.inits);
    return rc;
}
