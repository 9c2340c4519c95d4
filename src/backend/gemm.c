#include "gemm.h"

#ifdef BYOL_BLAS
#include <cblas.h>
#endif

#define AT(X, ld, r, c) ((X)[(long)(r) * (ld) + (c)])

void sgemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) {
                float a = ta ? AT(A, lda, p, i) : AT(A, lda, i, p);
                float b = tb ? AT(B, ldb, j, p) : AT(B, ldb, p, j);
                s += (double)a * b;
            }
            float c0 = beta == 0.0f ? 0.0f : beta * AT(C, ldc, i, j);
            AT(C, ldc, i, j) = c0 + alpha * (float)s;
        }
}

#ifndef BYOL_BLAS
/* Fallback for builds without BLAS (NO_BLAS=1): loop orders chosen so the innermost loop runs
 * over contiguous memory, rows split across OpenMP threads. Slower than OpenBLAS, never naive. */
static void fallback_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                           int lda, const float *B, int ldb, float beta, float *C, int ldc) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = &AT(C, ldc, i, 0);
        if (beta == 0.0f)
            for (int j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
        if (!tb) {
            for (int p = 0; p < K; p++) {
                float a = alpha * (ta ? AT(A, lda, p, i) : AT(A, lda, i, p));
                const float *b = &AT(B, ldb, p, 0);
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            for (int j = 0; j < N; j++) {
                float s = 0.0f;
                for (int p = 0; p < K; p++)
                    s += (ta ? AT(A, lda, p, i) : AT(A, lda, i, p)) * AT(B, ldb, j, p);
                c[j] += alpha * s;
            }
        }
    }
}
#endif

void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef BYOL_BLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    fallback_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
