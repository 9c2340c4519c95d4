/* Times one convolution shape's three kernels with each algorithm that applies: im2col+GEMM,
 * Winograd F(2x2, 3x3) (3x3 stride 1) and direct (Cout, for the input gradient Cin, a multiple
 * of 16), so the choices in src/nn/conv2d.c rest on a measurement. "-" where one does not apply.
 * usage: build/bench/bench_conv B H C [Cout] [threads] [K] [stride] */
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
            double t0_ = now_seconds();                   \
            call;                                         \
            double dt_ = now_seconds() - t0_;             \
            if (dt_ < best_) best_ = dt_;                 \
        }                                                 \
        best_ * 1e3;                                      \
    })

static void cell(const char *name, double im2col, double wino, double direct) {
    printf("  %s", name);
    const double v[3] = {im2col, wino, direct};
    for (int i = 0; i < 3; i++) {
        if (v[i] < 0)
            printf("%s-", i ? "/" : " ");
        else
            printf("%s%.1f", i ? "/" : " ", v[i]);
    }
}

int main(int argc, char **argv) {
    threads_select_blas_core(argv);
    if (argc < 4) {
        fprintf(stderr, "usage: %s B H C [Cout] [threads] [K] [stride]\n", argv[0]);
        return 2;
    }
    int B = atoi(argv[1]), H = atoi(argv[2]), C = atoi(argv[3]);
    int O = argc > 4 ? atoi(argv[4]) : C;
    threads_set(argc > 5 ? atoi(argv[5]) : 0);
    int K = argc > 6 ? atoi(argv[6]) : 3, stride = argc > 7 ? atoi(argv[7]) : 1;
    ConvShape s = conv_shape(B, H, H, C, O, K, stride, K / 2);
    size_t nx = (size_t)B * H * H * C, ny = (size_t)B * s.Ho * s.Wo * O, nw = (size_t)K * K * C * O;
    float *x = xmalloc(nx * 4, "x"), *y = xmalloc(ny * 4, "y"), *w = xmalloc(nw * 4, "w");
    float *dw = xcalloc(nw, 4, "dw"), *dx = xmalloc(nx * 4, "dx");
    for (size_t i = 0; i < nx; i++) x[i] = (float)(i % 13) * 0.1f;
    for (size_t i = 0; i < nw; i++) w[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < ny; i++) y[i] = (float)(i % 5) * 0.1f;
    size_t sc = conv2d_im2col_scratch_floats(&s);
    if (winograd_applies(&s)) sc = MAX(sc, winograd_scratch_floats(&s));
    for (int p = 0; p < 3; p++)
        if (direct_conv_applies(&s, p)) sc = MAX(sc, direct_conv_scratch_floats(&s, p));
    float *scratch = xmalloc(sc * 4, "scratch");
    const int wino = winograd_applies(&s);
    double gf = 2.0 * B * s.Ho * s.Wo * C * O * K * K / 1e9;
    double f[3], d[3], g[3];
    f[0] = BEST(conv2d_forward_im2col(y, x, w, &s, scratch));
    d[0] = BEST(conv2d_backward_data_im2col(dx, y, w, &s, scratch));
    g[0] = BEST(conv2d_backward_weight_im2col(dw, y, x, &s, scratch));
    f[1] = wino ? BEST(winograd_forward(y, x, w, &s, scratch)) : -1;
    d[1] = wino ? BEST(winograd_backward_data(dx, y, w, &s, scratch)) : -1;
    g[1] = wino ? BEST(winograd_backward_weight(dw, y, x, &s, scratch)) : -1;
    f[2] = direct_conv_applies(&s, CONV_PASS_FORWARD) ? BEST(direct_conv_forward(y, x, w, &s, scratch)) : -1;
    d[2] = direct_conv_applies(&s, CONV_PASS_DATA) ? BEST(direct_conv_backward_data(dx, y, w, &s, scratch)) : -1;
    g[2] = direct_conv_applies(&s, CONV_PASS_WEIGHT) ? BEST(direct_conv_backward_weight(dw, y, x, &s, scratch)) : -1;
    printf("B%d %dx%d %d->%d k%d s%d (%.2f GFLOP direct, %d threads): ms im2col/winograd/direct", B, H,
           H, C, O, K, stride, gf, threads_get());
    cell("forward", f[0], f[1], f[2]);
    cell("data", d[0], d[1], d[2]);
    cell("weights", g[0], g[1], g[2]);
    printf("\n");
    return 0;
}
