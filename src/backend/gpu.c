#include "gpu.h"

#include <stdio.h>

#ifdef BYOL_CUDA
/* src/backend/cuda/device.cu */
int cuda_runtime_version(void);
int cuda_device_count(char *why, size_t cap);
int cuda_device_name(int i, char *buf, size_t cap);

int gpu_built(void) { return 1; }

int gpu_device_count(char *why, size_t cap) { return cuda_device_count(why, cap); }

void gpu_describe(char *buf, size_t cap) {
    const int v = cuda_runtime_version();
    char why[256] = "";
    int n = cuda_device_count(why, sizeof why), len;
    len = snprintf(buf, cap, "CUDA %d.%d runtime; ", v / 1000, v % 1000 / 10);
    if (n < 0 || len < 0 || (size_t)len >= cap) {
        if (len >= 0 && (size_t)len < cap) snprintf(buf + len, cap - (size_t)len, "no usable device: %s", why);
        return;
    }
    len += snprintf(buf + len, cap - (size_t)len, "%d device%s", n, n == 1 ? "" : "s");
    for (int i = 0; i < n && (size_t)len < cap; i++) {
        char name[160];
        if (cuda_device_name(i, name, sizeof name)) snprintf(name, sizeof name, "(not queried)");
        len += snprintf(buf + len, cap - (size_t)len, "%s%s", i ? ", " : ": ", name);
    }
}
#else
int gpu_built(void) { return 0; }

#define NOT_BUILT_WHY "make found no nvcc under CUDA_HOME (default /usr/local/cuda), or NO_CUDA=1"

int gpu_device_count(char *why, size_t cap) {
    snprintf(why, cap, "this byol was built without CUDA (" NOT_BUILT_WHY ")");
    return -1;
}

void gpu_describe(char *buf, size_t cap) { snprintf(buf, cap, "not built (" NOT_BUILT_WHY ")"); }
#endif
