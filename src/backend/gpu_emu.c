/* The GPU backend on the host: the CUDA backend's own kernels (gpu_kernels.h) run by grid.h's
 * emulator, its table entries (gpu_backend.inc) as they are, and the CPU's SGEMM and
 * convolutions standing in for cuBLASLt and cuDNN (the conv plan, and its scratch, are the CPU
 * planner's). Tests compare it with backend_ref kernel by
 * kernel and step by step, and run it with the threads and blocks in reverse order to catch a
 * kernel that reads what another thread of its phase writes. Slow: for tests, and for
 * `--device gpu-emulator`. */
#include <string.h>

#include "../core/common.h"
#include "backend.h"
#include "gemm.h"
#include "gpu_kernels.h"

int grid_emu_reverse = 0;

#define GPU_API
#define GPU_FN(name) emu_##name

/* A bf16 copy of x, kept as floats: what the GPU's tensor cores read. The products of two bf16
 * values are exact in fp32, so an fp32 GEMM or convolution of such copies is the GPU's bf16
 * computation with fp32 accumulation, up to the order of the additions. */
static float *bf16_copy(const float *x, size_t n) {
    float *r = xmalloc((n ? n : 1) * sizeof(float), "a bf16 copy");
    LAUNCH(k_round_bf16, blocks_for(n), 1, GPU_THREADS, r, x, n);
    return r;
}

static void round_bf16(float *x, size_t n) { LAUNCH(k_round_bf16, blocks_for(n), 1, GPU_THREADS, x, (const float *)x, n); }

static void plat_gemm(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (!bf16) {
        sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *a = bf16_copy(A, (size_t)(ta ? K : M) * lda), *b = bf16_copy(B, (size_t)(tb ? N : K) * ldb);
    sgemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc); /* C stays fp32, as cuBLASLt's */
    xfree(a);
    xfree(b);
}

/* The library calls' stand-ins: the CPU's convolutions (and its planner). */
static size_t plat_conv_plan(const ConvShape *s, unsigned passes, int bf16) {
    (void)bf16;
    return conv2d_plan_cpu(s, passes);
}

static size_t in_floats(const ConvShape *s) { return (size_t)s->B * s->H * s->W * s->Cin; }
static size_t out_floats(const ConvShape *s) { return (size_t)s->B * s->Ho * s->Wo * s->Cout; }
static size_t weight_floats(const ConvShape *s) { return (size_t)s->Cout * s->K * s->K * s->Cin; }

static void plat_conv_forward(float *out, const float *in, const float *weight, const ConvShape *s,
                              float *scratch, int bf16) {
    if (!bf16) {
        conv2d_forward_cpu(out, in, weight, s, scratch);
        return;
    }
    float *x = bf16_copy(in, in_floats(s)), *w = bf16_copy(weight, weight_floats(s));
    conv2d_forward_cpu(out, x, w, s, scratch);
    round_bf16(out, out_floats(s));
    xfree(x);
    xfree(w);
}

static void plat_conv_backward_data(float *din, const float *dout, const float *weight,
                                    const ConvShape *s, float *scratch, int bf16) {
    if (!bf16) {
        conv2d_backward_data_cpu(din, dout, weight, s, scratch);
        return;
    }
    float *dy = bf16_copy(dout, out_floats(s)), *w = bf16_copy(weight, weight_floats(s));
    conv2d_backward_data_cpu(din, dy, w, s, scratch);
    round_bf16(din, in_floats(s));
    xfree(dy);
    xfree(w);
}

static void plat_conv_backward_weight(float *dweight, const float *dout, const float *in,
                                      const ConvShape *s, float *scratch, int bf16) {
    if (!bf16) {
        conv2d_backward_weight_cpu(dweight, dout, in, s, scratch);
        return;
    }
    const size_t nw = weight_floats(s);
    float *dy = bf16_copy(dout, out_floats(s)), *x = bf16_copy(in, in_floats(s));
    float *part = xcalloc(nw, sizeof(float), "a bf16 weight gradient");
    conv2d_backward_weight_cpu(part, dy, x, s, scratch);
    round_bf16(part, nw); /* cuDNN writes it in bf16 */
    LAUNCH(k_add, blocks_for(nw), 1, GPU_THREADS, dweight, (const float *)dweight, (const float *)part, nw);
    xfree(dy), xfree(x), xfree(part);
}

static void *plat_alloc(size_t bytes, const char *what) { return xcalloc(bytes ? bytes : 1, 1, what); }
static void plat_release(void *p) { xfree(p); }
static void plat_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void plat_to_device(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void plat_to_host(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void plat_sync(void) {}

/* Grow-only: an entry's scratch, valid until the next entry that asks for one. */
static void *aux_mem;
static size_t aux_bytes;
static void *plat_aux(size_t bytes) {
    if (bytes > aux_bytes) {
        xfree(aux_mem);
        aux_mem = xcalloc(bytes, 1, "the GPU emulator's scratch");
        aux_bytes = bytes;
    }
    return aux_mem;
}

#include "gpu_backend.inc"

const Backend backend_gpu_emu = {
    .name = "gpu-emulator",
    .host_memory = 1,
    GPU_TABLE_ENTRIES,
};
