/* Our own GPU kernels: batch norm, the fused ReLU and residual, pooling, layout, the loss, the
 * step's guard, LARS and the EMA. Written once in the phase form of grid.h, they compile as CUDA
 * kernels (src/backend/cuda/backend_cuda.cu) and as host functions for the grid emulator
 * (src/backend/emu/backend_emu.c), where `make test` runs them against the reference kernels.
 *
 * Every reduction has a fixed order that depends on the shapes only: partial sums over fixed
 * chunks or fixed thread strides, then a tree in shared memory or one thread summing the
 * partials in order. No atomics, so a run repeats bit for bit. Where a CPU kernel exists, the
 * float operations are the CPU's, in its order (and nvcc builds this file with -fmad=false, so
 * no multiply-add is fused where the C compiler would not fuse it): the emulator and the GPU
 * then compute the same bits, and both stay within rounding of backend_cpu. */
#ifndef BYOL_GPU_KERNELS_H
#define BYOL_GPU_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../nn/nn.h"
#include "grid.h"

#ifdef __CUDACC__
#define HOST_DEVICE_FN static __host__ __device__ __forceinline__
#else
#define HOST_DEVICE_FN static inline
#endif

/* Threads per block of every kernel here (the shared-memory trees are sized for it). */
#define GPU_THREADS 256
/* This thread's element in a 1-D launch of ceil(n / GPU_THREADS) blocks. */
#define GLOBAL_ID ((size_t)BLOCK_X * GPU_THREADS + (size_t)tid)

HOST_DEVICE_FN unsigned blocks_for(size_t n) { return (unsigned)((n + GPU_THREADS - 1) / GPU_THREADS); }

/* Batch-norm row chunks: a function of M only, so the statistics do not depend on the GPU.
 * About 128 rows per chunk keeps a thread's serial sum short and gives C * chunks threads. */
HOST_DEVICE_FN int gpu_bn_chunks(int M) {
    int n = M / 128;
    if (n > 1024) n = 1024;
    return n < 1 ? 1 : n;
}

/* The tree reduction of a block's GPU_THREADS values in shared memory: after it, s[0] holds
 * the sum, added in the same order on every run. */
#define BLOCK_TREE_SUM(s)                                        \
    for (int half_ = GPU_THREADS / 2; half_ > 0; half_ >>= 1) {  \
        PHASE_BEGIN if (tid < half_) s[tid] += s[tid + half_];   \
        PHASE_END                                                \
    }

/* ---- bfloat16: the operands of convolutions and GEMMs under --precision bf16 ----
 * Round to nearest even, as the GPU's conversion instructions and PyTorch do; a NaN stays a
 * (quiet) NaN, and values past bf16's largest become infinities. */
HOST_DEVICE_FN uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

HOST_DEVICE_FN float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

KERNEL(k_to_bf16, uint16_t *out, const float *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = f32_to_bf16(in[i]);
    THREADS_END
}

KERNEL(k_from_bf16, float *out, const uint16_t *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = bf16_to_f32(in[i]);
    THREADS_END
}

/* dst += a bf16 partial (a weight gradient computed in bf16, added to the fp32 one). */
KERNEL(k_accumulate_bf16, float *dst, const uint16_t *src, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) dst[i] += bf16_to_f32(src[i]);
    THREADS_END
}

/* x rounded to bf16 and kept as float (the emulator's stand-in for a bf16 copy). */
KERNEL(k_round_bf16, float *out, const float *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = bf16_to_f32(f32_to_bf16(in[i]));
    THREADS_END
}

/* ---- elementwise ---- */

KERNEL(k_fill, float *x, size_t n, float v) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) x[i] = v;
    THREADS_END
}

KERNEL(k_relu_forward, float *out, const float *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = in[i] < 0.0f ? 0.0f : in[i]; /* NaN passes */
    THREADS_END
}

KERNEL(k_relu_backward, float *din, const float *dout, const float *out, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    THREADS_END
}

KERNEL(k_add, float *out, const float *a, const float *b, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = a[i] + b[i];
    THREADS_END
}

/* One thread per NHWC output element (consecutive threads write consecutive channels). */
KERNEL(k_nchw_to_nhwc, float *out, const float *in, int B, int C, int H, int W) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID, n = (size_t)B * C * H * W;
    if (i < n) {
        int c = (int)(i % C);
        size_t p = i / C; /* b*H*W + h*W + w */
        size_t b = p / ((size_t)H * W), hw = p % ((size_t)H * W);
        out[i] = in[(b * C + c) * H * W + hw];
    }
    THREADS_END
}

/* out[b, o] += bias[o] after the GEMM of a linear layer. */
KERNEL(k_add_bias, float *out, const float *bias, int B, int Out) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)B * Out) out[i] += bias[i % Out];
    THREADS_END
}

/* dbias[o] += sum over rows of dout[., o], in row order (the CPU's float sum). */
KERNEL(k_colsum_accumulate, float *dbias, const float *dout, int B, int Out) {
    THREADS_BEGIN
    int o = BLOCK_X * GPU_THREADS + tid;
    if (o < Out) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(size_t)b * Out + o];
        dbias[o] += s;
    }
    THREADS_END
}

/* ---- pooling ---- */

/* The first maximum in window order wins ties, and a NaN wins (PyTorch's rule, the reference's
 * loop). */
KERNEL(k_maxpool_forward, float *out, int32_t *argmax, const float *in, PoolShape s) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)s.B * s.Ho * s.Wo * s.C) {
        int c = (int)(i % s.C);
        size_t p = i / s.C;
        int wo = (int)(p % s.Wo), ho = (int)(p / s.Wo % s.Ho);
        size_t b = p / ((size_t)s.Wo * s.Ho);
        float best = -INFINITY;
        int arg = -1;
        for (int kh = 0; kh < s.K; kh++)
            for (int kw = 0; kw < s.K; kw++) {
                int hi = ho * s.stride - s.pad + kh, wi = wo * s.stride - s.pad + kw;
                if (hi >= 0 && hi < s.H && wi >= 0 && wi < s.W) {
                    float v = in[((b * s.H + hi) * s.W + wi) * s.C + c];
                    if (arg < 0) arg = hi * s.W + wi;
                    if (v > best || isnan(v)) {
                        best = v;
                        arg = hi * s.W + wi;
                    }
                }
            }
        out[i] = best;
        argmax[i] = arg;
    }
    THREADS_END
}

/* Windows overlap, so instead of scattering each output's gradient (which would need atomics),
 * each input element gathers from the windows that contain it, in output order: the same
 * additions in the same order as the reference's scatter. */
KERNEL(k_maxpool_backward, float *din, const float *dout, const int32_t *argmax, PoolShape s) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)s.B * s.H * s.W * s.C) {
        int c = (int)(i % s.C);
        size_t p = i / s.C;
        int wi = (int)(p % s.W), hi = (int)(p / s.W % s.H);
        size_t b = p / ((size_t)s.W * s.H);
        int lo_h = hi + s.pad - s.K + 1, lo_w = wi + s.pad - s.K + 1;
        int ho0 = lo_h <= 0 ? 0 : (lo_h + s.stride - 1) / s.stride;
        int wo0 = lo_w <= 0 ? 0 : (lo_w + s.stride - 1) / s.stride;
        int ho1 = (hi + s.pad) / s.stride, wo1 = (wi + s.pad) / s.stride;
        if (ho1 > s.Ho - 1) ho1 = s.Ho - 1;
        if (wo1 > s.Wo - 1) wo1 = s.Wo - 1;
        float acc = 0.0f;
        for (int ho = ho0; ho <= ho1; ho++)
            for (int wo = wo0; wo <= wo1; wo++) {
                size_t o = ((b * s.Ho + ho) * s.Wo + wo) * s.C + c;
                if (argmax[o] == hi * s.W + wi) acc += dout[o];
            }
        din[i] = acc;
    }
    THREADS_END
}

KERNEL(k_avgpool_forward, float *out, const float *in, int B, int HW, int C) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)B * C) {
        size_t b = i / C;
        int c = (int)(i % C);
        double acc = 0;
        for (int p = 0; p < HW; p++) acc += in[(b * HW + p) * C + c];
        out[i] = (float)(acc / HW);
    }
    THREADS_END
}

/* x / HW in float is the correctly rounded quotient, as the reference's double division is. */
KERNEL(k_avgpool_backward, float *din, const float *dout, int B, int HW, int C) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)B * HW * C) din[i] = dout[i / ((size_t)HW * C) * C + i % C] / (float)HW;
    THREADS_END
}

/* ---- batch norm over [M rows, C channels] ----
 * Statistics: thread (chunk k, channel c) sums its chunk's rows serially in double (consecutive
 * threads read consecutive channels of a row); then one thread per channel adds the chunks in
 * order. `work` (batchnorm_work_doubles) holds [part1 | part2] (chunks x C each), totals
 * (2C sums + the row count), three C coefficients and C float scales. */

HOST_DEVICE_FN void gpu_chunk_rows(int M, int nchunk, int k, int *r0, int *r1) {
    *r0 = (int)((long long)M * k / nchunk);
    *r1 = (int)((long long)M * (k + 1) / nchunk);
}

/* Forward sums of d = x - shift and d^2 (shift: the running mean, as on the CPU). */
KERNEL(k_bn_partials, double *part1, double *part2, const float *in, const float *shift, int M,
       int C, int nchunk) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)nchunk * C) {
        int k = (int)(i / C), c = (int)(i % C), r0, r1;
        gpu_chunk_rows(M, nchunk, k, &r0, &r1);
        double s1 = 0, s2 = 0;
        for (int r = r0; r < r1; r++) {
            double d = (double)in[(size_t)r * C + c] - shift[c];
            s1 += d;
            s2 += d * d;
        }
        part1[i] = s1;
        part2[i] = s2;
    }
    THREADS_END
}

/* Backward sums of g and g * (x - center), g = dy masked by the ReLU's output when there is one;
 * in eval mode (scale != NULL) the input gradient dy * scale is written in the same pass. */
KERNEL(k_bn_backward_partials, double *part1, double *part2, float *din, const float *dout,
       const float *relu_out, const float *in, const float *center, const float *scale, int M,
       int C, int nchunk) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)nchunk * C) {
        int k = (int)(i / C), c = (int)(i % C), r0, r1;
        gpu_chunk_rows(M, nchunk, k, &r0, &r1);
        double a = 0, b = 0;
        for (int r = r0; r < r1; r++) {
            size_t j = (size_t)r * C + c;
            float g = dout[j];
            if (relu_out && !(relu_out[j] > 0.0f)) g = 0.0f;
            a += g;
            b += (double)g * (in[j] - center[c]);
            if (scale) din[j] = g * scale[c];
        }
        part1[i] = a;
        part2[i] = b;
    }
    THREADS_END
}

/* totals[c], totals[C + c]: the chunks' sums in chunk order; totals[2C] = M. */
KERNEL(k_bn_totals, double *totals, const double *part1, const double *part2, int M, int C,
       int nchunk) {
    THREADS_BEGIN
    int c = BLOCK_X * GPU_THREADS + tid;
    if (c < C) {
        double a = 0, b = 0;
        for (int k = 0; k < nchunk; k++) {
            a += part1[(size_t)k * C + c];
            b += part2[(size_t)k * C + c];
        }
        totals[c] = a;
        totals[C + c] = b;
        if (c == 0) totals[2 * C] = M;
    }
    THREADS_END
}

/* Mean, variance, the saved statistics, the scale gamma/sqrt(var+eps) and the running update,
 * one thread per channel (batchnorm_forward_train_cpu's arithmetic). */
KERNEL(k_bn_forward_finish, float *save_mean, float *save_invstd, float *scale,
       float *running_mean, float *running_var, const double *totals, const float *gamma, int C,
       float momentum, float eps) {
    THREADS_BEGIN
    int c = BLOCK_X * GPU_THREADS + tid;
    if (c < C) {
        const double rows = totals[2 * C];
        double dm = totals[c] / rows, v = totals[C + c] / rows - dm * dm;
        double mean = running_mean[c] + dm, var = v > 0 ? v : 0;
        double invstd = 1.0 / sqrt(var + eps);
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        scale[c] = (float)(gamma[c] * invstd);
        const double unbias = rows > 1 ? rows / (rows - 1) : 1.0;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * unbias);
    }
    THREADS_END
}

KERNEL(k_bn_eval_scale, float *scale, const float *gamma, const float *running_var, int C,
       float eps) {
    THREADS_BEGIN
    int c = BLOCK_X * GPU_THREADS + tid;
    if (c < C) scale[c] = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
    THREADS_END
}

/* out = relu?((x - center) * scale + shift + residual?), elementwise (out may alias residual). */
KERNEL(k_bn_affine, float *out, const float *in, const float *residual, int relu,
       const float *center, const float *scale, const float *shift, int M, int C) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)M * C) {
        int c = (int)(i % C);
        float v = (in[i] - center[c]) * scale[c] + shift[c];
        if (residual) v += residual[i];
        if (relu) v = v < 0.0f ? 0.0f : v;
        out[i] = v;
    }
    THREADS_END
}

/* dgamma += sum(g*(x-mean)) * invstd and dbeta += sum(g), from this process's totals; in eval
 * mode (running_var != NULL) invstd is 1/sqrt(running_var + eps). */
KERNEL(k_bn_param_grads, float *dgamma, float *dbeta, const double *totals,
       const float *save_invstd, const float *running_var, int C, float eps) {
    THREADS_BEGIN
    int c = BLOCK_X * GPU_THREADS + tid;
    if (c < C) {
        if (running_var)
            dgamma[c] += (float)(totals[C + c] / sqrt((double)running_var[c] + eps));
        else
            dgamma[c] += (float)(totals[C + c] * save_invstd[c]);
        dbeta[c] += (float)totals[c];
    }
    THREADS_END
}

/* dx = g*k1 + (x - mean)*k2 + k3 with the global batch's totals (combined in double: the
 * terms can nearly cancel). coef holds k1, k2, k3 (C each). */
KERNEL(k_bn_backward_coef, double *coef, const double *totals, const float *save_invstd,
       const float *gamma, int C) {
    THREADS_BEGIN
    int c = BLOCK_X * GPU_THREADS + tid;
    if (c < C) {
        const double rows = totals[2 * C], sdy = totals[c], sdyx = totals[C + c];
        double invstd = save_invstd[c], g = gamma[c] * invstd;
        coef[c] = g;
        coef[C + c] = -g * invstd * (sdyx * invstd) / rows;
        coef[2 * C + c] = -g * sdy / rows;
    }
    THREADS_END
}

KERNEL(k_bn_backward_apply, float *din, const float *dout, const float *relu_out,
       const float *in, const float *save_mean, const double *coef, int M, int C) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < (size_t)M * C) {
        int c = (int)(i % C);
        float g = dout[i];
        if (relu_out && !(relu_out[i] > 0.0f)) g = 0.0f;
        din[i] = (float)(g * coef[c] + ((double)in[i] - save_mean[c]) * coef[C + c] + coef[2 * C + c]);
    }
    THREADS_END
}

/* ---- the BYOL loss, 2 - 2 cos(p_b, z_b) (src/nn/loss.c) ---- */

#define COS_EPS_GPU 1e-12

/* The three dot products of row BLOCK_X into s_pz[0], s_pp[0], s_zz[0]: each thread sums a
 * stride of the row, then the tree. */
#define ROW_DOTS(p, z, D)                                                     \
    PHASE_BEGIN                                                               \
    const float *pr = (p) + (size_t)BLOCK_X * (D), *zr = (z) + (size_t)BLOCK_X * (D); \
    double a = 0, b = 0, e = 0;                                               \
    for (int j = tid; j < (D); j += GPU_THREADS) {                            \
        a += (double)pr[j] * zr[j];                                           \
        b += (double)pr[j] * pr[j];                                           \
        e += (double)zr[j] * zr[j];                                           \
    }                                                                         \
    s_pz[tid] = a;                                                            \
    s_pp[tid] = b;                                                            \
    s_zz[tid] = e;                                                            \
    PHASE_END                                                                 \
    BLOCK_TREE_SUM(s_pz)                                                      \
    BLOCK_TREE_SUM(s_pp)                                                      \
    BLOCK_TREE_SUM(s_zz)

/* One block per row: row_loss[b] = 2 - 2 cos. */
KERNEL(k_cosine_rows, double *row_loss, const float *p, const float *z, int D) {
    SHARED(double, s_pz, GPU_THREADS);
    SHARED(double, s_pp, GPU_THREADS);
    SHARED(double, s_zz, GPU_THREADS);
    ROW_DOTS(p, z, D)
    PHASE_BEGIN
    if (tid == 0) {
        double np = fmax(sqrt(s_pp[0]), COS_EPS_GPU), nz = fmax(sqrt(s_zz[0]), COS_EPS_GPU);
        row_loss[BLOCK_X] = 2.0 - 2.0 * s_pz[0] / (np * nz);
    }
    PHASE_END
}

/* One block: total[0] = the sum of n values (each thread a stride, then the tree). */
KERNEL(k_sum_doubles, double *total, const double *x, int n) {
    SHARED(double, s, GPU_THREADS);
    PHASE_BEGIN
    double a = 0;
    for (int j = tid; j < n; j += GPU_THREADS) a += x[j];
    s[tid] = a;
    PHASE_END
    BLOCK_TREE_SUM(s)
    PHASE_BEGIN
    if (tid == 0) total[0] = s[0];
    PHASE_END
}

/* dp = scale * (-2 (z/(|p||z|) - cos p/|p|^2)), scale = dloss / B; one block per row. */
KERNEL(k_cosine_backward, float *dp, const float *p, const float *z, int D, double scale) {
    SHARED(double, s_pz, GPU_THREADS);
    SHARED(double, s_pp, GPU_THREADS);
    SHARED(double, s_zz, GPU_THREADS);
    ROW_DOTS(p, z, D)
    PHASE_BEGIN
    double np = fmax(sqrt(s_pp[0]), COS_EPS_GPU), nz = fmax(sqrt(s_zz[0]), COS_EPS_GPU);
    double cs = s_pz[0] / (np * nz);
    double a = -2.0 * scale / (np * nz), b = 2.0 * scale * cs / (np * np);
    const size_t row = (size_t)BLOCK_X * D;
    for (int j = tid; j < D; j += GPU_THREADS) dp[row + j] = (float)(a * z[row + j] + b * p[row + j]);
    PHASE_END
}

/* ---- VICReg's variance and covariance terms (var_cov_loss_cpu's, src/nn/loss.c) ---- */

/* zc = z - its column means (each in double, rows in order); one thread per column. */
KERNEL(k_vc_center, float *zc, const float *z, int B, int D) {
    THREADS_BEGIN
    size_t j = GLOBAL_ID;
    if (j < (size_t)D) {
        double mean = 0;
        for (int b = 0; b < B; b++) mean += z[(size_t)b * D + j];
        mean /= B;
        for (int b = 0; b < B; b++) zc[(size_t)b * D + j] = (float)(z[(size_t)b * D + j] - mean);
    }
    THREADS_END
}

/* Per row j of the covariance: the hinge max(0, 1 - sd_j), the squared off-diagonal entries'
 * sum, 1 / sd_j where the hinge is active (else 0); then the diagonal is zeroed (C_off). Only
 * thread j reads or writes row j's diagonal. */
KERNEL(k_vc_rows, double *hinge, double *off, float *inv_std, float *cov, int D) {
    THREADS_BEGIN
    size_t j = GLOBAL_ID;
    if (j < (size_t)D) {
        const double sd = sqrt((double)cov[j * D + j] + 1e-4);
        hinge[j] = sd < 1.0 ? 1.0 - sd : 0.0;
        inv_std[j] = sd < 1.0 ? (float)(1.0 / sd) : 0.0f;
        double c = 0;
        for (int i = 0; i < D; i++)
            if ((size_t)i != j) c += (double)cov[j * D + i] * cov[j * D + i];
        off[j] = c;
        cov[j * D + j] = 0.0f;
    }
    THREADS_END
}

/* dz += a * inv_std[j] * zc: the hinge's gradient. */
KERNEL(k_vc_var_grad, float *dz, const float *zc, const float *inv_std, int D, size_t n, float a) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) dz[i] += a * inv_std[i % D] * zc[i];
    THREADS_END
}

/* ---- DINO's head and loss (the CPU's in src/nn/dino.c) ---- */

KERNEL(k_gelu_forward, float *out, const float *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) out[i] = 0.5f * in[i] * (1.0f + erff(in[i] * 0.70710678118654752440f));
    THREADS_END
}

KERNEL(k_gelu_backward, float *din, const float *dout, const float *in, size_t n) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) {
        const float x = in[i];
        const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
        const float pdf = 0.39894228040143267794f * expf(-0.5f * x * x);
        din[i] = dout[i] * (cdf + x * pdf);
    }
    THREADS_END
}

/* The block's maximum of s[] into s[0]. */
#define BLOCK_TREE_MAX(s)                                                     \
    for (int half_ = GPU_THREADS / 2; half_ > 0; half_ >>= 1) {               \
        PHASE_BEGIN if (tid < half_) s[tid] = fmaxf(s[tid], s[tid + half_]);  \
        PHASE_END                                                             \
    }

/* s[0] = the dot product of row BLOCK_X of x and of y ([rows, cols] each), summed in double:
 * each thread a stride, then the block's tree. */
#define ROW_DOT(s, x, y, cols)                                                               \
    PHASE_BEGIN                                                                              \
    const size_t r_ = (size_t)BLOCK_X * (cols);                                              \
    double acc_ = 0;                                                                         \
    for (int j_ = tid; j_ < (cols); j_ += GPU_THREADS) acc_ += (double)(x)[r_ + j_] * (y)[r_ + j_]; \
    s[tid] = acc_;                                                                           \
    PHASE_END                                                                                \
    BLOCK_TREE_SUM(s)

/* One block per row: out = x / max(|x|, eps), norms[row] = max(|x|, eps). */
KERNEL(k_l2norm_rows_forward, float *out, float *norms, const float *in, int cols, float eps) {
    SHARED(double, s, GPU_THREADS);
    const size_t row = (size_t)BLOCK_X * cols;
    ROW_DOT(s, in, in, cols)
    PHASE_BEGIN
    const double n = fmax(sqrt(s[0]), (double)eps);
    if (tid == 0) norms[BLOCK_X] = (float)n;
    for (int j = tid; j < cols; j += GPU_THREADS) out[row + j] = (float)(in[row + j] / n);
    PHASE_END
}

KERNEL(k_l2norm_rows_backward, float *din, const float *dout, const float *out, const float *norms, int cols,
       float eps) {
    SHARED(double, s, GPU_THREADS);
    const size_t row = (size_t)BLOCK_X * cols;
    ROW_DOT(s, dout, out, cols)
    PHASE_BEGIN
    const double n = norms[BLOCK_X];
    for (int j = tid; j < cols; j += GPU_THREADS)
        din[row + j] = n > eps ? (float)((dout[row + j] - out[row + j] * s[0]) / n) : (float)(dout[row + j] / eps);
    PHASE_END
}

/* One block per row: q = softmax((t - center) * inv). */
KERNEL(k_dino_teacher_softmax, float *q, const float *t, const float *center, int K, float inv) {
    SHARED(float, smax, GPU_THREADS);
    SHARED(double, ssum, GPU_THREADS);
    const size_t row = (size_t)BLOCK_X * K;
    PHASE_BEGIN
    float m = -INFINITY;
    for (int k = tid; k < K; k += GPU_THREADS) m = fmaxf(m, (t[row + k] - center[k]) * inv);
    smax[tid] = m;
    PHASE_END
    BLOCK_TREE_MAX(smax)
    PHASE_BEGIN
    double a = 0;
    for (int k = tid; k < K; k += GPU_THREADS) a += expf((t[row + k] - center[k]) * inv - smax[0]);
    ssum[tid] = a;
    PHASE_END
    BLOCK_TREE_SUM(ssum)
    PHASE_BEGIN
    const float scale = (float)(1.0 / ssum[0]);
    for (int k = tid; k < K; k += GPU_THREADS) q[row + k] = expf((t[row + k] - center[k]) * inv - smax[0]) * scale;
    PHASE_END
}

/* One block per row: the cross-entropy of log softmax(s * inv) against q and q's entropy into
 * row_ce[row], row_ent[row]; ds = g * (softmax(s * inv) - q). */
KERNEL(k_dino_student_rows, float *ds, double *row_ce, double *row_ent, const float *s, const float *q, int K,
       float inv, double g) {
    SHARED(float, smax, GPU_THREADS);
    SHARED(double, ssum, GPU_THREADS);
    SHARED(double, sce, GPU_THREADS);
    SHARED(double, sent, GPU_THREADS);
    const size_t row = (size_t)BLOCK_X * K;
    PHASE_BEGIN
    float m = -INFINITY;
    for (int k = tid; k < K; k += GPU_THREADS) m = fmaxf(m, s[row + k] * inv);
    smax[tid] = m;
    PHASE_END
    BLOCK_TREE_MAX(smax)
    PHASE_BEGIN
    double a = 0;
    for (int k = tid; k < K; k += GPU_THREADS) a += expf(s[row + k] * inv - smax[0]);
    ssum[tid] = a;
    PHASE_END
    BLOCK_TREE_SUM(ssum)
    PHASE_BEGIN
    const double lse = smax[0] + log(ssum[0]);
    double ce = 0, ent = 0;
    for (int k = tid; k < K; k += GPU_THREADS) {
        const double p = q[row + k];
        ce -= p * ((double)s[row + k] * inv - lse);
        if (p > 0) ent -= p * log(p);
        ds[row + k] = (float)(g * (expf(s[row + k] * inv - smax[0]) / ssum[0] - p));
    }
    sce[tid] = ce;
    sent[tid] = ent;
    PHASE_END
    BLOCK_TREE_SUM(sce)
    BLOCK_TREE_SUM(sent)
    PHASE_BEGIN
    if (tid == 0) {
        row_ce[BLOCK_X] = sce[0];
        row_ent[BLOCK_X] = sent[0];
    }
    PHASE_END
}

/* sums[k] = the column sums of t [rows, K] in row order, sums[K] = rows. */
KERNEL(k_colsum_doubles, double *sums, const float *t, int rows, int K) {
    THREADS_BEGIN
    size_t k = GLOBAL_ID;
    if (k < (size_t)K) {
        double a = 0;
        for (int r = 0; r < rows; r++) a += t[(size_t)r * K + k];
        sums[k] = a;
    } else if (k == (size_t)K) {
        sums[K] = rows;
    }
    THREADS_END
}

KERNEL(k_dino_center_apply, float *center, const double *sums, int K, float momentum) {
    THREADS_BEGIN
    size_t k = GLOBAL_ID;
    if (k < (size_t)K) center[k] = (float)(momentum * (double)center[k] + (1.0 - momentum) * (sums[k] / sums[K]));
    THREADS_END
}

/* ---- AdamW, one tensor per launch (adamw_update_cpu's float arithmetic) ---- */
KERNEL(k_adamw, float *p, const float *g, float *m, float *v, size_t n, float keep, float b1, float b2,
       float step_size, float bc2_sqrt, float eps) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    if (i < n) {
        p[i] *= keep;
        m[i] += (1.0f - b1) * (g[i] - m[i]);
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
    THREADS_END
}

/* ---- the step's guard: NaN and infinities ---- */

/* A fixed grid of blocks, each thread a fixed stride; counts[block] gets the block's count. */
#define GUARD_BLOCKS 512
KERNEL(k_count_nonfinite, unsigned long long *counts, const float *x, size_t n) {
    SHARED(unsigned long long, s, GPU_THREADS);
    PHASE_BEGIN
    unsigned long long bad = 0;
    for (size_t i = GLOBAL_ID; i < n; i += (size_t)GUARD_BLOCKS * GPU_THREADS) bad += !isfinite(x[i]);
    s[tid] = bad;
    PHASE_END
    BLOCK_TREE_SUM(s)
    PHASE_BEGIN
    if (tid == 0) counts[BLOCK_X] = s[0];
    PHASE_END
}

/* ---- LARS and the EMA over a network's contiguous buffers ----
 * The host cuts each trained tensor into chunks of at most LARS_CHUNK floats (a table that
 * depends on the shapes only); one block per chunk. */
#define LARS_CHUNK 16384
typedef struct {
    size_t start, end; /* floats of the params region */
    int tensor;        /* index into the per-tensor scale */
    float lr, wd;      /* this tensor's learning rate and weight decay (0: none) */
} LarsChunk;
typedef struct {
    int first, count; /* its chunks */
    int adapt;        /* the trust ratio (LARS, more than one dimension) */
} LarsTensor;

/* part[2*k], part[2*k+1]: chunk k's sums of p^2 and u^2, u = g + wd*p in float (the CPU's). */
KERNEL(k_lars_norms, double *part, const LarsChunk *chunks, const float *params,
       const float *grads) {
    SHARED(double, s_pp, GPU_THREADS);
    SHARED(double, s_uu, GPU_THREADS);
    PHASE_BEGIN
    const LarsChunk ch = chunks[BLOCK_X];
    double a = 0, b = 0;
    for (size_t i = ch.start + tid; i < ch.end; i += GPU_THREADS) {
        float u = grads[i] + ch.wd * params[i];
        a += (double)params[i] * params[i];
        b += (double)u * u;
    }
    s_pp[tid] = a;
    s_uu[tid] = b;
    PHASE_END
    BLOCK_TREE_SUM(s_pp)
    BLOCK_TREE_SUM(s_uu)
    PHASE_BEGIN
    if (tid == 0) {
        part[2 * (size_t)BLOCK_X] = s_pp[0];
        part[2 * (size_t)BLOCK_X + 1] = s_uu[0];
    }
    PHASE_END
}

/* One thread per tensor: eta |p| / |u| from its chunks' sums in order, or 1. */
KERNEL(k_lars_trust, float *trust, const double *part, const LarsTensor *tensors, int n,
       float eta) {
    THREADS_BEGIN
    int t = BLOCK_X * GPU_THREADS + tid;
    if (t < n) {
        float sc = 1.0f;
        if (tensors[t].adapt) {
            double pp = 0, uu = 0;
            for (int k = tensors[t].first; k < tensors[t].first + tensors[t].count; k++) {
                pp += part[2 * (size_t)k];
                uu += part[2 * (size_t)k + 1];
            }
            double pn = sqrt(pp), un = sqrt(uu);
            if (pn > 0 && un > 0) sc = (float)(eta * pn / un);
        }
        trust[t] = sc;
    }
    THREADS_END
}

/* u = (g + wd*p) * trust; v = m*v + u; p -= lr*v (float, as lars_update_cpu). */
KERNEL(k_lars_apply, float *params, const float *grads, float *momentum, const LarsChunk *chunks,
       const float *trust, float mom) {
    THREADS_BEGIN
    const LarsChunk ch = chunks[BLOCK_X];
    const float sc = trust[ch.tensor];
    for (size_t i = ch.start + tid; i < ch.end; i += GPU_THREADS) {
        float u = (grads[i] + ch.wd * params[i]) * sc;
        momentum[i] = mom * momentum[i] + u;
        params[i] -= ch.lr * momentum[i];
    }
    THREADS_END
}

KERNEL(k_ema, float *target, const float *online, size_t n, float tau) {
    THREADS_BEGIN
    size_t i = GLOBAL_ID;
    const float keep = tau, take = 1.0f - tau;
    if (i < n) target[i] = keep * target[i] + take * online[i];
    THREADS_END
}

#endif
