/* 3x3 stride-1 pad-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016), NHWC activations, OHWI weights.
 *
 * Direct convolution spends 9 multiply-adds per output and input channel; F(2x2, 3x3) computes
 * a 2x2 block of outputs from a 4x4 input tile with 16, i.e. 4 per output: 2.25x fewer. In
 * transformed space the convolution becomes 16 independent GEMMs, one per tile position xi:
 *
 *   forward          Y = A^T [ U ⊙ V ] A,     U = G g G^T (weights), V = B^T d B (input tile)
 *   backward data    the same with g flipped in space and input/output channels swapped
 *   backward weights dU = sum over tiles of V ⊙ (A dY A^T), then dg = G^T dU G
 *
 * Layouts: V[16][T][C] and the GEMM outputs [16][T][C'] (T = tiles of the images in one pass),
 * U[16][Cout][Cin]. The 16 GEMMs run in parallel, one per thread at a time (OpenBLAS runs
 * single-threaded inside an OpenMP region), which keeps every core busy even when a GEMM is
 * small. Transforms vectorize over channels, which NHWC keeps contiguous. Every sum has a
 * fixed order, so results do not depend on the number of threads. */
#include <string.h>

#include "../backend/gemm.h"
#include "../core/common.h"
#include "nn.h"

enum { TILE_POS = 16 };

/* Floats for the transformed tiles of one pass; the batch is processed in groups of whole
 * images that fit (at least one image). 16 MiB keeps GEMMs tall enough to run near
 * peak (1 to 32 MiB measured within noise of each other on the full-width ResNet-18 step). */
enum { WINO_PASS_FLOATS = 1 << 22 };

int winograd_applies(const ConvShape *s) {
    return s->K == 3 && s->stride == 1 && s->pad == 1 && s->Ho == s->H && s->Wo == s->W;
}

static int tiles_per_image(const ConvShape *s) { return ((s->H + 1) / 2) * ((s->W + 1) / 2); }

static int images_per_pass(const ConvShape *s) {
    size_t per_image = (size_t)TILE_POS * tiles_per_image(s) * (s->Cin + s->Cout);
    size_t n = WINO_PASS_FLOATS / per_image;
    if (n < 1) n = 1;
    if (n > (size_t)s->B) n = s->B;
    return (int)n;
}

size_t winograd_scratch_floats(const ConvShape *s) {
    size_t T = (size_t)images_per_pass(s) * tiles_per_image(s);
    return (size_t)TILE_POS * (T * (s->Cin + s->Cout) + (size_t)s->Cin * s->Cout) +
           (size_t)MAX(s->Cin, s->Cout); /* a row of zeros for padding */
}

/* Tile t of a pass: image b, tile row ty, tile column tx (tiles ordered image, row, column). */
static inline void tile_position(long t, int th, int tw, int *b, int *ty, int *tx) {
    *b = (int)(t / ((long)th * tw));
    *ty = (int)(t / tw % th);
    *tx = (int)(t % tw);
}

/* p[side][side]: the channel rows of the side x side window of tile t of x [., H, W, C] that
 * starts at row 2ty+off, column 2tx+off; positions outside the image point at `zeros`. */
static void tile_rows(const float **p, int side, int off, long t, const float *x, int H, int W,
                      int C, const float *zeros) {
    int b, ty, tx;
    tile_position(t, (H + 1) / 2, (W + 1) / 2, &b, &ty, &tx);
    for (int i = 0; i < side; i++)
        for (int j = 0; j < side; j++) {
            int h = 2 * ty + off + i, w = 2 * tx + off + j;
            p[i * side + j] = (h < 0 || h >= H || w < 0 || w >= W)
                                  ? zeros
                                  : x + (((size_t)b * H + h) * W + w) * C;
        }
}

/* The transforms run over channels, VW at a time in vector registers (GCC/Clang vector
 * extensions; the types below permit unaligned access), then VW/2 (narrow layers have 8
 * channels), then one at a time for the rest. Each
 * transform is written once as a macro over the element type T. */
#define VW 16
typedef float vf __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float))));
typedef float vh __attribute__((vector_size(VW / 2 * sizeof(float)), aligned(sizeof(float))));
#define LD_V(p) (*(const vf *)(p))
#define ST_V(p, v) (*(vf *)(p) = (v))
#define LD_H(p) (*(const vh *)(p))
#define ST_H(p, v) (*(vh *)(p) = (v))
#define HALF_H ((vh){0} + 0.5f)
#define LD_S(p) (*(p))
#define ST_S(p, v) (*(p) = (v))
#define HALF_V ((vf){0} + 0.5f)
#define HALF_S 0.5f

/* V = B^T d B for one channel group at c: p[4][4] input rows, v + xi*plane the outputs. */
#define INPUT_TILE(T, LD, ST)                                                  \
    do {                                                                       \
        T d[4][4], r[4][4];                                                    \
        for (int i = 0; i < 4; i++)                                            \
            for (int j = 0; j < 4; j++) d[i][j] = LD(p[i][j] + c);             \
        for (int j = 0; j < 4; j++) {                                          \
            r[0][j] = d[0][j] - d[2][j];                                       \
            r[1][j] = d[1][j] + d[2][j];                                       \
            r[2][j] = d[2][j] - d[1][j];                                       \
            r[3][j] = d[1][j] - d[3][j];                                       \
        }                                                                      \
        for (int i = 0; i < 4; i++) {                                          \
            ST(v + (i * 4 + 0) * plane + c, r[i][0] - r[i][2]);                \
            ST(v + (i * 4 + 1) * plane + c, r[i][1] + r[i][2]);                \
            ST(v + (i * 4 + 2) * plane + c, r[i][2] - r[i][1]);                \
            ST(v + (i * 4 + 3) * plane + c, r[i][1] - r[i][3]);                \
        }                                                                      \
    } while (0)

/* V[xi][t][c] = (B^T d B)[xi] for the 4x4 tiles of images [0, nb) of x ([nb, H, W, C]),
 * tile (ty, tx) starting at input row 2ty-1, column 2tx-1; positions outside read `zeros`. */
static void input_transform(float *V, const float *x, int nb, int H, int W, int C,
                            const float *zeros) {
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    const long T = (long)nb * th * tw;
    const size_t plane = (size_t)T * C;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < T; t++) {
        const float *p[4][4];
        tile_rows(&p[0][0], 4, -1, t, x, H, W, C, zeros);
        float *v = V + t * C;
        int c = 0;
        for (; c + VW <= C; c += VW) INPUT_TILE(vf, LD_V, ST_V);
        for (; c + VW / 2 <= C; c += VW / 2) INPUT_TILE(vh, LD_H, ST_H);
        for (; c < C; c++) INPUT_TILE(float, LD_S, ST_S);
    }
}

/* o = A^T m A for one channel group; results o[2][2]. */
#define OUTPUT_TILE(T, LD)                                                     \
    T o[2][2];                                                                 \
    do {                                                                       \
        T a[4][4], s[2][4];                                                    \
        for (int i = 0; i < 4; i++)                                            \
            for (int j = 0; j < 4; j++) a[i][j] = LD(m + (i * 4 + j) * plane + c); \
        for (int j = 0; j < 4; j++) {                                          \
            s[0][j] = a[0][j] + a[1][j] + a[2][j];                             \
            s[1][j] = a[1][j] - a[2][j] - a[3][j];                             \
        }                                                                      \
        for (int i = 0; i < 2; i++) {                                          \
            o[i][0] = s[i][0] + s[i][1] + s[i][2];                             \
            o[i][1] = s[i][1] - s[i][2] - s[i][3];                             \
        }                                                                      \
    } while (0)

/* y = A^T m A for every tile of M[16][T][C], written to the valid positions of y [nb, H, W, C]. */
static void output_transform(float *y, const float *M, int nb, int H, int W, int C) {
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    const long T = (long)nb * th * tw;
    const size_t plane = (size_t)T * C;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < T; t++) {
        int b, ty, tx;
        tile_position(t, th, tw, &b, &ty, &tx);
        const int h0 = 2 * ty, w0 = 2 * tx, rows = MIN(2, H - h0), cols = MIN(2, W - w0);
        float *dst[2][2] = {{NULL, NULL}, {NULL, NULL}};
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) dst[i][j] = y + (((size_t)b * H + h0 + i) * W + w0 + j) * C;
        const float *m = M + t * C;
        int c = 0;
        for (; c + VW <= C; c += VW) {
            OUTPUT_TILE(vf, LD_V);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) ST_V(dst[i][j] + c, o[i][j]);
        }
        for (; c + VW / 2 <= C; c += VW / 2) {
            OUTPUT_TILE(vh, LD_H);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) ST_H(dst[i][j] + c, o[i][j]);
        }
        for (; c < C; c++) {
            OUTPUT_TILE(float, LD_S);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) dst[i][j][c] = o[i][j];
        }
    }
}

/* Z = A dY A^T for one channel group from the 2x2 gradient rows p[2][2]. */
#define GRAD_TILE(T, LD, ST)                                                   \
    do {                                                                       \
        T g00 = LD(p[0][0] + c), g01 = LD(p[0][1] + c), g10 = LD(p[1][0] + c), \
          g11 = LD(p[1][1] + c);                                               \
        T r[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}}; \
        for (int i = 0; i < 4; i++) {                                          \
            ST(z + (i * 4 + 0) * plane + c, r[i][0]);                          \
            ST(z + (i * 4 + 1) * plane + c, r[i][0] + r[i][1]);                \
            ST(z + (i * 4 + 2) * plane + c, r[i][0] - r[i][1]);                \
            ST(z + (i * 4 + 3) * plane + c, -r[i][1]);                         \
        }                                                                      \
    } while (0)

/* Z[xi][t][c] = (A dY A^T)[xi] for the 2x2 tiles of dy [nb, H, W, C] (zero outside). */
static void grad_transform(float *Z, const float *dy, int nb, int H, int W, int C,
                           const float *zeros) {
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    const long T = (long)nb * th * tw;
    const size_t plane = (size_t)T * C;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < T; t++) {
        const float *p[2][2];
        tile_rows(&p[0][0], 2, 0, t, dy, H, W, C, zeros);
        float *z = Z + t * C;
        int c = 0;
        for (; c + VW <= C; c += VW) GRAD_TILE(vf, LD_V, ST_V);
        for (; c + VW / 2 <= C; c += VW / 2) GRAD_TILE(vh, LD_H, ST_H);
        for (; c < C; c++) GRAD_TILE(float, LD_S, ST_S);
    }
}

/* U = G g G^T for one channel group; g read through G_AT(kh, kw). */
#define WEIGHT_TILE(T, LD, ST, HALF)                                           \
    do {                                                                       \
        T g[3][3], r[4][3];                                                    \
        for (int kh = 0; kh < 3; kh++)                                         \
            for (int kw = 0; kw < 3; kw++)                                     \
                g[kh][kw] = flip ? LD(src + ((2 - kh) * 3 + (2 - kw)) * I + i) \
                                 : LD(src + (kh * 3 + kw) * I + i);            \
        for (int j = 0; j < 3; j++) {                                          \
            r[0][j] = g[0][j];                                                 \
            r[1][j] = HALF * (g[0][j] + g[1][j] + g[2][j]);                    \
            r[2][j] = HALF * (g[0][j] - g[1][j] + g[2][j]);                    \
            r[3][j] = g[2][j];                                                 \
        }                                                                      \
        for (int a = 0; a < 4; a++) {                                          \
            ST(u + (a * 4 + 0) * plane + i, r[a][0]);                          \
            ST(u + (a * 4 + 1) * plane + i, HALF * (r[a][0] + r[a][1] + r[a][2])); \
            ST(u + (a * 4 + 2) * plane + i, HALF * (r[a][0] - r[a][1] + r[a][2])); \
            ST(u + (a * 4 + 3) * plane + i, r[a][2]);                          \
        }                                                                      \
    } while (0)

/* U[xi][o][i] = (G g G^T)[xi] for OHWI weights w [O, 3, 3, I]; `flip` rotates g by 180 degrees
 * (the kernel of the input gradient). */
static void weight_transform(float *U, const float *w, int O, int I, int flip) {
    const size_t plane = (size_t)O * I;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++) {
        const float *src = w + (size_t)o * 9 * I;
        float *u = U + (size_t)o * I;
        int i = 0;
        for (; i + VW <= I; i += VW) WEIGHT_TILE(vf, LD_V, ST_V, HALF_V);
        for (; i + VW / 2 <= I; i += VW / 2) WEIGHT_TILE(vh, LD_H, ST_H, HALF_H);
        for (; i < I; i++) WEIGHT_TILE(float, LD_S, ST_S, HALF_S);
    }
}

/* dg = G^T dU G for one channel group, added to dst. */
#define WEIGHT_GRAD_TILE(T, LD, ST, HALF)                                      \
    do {                                                                       \
        T m[4][4], r[3][4];                                                    \
        for (int a = 0; a < 4; a++)                                            \
            for (int b = 0; b < 4; b++) m[a][b] = LD(u + (a * 4 + b) * plane + i); \
        for (int b = 0; b < 4; b++) {                                          \
            r[0][b] = m[0][b] + HALF * (m[1][b] + m[2][b]);                    \
            r[1][b] = HALF * (m[1][b] - m[2][b]);                              \
            r[2][b] = HALF * (m[1][b] + m[2][b]) + m[3][b];                    \
        }                                                                      \
        for (int a = 0; a < 3; a++) {                                          \
            float *q = dst + a * 3 * I + i;                                    \
            ST(q, LD(q) + r[a][0] + HALF * (r[a][1] + r[a][2]));               \
            ST(q + I, LD(q + I) + HALF * (r[a][1] - r[a][2]));                 \
            ST(q + 2 * I, LD(q + 2 * I) + HALF * (r[a][1] + r[a][2]) + r[a][3]); \
        }                                                                      \
    } while (0)

/* dweight[o][kh][kw][i] += (G^T dU G)[kh][kw] for dU[16][O][I]. */
static void weight_grad_transform(float *dweight, const float *dU, int O, int I) {
    const size_t plane = (size_t)O * I;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++) {
        float *dst = dweight + (size_t)o * 9 * I;
        const float *u = dU + (size_t)o * I;
        int i = 0;
        for (; i + VW <= I; i += VW) WEIGHT_GRAD_TILE(vf, LD_V, ST_V, HALF_V);
        for (; i + VW / 2 <= I; i += VW / 2) WEIGHT_GRAD_TILE(vh, LD_H, ST_H, HALF_H);
        for (; i < I; i++) WEIGHT_GRAD_TILE(float, LD_S, ST_S, HALF_S);
    }
}

/* The 16 GEMMs C[xi] = op(A[xi]) op(B[xi]) (+ C[xi] when accumulate), each on one thread. */
static void batched_gemm(int ta, int tb, int M, int N, int K, const float *A, int lda,
                         size_t a_plane, const float *B, int ldb, size_t b_plane, float beta,
                         float *C, int ldc, size_t c_plane) {
#pragma omp parallel for schedule(static)
    for (int xi = 0; xi < TILE_POS; xi++)
        sgemm(ta, tb, M, N, K, 1.0f, A + xi * a_plane, lda, B + xi * b_plane, ldb, beta,
              C + xi * c_plane, ldc);
}

/* out [B, H, W, O] = conv(in [B, H, W, I]) with transformed weights U[16][O][I] (tb = 1) or
 * U[16][I][O] (tb = 0). */
static void wino_conv(float *out, const float *in, const float *U, int tb, int B, int H, int W,
                      int I, int O, int per_pass, float *V, float *M, const float *zeros) {
    const int tpi = ((H + 1) / 2) * ((W + 1) / 2);
    for (int b0 = 0; b0 < B; b0 += per_pass) {
        const int nb = MIN(per_pass, B - b0), T = nb * tpi;
        input_transform(V, in + (size_t)b0 * H * W * I, nb, H, W, I, zeros);
        batched_gemm(0, tb, T, O, I, V, I, (size_t)T * I, U, tb ? I : O, (size_t)O * I, 0.0f, M, O,
                     (size_t)T * O);
        output_transform(out + (size_t)b0 * H * W * O, M, nb, H, W, O);
    }
}

void winograd_forward(float *out, const float *in, const float *weight, const ConvShape *s,
                      float *scratch) {
    const int per_pass = images_per_pass(s);
    const size_t T = (size_t)per_pass * tiles_per_image(s);
    float *U = scratch, *V = U + (size_t)TILE_POS * s->Cout * s->Cin, *M = V + TILE_POS * T * s->Cin;
    float *zeros = M + TILE_POS * T * s->Cout;
    memset(zeros, 0, sizeof(float) * MAX(s->Cin, s->Cout));
    weight_transform(U, weight, s->Cout, s->Cin, 0);
    wino_conv(out, in, U, 1, s->B, s->H, s->W, s->Cin, s->Cout, per_pass, V, M, zeros);
}

void winograd_backward_data(float *din, const float *dout, const float *weight,
                            const ConvShape *s, float *scratch) {
    const int per_pass = images_per_pass(s);
    const size_t T = (size_t)per_pass * tiles_per_image(s);
    float *U = scratch, *V = U + (size_t)TILE_POS * s->Cout * s->Cin, *M = V + TILE_POS * T * s->Cout;
    float *zeros = M + TILE_POS * T * s->Cin;
    memset(zeros, 0, sizeof(float) * MAX(s->Cin, s->Cout));
    /* din = conv(dout, g rotated 180 degrees, channels swapped): U[xi][o][i] of the flipped
     * kernel is read as the [Cout][Cin] right-hand operand without transposing (tb = 0). */
    weight_transform(U, weight, s->Cout, s->Cin, 1);
    wino_conv(din, dout, U, 0, s->B, s->H, s->W, s->Cout, s->Cin, per_pass, V, M, zeros);
}

void winograd_backward_weight(float *dweight, const float *dout, const float *in,
                              const ConvShape *s, float *scratch) {
    const int per_pass = images_per_pass(s), tpi = tiles_per_image(s);
    const size_t Tmax = (size_t)per_pass * tpi;
    float *dU = scratch, *V = dU + (size_t)TILE_POS * s->Cout * s->Cin, *Z = V + TILE_POS * Tmax * s->Cin;
    float *zeros = Z + TILE_POS * Tmax * s->Cout;
    memset(zeros, 0, sizeof(float) * MAX(s->Cin, s->Cout));
    const int H = s->H, W = s->W;
    for (int b0 = 0; b0 < s->B; b0 += per_pass) {
        const int nb = MIN(per_pass, s->B - b0), T = nb * tpi;
        input_transform(V, in + (size_t)b0 * H * W * s->Cin, nb, H, W, s->Cin, zeros);
        grad_transform(Z, dout + (size_t)b0 * H * W * s->Cout, nb, H, W, s->Cout, zeros);
        /* dU[xi] (Cout x Cin) (+)= Z[xi]^T V[xi]: the sum over tiles is the GEMM's inner one */
        batched_gemm(1, 0, s->Cout, s->Cin, T, Z, s->Cout, (size_t)T * s->Cout, V, s->Cin,
                     (size_t)T * s->Cin, b0 == 0 ? 0.0f : 1.0f, dU, s->Cin,
                     (size_t)s->Cout * s->Cin);
    }
    weight_grad_transform(dweight, dU, s->Cout, s->Cin);
}
