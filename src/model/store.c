#include "store.h"

#include <stdio.h>
#include <string.h>

#include "../backend/backend.h"
#include "../core/common.h"

void store_init(ParamStore *s) { memset(s, 0, sizeof *s); }

void store_free(ParamStore *s) {
    xfree(s->specs);
    if (s->home)
        s->home->release(s->mem);
    else
        xfree(s->mem);
    store_init(s);
}

size_t store_add(ParamStore *s, const char *prefix, const char *name, TensorRole role,
                 TensorLayout layout, int ndim, const int64_t *shape) {
    if (s->mem) die("internal: tensor %s%s added after allocation", prefix, name);
    if (s->n_specs == s->cap_specs) {
        int cap = s->cap_specs ? 2 * s->cap_specs : 64;
        TensorSpec *grown = xcalloc(cap, sizeof *grown, "tensor table");
        if (s->specs) memcpy(grown, s->specs, sizeof *grown * s->n_specs);
        xfree(s->specs);
        s->specs = grown;
        s->cap_specs = cap;
    }
    TensorSpec *t = &s->specs[s->n_specs++];
    memset(t, 0, sizeof *t);
    if ((size_t)snprintf(t->name, sizeof t->name, "%s%s", prefix, name) >= sizeof t->name)
        die("internal: tensor name too long: %s%s", prefix, name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->role = role;
    t->layout = layout;
    size_t *region = role == ROLE_PARAM ? &s->n_params : &s->n_buffers;
    t->offset = *region;
    *region += t->numel;
    return t->offset;
}

enum { TRAINED_REGIONS = 4 }; /* params, grads, momentum, second */

/* The region pointers of an allocation at s->mem. */
static void store_point(ParamStore *s, int trained) {
    s->params = s->mem;
    s->grads = trained ? s->params + s->n_params : NULL;
    s->momentum = trained ? s->grads + s->n_params : NULL;
    s->second = trained ? s->momentum + s->n_params : NULL;
    s->buffers = s->params + s->n_params * (trained ? TRAINED_REGIONS : 1);
}

void store_alloc(ParamStore *s, int trained) {
    size_t total = s->n_params * (trained ? TRAINED_REGIONS : 1) + s->n_buffers;
    s->mem = xcalloc(total ? total : 1, sizeof(float), "network parameters");
    store_point(s, trained);
}

static size_t store_floats(const ParamStore *s) {
    return s->n_params * (s->grads ? TRAINED_REGIONS : 1) + s->n_buffers;
}

void store_move(ParamStore *s, const Backend *be) {
    if (be->host_memory || s->home == be || !s->mem) return;
    if (s->home) die("internal: store_move between two device backends");
    const size_t bytes = (store_floats(s) ? store_floats(s) : 1) * sizeof(float);
    float *moved = be->alloc(bytes, "network parameters");
    be->upload(moved, s->mem, bytes);
    const int trained = s->grads != NULL;
    xfree(s->mem);
    s->mem = moved;
    s->home = be;
    store_point(s, trained);
}

void store_init_mirror(ParamStore *dst, const ParamStore *src, int n_specs, const char *from,
                       const char *to) {
    store_init(dst);
    size_t flen = strlen(from);
    for (int i = 0; i < n_specs; i++) {
        const TensorSpec *t = &src->specs[i];
        if (strncmp(t->name, from, flen) != 0) die("internal: %s lacks prefix %s", t->name, from);
        size_t off = store_add(dst, to, t->name + flen, t->role, t->layout, t->ndim, t->shape);
        if (off != t->offset) die("internal: mirror of %s has a different offset", t->name);
    }
}

int store_find(const ParamStore *s, const char *name) {
    for (int i = 0; i < s->n_specs; i++)
        if (strcmp(s->specs[i].name, name) == 0) return i;
    return -1;
}

float *store_data(const ParamStore *s, const TensorSpec *t) {
    return (t->role == ROLE_PARAM ? s->params : s->buffers) + t->offset;
}
