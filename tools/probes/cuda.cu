/* Build probe: nvcc compiles CUDA code, and it links against the static CUDA runtime (which
 * loads the driver only when called, so the program also starts on a machine without one),
 * cuBLASLt and cuDNN 9 (neither links the driver either). */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#if CUDNN_MAJOR < 9
#error "cuDNN 9 or later is needed"
#endif
__global__ void probe_kernel(int *x) { *x = 1; }
int main(void) {
    int n = 0;
    (void)cudaGetDeviceCount(&n);
    return n < 0 || cudnnGetVersion() == 0 || cublasLtGetVersion() == 0;
}
