/* 2-D convolution without bias, NHWC activations, OHWI weights.
 *
 * The CPU entry points (conv2d_*_cpu) run, for each pass, the kernel the planner chose for the
 * shape (src/nn/conv_plan.c): im2col + GEMM (here), Winograd (winograd.c) or direct
 * (conv_direct.c). im2col: the batch is cut into tiles of whole images; each tile is unfolded
 * into a [rows, K*K*Cin] matrix in a fixed scratch buffer and multiplied with the weights by one
 * GEMM. Tiles bound the scratch to 8 MiB whatever the batch (or to one image's unfolding when
 * that alone is larger). 1x1 stride-1 convolutions need no unfolding at all in NHWC: the
 * activation already is the GEMM operand. */
#include "nn.h"

#include <string.h>

#include "../backend/gemm.h"
#include "../core/common.h"
#include "conv_plan.h"

ConvShape conv_shape(int B, int H, int W, int Cin, int Cout, int K, int stride, int pad) {
    ConvShape s = {B, H, W, Cin, Cout, K, stride, pad, 0, 0};
    s.Ho = (H + 2 * pad - K) / stride + 1;
    s.Wo = (W + 2 * pad - K) / stride + 1;
    return s;
}

static int is_pointwise(const ConvShape *s) { return s->K == 1 && s->stride == 1 && s->pad == 0; }

/* Scratch budget per tile, in floats (8 MiB): large enough for efficient GEMMs, small enough to
 * stay out of the way of activations. A tile always holds at least one image. */
enum { CONV_TILE_FLOATS = 1 << 21 };

static int images_per_tile(const ConvShape *s) {
    size_t per_image = (size_t)s->Ho * s->Wo * s->K * s->K * s->Cin;
    size_t n = per_image ? CONV_TILE_FLOATS / per_image : 1;
    if (n < 1) n = 1;
    if (n > (size_t)s->B) n = s->B;
    return (int)n;
}

size_t conv2d_im2col_scratch_floats(const ConvShape *s) {
    if (is_pointwise(s)) return 0;
    return (size_t)images_per_tile(s) * s->Ho * s->Wo * s->K * s->K * s->Cin;
}

/* Unfold images [b0, b0+nb) into col[rows, K*K*Cin], column order (kh, kw, ci) = OHWI. */
static void im2col(float *col, const float *in, const ConvShape *s, int b0, int nb) {
    const int K = s->K, Cin = s->Cin, kdim = K * K * Cin;
    const long rows = (long)nb * s->Ho * s->Wo;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        int wo = (int)(r % s->Wo), ho = (int)(r / s->Wo % s->Ho), b = b0 + (int)(r / s->Wo / s->Ho);
        float *dst = col + r * kdim;
        const float *img = in + (size_t)b * s->H * s->W * Cin;
        for (int kh = 0; kh < K; kh++) {
            int hi = ho * s->stride - s->pad + kh;
            for (int kw = 0; kw < K; kw++) {
                int wi = wo * s->stride - s->pad + kw;
                float *d = dst + (kh * K + kw) * Cin;
                if (hi < 0 || hi >= s->H || wi < 0 || wi >= s->W)
                    memset(d, 0, sizeof(float) * Cin);
                else
                    memcpy(d, img + ((size_t)hi * s->W + wi) * Cin, sizeof(float) * Cin);
            }
        }
    }
}

/* Fold col gradients back onto the input: each input pixel gathers from the output positions
 * whose window covers it, so threads never write the same element and the sum order is fixed. */
static void col2im(float *din, const float *col, const ConvShape *s, int b0, int nb) {
    const int K = s->K, Cin = s->Cin, kdim = K * K * Cin;
    const long pixels = (long)nb * s->H;
#pragma omp parallel for schedule(static)
    for (long bh = 0; bh < pixels; bh++) {
        int bl = (int)(bh / s->H), hi = (int)(bh % s->H);
        float *img = din + ((size_t)(b0 + bl) * s->H + hi) * s->W * Cin;
        for (int wi = 0; wi < s->W; wi++) {
            float *d = img + (size_t)wi * Cin;
            memset(d, 0, sizeof(float) * Cin);
            for (int kh = 0; kh < K; kh++) {
                int t = hi + s->pad - kh;
                if (t < 0 || t % s->stride) continue;
                int ho = t / s->stride;
                if (ho >= s->Ho) continue;
                for (int kw = 0; kw < K; kw++) {
                    int u = wi + s->pad - kw;
                    if (u < 0 || u % s->stride) continue;
                    int wo = u / s->stride;
                    if (wo >= s->Wo) continue;
                    const float *c =
                        col + (((size_t)bl * s->Ho + ho) * s->Wo + wo) * kdim + (kh * K + kw) * Cin;
                    for (int ci = 0; ci < Cin; ci++) d[ci] += c[ci];
                }
            }
        }
    }
}

void conv2d_forward_im2col(float *out, const float *in, const float *weight, const ConvShape *s,
                           float *scratch) {
    const int kdim = s->K * s->K * s->Cin;
    if (is_pointwise(s)) {
        sgemm(0, 1, s->B * s->H * s->W, s->Cout, s->Cin, 1.0f, in, s->Cin, weight, s->Cin, 0.0f,
              out, s->Cout);
        return;
    }
    const int tile = images_per_tile(s), rows_per_image = s->Ho * s->Wo;
    for (int b0 = 0; b0 < s->B; b0 += tile) {
        int nb = MIN(tile, s->B - b0);
        im2col(scratch, in, s, b0, nb);
        sgemm(0, 1, nb * rows_per_image, s->Cout, kdim, 1.0f, scratch, kdim, weight, kdim, 0.0f,
              out + (size_t)b0 * rows_per_image * s->Cout, s->Cout);
    }
}

void conv2d_backward_weight_im2col(float *dweight, const float *dout, const float *in,
                                   const ConvShape *s, float *scratch) {
    const int kdim = s->K * s->K * s->Cin;
    if (is_pointwise(s)) {
        sgemm(1, 0, s->Cout, s->Cin, s->B * s->H * s->W, 1.0f, dout, s->Cout, in, s->Cin, 1.0f,
              dweight, s->Cin);
        return;
    }
    const int tile = images_per_tile(s), rows_per_image = s->Ho * s->Wo;
    for (int b0 = 0; b0 < s->B; b0 += tile) {
        int nb = MIN(tile, s->B - b0), rows = nb * rows_per_image;
        im2col(scratch, in, s, b0, nb);
        sgemm(1, 0, s->Cout, kdim, rows, 1.0f, dout + (size_t)b0 * rows_per_image * s->Cout,
              s->Cout, scratch, kdim, 1.0f, dweight, kdim);
    }
}

void conv2d_backward_data_im2col(float *din, const float *dout, const float *weight,
                                 const ConvShape *s, float *scratch) {
    const int kdim = s->K * s->K * s->Cin;
    if (is_pointwise(s)) {
        sgemm(0, 0, s->B * s->H * s->W, s->Cin, s->Cout, 1.0f, dout, s->Cout, weight, s->Cin,
              0.0f, din, s->Cin);
        return;
    }
    const int tile = images_per_tile(s), rows_per_image = s->Ho * s->Wo;
    for (int b0 = 0; b0 < s->B; b0 += tile) {
        int nb = MIN(tile, s->B - b0), rows = nb * rows_per_image;
        sgemm(0, 0, rows, kdim, s->Cout, 1.0f, dout + (size_t)b0 * rows_per_image * s->Cout,
              s->Cout, weight, kdim, 0.0f, scratch, kdim);
        col2im(din, scratch, s, b0, nb);
    }
}

/* ---- the three kernels behind one switch, and the CPU entry points: the planner's choice ---- */

const char *conv_algo_name(ConvAlgo a) {
    static const char *const names[CONV_ALGO_COUNT] = {"im2col", "winograd", "direct"};
    return (unsigned)a < CONV_ALGO_COUNT ? names[a] : "?";
}

const char *conv_pass_name(int pass) {
    static const char *const names[] = {"forward", "data", "weight"};
    return pass >= 0 && pass < 3 ? names[pass] : "?";
}

int conv_algo_applies(ConvAlgo a, const ConvShape *s, int pass) {
    switch (a) {
    case CONV_ALGO_IM2COL: return 1;
    case CONV_ALGO_WINOGRAD: return winograd_applies(s);
    case CONV_ALGO_DIRECT: return direct_conv_applies(s, pass);
    default: return 0;
    }
}

size_t conv_algo_scratch_floats(ConvAlgo a, const ConvShape *s, int pass) {
    switch (a) {
    case CONV_ALGO_WINOGRAD: return winograd_scratch_floats(s);
    case CONV_ALGO_DIRECT: return direct_conv_scratch_floats(s, pass);
    default: return conv2d_im2col_scratch_floats(s);
    }
}

/* Direct kernels for narrow layers (where the channels summed over are at most 32), else
 * Winograd wherever it applies, else im2col: the choice build/bench/bench_conv measured on the
 * AVX-512 Xeon (Winograd faster than or level with im2col for every 3x3 stride-1 shape tried,
 * 1 to 512 channels, 4x4 to 32x32 maps). */
ConvAlgo conv_algo_fixed(const ConvShape *s, int pass) {
    if (direct_conv_preferred(s, pass)) return CONV_ALGO_DIRECT;
    return winograd_applies(s) ? CONV_ALGO_WINOGRAD : CONV_ALGO_IM2COL;
}

typedef void (*ConvKernel)(float *, const float *, const float *, const ConvShape *, float *);

void conv_algo_run(ConvAlgo a, int pass, float *out, const float *in, const float *wt,
                   const ConvShape *s, float *scratch) {
    static const ConvKernel kernels[3][CONV_ALGO_COUNT] = {
        [CONV_PASS_FORWARD] = {conv2d_forward_im2col, winograd_forward, direct_conv_forward},
        [CONV_PASS_DATA] = {conv2d_backward_data_im2col, winograd_backward_data, direct_conv_backward_data},
        [CONV_PASS_WEIGHT] = {conv2d_backward_weight_im2col, winograd_backward_weight, direct_conv_backward_weight},
    };
    if (pass < 0 || pass > 2 || (unsigned)a >= CONV_ALGO_COUNT || !conv_algo_applies(a, s, pass))
        die("conv_algo_run: %s kernel for the %s pass of a %dx%d %d->%d layer: does not apply", conv_algo_name(a),
            conv_pass_name(pass), s->K, s->K, s->Cin, s->Cout);
    kernels[pass][a](out, in, wt, s, scratch);
}

size_t conv2d_scratch_floats(const ConvShape *s) { return conv_plan(s, CONV_PASSES_ALL); }
size_t conv2d_plan_cpu(const ConvShape *s, unsigned passes) { return conv_plan(s, passes); }
size_t conv2d_plan_ref(const ConvShape *s, unsigned passes) {
    (void)s, (void)passes;
    return 0; /* the reference kernels need no scratch and no choice */
}

void conv2d_forward_cpu(float *out, const float *in, const float *weight, const ConvShape *s,
                        float *scratch) {
    conv_algo_run(conv_plan_algo(s, CONV_PASS_FORWARD), CONV_PASS_FORWARD, out, in, weight, s, scratch);
}

void conv2d_backward_weight_cpu(float *dweight, const float *dout, const float *in,
                                const ConvShape *s, float *scratch) {
    conv_algo_run(conv_plan_algo(s, CONV_PASS_WEIGHT), CONV_PASS_WEIGHT, dweight, dout, in, s, scratch);
}

void conv2d_backward_data_cpu(float *din, const float *dout, const float *weight,
                              const ConvShape *s, float *scratch) {
    conv_algo_run(conv_plan_algo(s, CONV_PASS_DATA), CONV_PASS_DATA, din, dout, weight, s, scratch);
}

/* ---- naive reference: the convolution sum written out, double accumulation ---- */

#define IN_AT(b, h, w, c) in[(((size_t)(b) * s->H + (h)) * s->W + (w)) * s->Cin + (c)]
#define OUT_IDX(b, h, w, c) ((((size_t)(b) * s->Ho + (h)) * s->Wo + (w)) * s->Cout + (c))
#define W_IDX(o, kh, kw, i) ((((size_t)(o) * s->K + (kh)) * s->K + (kw)) * s->Cin + (i))

void conv2d_forward_ref(float *out, const float *in, const float *weight, const ConvShape *s,
                        float *scratch) {
    (void)scratch;
    for (int b = 0; b < s->B; b++)
        for (int ho = 0; ho < s->Ho; ho++)
            for (int wo = 0; wo < s->Wo; wo++)
                for (int co = 0; co < s->Cout; co++) {
                    double acc = 0;
                    for (int kh = 0; kh < s->K; kh++)
                        for (int kw = 0; kw < s->K; kw++) {
                            int hi = ho * s->stride - s->pad + kh, wi = wo * s->stride - s->pad + kw;
                            if (hi < 0 || hi >= s->H || wi < 0 || wi >= s->W) continue;
                            for (int ci = 0; ci < s->Cin; ci++)
                                acc += (double)IN_AT(b, hi, wi, ci) * weight[W_IDX(co, kh, kw, ci)];
                        }
                    out[OUT_IDX(b, ho, wo, co)] = (float)acc;
                }
}

void conv2d_backward_weight_ref(float *dweight, const float *dout, const float *in,
                                const ConvShape *s, float *scratch) {
    (void)scratch;
    for (int co = 0; co < s->Cout; co++)
        for (int kh = 0; kh < s->K; kh++)
            for (int kw = 0; kw < s->K; kw++)
                for (int ci = 0; ci < s->Cin; ci++) {
                    double acc = 0;
                    for (int b = 0; b < s->B; b++)
                        for (int ho = 0; ho < s->Ho; ho++)
                            for (int wo = 0; wo < s->Wo; wo++) {
                                int hi = ho * s->stride - s->pad + kh, wi = wo * s->stride - s->pad + kw;
                                if (hi < 0 || hi >= s->H || wi < 0 || wi >= s->W) continue;
                                acc += (double)dout[OUT_IDX(b, ho, wo, co)] * IN_AT(b, hi, wi, ci);
                            }
                    dweight[W_IDX(co, kh, kw, ci)] += (float)acc;
                }
}

void conv2d_backward_data_ref(float *din, const float *dout, const float *weight,
                              const ConvShape *s, float *scratch) {
    (void)scratch;
    for (int b = 0; b < s->B; b++)
        for (int hi = 0; hi < s->H; hi++)
            for (int wi = 0; wi < s->W; wi++)
                for (int ci = 0; ci < s->Cin; ci++) {
                    double acc = 0;
                    for (int kh = 0; kh < s->K; kh++)
                        for (int kw = 0; kw < s->K; kw++) {
                            int t = hi + s->pad - kh, u = wi + s->pad - kw;
                            if (t < 0 || u < 0 || t % s->stride || u % s->stride) continue;
                            int ho = t / s->stride, wo = u / s->stride;
                            if (ho >= s->Ho || wo >= s->Wo) continue;
                            for (int co = 0; co < s->Cout; co++)
                                acc += (double)dout[OUT_IDX(b, ho, wo, co)] * weight[W_IDX(co, kh, kw, ci)];
                        }
                    din[(((size_t)b * s->H + hi) * s->W + wi) * s->Cin + ci] = (float)acc;
                }
}
