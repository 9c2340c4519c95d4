/* Thread control for the two pools the CPU path uses: OpenMP (our kernels) and OpenBLAS (GEMM).
 * Both are set together so `--threads N` means N cores everywhere. */
#ifndef BYOL_THREADS_H
#define BYOL_THREADS_H

int threads_available(void);  /* online cores */
void threads_set(int n);      /* n <= 0: all available cores */
int threads_get(void);
/* e.g. "openmp, OpenBLAS 0.3.21 ..., kernels for Haswell" */
const char *threads_backend_summary(void);
/* Call first in main: where OpenBLAS picked older kernels than the CPU runs (it does not know
 * CPUs newer than itself), re-executes the program once with OPENBLAS_CORETYPE set to the best
 * kernels for the CPU's features (see threads.c). Returns when there is nothing to do. */
void threads_select_blas_core(char **argv);

#endif
