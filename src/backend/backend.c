#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "gpu.h"

/* Host memory: what the CPU and reference backends (and the GPU emulator) compute in. */
static void *host_alloc(size_t bytes, const char *what) { return xcalloc(bytes ? bytes : 1, 1, what); }
static void host_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}
static void host_sync(void) {}

#define HOST_MEMORY                  \
    .host_memory = 1,                \
    .alloc = host_alloc,             \
    .release = xfree,                \
    .copy = host_copy,               \
    .upload = host_copy,             \
    .download = host_copy,           \
    .sync = host_sync

#define KERNELS(suffix)                                              \
    .conv2d_plan = conv2d_plan_##suffix,                             \
    .conv2d_forward = conv2d_forward_##suffix,                       \
    .conv2d_backward_weight = conv2d_backward_weight_##suffix,       \
    .conv2d_backward_data = conv2d_backward_data_##suffix,           \
    .batchnorm_work_doubles = batchnorm_work_doubles,                \
    .batchnorm_forward_train = batchnorm_forward_train_##suffix,     \
    .batchnorm_forward_eval = batchnorm_forward_eval_##suffix,       \
    .batchnorm_backward = batchnorm_backward_##suffix,               \
    .batchnorm_backward_eval = batchnorm_backward_eval_##suffix,     \
    .relu_forward = relu_forward_##suffix,                           \
    .relu_backward = relu_backward_##suffix,                         \
    .add_forward = add_forward_##suffix,                             \
    .maxpool2d_forward = maxpool2d_forward_##suffix,                 \
    .maxpool2d_backward = maxpool2d_backward_##suffix,               \
    .avgpool_forward = avgpool_forward_##suffix,                     \
    .avgpool_backward = avgpool_backward_##suffix,                   \
    .linear_forward = linear_forward_##suffix,                       \
    .linear_backward = linear_backward_##suffix,                     \
    .cosine_loss_forward = cosine_loss_forward_##suffix,             \
    .cosine_loss_backward = cosine_loss_backward_##suffix,           \
    .var_cov_loss = var_cov_loss_##suffix,                           \
    .gelu_forward = gelu_forward_##suffix,                           \
    .gelu_backward = gelu_backward_##suffix,                         \
    .l2norm_rows_forward = l2norm_rows_forward_##suffix,             \
    .l2norm_rows_backward = l2norm_rows_backward_##suffix,           \
    .dino_teacher_softmax = dino_teacher_softmax_##suffix,           \
    .dino_student_loss = dino_student_loss_##suffix,                 \
    .dino_center_update = dino_center_update_##suffix,               \
    .nchw_to_nhwc = nchw_to_nhwc_##suffix,                           \
    .fill_zero = fill_zero_##suffix,                                 \
    .count_nonfinite = count_nonfinite_##suffix,                     \
    .lars_update = lars_update_##suffix,                             \
    .adamw_update = adamw_update_##suffix,                           \
    .ema_update = ema_update_##suffix

const Backend backend_cpu = {.name = "cpu", HOST_MEMORY, KERNELS(cpu)};
const Backend backend_ref = {.name = "reference", HOST_MEMORY, KERNELS(ref)};

const Backend *backend_for_device(const char *device, Err *e) {
    if (!strcmp(device, "cpu")) return &backend_cpu;
    if (!strcmp(device, "gpu-emulator")) return &backend_gpu_emu;
    if (strncmp(device, "cuda", 4) || (device[4] && device[4] != ':')) {
        err_set(e, "--device %s: not a device (use cpu, cuda or cuda:N)", device);
        return NULL;
    }
    int index = 0;
    if (device[4] == ':') {
        char *end;
        long v = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end || v < 0 || v > 1024) {
            err_set(e, "--device %s: the GPU index must be a number (cuda:0, cuda:1, ...)", device);
            return NULL;
        }
        index = (int)v;
    }
    char why[256] = "";
    const int n = gpu_device_count(why, sizeof why);
    if (n < 0) {
        err_set(e, "--device %s: no usable CUDA GPU: %s (use --device cpu)", device, why);
        return NULL;
    }
    if (index >= n) {
        err_set(e, "--device %s: this machine has %d CUDA GPU%s (cuda:0..%d)", device, n,
                n == 1 ? "" : "s", n - 1);
        return NULL;
    }
#ifdef BYOL_CUDA
    if (cuda_backend_open(index, e) < 0) return NULL;
    return &backend_cuda;
#else
    return NULL; /* unreachable: gpu_device_count fails in a build without CUDA */
#endif
}
