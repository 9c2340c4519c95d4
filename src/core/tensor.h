/* Description of one named tensor inside a network's contiguous buffers. */
#ifndef BYOL_TENSOR_H
#define BYOL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum { TENSOR_MAX_NDIM = 4, TENSOR_NAME_LEN = 112 };

typedef enum {
    ROLE_PARAM,  /* trained: has a gradient and momentum, takes part in EMA and LARS */
    ROLE_BUFFER  /* batch-norm running statistics: updated by forwards only */
} TensorRole;

typedef enum {
    LAYOUT_PLAIN, /* stored exactly as PyTorch's shape */
    LAYOUT_OHWI   /* conv weight: PyTorch shape [O, I, kh, kw], stored [O, kh, kw, I] */
} TensorLayout;

typedef struct {
    char name[TENSOR_NAME_LEN]; /* full key, e.g. "online.encoder.layer1.0.conv1.weight" */
    int ndim;
    int64_t shape[TENSOR_MAX_NDIM]; /* PyTorch's shape */
    size_t numel;
    size_t offset; /* in floats, inside the params region (ROLE_PARAM) or buffers region */
    TensorRole role;
    TensorLayout layout;
} TensorSpec;

#endif
