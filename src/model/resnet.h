/* ResNet encoders with torchvision's structure and tensor names (resnet18/34: BasicBlock,
 * resnet50: Bottleneck with the stride on the 3x3 conv, "v1.5"), a base width w (stage widths
 * w, 2w, 4w, 8w), a CIFAR stem (3x3 stride 1, no max-pool) or the ImageNet stem (7x7 stride 2,
 * 3x3 max-pool stride 2), global average pooling and no classifier.
 *
 * Layer descriptors hold offsets into a ParamStore (see store.h), so one ResNet describes the
 * online and the target encoder alike: pass whichever network's params/buffers. */
#ifndef BYOL_RESNET_H
#define BYOL_RESNET_H

#include <stddef.h>
#include <stdint.h>

#include "../backend/backend.h"
#include "../core/arena.h"
#include "store.h"

typedef enum { ARCH_RESNET18, ARCH_RESNET34, ARCH_RESNET50 } Arch;
typedef enum { STEM_CIFAR, STEM_IMAGENET } Stem;

typedef struct {
    Arch arch;
    int width;       /* base width (64 in torchvision) */
    Stem stem;
    int in_channels; /* 1 or 3 */
} EncoderConfig;

const char *arch_name(Arch a);
int arch_parse(const char *s, Arch *out);
const char *stem_name(Stem s);
int stem_parse(const char *s, Stem *out);

/* PyTorch's BatchNorm defaults, used by every BN layer of the model. */
#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

typedef struct {
    size_t weight; /* offset (params) of the OHWI weight */
    int cin, cout, k, stride, pad;
} Conv;

typedef struct {
    size_t gamma, beta; /* params */
    size_t mean, var;   /* buffers */
    int c;
} BatchNorm;

typedef struct {
    Conv conv;
    BatchNorm bn;
} ConvBN;

enum { RESNET_MAX_BLOCKS = 64, BLOCK_MAX_UNITS = 3 };

typedef struct {
    ConvBN unit[BLOCK_MAX_UNITS]; /* conv1/bn1, conv2/bn2[, conv3/bn3] */
    int n_units;
    int has_down;
    ConvBN down; /* downsample.0 / downsample.1 */
} Block;

typedef struct {
    EncoderConfig cfg;
    ConvBN stem;
    Block blocks[RESNET_MAX_BLOCKS];
    int n_blocks;
    int out_dim;
    /* Where the encoder's tensors end in its store's params and buffers regions (it is built
     * first, from offset 0): the floats a copy of the encoder alone needs. */
    size_t param_floats, buffer_floats;
} ResNet;

/* Registers a batch norm's tensors, `prefix``name`.{weight,bias,running_mean,running_var}. */
BatchNorm batchnorm_add(ParamStore *s, const char *prefix, const char *name, int c);

/* Registers the encoder's tensors under `prefix` (e.g. "online.encoder.") and fills `net`. */
void resnet_build(ResNet *net, const EncoderConfig *cfg, ParamStore *store, const char *prefix);

/* Activations one forward keeps for its backward. */
typedef struct {
    float *pre, *post;     /* conv output (BN input); BN output after ReLU / residual */
    float *mean, *invstd;  /* BN batch statistics */
    int H, W;              /* output spatial size */
} UnitActs;

/* Told during a backward, unit by unit from the last parameters to the first, the offset from
 * which the gradient buffer is final (a data-parallel step starts all-reducing it). */
typedef struct {
    void (*ready)(void *ctx, size_t from);
    void *ctx;
} GradHook;

typedef struct {
    int B, H, W;            /* input */
    const Reducer *sync;    /* training BN over the global batch of a data-parallel run, or NULL */
    GradHook hook;          /* called during backward when set */
    UnitActs stem;
    float *pooled;          /* max-pool output (ImageNet stem) */
    int32_t *argmax;
    int pool_H, pool_W;
    UnitActs units[RESNET_MAX_BLOCKS][BLOCK_MAX_UNITS + 1]; /* [BLOCK_MAX_UNITS] = downsample */
    float *features;        /* [B, out_dim] */
    size_t max_act;         /* largest activation (floats): size of each backward buffer */
    size_t max_scratch;     /* bytes of kernel scratch (im2col tiles, BN partial sums) */
} ResNetActs;

/* Lays out activations for a batch of B images of HxW in the arena (measuring when the arena
 * has no base yet), and has the backend choose each convolution's kernels: for forward and
 * backward when `train`, else for forward only. */
void resnet_plan(ResNetActs *a, const ResNet *net, int B, int H, int W, int train, Arena *arena,
                 const Backend *be);

/* Forward of `x` ([B, H, W, Cin], NHWC). train: BN uses batch statistics and updates the
 * running ones in `buffers`; otherwise BN uses the running statistics. */
void resnet_forward(const Backend *be, const ResNet *net, const float *params, float *buffers,
                    ResNetActs *a, const float *x, int train, void *scratch);

/* Backward from d(features); accumulates parameter gradients into `grads`. g0..g2 are three
 * buffers of a->max_act floats; g0 may be overwritten by the caller's d(features) copy. */
void resnet_backward(const Backend *be, const ResNet *net, const float *params, float *grads,
                     const ResNetActs *a, const float *x, const float *dfeatures, float *g[3],
                     void *scratch);

#endif
