/* A timing wrapper around a backend, for `byol bench`: the same kernels, each call timed and
 * its floating-point work counted, summed per phase of the BYOL step.
 *
 * The wrapper keeps its inner backend and totals in file-level state (C function pointers carry
 * no closure), so one profiled backend exists at a time; training never uses it. */
#ifndef BYOL_PROFILE_H
#define BYOL_PROFILE_H

#include "backend.h"

typedef enum {
    PHASE_CONV_FORWARD,
    PHASE_CONV_BACKWARD_DATA,
    PHASE_CONV_BACKWARD_WEIGHT,
    PHASE_BATCHNORM,  /* batch norm on feature maps (with its ReLU and residual adds) */
    PHASE_HEADS,      /* projector/predictor: linear layers, batch norm on [batch, C], loss */
    PHASE_OPTIMIZER,  /* LARS + EMA */
    PHASE_OTHER,      /* pooling, layout, zeroing */
    PHASE_COUNT
} Phase;

typedef struct {
    double seconds[PHASE_COUNT];
    double flops[PHASE_COUNT]; /* multiply-adds counted as 2; only GEMM-like work */
} Profile;

extern const char *const PHASE_NAMES[PHASE_COUNT];

/* Starts profiling `inner` into `totals` (zeroed here). `head_rows`: the batch size, so batch
 * norm over [head_rows, C] counts as heads rather than feature maps. Returns the wrapper. */
const Backend *profile_begin(const Backend *inner, Profile *totals, int head_rows);
/* The batch size changed (shards of a balanced data-parallel run). */
void profile_head_rows(int head_rows);

#endif
