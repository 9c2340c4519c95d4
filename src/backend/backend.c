#include "backend.h"

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
    .nchw_to_nhwc = nchw_to_nhwc_##suffix,                           \
    .fill_zero = fill_zero_##suffix,                                 \
    .count_nonfinite = count_nonfinite_##suffix,                     \
    .lars_update = lars_update_##suffix,                             \
    .ema_update = ema_update_##suffix

const Backend backend_cpu = {.name = "cpu", KERNELS(cpu)};
const Backend backend_ref = {.name = "reference", KERNELS(ref)};
