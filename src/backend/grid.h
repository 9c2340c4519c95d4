/* One source for our own GPU kernels, two compilers: nvcc builds them as CUDA kernels
 * (src/backend/cuda/), a C compiler builds them as host functions that a small grid emulator
 * runs (src/backend/emu/), so `make test` checks every index, bound and reduction order of the
 * GPU kernels against the reference kernels on a machine with no GPU.
 *
 * A kernel body is written as a sequence of phases, each run by every thread of the block:
 *
 *   KERNEL(name, float *out, const float *in, int n) {
 *       SHARED(double, s, 256);
 *       PHASE_BEGIN  s[tid] = ...;  PHASE_END       // every thread, then a barrier
 *       for (int h = 128; h > 0; h >>= 1) { PHASE_BEGIN if (tid < h) s[tid] += s[tid + h]; PHASE_END }
 *       PHASE_BEGIN if (tid == 0) out[BLOCK_X] = (float)s[0]; PHASE_END
 *   }
 *
 * On the GPU a phase is its body followed by __syncthreads(); in the emulator it is a loop over
 * the block's threads, so the barrier is the loop's end. The rules that make both the same:
 *  - a value carried from one phase to the next lives in SHARED memory (a thread's locals end
 *    with its phase); block-uniform values (loop bounds, BLOCK_X) may be ordinary locals;
 *  - no `return` or `continue` at phase level: guard with `if`;
 *  - inside a phase a thread reads only what it wrote or what earlier phases wrote. The
 *    emulator runs the threads (and the blocks) in an order that tests reverse, so a kernel
 *    that breaks this rule gives different bits in the two orders and fails its test.
 * A kernel with one phase and no shared memory uses THREADS_BEGIN/THREADS_END (no barrier).
 * Grids are at most 2-D (BLOCK_X, BLOCK_Y), blocks 1-D (tid < NTHREADS). */
#ifndef BYOL_GRID_H
#define BYOL_GRID_H

#ifdef __CUDACC__

#define KERNEL(name, ...) __global__ void name(__VA_ARGS__)
#define DEVICE_FN static __device__ __forceinline__
#define SHARED(type, name, n) __shared__ type name[n]
#define BLOCK_X ((int)blockIdx.x)
#define BLOCK_Y ((int)blockIdx.y)
#define GRID_X ((int)gridDim.x)
#define NTHREADS ((int)blockDim.x)
#define PHASE_BEGIN { const int tid = (int)threadIdx.x;
#define PHASE_END } __syncthreads();
#define THREADS_BEGIN { const int tid = (int)threadIdx.x;
#define THREADS_END }
/* LAUNCH(kernel, grid_x, grid_y, threads, args...) on the backend's stream. */
#define LAUNCH(k, gx, gy, nt, ...) \
    k<<<dim3((unsigned)(gx), (unsigned)(gy)), (unsigned)(nt), 0, cuda_stream()>>>(__VA_ARGS__)

#else /* the grid emulator */

typedef struct {
    int bx, by, gx, gy, threads; /* this block, the grid, the block's threads */
    int reverse;                 /* run the threads last to first (race check) */
} GridBlock;

/* 1: the emulator runs blocks and threads last to first (tests flip it to expose races). */
extern int grid_emu_reverse;

#define KERNEL(name, ...) __attribute__((unused)) static void name(const GridBlock *grid_, __VA_ARGS__)
#define DEVICE_FN static inline
#define SHARED(type, name, n) type name[n]
#define BLOCK_X (grid_->bx)
#define BLOCK_Y (grid_->by)
#define GRID_X (grid_->gx)
#define NTHREADS (grid_->threads)
#define PHASE_BEGIN                                                                   \
    for (int tid_i_ = 0; tid_i_ < grid_->threads; tid_i_++) {                         \
        const int tid = grid_->reverse ? grid_->threads - 1 - tid_i_ : tid_i_;
#define PHASE_END }
#define THREADS_BEGIN PHASE_BEGIN
#define THREADS_END PHASE_END
#define LAUNCH(k, gx_, gy_, nt, ...)                                                        \
    do {                                                                                    \
        GridBlock g_ = {0, 0, (int)(gx_), (int)(gy_), (int)(nt), grid_emu_reverse};         \
        for (int i_ = 0; i_ < g_.gx * g_.gy; i_++) {                                       \
            int j_ = g_.reverse ? g_.gx * g_.gy - 1 - i_ : i_;                              \
            g_.bx = j_ % g_.gx;                                                             \
            g_.by = j_ / g_.gx;                                                             \
            k(&g_, __VA_ARGS__);                                                            \
        }                                                                                   \
    } while (0)

#endif

#endif
