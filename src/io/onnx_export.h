/* An encoder as an ONNX model (byol export --format onnx), written with protobuf-c from ONNX
 * 1.12's onnx.proto (Debian's libonnx-dev, compiled into $(BUILD)/gen at build time).
 *
 * The graph: input "input", float32 NCHW [N, C, S, S] with a symbolic batch dimension "N",
 * already normalized (x = (pixel / 255 - mean) / std); output "features", float32 [N, d], the
 * globally average-pooled features that byol embed writes. Operators of the default domain at
 * ONNX_OPSET: Conv (no bias; weights OIHW), BatchNormalization (inference form: the running
 * statistics, epsilon BN_EPS, one node per batch norm, not folded into the convolution), Relu,
 * Add (the residual), MaxPool (the ImageNet stem's 3x3 stride 2 pad 1), GlobalAveragePool and
 * Flatten. Initializers carry torchvision's names (conv1.weight, layer1.0.bn1.running_mean, ...),
 * nodes and intermediate values their module's name (layer1.0.conv1, layer1.0.relu2, ...). */
#ifndef BYOL_ONNX_EXPORT_H
#define BYOL_ONNX_EXPORT_H

#include "../model/resnet.h"
#include "safetensors.h"

/* Opset 13 with IR version 7, the pair ONNX 1.8 introduced: every ONNX 1.8+ checker and runtime
 * (onnxruntime 1.6+) reads it, and it has every operator the encoder needs. */
enum { ONNX_OPSET = 13, ONNX_IR_VERSION = 7 };

/* Writes the encoder `net`, whose tensors are those of `store` named `prefix`... (e.g. a Byol's
 * online store and "online.encoder."), as an ONNX model at `path` for S x S inputs
 * (image_size), with `meta` as its metadata_props and producer_name "byol.c". The file is
 * written atomically: on any failure nothing is left at path. 0, or -1 with e set (one line
 * naming the file). The store must be in host memory. */
int onnx_export_encoder(const ResNet *net, const ParamStore *store, const char *prefix, int image_size,
                        const StMeta *meta, int n_meta, const char *path, Err *e);

#endif
