/* NumPy .npy files holding float32 arrays in C order (versions 1.0, 2.0 and 3.0 read; 1.0
 * written). */
#ifndef BYOL_NPY_H
#define BYOL_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

enum { NPY_MAX_NDIM = 8 };

typedef struct {
    int ndim;
    int64_t shape[NPY_MAX_NDIM];
    size_t numel;
    float *data; /* 64-byte aligned copy */
} NpyArray;

int npy_read_f32(const char *path, NpyArray *out, Err *e);
int npy_parse_f32(const uint8_t *buf, size_t size, const char *label, NpyArray *out, Err *e);
void npy_free(NpyArray *a);
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, Err *e);
int npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape, Err *e);

#endif
