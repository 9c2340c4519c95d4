/* Max pooling (the ImageNet stem's 3x3 stride 2) and global average pooling, NHWC. */
#include <math.h>
#include <string.h>

#include "nn.h"

PoolShape pool_shape(int B, int H, int W, int C, int K, int stride, int pad) {
    PoolShape s = {B, H, W, C, K, stride, pad, 0, 0};
    s.Ho = (H + 2 * pad - K) / stride + 1;
    s.Wo = (W + 2 * pad - K) / stride + 1;
    return s;
}

/* One output pixel, all channels, with PyTorch's rule: start at -inf with the window's first
 * in-bounds position, then take a value if it is greater or NaN. Padding never wins. */
static void maxpool_pixel(float *out, int32_t *argmax, const float *img, const PoolShape *s,
                          int ho, int wo) {
    int h0 = ho * s->stride - s->pad, w0 = wo * s->stride - s->pad;
    int first = (h0 < 0 ? 0 : h0) * s->W + (w0 < 0 ? 0 : w0);
    for (int c = 0; c < s->C; c++) {
        out[c] = -INFINITY;
        argmax[c] = first;
    }
    for (int hi = h0 < 0 ? 0 : h0; hi < h0 + s->K && hi < s->H; hi++)
        for (int wi = w0 < 0 ? 0 : w0; wi < w0 + s->K && wi < s->W; wi++) {
            const float *x = img + ((size_t)hi * s->W + wi) * s->C;
            for (int c = 0; c < s->C; c++)
                if (x[c] > out[c] || isnan(x[c])) {
                    out[c] = x[c];
                    argmax[c] = hi * s->W + wi;
                }
        }
}

void maxpool2d_forward_cpu(float *out, int32_t *argmax, const float *in, const PoolShape *s) {
#pragma omp parallel for schedule(static)
    for (long bh = 0; bh < (long)s->B * s->Ho; bh++) {
        int b = (int)(bh / s->Ho), ho = (int)(bh % s->Ho);
        const float *img = in + (size_t)b * s->H * s->W * s->C;
        for (int wo = 0; wo < s->Wo; wo++) {
            size_t o = (((size_t)b * s->Ho + ho) * s->Wo + wo) * s->C;
            maxpool_pixel(out + o, argmax + o, img, s, ho, wo);
        }
    }
}

void maxpool2d_backward_cpu(float *din, const float *dout, const int32_t *argmax,
                            const PoolShape *s) {
    /* Windows overlap, so each image is handled by one thread: no two threads add to the same
     * input element, and the order of additions is fixed. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < s->B; b++) {
        float *dimg = din + (size_t)b * s->H * s->W * s->C;
        memset(dimg, 0, sizeof(float) * s->H * s->W * s->C);
        for (int p = 0; p < s->Ho * s->Wo; p++) {
            size_t o = ((size_t)b * s->Ho * s->Wo + p) * s->C;
            for (int c = 0; c < s->C; c++)
                dimg[(size_t)argmax[o + c] * s->C + c] += dout[o + c];
        }
    }
}

void avgpool_forward_cpu(float *out, const float *in, int B, int HW, int C) {
#pragma omp parallel for schedule(static)
    for (long bc = 0; bc < (long)B * C; bc++) {
        int b = (int)(bc / C), c = (int)(bc % C);
        double acc = 0;
        for (int p = 0; p < HW; p++) acc += in[((size_t)b * HW + p) * C + c];
        out[bc] = (float)(acc / HW);
    }
}

void avgpool_backward_cpu(float *din, const float *dout, int B, int HW, int C) {
    const float inv = 1.0f / HW;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++) {
            float *d = din + ((size_t)b * HW + p) * C;
            for (int c = 0; c < C; c++) d[c] = dout[(size_t)b * C + c] * inv;
        }
}

/* ---- naive reference ---- */

void maxpool2d_forward_ref(float *out, int32_t *argmax, const float *in, const PoolShape *s) {
    for (int b = 0; b < s->B; b++)
        for (int c = 0; c < s->C; c++)
            for (int ho = 0; ho < s->Ho; ho++)
                for (int wo = 0; wo < s->Wo; wo++) {
                    float best = -INFINITY;
                    int arg = -1;
                    for (int kh = 0; kh < s->K; kh++)
                        for (int kw = 0; kw < s->K; kw++) {
                            int hi = ho * s->stride - s->pad + kh, wi = wo * s->stride - s->pad + kw;
                            if (hi < 0 || hi >= s->H || wi < 0 || wi >= s->W) continue;
                            float v = in[(((size_t)b * s->H + hi) * s->W + wi) * s->C + c];
                            if (arg < 0) arg = hi * s->W + wi;
                            if (v > best || isnan(v)) {
                                best = v;
                                arg = hi * s->W + wi;
                            }
                        }
                    size_t o = (((size_t)b * s->Ho + ho) * s->Wo + wo) * s->C + c;
                    out[o] = best;
                    argmax[o] = arg;
                }
}

void maxpool2d_backward_ref(float *din, const float *dout, const int32_t *argmax,
                            const PoolShape *s) {
    memset(din, 0, sizeof(float) * s->B * s->H * s->W * s->C);
    for (int b = 0; b < s->B; b++)
        for (int p = 0; p < s->Ho * s->Wo; p++)
            for (int c = 0; c < s->C; c++) {
                size_t o = ((size_t)b * s->Ho * s->Wo + p) * s->C + c;
                din[((size_t)b * s->H * s->W + argmax[o]) * s->C + c] += dout[o];
            }
}

void avgpool_forward_ref(float *out, const float *in, int B, int HW, int C) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double acc = 0;
            for (int p = 0; p < HW; p++) acc += in[((size_t)b * HW + p) * C + c];
            out[(size_t)b * C + c] = (float)(acc / HW);
        }
}

void avgpool_backward_ref(float *din, const float *dout, int B, int HW, int C) {
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++)
            for (int c = 0; c < C; c++)
                din[((size_t)b * HW + p) * C + c] = (float)((double)dout[(size_t)b * C + c] / HW);
}
