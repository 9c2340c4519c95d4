/* The projector and predictor heads: Linear(in, hidden) -> BatchNorm1d(hidden) -> ReLU ->
 * Linear(hidden, out), with PyTorch nn.Sequential names 0, 1, 3; without batch norm (an
 * ablation), Linear -> ReLU -> Linear, names 0 and 2. */
#ifndef BYOL_MLP_H
#define BYOL_MLP_H

#include "../backend/backend.h"
#include "../core/arena.h"
#include "resnet.h"
#include "store.h"

typedef struct {
    size_t weight, bias; /* params offsets; weight [out, in] */
    int in, out;
} Linear;

typedef struct {
    Linear fc1;
    BatchNorm bn; /* when has_bn */
    Linear fc2;
    int has_bn;
} Mlp;

typedef struct {
    int B;
    const Reducer *sync; /* training BN over the global batch of a data-parallel run, or NULL */
    GradHook hook;       /* called at the end of backward when set */
    float *h;            /* fc1 output = BN input [B, hidden] */
    float *r;            /* ReLU(BN(h)) [B, hidden] */
    float *mean, *invstd; /* with batch norm */
    float *out;          /* [B, out] */
} MlpActs;

void mlp_build(Mlp *m, int in, int hidden, int out, int bn, ParamStore *store, const char *prefix);
/* Plans activations; returns the bytes of kernel scratch the head needs. */
size_t mlp_plan(MlpActs *a, const Mlp *m, int B, Arena *arena, const Backend *be);
void mlp_forward(const Backend *be, const Mlp *m, const float *params, float *buffers, MlpActs *a,
                 const float *in, int train, void *scratch);
/* dr: [B, hidden] buffer; din: [B, in] output (NULL: not needed). */
void mlp_backward(const Backend *be, const Mlp *m, const float *params, float *grads,
                  const MlpActs *a, const float *in, const float *dout, float *dr, float *din,
                  void *scratch);

#endif
