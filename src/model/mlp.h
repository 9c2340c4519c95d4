/* The projector and predictor heads: up to MLP_MAX_LAYERS Linear layers, each but the last
 * followed by BatchNorm1d and ReLU, and the last by a BatchNorm1d when `bn_last` (SimSiam's
 * projector), as a PyTorch nn.Sequential: BYOL's Linear-BN-ReLU-Linear has names 0, 1, 3;
 * SimSiam's three-layer projector 0, 1, 3, 4, 6, 7. Without batch norm (an ablation) the layers
 * are Linear-ReLU-Linear, names 0 and 2; DINO's head is Linear-GELU-Linear-GELU-Linear, 0, 2, 4. */
#ifndef BYOL_MLP_H
#define BYOL_MLP_H

#include "../backend/backend.h"
#include "../core/arena.h"
#include "resnet.h"
#include "store.h"

enum { MLP_MAX_LAYERS = 3 };

typedef struct {
    size_t weight, bias; /* params offsets; weight [out, in] */
    int in, out;
} Linear;

typedef struct {
    Linear fc[MLP_MAX_LAYERS];
    BatchNorm bn[MLP_MAX_LAYERS]; /* after fc[i] when has_bn (and for the last, bn_last) */
    int n_layers, has_bn, bn_last;
    int gelu; /* GELU between layers instead of ReLU (DINO's head; its batch norm is optional) */
} Mlp;

typedef struct {
    int B;
    const Reducer *sync; /* training BN over the global batch of a data-parallel run, or NULL */
    GradHook hook;       /* called at the end of backward when set */
    float *h[MLP_MAX_LAYERS]; /* fc[i]'s output (= bn[i]'s input) [B, fc[i].out] */
    float *r[MLP_MAX_LAYERS]; /* after bn[i] and ReLU: the next layer's input; r[last] = out */
    float *g[MLP_MAX_LAYERS]; /* batch norm then GELU: bn[i]'s output, GELU's input */
    float *mean[MLP_MAX_LAYERS], *invstd[MLP_MAX_LAYERS]; /* with batch norm */
    float *out;  /* [B, out] */
    float *dbuf; /* backward: the second of two gradient buffers (dr the first) [B, widest] */
} MlpActs;

/* A head of n_layers (2 or 3) Linear layers: in -> hidden (-> hidden) -> out. bn: batch norm
 * between layers; bn_last: also after the last (needs bn); gelu: GELU instead of ReLU. */
void mlp_build(Mlp *m, int n_layers, int in, int hidden, int out, int bn, int bn_last, int gelu, ParamStore *store,
               const char *prefix);
/* Plans activations; returns the bytes of kernel scratch the head needs. */
size_t mlp_plan(MlpActs *a, const Mlp *m, int B, Arena *arena, const Backend *be);
void mlp_forward(const Backend *be, const Mlp *m, const float *params, float *buffers, MlpActs *a,
                 const float *in, int train, void *scratch);
/* dr: [B, widest layer] buffer; din: [B, in] output (NULL: not needed). */
void mlp_backward(const Backend *be, const Mlp *m, const float *params, float *grads,
                  const MlpActs *a, const float *in, const float *dout, float *dr, float *din,
                  void *scratch);

#endif
