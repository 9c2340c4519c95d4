/* Direct convolution for narrow layers, NHWC activations, OHWI weights.
 *
 * With 16 or 32 channels, Winograd's transformed tiles (4x the activation) and im2col's
 * unfolded rows (9x) cost more memory traffic than the multiply-adds they feed: a 32x32x16
 * layer ran at 83 "direct-equivalent" GFLOP/s by Winograd on 2 cores whose SGEMM reaches 290.
 * Here each thread copies one image at a time into a zero-padded buffer that stays in its
 * cache, and a register-blocked kernel computes NP output pixels x 16*NV output channels:
 * for every tap and input channel, NV weight vectors are loaded once and each pixel's input
 * value is broadcast into NP*NV fused multiply-adds. Output channels are the vector lanes
 * (NHWC keeps them contiguous), so the kernel needs Cout (Cin for the input gradient) to be a
 * multiple of the vector length (16 floats with AVX-512, 8 with AVX2, 4 otherwise); conv2d_*_cpu
 * choose it where it applies and pays (direct_conv_preferred).
 *
 *   forward         out[b, ho, wo, :] = sum over (kh, kw, ci) of x[b, ho*s+kh-p, wo*s+kw-p, ci]
 *                   * w[:, kh, kw, ci], weights repacked to [kh, kw, ci, co] (co contiguous)
 *   backward data   the same kernel on dy with the kernel rotated by 180 degrees and the
 *                   channels swapped; for stride s > 1, once per phase of the input position
 *                   (h mod s, w mod s) with the taps that reach it
 *   backward weight dw[co, kh, kw, ci] = sum over pixels of x[.., ci] * dy[.., co]: per group of
 *                   images one thread sums into its own partial, then the groups are added in
 *                   order, so the result does not depend on the number of threads.
 *
 * The kernels are GCC/Clang vector extensions, one register wide for the ISA the file is built
 * for (VL below), so that vector code is sized for the machine. This file is built with
 * -ffp-contract=fast so that the multiply-adds are fused. */
#include <string.h>

#ifdef BYOL_OMP
#include <omp.h>
#endif

#include "../core/common.h"
#include "../core/threads.h"
#include "nn.h"

/* Vector length and register blocks for the vector ISA this file is compiled for. A block of
 * NP pixels (or R input channels) x NV vectors keeps NP*NV accumulators, NV weight (or gradient)
 * vectors and a broadcast in registers:
 *   AVX-512 (32 zmm of 16 floats): 16x1 and 12x2 (17 and 27 registers);
 *   AVX/AVX2 (16 ymm of 8 floats) and SSE/NEON (16 or 32 registers of 4 floats): 12x1 and 6x2
 *   (13 and 15 registers). 16-float vectors there took 2 or 4 registers each, so the 16x1 and
 *   12x2 blocks spilled to the stack in the inner loop (issue 17: 4.65x slower than Winograd on
 *   an AMD EPYC Zen 2). */
#if defined(__AVX512F__)
#define VL 16
#define NP1 16 /* the largest block of 1 vector */
#define NP2A 12 /* the blocks of 2 vectors: 12, 8, 4, 2, 1 */
#define NP2B 8
#define NP2C 4
#elif defined(__AVX__)
#define VL 8
#define NP1 12
#define NP2A 6 /* 6, 4, 3, 2, 1 */
#define NP2B 4
#define NP2C 3
#else
#define VL 4
#define NP1 12
#define NP2A 6
#define NP2B 4
#define NP2C 3
#endif
typedef float vf __attribute__((vector_size(VL * sizeof(float)), aligned(sizeof(float))));

/* This file is compiled once per vector ISA (Makefile: DIRECT_VARIANT=avx512, avx2, sse or
 * portable); each build's public functions carry the variant's name as a suffix, and
 * conv_direct_dispatch.c chooses one for the CPU at run time, so that a portable (NATIVE=0)
 * binary runs the vector code of the machine it lands on. */
#ifndef DIRECT_VARIANT
#define DIRECT_VARIANT portable
#endif
#define DIRECT_CAT_(a, b) a##_##b
#define DIRECT_CAT(a, b) DIRECT_CAT_(a, b)
#define DIRECT_FN(name) DIRECT_CAT(name, DIRECT_VARIANT)

int DIRECT_FN(direct_conv_lanes)(void) { return VL; }

/* Groups of images whose weight gradients are summed separately (a function of B only). */
enum { DIRECT_MAX_GROUPS = 32 };

static int n_groups(int B) { return MIN(B, DIRECT_MAX_GROUPS); }

/* Per-thread buffers are sized for this many threads; more OpenMP threads than cores are
 * clamped to it. */
static int thread_cap(void) { return threads_available(); }

__attribute__((unused)) static int team_size(void) { /* used in pragmas only */
#ifdef BYOL_OMP
    return MIN(omp_get_max_threads(), thread_cap());
#else
    return 1;
#endif
}

static int thread_id(void) {
#ifdef BYOL_OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int DIRECT_FN(direct_conv_applies)(const ConvShape *s, int pass) {
    switch (pass) {
    case CONV_PASS_DATA:
        return s->stride <= 8 && s->pad <= s->K - 1 && s->Cin % VL == 0;
    default:
        return s->Cout % VL == 0;
    }
}

/* Narrow layers only: measured with build/bench/bench_conv (batch 256, 2 threads) against
 * Winograd (3x3 stride 1) and im2col (the rest). */
int DIRECT_FN(direct_conv_preferred)(const ConvShape *s, int pass) {
    if (!DIRECT_FN(direct_conv_applies)(s, pass)) return 0;
    int c = pass == CONV_PASS_DATA ? s->Cout : s->Cin; /* channels summed over */
    return c <= 32;
}

/* Floats of an [H, W, C] image with a zero border of `lo` before and `hi` after each axis. */
static size_t padded_floats(int H, int W, int C, int lo, int hi) {
    return (size_t)(H + lo + hi) * (W + lo + hi) * C;
}

/* The input gradient of a stride-s convolution splits into s*s phases by the parity of the
 * input position (h mod s, w mod s): the pixels of one phase receive from the taps kh = kh0,
 * kh0+s, ... (kh0 = (ph + pad) mod s) only, and each such sum is a stride-1 convolution of dy
 * with that sub-kernel, rotated. For phase row ph, the taps u = 0..M-1 (kh = kh0 + s*(M-1-u))
 * read dy row i + off + u for input row h = s*i + ph, with off = (ph+pad-kh0)/s - M + 1. */
typedef struct {
    int k0, M, off, n; /* first tap, taps, dy offset, input positions of the phase */
} Phase;

static Phase phase_of(int ph, int pad, int K, int s, int H) {
    Phase p;
    p.k0 = (ph + pad) % s;
    p.M = p.k0 < K ? (K - p.k0 + s - 1) / s : 0;
    p.off = (ph + pad - p.k0) / s - p.M + 1;
    p.n = ph < H ? (H - ph + s - 1) / s : 0;
    return p;
}

/* The zero border dy needs, before and after, for every phase of one axis. */
static void phase_padding(int pad, int K, int s, int H, int Ho, int *lo, int *hi) {
    *lo = *hi = 0;
    for (int ph = 0; ph < s; ph++) {
        Phase p = phase_of(ph, pad, K, s, H);
        if (!p.M || !p.n) continue;
        *lo = MAX(*lo, -p.off);
        *hi = MAX(*hi, (p.n - 1) + (p.M - 1) + p.off - (Ho - 1));
    }
}

static void data_padding(const ConvShape *s, int *lo, int *hi) {
    int l1, h1, l2, h2;
    phase_padding(s->pad, s->K, s->stride, s->H, s->Ho, &l1, &h1);
    phase_padding(s->pad, s->K, s->stride, s->W, s->Wo, &l2, &h2);
    *lo = MAX(l1, l2);
    *hi = MAX(h1, h2);
}

size_t DIRECT_FN(direct_conv_scratch_floats)(const ConvShape *s, int pass) {
    const size_t w = (size_t)s->K * s->K * s->Cin * s->Cout;
    if (pass == CONV_PASS_DATA) {
        int lo, hi;
        data_padding(s, &lo, &hi);
        return w + (size_t)thread_cap() * padded_floats(s->Ho, s->Wo, s->Cout, lo, hi);
    }
    size_t img = (size_t)thread_cap() * padded_floats(s->H, s->W, s->Cin, s->pad, s->pad);
    return pass == CONV_PASS_WEIGHT ? (size_t)n_groups(s->B) * w + img : w + img;
}

/* dst = image [H, W, C] inside a zero border of lo (top, left) and hi (bottom, right). */
static void pad_image(float *dst, const float *img, int H, int W, int C, int lo, int hi) {
    const size_t row = ((size_t)W + lo + hi) * C;
    memset(dst, 0, sizeof(float) * row * lo);
    for (int h = 0; h < H; h++) {
        float *d = dst + (size_t)(h + lo) * row;
        memset(d, 0, sizeof(float) * lo * C);
        memcpy(d + (size_t)lo * C, img + (size_t)h * W * C, sizeof(float) * W * C);
        memset(d + (size_t)(lo + W) * C, 0, sizeof(float) * hi * C);
    }
    memset(dst + (size_t)(H + lo) * row, 0, sizeof(float) * row * hi);
}

/* ---- forward kernel: NP pixels x NV vectors of output channels ----
 * out: first output pixel's channel co0 (pixel step ops floats); x: the padded input at the
 * window's top-left for that pixel (pixel step xps floats, row step xrs, C channels); w:
 * [KH*KW][C][O] + co0, the taps of a KH x KW window. PS > 0 fixes the pixel step at compile time: then every pixel's input is a constant
 * displacement from one pointer, where a run-time step needs a register per pixel and the
 * 16-pixel kernel ran out of them (spilled address arithmetic in the inner loop). */
#define FWD_KERNEL(NP, NV, PS) FWD_KERNEL_(NP, NV, PS)
#define FWD_KERNEL_(NP, NV, PS)                                                               \
    static void fwd_##NP##x##NV##_##PS(float *restrict out, int ops, int O,                    \
                                       const float *restrict x, int xps, int xrs,              \
                                       const float *restrict w, int C, int KH, int KW) {       \
        const size_t ps = PS ? (size_t)PS : (size_t)xps;                                      \
        vf acc[NP][NV];                                                                      \
        _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                                 \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[p][v] = (vf){0};       \
        for (int kh = 0; kh < KH; kh++)                                                       \
            for (int kw = 0; kw < KW; kw++) {                                                 \
                const float *xk = x + (size_t)kh * xrs + (size_t)kw * C;                      \
                const float *wk = w + (size_t)(kh * KW + kw) * C * O;                         \
                for (int c = 0; c < C; c++) {                                                 \
                    vf wv[NV];                                                               \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                      \
                        wv[v] = *(const vf *)(wk + (size_t)c * O + v * VL);                  \
                    _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++) {                   \
                        float xs = xk[p * ps + c];                                            \
                        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[p][v] += xs * wv[v]; \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                                 \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                *(vf *)(out + (size_t)p * ops + v * VL) = acc[p][v];                        \
    }

/* Register blocks per vector count (1 or 2 vectors of output channels), largest first: output
 * pixels for the forward kernel, input channels for the weight-gradient kernel. A row (or the
 * channels) is covered greedily: block_index gives the largest block that fits in `left`. */
static const int BLOCKS[2][5] = {{NP1, 8, 4, 2, 1}, {NP2A, NP2B, NP2C, 2, 1}};

static int block_index(int nv, int left) {
    int k = 0;
    while (BLOCKS[nv - 1][k] > left) k++;
    return k;
}
#define FWD_KERNELS(PS)                                                                       \
    FWD_KERNEL(NP1, 1, PS) FWD_KERNEL(8, 1, PS) FWD_KERNEL(4, 1, PS) FWD_KERNEL(2, 1, PS)      \
    FWD_KERNEL(1, 1, PS) FWD_KERNEL(NP2A, 2, PS) FWD_KERNEL(NP2B, 2, PS) FWD_KERNEL(NP2C, 2, PS) \
    FWD_KERNEL(2, 2, PS) FWD_KERNEL(1, 2, PS)
#define FWD_NAME(NP, NV, PS) FWD_NAME_(NP, NV, PS)
#define FWD_NAME_(NP, NV, PS) fwd_##NP##x##NV##_##PS
#define FWD_TABLE(PS)                                                                         \
    {{FWD_NAME(NP1, 1, PS), fwd_8x1_##PS, fwd_4x1_##PS, fwd_2x1_##PS, fwd_1x1_##PS},           \
     {FWD_NAME(NP2A, 2, PS), FWD_NAME(NP2B, 2, PS), FWD_NAME(NP2C, 2, PS), fwd_2x2_##PS, fwd_1x2_##PS}}
FWD_KERNELS(0)
FWD_KERNELS(1)
FWD_KERNELS(3)
FWD_KERNELS(8)
FWD_KERNELS(16)
FWD_KERNELS(32)
FWD_KERNELS(64)

typedef void (*FwdKernel)(float *, int, int, const float *, int, int, const float *, int, int, int);
/* Pixel steps with kernels of their own, index 0: any. 1 and 3: the stems of grey and colour
 * images; 8: 8 channels at stride 1 (the width-8 model `byol train` runs by default, on which
 * the run-time step cost 20-25% of a layer's time on a Zen 3); 16 to 64: 8 to 32 channels at
 * stride 1 or 2. */
static const int FWD_PS[7] = {0, 1, 3, 8, 16, 32, 64};
static const FwdKernel FWD[7][2][5] = {FWD_TABLE(0), FWD_TABLE(1),  FWD_TABLE(3), FWD_TABLE(8),
                                       FWD_TABLE(16), FWD_TABLE(32), FWD_TABLE(64)};

static const FwdKernel (*kernels_for_step(int xps))[5] {
    int psi = 0;
    for (int i = 1; i < (int)ARRAY_LEN(FWD_PS); i++)
        if (FWD_PS[i] == xps) psi = i;
    return FWD[psi];
}

/* One output row of Wo pixels (pixel step ops) from a padded input row (pixel step xps, row
 * step `row`), all O channels, taps KH x KW of wt [KH, KW, C, O]. */
static void conv_row(const FwdKernel (*fwd)[5], float *out, int ops, int O, int Wo,
                     const float *x, int xps, int row, const float *wt, int C, int KH, int KW) {
    for (int co = 0; co < O;) {
        const int nv = O - co >= 2 * VL ? 2 : 1;
        for (int wo = 0; wo < Wo;) {
            const int k = block_index(nv, Wo - wo);
            fwd[nv - 1][k](out + (size_t)wo * ops + co, ops, O, x + (size_t)wo * xps, xps, row,
                           wt + co, C, KH, KW);
            wo += BLOCKS[nv - 1][k];
        }
        co += nv * VL;
    }
}

/* out [B, Ho, Wo, O] = conv(in [B, H, W, C]) with weights wt [K, K, C, O]. */
static void direct_conv(float *out, const float *in, const float *wt, int B, int H, int W, int C,
                        int O, int K, int stride, int pad, int Ho, int Wo, float *bufs) {
    const size_t img_floats = padded_floats(H, W, C, pad, pad);
    const int xps = stride * C, row = (W + 2 * pad) * C; /* pixel step, padded row */
    const FwdKernel(*fwd)[5] = kernels_for_step(xps);
#pragma omp parallel num_threads(team_size())
    {
        float *xp = bufs + (size_t)thread_id() * img_floats;
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            pad_image(xp, in + (size_t)b * H * W * C, H, W, C, pad, pad);
            float *ob = out + (size_t)b * Ho * Wo * O;
            for (int ho = 0; ho < Ho; ho++)
                conv_row(fwd, ob + (size_t)ho * Wo * O, O, O, Wo, xp + (size_t)ho * stride * row,
                         xps, row, wt, C, K, K);
        }
    }
}

void DIRECT_FN(direct_conv_forward)(float *out, const float *in, const float *weight, const ConvShape *s,
                         float *scratch) {
    const int KK = s->K * s->K, C = s->Cin, O = s->Cout;
    float *wt = scratch, *bufs = scratch + (size_t)KK * C * O;
    for (int o = 0; o < O; o++) /* OHWI -> [K, K, C, O] */
        for (int t = 0; t < KK; t++)
            for (int c = 0; c < C; c++) wt[((size_t)t * C + c) * O + o] = weight[((size_t)o * KK + t) * C + c];
    direct_conv(out, in, wt, s->B, s->H, s->W, C, O, s->K, s->stride, s->pad, s->Ho, s->Wo, bufs);
}

void DIRECT_FN(direct_conv_backward_data)(float *din, const float *dout, const float *weight,
                               const ConvShape *s, float *scratch) {
    const int K = s->K, KK = K * K, C = s->Cin, O = s->Cout, st = s->stride;
    int lo, hi;
    data_padding(s, &lo, &hi);
    const size_t img_floats = padded_floats(s->Ho, s->Wo, O, lo, hi);
    const int row = (s->Wo + lo + hi) * O;
    float *wt = scratch, *bufs = scratch + (size_t)KK * C * O;
    /* Each phase's sub-kernel, rotated, as [u, v, O, C], the phases one after the other (every
     * tap belongs to exactly one). */
    const float *pw[8][8];
    Phase ph_h[8], ph_w[8];
    size_t at = 0;
    for (int a = 0; a < st; a++) ph_h[a] = phase_of(a, s->pad, K, st, s->H);
    for (int c = 0; c < st; c++) ph_w[c] = phase_of(c, s->pad, K, st, s->W);
    for (int a = 0; a < st; a++)
        for (int c = 0; c < st; c++) {
            const Phase ph = ph_h[a], pv = ph_w[c];
            pw[a][c] = wt + at;
            for (int u = 0; u < ph.M; u++)
                for (int v = 0; v < pv.M; v++) {
                    const int kh = ph.k0 + st * (ph.M - 1 - u), kw = pv.k0 + st * (pv.M - 1 - v);
                    for (int o = 0; o < O; o++)
                        memcpy(wt + at + ((size_t)(u * pv.M + v) * O + o) * C,
                               weight + ((size_t)o * KK + kh * K + kw) * C, sizeof(float) * C);
                }
            at += (size_t)ph.M * pv.M * O * C;
        }
    const FwdKernel(*fwd)[5] = kernels_for_step(O);
#pragma omp parallel num_threads(team_size())
    {
        float *xp = bufs + (size_t)thread_id() * img_floats;
#pragma omp for schedule(static)
        for (int b = 0; b < s->B; b++) {
            pad_image(xp, dout + (size_t)b * s->Ho * s->Wo * O, s->Ho, s->Wo, O, lo, hi);
            float *db = din + (size_t)b * s->H * s->W * C;
            for (int a = 0; a < st; a++)
                for (int c = 0; c < st; c++) {
                    const Phase ph = ph_h[a], pv = ph_w[c];
                    for (int i = 0; i < ph.n; i++) {
                        float *orow = db + ((size_t)(st * i + a) * s->W + c) * C;
                        if (!ph.M || !pv.M) { /* no tap reaches these positions */
                            for (int j = 0; j < pv.n; j++)
                                memset(orow + (size_t)j * st * C, 0, sizeof(float) * C);
                            continue;
                        }
                        conv_row(fwd, orow, st * C, C, pv.n,
                                 xp + (size_t)(i + ph.off + lo) * row + (size_t)(pv.off + lo) * O,
                                 O, row, pw[a][c], O, ph.M, pv.M);
                    }
                }
        }
    }
}

/* ---- weight-gradient kernel: R input channels x NV vectors of output channels ----
 * dw: partial [.., C, O] at (tap, ci0, co0) (row stride O); x: padded input at the tap's offset
 * for output pixel (0, 0), channel ci0; dy: the image's gradient at channel co0. */
#define BWW_KERNEL(R, NV) BWW_KERNEL_(R, NV)
#define BWW_KERNEL_(R, NV)                                                                    \
    static void bww_##R##x##NV(float *restrict dw, int O, const float *restrict x, int xps,    \
                               int xrs, const float *restrict dy, int Ho, int Wo) {            \
        vf acc[R][NV];                                                                       \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = (vf){0};       \
        for (int ho = 0; ho < Ho; ho++) {                                                     \
            const float *xr = x + (size_t)ho * xrs, *dr = dy + (size_t)ho * Wo * O;           \
            for (int wo = 0; wo < Wo; wo++) {                                                 \
                vf d[NV];                                                                    \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                    d[v] = *(const vf *)(dr + (size_t)wo * O + v * VL);                      \
                const float *xq = xr + (size_t)wo * xps;                                      \
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                        \
                    float xs = xq[r];                                                         \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] += xs * d[v]; \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                *(vf *)(dw + (size_t)r * O + v * VL) += acc[r][v];                          \
    }

BWW_KERNEL(NP1, 1)
BWW_KERNEL(8, 1)
BWW_KERNEL(4, 1)
BWW_KERNEL(2, 1)
BWW_KERNEL(1, 1)
BWW_KERNEL(NP2A, 2)
BWW_KERNEL(NP2B, 2)
BWW_KERNEL(NP2C, 2)
BWW_KERNEL(2, 2)
BWW_KERNEL(1, 2)

#define BWW_NAME(R, NV) BWW_NAME_(R, NV)
#define BWW_NAME_(R, NV) bww_##R##x##NV
typedef void (*BwwKernel)(float *, int, const float *, int, int, const float *, int, int);
static const BwwKernel BWW[2][5] = {{BWW_NAME(NP1, 1), bww_8x1, bww_4x1, bww_2x1, bww_1x1},
                                    {BWW_NAME(NP2A, 2), BWW_NAME(NP2B, 2), BWW_NAME(NP2C, 2), bww_2x2, bww_1x2}};

void DIRECT_FN(direct_conv_backward_weight)(float *dweight, const float *dout, const float *in,
                                 const ConvShape *s, float *scratch) {
    const int KK = s->K * s->K, C = s->Cin, O = s->Cout, K = s->K, G = n_groups(s->B);
    const size_t wsize = (size_t)KK * C * O, img_floats = padded_floats(s->H, s->W, C, s->pad, s->pad);
    float *part = scratch, *bufs = scratch + (size_t)G * wsize;
    const int Wp = s->W + 2 * s->pad, xps = s->stride * C, xrs = s->stride * Wp * C;
#pragma omp parallel num_threads(team_size())
    {
        float *xp = bufs + (size_t)thread_id() * img_floats;
#pragma omp for schedule(static)
        for (int g = 0; g < G; g++) {
            float *pg = part + (size_t)g * wsize;
            memset(pg, 0, sizeof(float) * wsize);
            const int b0 = (int)((long)s->B * g / G), b1 = (int)((long)s->B * (g + 1) / G);
            for (int b = b0; b < b1; b++) {
                pad_image(xp, in + (size_t)b * s->H * s->W * C, s->H, s->W, C, s->pad, s->pad);
                const float *dyb = dout + (size_t)b * s->Ho * s->Wo * O;
                for (int kh = 0; kh < K; kh++)
                    for (int kw = 0; kw < K; kw++) {
                        const float *xt = xp + ((size_t)kh * Wp + kw) * C;
                        float *pt = pg + (size_t)(kh * K + kw) * C * O;
                        for (int co = 0; co < O;) {
                            const int nv = O - co >= 2 * VL ? 2 : 1;
                            for (int ci = 0; ci < C;) {
                                const int k = block_index(nv, C - ci);
                                BWW[nv - 1][k](pt + (size_t)ci * O + co, O, xt + ci, xps, xrs,
                                               dyb + co, s->Ho, s->Wo);
                                ci += BLOCKS[nv - 1][k];
                            }
                            co += nv * VL;
                        }
                    }
            }
        }
    }
    /* dweight[o][t][c] += sum over groups, in group order */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++)
        for (int t = 0; t < KK; t++)
            for (int c = 0; c < C; c++) {
                float acc = 0;
                for (int g = 0; g < G; g++) acc += part[(size_t)g * wsize + ((size_t)t * C + c) * O + o];
                dweight[((size_t)o * KK + t) * C + c] += acc;
            }
}
