/* Layers: each a forward/backward pair of plain functions, outputs first, shapes in the signature.
 *
 * Conventions shared by every layer:
 *  - Activations are float32 NHWC ([batch, height, width, channels]); a 2-D activation is
 *    [rows, channels]. NHWC makes a convolution one GEMM over the whole batch with output
 *    already in NHWC, a 1x1 stride-1 convolution a GEMM with no copying at all, and batch-norm
 *    statistics contiguous per row.
 *  - Convolution weights are stored OHWI ([out, kh, kw, in]); PyTorch's OIHW is converted only
 *    at file boundaries (src/io/state.c). Linear weights are PyTorch's [out, in].
 *  - Backward functions overwrite activation gradients (din) and ACCUMULATE parameter gradients
 *    (dweight += ...), because both BYOL views add into the same gradient buffer.
 *  - Each layer has a naive `_ref` version (direct loops, double accumulation) kept for tests
 *    and a `_cpu` version (GEMM, OpenMP) used for training. They live side by side in one file.
 *  - Reductions are split over fixed chunks, never over "however many threads there are", so
 *    results are identical whatever --threads is. */
#ifndef BYOL_NN_H
#define BYOL_NN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, H, W, Cin;   /* input */
    int Cout, K, stride, pad;
    int Ho, Wo;         /* output, from conv_shape() */
} ConvShape;

ConvShape conv_shape(int B, int H, int W, int Cin, int Cout, int K, int stride, int pad);

/* The CPU convolution runs, per pass, the kernel the planner chose (src/nn/conv_plan.h):
 * conv2d_plan_cpu chooses it for the passes given (a set of 1 << CONV_PASS_*) and returns the
 * scratch floats the shape's kernels need; conv2d_scratch_floats plans all three passes.
 * conv2d_plan_ref is the reference kernels' (no choice, no scratch). */
size_t conv2d_plan_cpu(const ConvShape *s, unsigned passes);
size_t conv2d_plan_ref(const ConvShape *s, unsigned passes);
size_t conv2d_scratch_floats(const ConvShape *s);
void conv2d_forward_cpu(float *out, const float *in, const float *weight, const ConvShape *s,
                        float *scratch);
/* Backward is two kernels: the weight gradient (ACCUMULATED into dweight) and the input
 * gradient (overwrites din; skipped for the first layer, whose input needs none). */
void conv2d_backward_weight_cpu(float *dweight, const float *dout, const float *in,
                                const ConvShape *s, float *scratch);
void conv2d_backward_data_cpu(float *din, const float *dout, const float *weight,
                              const ConvShape *s, float *scratch);
void conv2d_forward_ref(float *out, const float *in, const float *weight, const ConvShape *s,
                        float *scratch);
void conv2d_backward_weight_ref(float *dweight, const float *dout, const float *in,
                                const ConvShape *s, float *scratch);
void conv2d_backward_data_ref(float *din, const float *dout, const float *weight,
                              const ConvShape *s, float *scratch);

/* 3x3 stride-1 pad-1 convolution by Winograd F(2x2, 3x3) (src/nn/winograd.c): 2.25x fewer
 * multiplications than direct convolution. conv2d_*_cpu use it where winograd_applies() and
 * the channels are wide enough to pay for the transforms; exposed for tests. */
int winograd_applies(const ConvShape *s);
/* The im2col+GEMM kernels alone (what conv2d_*_cpu run where Winograd does not apply). */
size_t conv2d_im2col_scratch_floats(const ConvShape *s);
void conv2d_forward_im2col(float *out, const float *in, const float *weight, const ConvShape *s,
                           float *scratch);
void conv2d_backward_weight_im2col(float *dweight, const float *dout, const float *in,
                                   const ConvShape *s, float *scratch);
void conv2d_backward_data_im2col(float *din, const float *dout, const float *weight,
                                 const ConvShape *s, float *scratch);
size_t winograd_scratch_floats(const ConvShape *s);
void winograd_forward(float *out, const float *in, const float *weight, const ConvShape *s,
                      float *scratch);
void winograd_backward_data(float *din, const float *dout, const float *weight,
                            const ConvShape *s, float *scratch);
void winograd_backward_weight(float *dweight, const float *dout, const float *in,
                              const ConvShape *s, float *scratch);

/* Sums across the processes of a data-parallel run (src/dist): batch norm calls it on its
 * per-channel sums so that statistics cover the global batch (synchronized batch norm). The
 * kernels append their row count to the sums they send, so the global row count comes back
 * with them and shards may differ in size. NULL everywhere means this process's batch alone. */
typedef struct Reducer {
    void (*sum)(const struct Reducer *r, double *v, int n);
    const void *ctx;
} Reducer;

/* Direct convolution for narrow layers (src/nn/conv_direct.c): register-blocked over output
 * pixels and 16-channel vectors of output channels, one zero-padded image per thread in cache.
 * Applies where the vector channels are a multiple of 16 (Cout; Cin for the input gradient);
 * conv2d_*_cpu use it where it is also preferred. */
enum { CONV_PASS_FORWARD, CONV_PASS_DATA, CONV_PASS_WEIGHT };
/* Sets of passes (conv2d_plan): bit 1 << CONV_PASS_*. */
enum {
    CONV_PASSES_FORWARD = 1 << CONV_PASS_FORWARD,
    CONV_PASSES_DATA = 1 << CONV_PASS_DATA,
    CONV_PASSES_WEIGHT = 1 << CONV_PASS_WEIGHT,
    CONV_PASSES_ALL = 7,
};
int direct_conv_applies(const ConvShape *s, int pass);
/* Floats per vector of the direct kernels in this build (16 AVX-512, 8 AVX2, 4 otherwise): the
 * channel counts they take are multiples of it. */
int direct_conv_lanes(void);
/* The vector ISA whose direct kernels run ("avx512", "avx2", "sse" or "portable"): the widest
 * this CPU supports among those built in, or BYOL_DIRECT_ISA's. direct_conv_isas lists those
 * built in; direct_conv_use_isa switches to one (tests), -1 when not built or not supported. */
const char *direct_conv_isa(void);
const char *direct_conv_isas(void);
int direct_conv_use_isa(const char *name);
int direct_conv_preferred(const ConvShape *s, int pass);
size_t direct_conv_scratch_floats(const ConvShape *s, int pass);
void direct_conv_forward(float *out, const float *in, const float *weight, const ConvShape *s,
                         float *scratch);
void direct_conv_backward_data(float *din, const float *dout, const float *weight,
                               const ConvShape *s, float *scratch);
void direct_conv_backward_weight(float *dweight, const float *dout, const float *in,
                                 const ConvShape *s, float *scratch);

/* Batch norm over [M rows, C channels] (M = N*H*W for 2-D maps, M = N for vectors).
 * Training: normalizes with the batch mean and biased variance, saves mean and 1/sqrt(var+eps)
 * for backward, and updates running_mean/var with `momentum` (running var unbiased), exactly as
 * torch.nn.BatchNorm{1,2}d in training mode. Evaluation: uses the running statistics.
 * Forward fuses what follows a batch norm in a ResNet: out = relu?(bn(in) + residual), with
 * residual NULL for none and relu 0 or 1 (out may alias residual). Backward takes the output of
 * that ReLU as relu_out (NULL: no ReLU) and masks dout by it, so the ReLU's backward needs no
 * pass of its own. In training, `sync` (NULL: none) makes the statistics those of the global
 * batch of a data-parallel run, M being this process's rows. `work` holds
 * batchnorm_work_doubles(M, C) doubles of per-channel sums. */
size_t batchnorm_work_doubles(int M, int C);
void batchnorm_forward_train_cpu(float *out, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, const float *residual,
                                 int relu, int M, int C, float momentum, float eps,
                                 const Reducer *sync, double *work);
void batchnorm_forward_eval_cpu(float *out, const float *in, const float *gamma,
                                const float *beta, const float *running_mean,
                                const float *running_var, const float *residual, int relu, int M,
                                int C, float eps, double *work);
/* din may alias dout (computed in place). */
void batchnorm_backward_cpu(float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *relu_out, const float *in, const float *save_mean,
                            const float *save_invstd, const float *gamma, int M, int C,
                            const Reducer *sync, double *work);
/* Evaluation-mode backward: the running statistics are constants, so dx = dy*gamma/sqrt(var+eps)
 * (what fine-tuning through a frozen-statistics encoder needs). Accumulates dgamma, dbeta. */
void batchnorm_backward_eval_cpu(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *gamma, const float *running_mean,
                                 const float *running_var, int M, int C, float eps, double *work);
void batchnorm_backward_eval_ref(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *gamma, const float *running_mean,
                                 const float *running_var, int M, int C, float eps, double *work);
void batchnorm_forward_train_ref(float *out, float *save_mean, float *save_invstd,
                                 float *running_mean, float *running_var, const float *in,
                                 const float *gamma, const float *beta, const float *residual,
                                 int relu, int M, int C, float momentum, float eps,
                                 const Reducer *sync, double *work);
void batchnorm_forward_eval_ref(float *out, const float *in, const float *gamma,
                                const float *beta, const float *running_mean,
                                const float *running_var, const float *residual, int relu, int M,
                                int C, float eps, double *work);
void batchnorm_backward_ref(float *din, float *dgamma, float *dbeta, const float *dout,
                            const float *relu_out, const float *in, const float *save_mean,
                            const float *save_invstd, const float *gamma, int M, int C,
                            const Reducer *sync, double *work);

/* ReLU (NaN passes through, as in PyTorch); backward masks by the forward OUTPUT, so the input
 * need not be kept. In-place (out == in, din == dout) is allowed. */
void relu_forward_cpu(float *out, const float *in, size_t n);
void relu_backward_cpu(float *din, const float *dout, const float *out, size_t n);
void relu_forward_ref(float *out, const float *in, size_t n);
void relu_backward_ref(float *din, const float *dout, const float *out, size_t n);

/* Residual add: out = a + b (out may alias a or b). Its backward hands the same gradient to
 * both inputs, so it is an accumulate: dst += src. */
void add_forward_cpu(float *out, const float *a, const float *b, size_t n);
void add_forward_ref(float *out, const float *a, const float *b, size_t n);

typedef struct {
    int B, H, W, C, K, stride, pad, Ho, Wo;
} PoolShape;
PoolShape pool_shape(int B, int H, int W, int C, int K, int stride, int pad);

/* Max pool; argmax holds, per output element, the input position (h*W+w) of the maximum, the
 * first one in window order on ties (PyTorch's rule), so backward routes gradients the same. */
void maxpool2d_forward_cpu(float *out, int32_t *argmax, const float *in, const PoolShape *s);
void maxpool2d_backward_cpu(float *din, const float *dout, const int32_t *argmax,
                            const PoolShape *s);
void maxpool2d_forward_ref(float *out, int32_t *argmax, const float *in, const PoolShape *s);
void maxpool2d_backward_ref(float *din, const float *dout, const int32_t *argmax,
                            const PoolShape *s);

/* Global average pool [B, HW, C] -> [B, C]. */
void avgpool_forward_cpu(float *out, const float *in, int B, int HW, int C);
void avgpool_backward_cpu(float *din, const float *dout, int B, int HW, int C);
void avgpool_forward_ref(float *out, const float *in, int B, int HW, int C);
void avgpool_backward_ref(float *din, const float *dout, int B, int HW, int C);

/* Linear: out[B, Out] = in[B, In] * weight[Out, In]^T + bias. din may be NULL; so may bias and
 * dbias (a layer without bias). */
void linear_forward_cpu(float *out, const float *in, const float *weight, const float *bias,
                        int B, int In, int Out);
void linear_backward_cpu(float *din, float *dweight, float *dbias, const float *dout,
                         const float *in, const float *weight, int B, int In, int Out);
void linear_forward_ref(float *out, const float *in, const float *weight, const float *bias,
                        int B, int In, int Out);
void linear_backward_ref(float *din, float *dweight, float *dbias, const float *dout,
                         const float *in, const float *weight, int B, int In, int Out);

/* BYOL regression loss: mean over rows of 2 - 2*cos(p_b, z_b). Backward writes
 * dp = dloss * d(loss)/dp; z receives no gradient (it is the target). */
float cosine_loss_forward_cpu(const float *p, const float *z, int B, int D);
void cosine_loss_backward_cpu(float *dp, const float *p, const float *z, int B, int D,
                              float dloss);
float cosine_loss_forward_ref(const float *p, const float *z, int B, int D);
void cosine_loss_backward_ref(float *dp, const float *p, const float *z, int B, int D,
                              float dloss);

/* VICReg's variance hinge and covariance penalty of z [B, D] (B >= 2), weighted:
 * returns w_var * v + w_cov * c (src/nn/loss.c says which) and ADDS scale times its gradient
 * to dz. scratch: var_cov_scratch_floats(B, D) floats (the reference needs none). */
double var_cov_loss_cpu(float *dz, const float *z, int B, int D, float w_var, float w_cov, float scale,
                        float *scratch);
double var_cov_loss_ref(float *dz, const float *z, int B, int D, float w_var, float w_cov, float scale,
                        float *scratch);
size_t var_cov_scratch_floats(int B, int D);

/* DINO's head and loss (src/nn/dino.c). */
/* GELU, the exact (erf) form of nn.GELU(): out = x Phi(x); din = dout (Phi(x) + x phi(x)). */
void gelu_forward_cpu(float *out, const float *in, size_t n);
void gelu_backward_cpu(float *din, const float *dout, const float *in, size_t n);
void gelu_forward_ref(float *out, const float *in, size_t n);
void gelu_backward_ref(float *din, const float *dout, const float *in, size_t n);
/* Each row divided by its l2 norm clamped below at eps: F.normalize(x, dim=1, eps) (eps 1e-12),
 * and with eps 0 weight normalization's v / |v| (gain 1). norms[r] = max(|x_r|, eps). Backward:
 * din = (dout - out <dout, out>) / norm, or dout / eps where the clamp held. */
void l2norm_rows_forward_cpu(float *out, float *norms, const float *in, int rows, int cols, float eps);
void l2norm_rows_backward_cpu(float *din, const float *dout, const float *out, const float *norms, int rows,
                              int cols, float eps);
void l2norm_rows_forward_ref(float *out, float *norms, const float *in, int rows, int cols, float eps);
void l2norm_rows_backward_ref(float *din, const float *dout, const float *out, const float *norms, int rows,
                              int cols, float eps);
/* DINO's teacher: q = softmax((t - center) / temp) per row of [rows, K]. */
void dino_teacher_softmax_cpu(float *q, const float *t, const float *center, int rows, int K, float temp);
void dino_teacher_softmax_ref(float *q, const float *t, const float *center, int rows, int K, float temp);
/* DINO's cross-entropy of the student against the teacher's q: returns the mean over rows of
 * -sum_k q log softmax(s / temp); writes ds = dloss * its gradient, and *entropy = the mean
 * entropy of q (the teacher's, a collapse monitor: 0 for one-hot rows, ln K for uniform). */
float dino_student_loss_cpu(float *ds, const float *s, const float *q, int rows, int K, float temp,
                            float dloss, double *entropy);
float dino_student_loss_ref(float *ds, const float *s, const float *q, int rows, int K, float temp,
                            float dloss, double *entropy);
/* center <- momentum * center + (1 - momentum) * the mean row of t [rows, K], the mean taken
 * over every rank's rows when sync is set. */
void dino_center_update_cpu(float *center, const float *t, int rows, int K, float momentum, const Reducer *sync);
void dino_center_update_ref(float *center, const float *t, int rows, int K, float momentum, const Reducer *sync);

/* Layout change for inputs, which arrive as PyTorch's NCHW. */
void nchw_to_nhwc_cpu(float *out, const float *in, int B, int C, int H, int W);
void nchw_to_nhwc_ref(float *out, const float *in, int B, int C, int H, int W);
void nhwc_to_nchw_ref(float *out, const float *in, int B, int C, int H, int W);

void fill_zero_cpu(float *x, size_t n);
void fill_zero_ref(float *x, size_t n);
/* How many of x's n values are NaN or infinite (the training step's guard). */
size_t count_nonfinite_cpu(const float *x, size_t n);
size_t count_nonfinite_ref(const float *x, size_t n);

#endif
