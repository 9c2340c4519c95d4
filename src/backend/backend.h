/* The backend seam: every kernel the model runs, behind one table.
 *
 * Model code (src/model) calls kernels only through a `const Backend *`, never directly, so a
 * new backend (CUDA) adds a table and leaves the model untouched. Two tables exist now:
 *   backend_cpu  optimized kernels (GEMM through OpenBLAS, OpenMP threads) - what training runs
 *   backend_ref  the naive reference kernels - what tests compare against
 * This is a table of kernels, not of layers: the BYOL graph itself is fixed code in
 * src/model/byol.c. Signatures follow src/nn/nn.h and src/optim/optim.h. */
#ifndef BYOL_BACKEND_H
#define BYOL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../nn/nn.h"
#include "../optim/optim.h"

typedef struct Backend {
    const char *name;
    /* 1: the backend's memory is the host's (cpu, reference, the GPU emulator), so host data
     * may be passed to its kernels directly; 0: device memory, reached through upload. */
    int host_memory;

    /* Memory: zeroed allocations of the backend's memory (which die() with `what` when out),
     * copies inside it, and copies to and from the host. download waits for the work queued
     * before it; sync waits for all of it (before the host reads results written by kernels). */
    void *(*alloc)(size_t bytes, const char *what);
    void (*release)(void *p);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*sync)(void);
    /* GPU backends: 1 runs convolutions and GEMMs on bf16 copies of their operands, accumulating
     * in fp32 (the rest of the step, the master weights, gradients, optimizer state and batch-norm
     * statistics stay fp32); 0 is fp32 throughout. NULL: fp32 only (cpu, reference). */
    void (*set_bf16)(int on);

    /* Chooses the kernels of a convolution shape for the passes given (a set of
     * 1 << CONV_PASS_*; the CPU backend's planner may time them) and returns the scratch
     * floats they need. Called for every shape before its kernels run. */
    size_t (*conv2d_plan)(const ConvShape *s, unsigned passes);
    void (*conv2d_forward)(float *out, const float *in, const float *weight, const ConvShape *s,
                           float *scratch);
    void (*conv2d_backward_weight)(float *dweight, const float *dout, const float *in,
                                   const ConvShape *s, float *scratch);
    void (*conv2d_backward_data)(float *din, const float *dout, const float *weight,
                                 const ConvShape *s, float *scratch);

    size_t (*batchnorm_work_doubles)(int M, int C);
    void (*batchnorm_forward_train)(float *out, float *save_mean, float *save_invstd,
                                    float *running_mean, float *running_var, const float *in,
                                    const float *gamma, const float *beta, const float *residual,
                                    int relu, int M, int C, float momentum, float eps,
                                    const Reducer *sync, double *work);
    void (*batchnorm_forward_eval)(float *out, const float *in, const float *gamma,
                                   const float *beta, const float *running_mean,
                                   const float *running_var, const float *residual, int relu,
                                   int M, int C, float eps, double *work);
    void (*batchnorm_backward)(float *din, float *dgamma, float *dbeta, const float *dout,
                               const float *relu_out, const float *in, const float *save_mean,
                               const float *save_invstd, const float *gamma, int M, int C,
                               const Reducer *sync, double *work);
    void (*batchnorm_backward_eval)(float *din, float *dgamma, float *dbeta, const float *dout,
                                    const float *in, const float *gamma,
                                    const float *running_mean, const float *running_var, int M,
                                    int C, float eps, double *work);

    void (*relu_forward)(float *out, const float *in, size_t n);
    void (*relu_backward)(float *din, const float *dout, const float *out, size_t n);
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);

    void (*maxpool2d_forward)(float *out, int32_t *argmax, const float *in, const PoolShape *s);
    void (*maxpool2d_backward)(float *din, const float *dout, const int32_t *argmax,
                               const PoolShape *s);
    void (*avgpool_forward)(float *out, const float *in, int B, int HW, int C);
    void (*avgpool_backward)(float *din, const float *dout, int B, int HW, int C);

    void (*linear_forward)(float *out, const float *in, const float *weight, const float *bias,
                           int B, int In, int Out);
    void (*linear_backward)(float *din, float *dweight, float *dbias, const float *dout,
                            const float *in, const float *weight, int B, int In, int Out);

    float (*cosine_loss_forward)(const float *p, const float *z, int B, int D);
    void (*cosine_loss_backward)(float *dp, const float *p, const float *z, int B, int D,
                                 float dloss);

    /* VICReg's variance and covariance terms (--var-cov), added into dz; NULL where not built */
    double (*var_cov_loss)(float *dz, const float *z, int B, int D, float w_var, float w_cov, float scale,
                           float *scratch);

    /* DINO's head and loss (src/nn/dino.c) */
    void (*gelu_forward)(float *out, const float *in, size_t n);
    void (*gelu_backward)(float *din, const float *dout, const float *in, size_t n);
    void (*l2norm_rows_forward)(float *out, float *norms, const float *in, int rows, int cols, float eps);
    void (*l2norm_rows_backward)(float *din, const float *dout, const float *out, const float *norms,
                                 int rows, int cols, float eps);
    void (*dino_teacher_softmax)(float *q, const float *t, const float *center, int rows, int K,
                                 float temp);
    float (*dino_student_loss)(float *ds, const float *s, const float *q, int rows, int K, float temp,
                               float dloss, double *entropy);
    void (*dino_center_update)(float *center, const float *t, int rows, int K, float momentum,
                               const Reducer *sync);

    void (*nchw_to_nhwc)(float *out, const float *in, int B, int C, int H, int W);
    void (*fill_zero)(float *x, size_t n);
    size_t (*count_nonfinite)(const float *x, size_t n); /* NaN and +-Inf values */

    void (*lars_update)(float *params, const float *grads, float *momentum,
                        const TensorSpec *specs, int n_specs, const LarsConfig *cfg);
    void (*adamw_update)(float *params, const float *grads, float *m, float *v, const TensorSpec *specs,
                         int n_specs, const LarsConfig *cfg);
    void (*ema_update)(float *target, const float *online, size_t n, float tau);
} Backend;

extern const Backend backend_cpu;
extern const Backend backend_ref;
/* The GPU backend's own kernels (src/backend/gpu_kernels.h) run on the host by the grid
 * emulator of grid.h, with the CPU's GEMM and convolutions in place of cuBLASLt and cuDNN
 * (src/backend/emu/backend_emu.c): what tests check the CUDA backend's kernels with. */
extern const Backend backend_gpu_emu;
#ifdef BYOL_CUDA
/* The CUDA backend (src/backend/cuda/backend_cuda.cu), usable once cuda_backend_open has
 * made GPU `index` current and created its stream and library handles (0, or -1 with e set). */
extern const Backend backend_cuda;
struct Err;
int cuda_backend_open(int index, struct Err *e);
#endif

/* Where and how a command computes: how the convolution kernels are chosen (src/nn/conv_plan.h)
 * and on which device, in which precision (the --plan, --plan-cache, --device and --precision
 * flags; NULL: the default). */
typedef struct {
    const char *mode, *cache;
    const char *device;    /* cpu|cuda[:N] (cpu) */
    const char *precision; /* fp32|bf16 (bf16 on a GPU, fp32 on the CPU) */
} ComputeOptions;

/* The backend of a --device value: "cpu", "cuda" or "cuda:N", and "gpu-emulator" (the CUDA
 * backend's kernels on the CPU, for tests; slow). NULL with the reason in e (this build has no
 * CUDA, no GPU is visible, N is out of range). Opening a CUDA device happens here, once. */
struct Err;
const Backend *backend_for_device(const char *device, struct Err *e);

#endif
