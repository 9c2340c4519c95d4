/* Thread control for the two pools the CPU path uses: OpenMP (our kernels) and OpenBLAS (GEMM).
 * Both are set together so `--threads N` means N cores everywhere. */
#ifndef BYOL_THREADS_H
#define BYOL_THREADS_H

int threads_available(void);  /* online cores */
void threads_set(int n);      /* n <= 0: all available cores */
int threads_get(void);
const char *threads_backend_summary(void);
/* Call first in main: re-executes the program once with OpenBLAS's AVX-512 kernels where
 * OpenBLAS failed to recognize an AVX-512 CPU (see threads.c). Returns when nothing to do. */
void threads_select_blas_core(char **argv); /* e.g. "openmp, openblas 0.3.21 (pthread)" */

#endif
