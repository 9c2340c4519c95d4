/* ReLU, residual add, the NCHW -> NHWC input transpose, and the non-finite count. */
#include <math.h>
#include <string.h>

#include "nn.h"

void fill_zero_cpu(float *x, size_t n) { memset(x, 0, n * sizeof(float)); }
void fill_zero_ref(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.0f;
}

size_t count_nonfinite_cpu(const float *x, size_t n) {
    size_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}
size_t count_nonfinite_ref(const float *x, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]) || isinf(x[i])) bad++;
    return bad;
}

void relu_forward_cpu(float *out, const float *in, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

void relu_backward_cpu(float *din, const float *dout, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void add_forward_cpu(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void nchw_to_nhwc_cpu(float *out, const float *in, int B, int C, int H, int W) {
    const int HW = H * W;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * HW + p) * C + c] = in[((size_t)b * C + c) * HW + p];
}

/* ---- naive reference ---- */

void relu_forward_ref(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

void relu_backward_ref(float *din, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void add_forward_ref(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void nchw_to_nhwc_ref(float *out, const float *in, int B, int C, int H, int W) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    out[(((size_t)b * H + h) * W + w) * C + c] = in[(((size_t)b * C + c) * H + h) * W + w];
}

void nhwc_to_nchw_ref(float *out, const float *in, int B, int C, int H, int W) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++)
                    out[(((size_t)b * C + c) * H + h) * W + w] = in[(((size_t)b * H + h) * W + w) * C + c];
}
