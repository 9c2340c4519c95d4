/* GPUs as this build and this machine see them. The CUDA backend (issue 18) is built when the
 * Makefile finds CUDA under CUDA_HOME (/usr/local/cuda; NO_CUDA=1 leaves it out): then
 * BYOL_CUDA is defined and src/backend/cuda/ is compiled by nvcc. A CUDA build starts and runs
 * on the CPU on a machine without a GPU or a driver (CI's, a laptop's); this header is what the
 * rest of the program asks. */
#ifndef BYOL_GPU_H
#define BYOL_GPU_H

#include <stddef.h>

/* 1 when this build has CUDA code. */
int gpu_built(void);
/* CUDA devices the driver reports, or -1 with the reason in why (no driver, no device; or this
 * build has no CUDA). */
int gpu_device_count(char *why, size_t cap);
/* One line for byol --version: "CUDA 13.0 runtime; 1 device: NVIDIA H200 (sm_90, 150.0 GB)", or
 * why there is none ("...; no usable device: CUDA driver version is insufficient for CUDA
 * runtime version"), or "not built (...)". */
void gpu_describe(char *buf, size_t cap);

#endif
