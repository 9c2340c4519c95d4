/* The CUDA runtime's view of this machine: how many devices, and what each is. Built by nvcc
 * when the Makefile finds CUDA (BYOL_CUDA); callers include ../gpu.h. The static runtime loads
 * the driver at the first call, so on a machine without one these calls return an error (and
 * byol says so) instead of the program failing to start. */
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int cuda_runtime_version(void) {
    int v = 0;
    return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

/* The number of devices, or -1 with the runtime's reason in why. */
extern "C" int cuda_device_count(char *why, size_t cap) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(why, cap, "%s", cudaGetErrorString(err));
        (void)cudaGetLastError(); /* the error is not sticky: clear it for later calls */
        return -1;
    }
    return n;
}

/* "NVIDIA H200 (sm_90, 150.0 GB)" in buf and 0, or -1 when the device cannot be queried. */
extern "C" int cuda_device_name(int i, char *buf, size_t cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return -1;
    snprintf(buf, cap, "%s (sm_%d%d, %.1f GB)", p.name, p.major, p.minor, p.totalGlobalMem / 1e9);
    return 0;
}
