/* Single-precision GEMM on row-major matrices: C[M,N] = alpha * op(A) * op(B) + beta * C,
 * op(X) = X or X^T. Every convolution and linear layer of the CPU backend funnels through
 * sgemm(); sgemm_ref() is the plain triple loop the tests compare it with. */
#ifndef BYOL_GEMM_H
#define BYOL_GEMM_H

void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
           const float *B, int ldb, float beta, float *C, int ldc);

void sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
