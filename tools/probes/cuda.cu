/* Build probe: nvcc compiles CUDA code and it links against the static CUDA runtime (which loads
 * the driver only when called, so the program also starts on a machine without one). */
#include <cuda_runtime.h>
__global__ void probe_kernel(int *x) { *x = 1; }
int main(void) {
    int n = 0;
    (void)cudaGetDeviceCount(&n);
    return n < 0;
}
