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
