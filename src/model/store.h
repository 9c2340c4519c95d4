/* A network's tensors in one allocation: [params | grads | momentum | second | buffers] (second:
 * AdamW's second moment; grads, momentum and second only in a trained network).
 *
 * Every named tensor is a TensorSpec with an offset into the params region (trained tensors) or
 * the buffers region (batch-norm running statistics). Gradients and momentum mirror the params
 * region offset for offset, so the optimizer, the EMA, a gradient all-reduce or a device copy
 * is one pass over one contiguous range, and layer descriptors (src/model/resnet.h) hold
 * offsets that are valid in all of them. */
#ifndef BYOL_STORE_H
#define BYOL_STORE_H

#include <stddef.h>

#include "../core/tensor.h"

typedef struct {
    TensorSpec *specs;
    int n_specs, cap_specs;
    size_t n_params, n_buffers; /* floats in each region */
    float *mem;                 /* the one allocation */
    const struct Backend *home; /* whose memory mem is (store_move); NULL: the host's */
    float *params, *grads, *momentum, *second, *buffers; /* grads/momentum/second NULL when not trained */
} ParamStore;

void store_init(ParamStore *s);
void store_free(ParamStore *s);

/* Registers `prefix``name` with a PyTorch shape; returns its offset in its region. */
size_t store_add(ParamStore *s, const char *prefix, const char *name, TensorRole role,
                 TensorLayout layout, int ndim, const int64_t *shape);

/* Allocates the regions (zeroed) in host memory. `trained` adds the grads, momentum and second
 * moment regions. */
void store_alloc(ParamStore *s, int trained);
/* Moves the allocation, as it is, into backend be's memory (one copy; nothing for a backend that
 * computes in host memory). A CUDA backend's memory is managed memory: the host may still read
 * and write it, after be->sync(). */
struct Backend;
void store_move(ParamStore *s, const struct Backend *be);

/* A copy of the first n_specs tensors of src under another name prefix (`from` replaced by
 * `to`), with the same offsets: the target network mirrors the online one this way. */
void store_init_mirror(ParamStore *dst, const ParamStore *src, int n_specs, const char *from,
                       const char *to);

int store_find(const ParamStore *s, const char *name); /* index or -1 */
float *store_data(const ParamStore *s, const TensorSpec *t); /* params or buffers pointer */

#endif
