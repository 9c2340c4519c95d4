#include "state.h"

#include <stdio.h>
#include <string.h>

static void ohwi_permute(const TensorSpec *t, float *dst, const float *src, int to_storage) {
    const int64_t O = t->shape[0], I = t->shape[1], KH = t->shape[2], KW = t->shape[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t h = 0; h < KH; h++)
                for (int64_t w = 0; w < KW; w++) {
                    size_t oihw = ((o * I + i) * KH + h) * KW + w, ohwi = ((o * KH + h) * KW + w) * I + i;
                    if (to_storage)
                        dst[ohwi] = src[oihw];
                    else
                        dst[oihw] = src[ohwi];
                }
}

void tensor_to_storage(const TensorSpec *t, float *dst, const float *torch_layout) {
    if (t->layout == LAYOUT_OHWI)
        ohwi_permute(t, dst, torch_layout, 1);
    else
        memcpy(dst, torch_layout, t->numel * sizeof(float));
}

void tensor_to_torch(const TensorSpec *t, float *dst, const float *storage) {
    if (t->layout == LAYOUT_OHWI)
        ohwi_permute(t, dst, storage, 0);
    else
        memcpy(dst, storage, t->numel * sizeof(float));
}

static int load_tensor(const Safetensors *st, const TensorSpec *t, const char *key, float *dst,
                       float *tmp, int optional, Err *e) {
    const StEntry *entry = st_find(st, key);
    if (!entry) {
        if (optional) {
            memset(dst, 0, t->numel * sizeof(float));
            return 0;
        }
        return err_set(e, "%s: missing tensor %s (was the file written for this model? check "
                          "--arch/--width/--stem/--in-channels and head sizes)", st->path, key);
    }
    if (st_expect_f32(st, entry, t->ndim, t->shape, e)) return -1;
    st_read_f32(st, entry, tmp);
    tensor_to_storage(t, dst, tmp);
    return 0;
}

static size_t largest_tensor(const ParamStore *s) {
    size_t n = 1;
    for (int i = 0; i < s->n_specs; i++) n = s->specs[i].numel > n ? s->specs[i].numel : n;
    return n;
}

int state_load_from(Byol *m, const Safetensors *st, Err *e) {
    float *tmp = xmalloc(largest_tensor(&m->online) * sizeof(float), "state loading");
    int rc = 0;
    const ParamStore *stores[2] = {&m->online, &m->target};
    for (int k = 0; k < 2 && !rc; k++)
        for (int i = 0; i < stores[k]->n_specs && !rc; i++) {
            const TensorSpec *t = &stores[k]->specs[i];
            rc = load_tensor(st, t, t->name, store_data(stores[k], t), tmp, 0, e);
        }
    for (int i = 0; i < m->online.n_specs && !rc; i++) {
        const TensorSpec *t = &m->online.specs[i];
        if (t->role != ROLE_PARAM) continue;
        char key[TENSOR_NAME_LEN + 16];
        snprintf(key, sizeof key, "momentum.%s", t->name);
        rc = load_tensor(st, t, key, m->online.momentum + t->offset, tmp, 1, e);
        snprintf(key, sizeof key, "exp_avg_sq.%s", t->name);
        if (!rc) rc = load_tensor(st, t, key, m->online.second + t->offset, tmp, 1, e);
    }
    xfree(tmp);
    return rc;
}

/* Blocks of a stage in the file: layer<stage>.<i>.conv1.weight for i = 0, 1, ... */
static int stage_blocks(const Safetensors *st, const char *prefix, int stage) {
    int n = 0;
    for (;; n++) {
        char key[128];
        snprintf(key, sizeof key, "%slayer%d.%d.conv1.weight", prefix, stage, n);
        if (!st_find(st, key)) return n;
    }
}

int state_encoder_config(const Safetensors *st, EncoderConfig *c, const char **prefix, Err *e) {
    const StEntry *conv1 = st_find(st, "conv1.weight");
    *prefix = "";
    if (!conv1 && (conv1 = st_find(st, "online.encoder.conv1.weight"))) *prefix = "online.encoder.";
    if (!conv1)
        return err_set(e, "%s: no conv1.weight: not a ResNet encoder's weights (byol export's file, a byol "
                          "checkpoint, or tools/pth2safetensors.py's from a torchvision state_dict)", st->path);
    if (conv1->ndim != 4 || conv1->shape[2] != conv1->shape[3] || (conv1->shape[2] != 3 && conv1->shape[2] != 7))
        return err_set(e, "%s: conv1.weight has %d dimensions of which the kernel is %lldx%lld: neither stem "
                          "(cifar 3x3, imagenet 7x7)", st->path, conv1->ndim,
                       conv1->ndim == 4 ? (long long)conv1->shape[2] : 0LL, conv1->ndim == 4 ? (long long)conv1->shape[3] : 0LL);
    c->width = (int)conv1->shape[0];
    c->in_channels = (int)conv1->shape[1];
    c->stem = conv1->shape[2] == 7 ? STEM_IMAGENET : STEM_CIFAR;
    char key[128];
    snprintf(key, sizeof key, "%slayer1.0.conv3.weight", *prefix);
    const int bottleneck = st_find(st, key) != NULL;
    int blocks[4];
    for (int i = 0; i < 4; i++) blocks[i] = stage_blocks(st, *prefix, i + 1);
    const int b18[4] = {2, 2, 2, 2}, b34[4] = {3, 4, 6, 3};
    if (!bottleneck && memcmp(blocks, b18, sizeof blocks) == 0) c->arch = ARCH_RESNET18;
    else if (!bottleneck && memcmp(blocks, b34, sizeof blocks) == 0) c->arch = ARCH_RESNET34;
    else if (bottleneck && memcmp(blocks, b34, sizeof blocks) == 0) c->arch = ARCH_RESNET50;
    else
        return err_set(e, "%s: a ResNet of %s blocks %d, %d, %d, %d: not resnet18, resnet34 or resnet50", st->path,
                       bottleneck ? "bottleneck" : "basic", blocks[0], blocks[1], blocks[2], blocks[3]);
    return 0;
}

int state_load_encoder(Byol *m, const Safetensors *st, const char *prefix, Err *e) {
    static const char ENC[] = "online.encoder.";
    float *tmp = xmalloc(largest_tensor(&m->online) * sizeof(float), "encoder loading");
    int rc = 0;
    for (int i = 0; i < m->online.n_specs && !rc; i++) {
        const TensorSpec *t = &m->online.specs[i];
        if (strncmp(t->name, ENC, sizeof ENC - 1) != 0) continue;
        char key[TENSOR_NAME_LEN + 16];
        snprintf(key, sizeof key, "%s%s", prefix, t->name + sizeof ENC - 1);
        rc = load_tensor(st, t, key, store_data(&m->online, t), tmp, 0, e);
    }
    xfree(tmp);
    if (rc) return -1;
    byol_target_from_online(m); /* the target starts as the online network, its encoder with the rest */
    return 0;
}

int state_load(Byol *m, const char *path, Err *e) {
    Safetensors st;
    if (st_open(&st, path, e)) return -1;
    int rc = state_load_from(m, &st, e);
    st_close(&st);
    return rc;
}

/* Whether AdamW has run: its second moments are saved only then (a LARS or SGD run's checkpoint
 * has none, and a missing one loads as zero). */
static int has_second_moment(const ParamStore *on) {
    for (size_t i = 0; i < on->n_params; i++)
        if (on->second[i] != 0.0f) return 1;
    return 0;
}

int state_save(const Byol *m, const char *path, const StMeta *meta, int n_meta, Err *e) {
    const ParamStore *on = &m->online, *tg = &m->target;
    const int second = has_second_moment(on);
    int n_momentum = 0;
    for (int i = 0; i < on->n_specs; i++) n_momentum += on->specs[i].role == ROLE_PARAM;
    int n = on->n_specs + tg->n_specs + n_momentum * (second ? 2 : 1);
    size_t floats = on->n_params * (second ? 3 : 2) + on->n_buffers + tg->n_params + tg->n_buffers;
    StTensorOut *out = xcalloc(n, sizeof *out, "state saving");
    char(*names)[TENSOR_NAME_LEN + 16] = xcalloc(n, sizeof *names, "state saving");
    float *data = xmalloc(floats * sizeof(float), "state saving"), *cursor = data;
    int k = 0;
    const ParamStore *stores[2] = {on, tg};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < stores[s]->n_specs; i++) {
            const TensorSpec *t = &stores[s]->specs[i];
            tensor_to_torch(t, cursor, store_data(stores[s], t));
            snprintf(names[k], sizeof names[k], "%s", t->name);
            out[k] = (StTensorOut){names[k], t->ndim, t->shape, cursor, 0};
            k++;
            cursor += t->numel;
        }
    for (int i = 0; i < on->n_specs; i++) {
        const TensorSpec *t = &on->specs[i];
        if (t->role != ROLE_PARAM) continue;
        for (int r = 0; r < (second ? 2 : 1); r++) {
            tensor_to_torch(t, cursor, (r ? on->second : on->momentum) + t->offset);
            snprintf(names[k], sizeof names[k], "%s.%s", r ? "exp_avg_sq" : "momentum", t->name);
            out[k] = (StTensorOut){names[k], t->ndim, t->shape, cursor, 0};
            k++;
            cursor += t->numel;
        }
    }
    int rc = st_write(path, out, n, meta, n_meta, e);
    xfree(out);
    xfree(names);
    xfree(data);
    return rc;
}

int state_store_load(ParamStore *s, const Safetensors *st, Err *e) {
    float *tmp = xmalloc(largest_tensor(s) * sizeof(float), "loading");
    int rc = 0;
    for (int i = 0; i < s->n_specs && !rc; i++) {
        const TensorSpec *t = &s->specs[i];
        rc = load_tensor(st, t, t->name, store_data(s, t), tmp, 0, e);
    }
    xfree(tmp);
    return rc;
}

int state_store_save(const ParamStore *s, const char *path, int64_t batches_tracked, const StMeta *meta, int n_meta,
                     Err *e) {
    int n_bn = 0;
    for (int i = 0; i < s->n_specs; i++) n_bn += strstr(s->specs[i].name, "running_var") != NULL;
    const int n = s->n_specs + n_bn;
    StTensorOut *out = xcalloc(n, sizeof *out, "saving");
    char(*names)[TENSOR_NAME_LEN + 32] = xcalloc(n, sizeof *names, "saving");
    float *data = xmalloc((s->n_params + s->n_buffers) * sizeof(float), "saving"), *cursor = data;
    int64_t *tracked = xcalloc(n_bn ? n_bn : 1, sizeof *tracked, "saving");
    int k = 0, kb = 0;
    for (int i = 0; i < s->n_specs; i++) {
        const TensorSpec *t = &s->specs[i];
        tensor_to_torch(t, cursor, store_data(s, t));
        snprintf(names[k], sizeof names[k], "%s", t->name);
        out[k++] = (StTensorOut){names[k - 1], t->ndim, t->shape, cursor, 0};
        cursor += t->numel;
        const char *rv = strstr(t->name, "running_var");
        if (rv) { /* torchvision's BatchNorm2d also carries num_batches_tracked (int64, 0-d): strict loading wants it */
            tracked[kb] = batches_tracked;
            snprintf(names[s->n_specs + kb], sizeof names[0], "%.*snum_batches_tracked", (int)(rv - t->name), t->name);
            out[s->n_specs + kb] = (StTensorOut){names[s->n_specs + kb], 0, NULL, &tracked[kb], 1};
            kb++;
        }
    }
    const int rc = st_write(path, out, n, meta, n_meta, e);
    xfree(out), xfree(names), xfree(data), xfree(tracked);
    return rc;
}
