#include "threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    static char buf[160];
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
    snprintf(buf, sizeof buf, "%s, %s, kernels for %s", omp, blas, openblas_get_corename());
#else
    snprintf(buf, sizeof buf, "%s, %s", omp, blas);
#endif
    return buf;
}

/* OpenBLAS 0.3.21 (Debian 12) does not know AMD's family 0x1A (Zen 5) and falls back to its
 * AVX2 "Haswell" kernels on a CPU with full AVX-512 (OpenBLAS issue #6029, fixed upstream in
 * 2026). Its SkylakeX kernels run there 1.6x faster (measured with bench/bench_conv). The core
 * type is chosen when the library loads, before main, so the only supported switch is the
 * OPENBLAS_CORETYPE variable: set it and execute this program again, once. A user who sets
 * OPENBLAS_CORETYPE decides for themselves. */
void threads_select_blas_core(char **argv) {
#if defined(BYOL_BLAS) && defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "haswell") != 0 && strcasecmp(core, "zen") != 0)) return;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512vl")))
        return;
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the kernels OpenBLAS chose */
    unsetenv("OPENBLAS_CORETYPE");
#else
    (void)argv;
#endif
}
