/* Fully connected layer, PyTorch's weight layout [Out, In]; bias NULL for a layer without one
 * (DINO's last layer). */
#include "nn.h"

#include "../backend/gemm.h"

void linear_forward_cpu(float *out, const float *in, const float *weight, const float *bias,
                        int B, int In, int Out) {
    sgemm(0, 1, B, Out, In, 1.0f, in, In, weight, In, 0.0f, out, Out);
    if (!bias) return;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int o = 0; o < Out; o++) out[(size_t)b * Out + o] += bias[o];
}

void linear_backward_cpu(float *din, float *dweight, float *dbias, const float *dout,
                         const float *in, const float *weight, int B, int In, int Out) {
    sgemm(1, 0, Out, In, B, 1.0f, dout, Out, in, In, 1.0f, dweight, In);
    /* Column sums in fixed row order: deterministic whatever the thread count. */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < (dbias ? Out : 0); o++) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(size_t)b * Out + o];
        dbias[o] += s;
    }
    if (din) sgemm(0, 0, B, In, Out, 1.0f, dout, Out, weight, In, 0.0f, din, In);
}

/* ---- naive reference ---- */

void linear_forward_ref(float *out, const float *in, const float *weight, const float *bias,
                        int B, int In, int Out) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < Out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < In; i++) acc += (double)in[(size_t)b * In + i] * weight[(size_t)o * In + i];
            out[(size_t)b * Out + o] = (float)acc;
        }
}

void linear_backward_ref(float *din, float *dweight, float *dbias, const float *dout,
                         const float *in, const float *weight, int B, int In, int Out) {
    for (int o = 0; o < Out; o++) {
        double db = 0;
        for (int b = 0; b < B; b++) db += dout[(size_t)b * Out + o];
        if (dbias) dbias[o] += (float)db;
        for (int i = 0; i < In; i++) {
            double dw = 0;
            for (int b = 0; b < B; b++) dw += (double)dout[(size_t)b * Out + o] * in[(size_t)b * In + i];
            dweight[(size_t)o * In + i] += (float)dw;
        }
    }
    if (!din) return;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < In; i++) {
            double acc = 0;
            for (int o = 0; o < Out; o++) acc += (double)dout[(size_t)b * Out + o] * weight[(size_t)o * In + i];
            din[(size_t)b * In + i] = (float)acc;
        }
}
