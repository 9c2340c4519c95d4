#include "threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#ifdef BYOL_OMP
#include <omp.h>
#endif
#ifdef BYOL_BLAS
#include <cblas.h>
#endif

static int g_threads = 1;

int threads_available(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void threads_set(int n) {
    if (n <= 0) n = threads_available();
    g_threads = n;
#ifdef BYOL_OMP
    omp_set_num_threads(n);
#endif
#ifdef BYOL_BLAS
    openblas_set_num_threads(n);
#endif
}

int threads_get(void) { return g_threads; }

const char *threads_backend_summary(void) {
    static char buf[320];
#ifdef BYOL_BLAS
    const char *blas = openblas_get_config();
#else
    const char *blas = "built-in gemm (no BLAS)";
#endif
#ifdef BYOL_OMP
    const char *omp = "openmp";
#else
    const char *omp = "no openmp";
#endif
#ifdef BYOL_BLAS
    const char *was = getenv("BYOL_BLAS_CORE_PICKED");
    char why[96] = "";
    if (was) snprintf(why, sizeof why, " (chosen by byol.c: OpenBLAS picked %.40s for this CPU)", was);
    snprintf(buf, sizeof buf, "%s, %s, kernels for %s%s", omp, blas, openblas_get_corename(), why);
#else
    snprintf(buf, sizeof buf, "%s, %s", omp, blas);
#endif
    return buf;
}


#if defined(BYOL_BLAS) && defined(__x86_64__) && defined(__GNUC__)
/* 1: SSE/AVX-era kernels, 2: AVX2+FMA kernels, 3: AVX-512 kernels (OpenBLAS 0.3.21's names). */
static int blas_core_rank(const char *core) {
    static const char *avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *avx2[] = {"haswell", "zen"};
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcasecmp(core, avx512[i]) == 0) return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++)
        if (strcasecmp(core, avx2[i]) == 0) return 2;
    return 1;
}
#endif

/* OpenBLAS 0.3.21 (Debian 12) picks its kernels from the CPU model number and falls back to old
 * ones on CPUs newer than itself: on an Intel Xeon of family 6 model 207 (Emerald Rapids, full
 * AVX-512) it picks "Prescott" (SSE3), and a convolution-shaped SGEMM ran 34-55 GFLOP/s there
 * instead of 164-189 with its SkylakeX kernels (2 threads, byol bench); on AMD's Zen 5 it picked
 * Haswell (AVX2), 1.6x slower than SkylakeX. The kernels are chosen when the library loads,
 * before main, so the only supported switch is the OPENBLAS_CORETYPE variable: set it from the
 * CPU's own feature flags and execute this program again, once. A user who sets
 * OPENBLAS_CORETYPE decides for themselves (and the re-executed program sees it set). */
void threads_select_blas_core(char **argv) {
#if defined(BYOL_BLAS) && defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    if (!core) return;
    __builtin_cpu_init();
    const char *best = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        best = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = "Haswell";
    if (!best || blas_core_rank(core) >= blas_core_rank(best)) return;
    if (setenv("OPENBLAS_CORETYPE", best, 1) != 0 || setenv("BYOL_BLAS_CORE_PICKED", core, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the kernels OpenBLAS chose */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("BYOL_BLAS_CORE_PICKED");
#else
    (void)argv;
#endif
}
