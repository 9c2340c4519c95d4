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

static void plat_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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

#define plat_conv_plan conv2d_plan_cpu
#define plat_conv_forward conv2d_forward_cpu
#define plat_conv_backward_weight conv2d_backward_weight_cpu
#define plat_conv_backward_data conv2d_backward_data_cpu

#include "gpu_backend.inc"

const Backend backend_gpu_emu = {
    .name = "gpu-emulator",
    .host_memory = 1,
    GPU_TABLE_ENTRIES,
};
