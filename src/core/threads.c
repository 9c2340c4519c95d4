#include "threads.h"

#include <stdio.h>
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

