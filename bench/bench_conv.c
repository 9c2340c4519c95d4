/* Times one convolution shape's three kernels, im2col+GEMM against Winograd F(2x2, 3x3), so the
 * choice in src/nn/conv2d.c rests on a measurement.
 * usage: build/bench/bench_conv B H C [Cout] [threads] */
#include <stdio.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/threads.h"
#include "nn/nn.h"

/* Best of 5 runs, in ms. */
#define BEST(call)                                        \
    ({                                                    \
        double best_ = 1e30;                              \
        for (int r_ = 0; r_ < 5; r_++) {                  \
            double t0_ = now_seconds();                           \
            call;                                         \
            double dt_ = now_seconds() - t0_;                     \
            if (dt_ < best_) best_ = dt_;                 \
        }                                                 \
        best_ * 1e3;                                      \
    })

int main(int argc, char **argv) {
    threads_select_blas_core(argv);
    if (argc < 4) {
        fprintf(stderr, "usage: %s B H C [Cout] [threads]\n", argv[0]);
        return 2;
    }
    int B = atoi(argv[1]), H = atoi(argv[2]), C = atoi(argv[3]);
    int O = argc > 4 ? atoi(argv[4]) : C;
    threads_set(argc > 5 ? atoi(argv[5]) : 0);
    ConvShape s = conv_shape(B, H, H, C, O, 3, 1, 1);
    size_t nx = (size_t)B * H * H * C, ny = (size_t)B * H * H * O, nw = (size_t)9 * C * O;
    float *x = xmalloc(nx * 4, "x"), *y = xmalloc(ny * 4, "y"), *w = xmalloc(nw * 4, "w");
    float *dw = xcalloc(nw, 4, "dw"), *dx = xmalloc(nx * 4, "dx");
    for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 13) * 0.1f;
    for (size_t i = 0; i < nw; i++) w[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < ny; i++) y[i] = (float)(i % 5) * 0.1f;
    size_t sc = MAX(winograd_scratch_floats(&s), (size_t)B * H * H * 9 * MAX(C, O));
    float *scratch = xmalloc(sc * 4, "scratch");
    double gf = 2.0 * B * H * H * C * O * 9 / 1e9;
    double f_cpu = BEST(conv2d_forward_im2col(y, x, w, &s, scratch));
    double f_w = BEST(winograd_forward(y, x, w, &s, scratch));
    double d_cpu = BEST(conv2d_backward_data_im2col(dx, y, w, &s, scratch));
    double d_w = BEST(winograd_backward_data(dx, y, w, &s, scratch));
    double g_cpu = BEST(conv2d_backward_weight_im2col(dw, y, x, &s, scratch));
    double g_w = BEST(winograd_backward_weight(dw, y, x, &s, scratch));
    printf("B%d %dx%d %d->%d (%.2f GFLOP direct, %d threads): ms im2col/winograd  forward %.1f/%.1f"
           "  data %.1f/%.1f  weights %.1f/%.1f\n",
           B, H, H, C, O, gf, threads_get(), f_cpu, f_w, d_cpu, d_w, g_cpu, g_w);
    return 0;
}
